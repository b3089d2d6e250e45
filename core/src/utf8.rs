//! Incremental UTF-8 validation of text messages (RFC 6455 section 8.1).
//!
//! A text message arrives in pieces: fragments, and reads that end inside a
//! frame. [`Utf8Stream`] validates each piece as it comes and fails as soon
//! as a byte sequence can never become valid (a surrogate, an overlong form,
//! a code point past U+10FFFF, a stray continuation byte), without waiting
//! for the end of the frame or message. It keeps only the up-to-3 bytes of a
//! code point cut off at the end of a piece.

use simdutf8::compat::from_utf8;

use crate::error::ProtocolError;

/// The validation state carried from one piece of a message to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Utf8Stream {
    /// The start of a code point cut off at the end of the previous piece.
    carry: [u8; 4],
    /// How many bytes of `carry` are in use (0 to 3).
    carry_len: u8,
}

impl Utf8Stream {
    /// Whether no partial code point is pending.
    pub(crate) fn is_clear(&self) -> bool {
        self.carry_len == 0
    }

    /// Validates the next piece of the message.
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> Result<(), ProtocolError> {
        if self.carry_len > 0 {
            piece = self.complete_carry(piece)?;
            if self.carry_len > 0 {
                // The whole piece went into a still-incomplete code point.
                return Ok(());
            }
        }

        match from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(ProtocolError::InvalidUtf8),
            Err(e) => {
                // A valid prefix of a code point at the end: keep it.
                let tail = &piece[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Checks the end of the message: a pending partial code point is an
    /// error. Resets the state for the next message.
    pub(crate) fn finish(&mut self) -> Result<(), ProtocolError> {
        let clear = self.is_clear();
        *self = Utf8Stream::default();
        if clear {
            Ok(())
        } else {
            Err(ProtocolError::InvalidUtf8)
        }
    }

    /// Moves bytes from the front of `piece` into the carried code point
    /// until it is complete, and returns the rest of `piece`.
    fn complete_carry<'p>(&mut self, piece: &'p [u8]) -> Result<&'p [u8], ProtocolError> {
        let have = self.carry_len as usize;
        let need = sequence_len(self.carry[0]);
        let take = (need - have).min(piece.len());
        self.carry[have..have + take].copy_from_slice(&piece[..take]);
        let len = have + take;

        match from_utf8(&self.carry[..len]) {
            Ok(_) => self.carry_len = 0,
            Err(e) if e.error_len().is_some() => return Err(ProtocolError::InvalidUtf8),
            Err(_) => self.carry_len = len as u8,
        }
        Ok(&piece[take..])
    }
}

/// The length of the sequence a lead byte starts. Only called on bytes the
/// validator accepted as the start of an incomplete sequence, so 2 to 4.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Result<(), ProtocolError> {
        let mut v = Utf8Stream::default();
        let mut start = 0;
        for &cut in cuts {
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    const SAMPLE: &str = "a\u{e9}\u{20ac}\u{1F600}z \u{10FFFF}\u{7FF}\u{800}";

    #[test]
    fn valid_text_split_anywhere_is_accepted() {
        let bytes = SAMPLE.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                assert_eq!(feed_split(bytes, &[a, b]), Ok(()), "cuts {a} {b}");
            }
        }
        let all: alloc::vec::Vec<usize> = (0..=bytes.len()).collect();
        assert_eq!(feed_split(bytes, &all), Ok(()));
    }

    #[test]
    fn impossible_sequences_fail_at_once() {
        // Beyond U+10FFFF, a surrogate, overlong forms, a stray continuation.
        let cases: [&[u8]; 6] = [
            &[0xF4, 0x90],
            &[0xED, 0xA0],
            &[0xC0, 0x80],
            &[0xE0, 0x80],
            &[0xF0, 0x80],
            &[0x80],
        ];
        for case in cases {
            // In one piece, without the message ending.
            let mut v = Utf8Stream::default();
            assert_eq!(v.feed(case), Err(ProtocolError::InvalidUtf8), "{case:x?}");

            // One byte per piece: fails on the byte that makes it impossible.
            let mut v = Utf8Stream::default();
            let mut failed = false;
            for &b in case {
                if v.feed(&[b]).is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed, "{case:x?} split");
        }
    }

    #[test]
    fn f4_then_90_fails_on_the_second_piece() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"ok \xF4"), Ok(()));
        assert!(!v.is_clear());
        assert_eq!(v.feed(b"\x90"), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn incomplete_code_point_fails_at_message_end() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"abc\xE2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        // finish resets the state for the next message.
        assert!(v.is_clear());
        assert_eq!(v.feed(b"fine"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn carry_completed_then_invalid_rest_fails() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"\xE2\x82"), Ok(()));
        assert_eq!(v.feed(b"\xAC\xFF"), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn empty_pieces_change_nothing() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"\xF0\x9F"), Ok(()));
        assert_eq!(v.feed(b""), Ok(()));
        assert_eq!(v.feed(b"\x98"), Ok(()));
        assert_eq!(v.feed(b""), Ok(()));
        assert_eq!(v.feed(b"\x80"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }
}
