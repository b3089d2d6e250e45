//! The frame header decoder on arbitrary bytes, for both roles: a decoded
//! header re-encodes to one that decodes the same, and no prefix of a
//! valid header is anything but incomplete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::frame::FrameHeader;
use tern_core::Role;

fuzz_target!(|data: &[u8]| {
    for role in [Role::Server, Role::Client] {
        let Ok(decoded) = FrameHeader::decode(data, role) else {
            continue;
        };
        let Some((header, n)) = decoded else {
            // Incomplete: no header is longer than 14 bytes.
            assert!(data.len() < 14);
            continue;
        };
        assert!(n <= data.len() && n <= 14);
        for k in 0..n {
            assert_eq!(
                FrameHeader::decode(&data[..k], role),
                Ok(None),
                "prefix {k}"
            );
        }
        let encoded = header.encode();
        assert_eq!(
            FrameHeader::decode(encoded.as_bytes(), role),
            Ok(Some((header, encoded.as_bytes().len())))
        );
        assert!(encoded.as_bytes().len() <= n);
    }
});
