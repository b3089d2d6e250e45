//! Frame headers (RFC 6455 section 5.2): decoding, validation and encoding.
//!
//! A header is 2 to 14 bytes: FIN, RSV1-3 and the opcode, the MASK bit and
//! a 7-bit length, then an optional 16- or 64-bit extended length, then an
//! optional 4-byte masking key. [`FrameHeader::decode`] reads it from the
//! front of a byte slice and is incremental: a prefix that is not a whole
//! header yet gives `Ok(None)`, and every rule that can already be checked on
//! that prefix is checked, so a bad frame fails as soon as its header shows
//! it, before any payload is waited for or allocated.

use crate::connection::Role;
use crate::error::ProtocolError;

/// The longest possible header: 2 fixed bytes, 8 length bytes, 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (section 5.2). Reserved values are refused by
/// [`OpCode::from_u8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: a close frame.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of a frame's first byte.
    pub fn from_u8(op: u8) -> Result<OpCode, ProtocolError> {
        match op {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::ReservedOpcode(other)),
        }
    }

    /// The opcode's wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong; section 5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub len: u64,
}

/// The encoded bytes of a [`FrameHeader`], kept on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderBytes {
    buf: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl HeaderBytes {
    /// The header as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl FrameHeader {
    /// Reads a header from the front of `buf`, as received by an endpoint
    /// of role `receiver`.
    ///
    /// Returns `Ok(Some((header, n)))` with the `n` header bytes consumed
    /// once the header is complete, and `Ok(None)` when `buf` holds only a
    /// prefix of it. Rules are checked as soon as the bytes they concern are
    /// present: reserved bits and opcodes, fragmented or oversized control
    /// frames, a 64-bit length with its top bit set, and masking (a server
    /// requires masked frames, a client unmasked ones; section 5.1).
    pub fn decode(
        buf: &[u8],
        receiver: Role,
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };

        // Section 5.2: RSV1-3 must be 0 unless an extension says otherwise;
        // this engine negotiates none.
        if b0 & 0x70 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0F)?;

        // Section 5.5: control frames must not be fragmented.
        if opcode.is_control() && !fin {
            return Err(ProtocolError::FragmentedControl);
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        match (receiver, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }

        let short_len = b1 & 0x7F;

        let (len, mut pos) = match short_len {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([bytes[0], bytes[1]]);
                // Section 5.2: "the minimal number of bytes MUST be used".
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength(u64::from(len)));
                }
                (u64::from(len), 4)
            }
            127 => {
                // Section 5.2: the most significant bit of a 64-bit length
                // must be 0. Fail on its first byte, not after all eight.
                if buf.get(2).is_some_and(|b| b & 0x80 != 0) {
                    return Err(ProtocolError::InvalidLength);
                }
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                if len <= 0xFFFF {
                    return Err(ProtocolError::NonMinimalLength(len));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };

        // Section 5.5: control payloads are at most 125 bytes. Checked once
        // the whole length is read, so the error names the same length
        // however the header was cut into reads.
        if opcode.is_control() && len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlTooLong(len));
        }

        let mask = if masked {
            let Some(bytes) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };

        let header = FrameHeader {
            fin,
            opcode,
            mask,
            len,
        };
        Ok(Some((header, pos)))
    }

    /// Encodes the header. Lengths use the shortest form, as section 5.2
    /// requires.
    pub fn encode(&self) -> HeaderBytes {
        let mut buf = [0u8; MAX_HEADER_LEN];
        buf[0] = u8::from(self.fin) << 7 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };

        let mut pos = match self.len {
            n @ 0..=125 => {
                buf[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                buf[1] = mask_bit | 126;
                buf[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                buf[1] = mask_bit | 127;
                buf[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };

        if let Some(key) = self.mask {
            buf[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        HeaderBytes {
            buf,
            len: pos as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn non_minimal_lengths_fail() {
        // 5 in the 16-bit form, 65,535 in the 64-bit form.
        let short = [0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4];
        assert_eq!(
            FrameHeader::decode(&short, Role::Server),
            Err(ProtocolError::NonMinimalLength(5))
        );
        let long = [0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4];
        assert_eq!(
            FrameHeader::decode(&long, Role::Server),
            Err(ProtocolError::NonMinimalLength(0xFFFF))
        );
    }

    use super::*;
    use alloc::vec::Vec;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(
        buf: &[u8],
        receiver: Role,
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::decode(buf, receiver)
    }

    #[test]
    fn encodes_each_length_form_exactly() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x82, 0x00]),
            (125, &[0x82, 0x7D]),
            (126, &[0x82, 0x7E, 0x00, 0x7E]),
            (0xFFFF, &[0x82, 0x7E, 0xFF, 0xFF]),
            (0x1_0000, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
            (
                0x0123_4567_89AB_CDEF,
                &[0x82, 0x7F, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF],
            ),
        ];
        for (len, want) in cases {
            let server = FrameHeader {
                fin: true,
                opcode: OpCode::Binary,
                mask: None,
                len,
            };
            assert_eq!(server.encode().as_bytes(), want, "server, len {len}");

            let client = FrameHeader {
                mask: Some(KEY),
                ..server
            };
            let mut want_masked = Vec::from(want);
            want_masked[1] |= 0x80;
            want_masked.extend_from_slice(&KEY);
            assert_eq!(
                client.encode().as_bytes(),
                &want_masked[..],
                "client, len {len}"
            );

            assert_eq!(
                decode_all(client.encode().as_bytes(), Role::Server),
                Ok(Some((client, want_masked.len())))
            );
            assert_eq!(
                decode_all(server.encode().as_bytes(), Role::Client),
                Ok(Some((server, want.len())))
            );
        }
    }

    #[test]
    fn encodes_fin_and_opcode() {
        let h = FrameHeader {
            fin: false,
            opcode: OpCode::Text,
            mask: None,
            len: 5,
        };
        assert_eq!(h.encode().as_bytes(), &[0x01, 0x05]);
        let h = FrameHeader {
            fin: true,
            opcode: OpCode::Pong,
            mask: None,
            len: 0,
        };
        assert_eq!(h.encode().as_bytes(), &[0x8A, 0x00]);
    }

    #[test]
    fn split_at_every_boundary_decodes_identically() {
        for len in [0u64, 7, 125, 126, 300, 0xFFFF, 0x1_0000, 1 << 40] {
            for mask in [None, Some(KEY)] {
                let header = FrameHeader {
                    fin: true,
                    opcode: OpCode::Binary,
                    mask,
                    len,
                };
                let receiver = if mask.is_some() {
                    Role::Server
                } else {
                    Role::Client
                };
                let bytes = header.encode();
                let bytes = bytes.as_bytes();
                for cut in 0..bytes.len() {
                    assert_eq!(decode_all(&bytes[..cut], receiver), Ok(None), "cut {cut}");
                }
                // Trailing payload bytes are not part of the header.
                let mut with_payload = Vec::from(bytes);
                with_payload.extend_from_slice(&[0xAA; 20]);
                assert_eq!(
                    decode_all(&with_payload, receiver),
                    Ok(Some((header, bytes.len())))
                );
            }
        }
    }

    #[test]
    fn top_bit_of_64_bit_length_fails_on_its_first_byte() {
        let frame = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        for cut in 3..=frame.len() {
            assert_eq!(
                decode_all(&frame[..cut], Role::Server),
                Err(ProtocolError::InvalidLength),
                "cut {cut}"
            );
        }
        assert_eq!(decode_all(&frame[..2], Role::Server), Ok(None));
    }

    #[test]
    fn reserved_bits_and_opcodes_fail() {
        for rsv in [0x40u8, 0x20, 0x10] {
            assert_eq!(
                decode_all(&[0x81 | rsv], Role::Server),
                Err(ProtocolError::ReservedBits)
            );
        }
        for op in (3u8..=7).chain(0xB..=0xF) {
            assert_eq!(
                decode_all(&[0x80 | op, 0x80], Role::Server),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        assert_eq!(
            decode_all(&[0x09, 0x80], Role::Server),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            decode_all(&[0x89, 0xFE, 0x00, 0x7E], Role::Server),
            Err(ProtocolError::ControlTooLong(126))
        );
        assert_eq!(decode_all(&[0x88, 0xFE], Role::Server), Ok(None));
        assert_eq!(
            decode_all(&[0x88, 0xFE, 0x01, 0x00], Role::Server),
            Err(ProtocolError::ControlTooLong(256))
        );
        assert_eq!(
            decode_all(&[0x8A, 0xFD, 1, 2, 3, 4], Role::Server).map(|d| d.map(|(h, n)| (h.len, n))),
            Ok(Some((125, 6)))
        );
    }

    #[test]
    fn masking_rules_per_role() {
        assert_eq!(
            decode_all(&[0x81, 0x00], Role::Server),
            Err(ProtocolError::UnmaskedFrame)
        );
        assert_eq!(
            decode_all(&[0x81, 0x80, 1, 2, 3, 4], Role::Client),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn opcodes_round_trip() {
        for op in [0u8, 1, 2, 8, 9, 0xA] {
            assert_eq!(OpCode::from_u8(op).map(OpCode::as_u8), Ok(op));
        }
    }
}
