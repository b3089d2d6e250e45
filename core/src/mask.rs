//! Payload masking (RFC 6455 section 5.3).
//!
//! Byte `i` of a masked payload is XORed with byte `i % 4` of the key.
//! Masking and unmasking are the same operation. [`apply_mask`] takes the
//! payload position of its first byte, so a payload that arrives over
//! several reads can be unmasked piece by piece.

/// XORs `buf` with `key`, where `buf[0]` is byte `offset` of the payload.
///
/// Works on 64-byte blocks of eight `u64` words, then single words, then
/// bytes; the fixed-size inner loop is what lets the compiler turn the
/// block step into SIMD instructions.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 lines up with buf[0].
    let key = rotate_key(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);

    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for chunk in block.chunks_exact_mut(8) {
            xor_word(chunk, word);
        }
    }

    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        xor_word(chunk, word);
    }

    // Every block and word is a multiple of 4 bytes long, so the tail
    // starts again at key index 0.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The key as seen from payload position `offset`.
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let shift = (offset % 4) as u32 * 8;
    u32::from_le_bytes(key).rotate_right(shift).to_le_bytes()
}

#[inline(always)]
fn xor_word(chunk: &mut [u8], word: u64) {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    #[test]
    fn matches_reference_at_every_offset_and_length() {
        for offset in 0..8 {
            for len in 0..200 {
                let mut fast = pattern(len, offset as u8);
                let mut slow = fast.clone();
                apply_mask(&mut fast, KEY, offset);
                reference(&mut slow, KEY, offset);
                assert_eq!(fast, slow, "offset {offset}, len {len}");
            }
        }
    }

    #[test]
    fn matches_reference_on_pseudo_random_lengths_and_unaligned_starts() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for _ in 0..200 {
            let len = next() % 5000;
            let start = next() % 8;
            let offset = next();
            let key = (next() as u32).to_le_bytes();
            let mut fast = pattern(len + start, start as u8);
            let mut slow = fast.clone();
            apply_mask(&mut fast[start..], key, offset);
            reference(&mut slow[start..], key, offset);
            assert_eq!(fast, slow, "len {len}, start {start}, offset {offset}");
        }
    }

    #[test]
    fn resumes_across_split_points() {
        let original = pattern(1000, 7);
        for cut in [0usize, 1, 2, 3, 5, 63, 64, 65, 999, 1000] {
            let mut whole = original.clone();
            apply_mask(&mut whole, KEY, 0);
            let mut pieces = original.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, KEY, 0);
            apply_mask(b, KEY, cut);
            assert_eq!(whole, pieces, "cut {cut}");
        }
    }

    #[test]
    fn twice_is_identity() {
        let original = pattern(333, 1);
        let mut buf = original.clone();
        apply_mask(&mut buf, KEY, 3);
        assert_ne!(buf, original);
        apply_mask(&mut buf, KEY, 3);
        assert_eq!(buf, original);
    }
}
