//! The server's opening-handshake parser on arbitrary bytes: every head
//! gets either `101 Switching Protocols` or an HTTP error whose status
//! matches the error returned, with default and with tight limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::handshake::{answer_request, find_head_end};
use tern_core::Config;

fn check(head: &[u8], config: &Config) {
    let mut out = Vec::new();
    match answer_request(head, config, &mut out) {
        Ok(()) => assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n")),
        Err(e) => {
            let status = format!("HTTP/1.1 {} ", e.status());
            assert!(out.starts_with(status.as_bytes()), "{e:?}");
        }
    }
    // Every answer is one complete head, followed by exactly the body its
    // Content-Length announces (none for a 101).
    let end = find_head_end(&out, 0).expect("answer has a complete head");
    let head = std::str::from_utf8(&out[..end]).expect("answer head is ascii");
    let body_len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse::<usize>().expect("numeric length"));
    assert_eq!(out.len() - end, body_len);
}

fuzz_target!(|data: &[u8]| {
    check(data, &Config::DEFAULT);
    let tight = Config {
        max_head_size: 256,
        max_headers: 4,
        ..Config::DEFAULT
    };
    check(data, &tight);

    // The end of the head is found the same way whatever was scanned
    // before (the scan resumes where the last read stopped).
    let whole = find_head_end(data, 0);
    for scanned in [1, 3, data.len() / 2, data.len().saturating_sub(1)] {
        let scanned = scanned.min(data.len());
        let resumed = find_head_end(data, scanned);
        if let Some(end) = whole {
            if end > scanned + 3 {
                assert_eq!(resumed, whole);
            }
        }
    }
});
