//! Message contents that differ per connection and per message, so that an
//! echo of the wrong message (or of another connection's) cannot pass the
//! check.
//!
//! The bytes are a xorshift stream seeded from the connection's tag and the
//! message's sequence number; text messages map each byte onto 64 ASCII
//! letters, digits and signs so they stay valid UTF-8.

use std::collections::TryReserveError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 64-bit mix (splitmix64's finaliser) for seeding.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Replaces `buf`'s contents with the `len` bytes of message `seq` of the
/// connection tagged `tag`. Fails, leaving `buf` empty, when the memory
/// for `len` bytes cannot be had.
pub fn fill(
    buf: &mut Vec<u8>,
    len: usize,
    tag: u64,
    seq: u64,
    text: bool,
) -> Result<(), TryReserveError> {
    buf.clear();
    buf.try_reserve(len)?;
    let mut state = mix(tag ^ seq.rotate_left(32)) | 1;
    while buf.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        let take = (len - buf.len()).min(8);
        buf.extend_from_slice(&word[..take]);
    }
    if text {
        for b in buf.iter_mut() {
            *b = ALPHABET[usize::from(*b & 63)];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_per_tag_and_seq() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        fill(&mut a, 20, 1, 0, false).unwrap();
        fill(&mut b, 20, 1, 1, false).unwrap();
        fill(&mut c, 20, 2, 0, false).unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut again = Vec::new();
        fill(&mut again, 20, 1, 0, false).unwrap();
        assert_eq!(a, again);
    }

    #[test]
    fn text_is_ascii() {
        let mut t = Vec::new();
        fill(&mut t, 1000, 7, 3, true).unwrap();
        assert!(t.iter().all(|b| ALPHABET.contains(b)));
        fill(&mut t, 0, 7, 3, true).unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn impossible_sizes_fail_without_aborting() {
        let mut t = vec![1, 2, 3];
        assert!(fill(&mut t, usize::MAX, 7, 3, false).is_err());
        assert!(t.is_empty());
    }
}
