//! Message contents that differ per connection and per message, so that an
//! echo of the wrong message (or of another connection's) cannot pass the
//! check.
//!
//! The bytes are a xorshift stream seeded from the connection's tag and the
//! message's sequence number; text messages map each byte onto 64 ASCII
//! letters, digits and signs so they stay valid UTF-8.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 64-bit mix (splitmix64's finaliser) for seeding.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Replaces `buf`'s contents with the `len` bytes of message `seq` of the
/// connection tagged `tag`.
pub fn fill(buf: &mut Vec<u8>, len: usize, tag: u64, seq: u64, text: bool) {
    buf.clear();
    buf.reserve(len);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_per_tag_and_seq() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        fill(&mut a, 20, 1, 0, false);
        fill(&mut b, 20, 1, 1, false);
        fill(&mut c, 20, 2, 0, false);
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let mut again = Vec::new();
        fill(&mut again, 20, 1, 0, false);
        assert_eq!(a, again);
    }

    #[test]
    fn text_is_ascii() {
        let mut t = Vec::new();
        fill(&mut t, 1000, 7, 3, true);
        assert!(t.iter().all(|b| ALPHABET.contains(b)));
        fill(&mut t, 0, 7, 3, true);
        assert!(t.is_empty());
    }
}
