//! The opening handshake (RFC 6455 section 4) for both roles.
//!
//! Both roles work on a complete head: [`find_head_end`] says when the
//! bytes read so far hold one, then the server calls [`answer_request`] and
//! the client calls [`check_response`]. Heads are parsed with `httparse`
//! into a header array of `Config::max_headers` entries, the only
//! allocation besides the bytes appended to `out`.
//!
//! Known limits: a head must end in `\r\n\r\n`; a head whose lines end in a
//! bare `\n` is never found complete (the caller's size limit or deadline
//! ends it) and a bare `\n\n` before the final `\r\n\r\n` is refused as
//! malformed. No extension is negotiated: a server ignores offered ones and
//! a client refuses any the server selects.

use sha1::{Digest, Sha1};

mod client;
mod headers;
mod server;

pub use client::{check_response, check_response_protocol, generate_key, write_request};
pub use server::{answer_request, write_rejection};

/// The GUID appended to the client's key before hashing (section 1.3).
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a client puts in its opening request.
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
    /// Value of the `Host` header, e.g. `127.0.0.1:9001`.
    pub host: &'a str,
    /// Request target, e.g. `/` or `/chat?room=1`.
    pub path: &'a str,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in preference order.
    pub protocols: &'a [&'a str],
}

impl ClientRequest<'_> {
    /// Whether every field can go into a head as is: `host` and `path` are
    /// non-empty visible ASCII without spaces (so no CR or LF can split a
    /// line), and each protocol is an HTTP token (section 4.1).
    pub fn is_well_formed(&self) -> bool {
        let visible = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        visible(self.host)
            && visible(self.path)
            && self
                .protocols
                .iter()
                .all(|p| headers::as_token(p.as_bytes()).is_some())
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key followed by [`GUID`].
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    use base64::Engine;

    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(GUID);
    let digest: [u8; 20] = hasher.finalize().into();

    let mut accept = [0u8; 28];
    base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut accept)
        .expect("28 bytes hold the base64 of 20");
    accept
}

/// Whether `buf` holds a blank line ended by a bare `\n` (`\n\n`) in the
/// part an earlier search had not seen (`scanned` as for
/// [`find_head_end`]). Such a line cannot appear in a valid head before its
/// `\r\n\r\n`, so a head without its end but with this is malformed and
/// is refused at once instead of waiting for the size limit or deadline.
pub fn has_bare_lf_blank_line(buf: &[u8], scanned: usize) -> bool {
    let from = if scanned > buf.len() {
        0
    } else {
        scanned.saturating_sub(1)
    };
    memchr::memmem::find(&buf[from..], b"\n\n").is_some()
}

/// Finds the end of an HTTP head: the index just past the first `\r\n\r\n`.
///
/// `scanned` is how many leading bytes of `buf` an earlier call already
/// searched without success; the search resumes just before it, so feeding
/// a head one byte at a time stays linear. A `scanned` larger than `buf`
/// (the caller lost track) restarts the search from the start.
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    scan_head(buf, scanned).0
}

/// Below this many bytes to search, finding each `\n` and looking back
/// is cheaper than setting up a substring search.
const SUBSTRING_SEARCH_MIN: usize = 64;

/// The search behind [`find_head_end`], also returning how many bytes it
/// examined, so tests can count the work.
fn scan_head(buf: &[u8], scanned: usize) -> (Option<usize>, usize) {
    // A `scanned` past the end means the caller lost track: start over.
    let from = if scanned > buf.len() { 0 } else { scanned };

    // No `\r\n\r\n` ends inside the first `from` bytes, so one that ends
    // later starts at most 3 bytes before `from`.
    let start = from.saturating_sub(3);
    let window = &buf[start..];
    if window.len() >= SUBSTRING_SEARCH_MIN {
        return match memchr::memmem::find(window, b"\r\n\r\n") {
            Some(i) => (Some(start + i + 4), i + 4),
            None => (None, window.len()),
        };
    }

    let mut examined = 0;
    for i in memchr::memchr_iter(b'\n', &buf[from..]) {
        let lf = from + i;
        examined = i + 1 + 3;
        if lf >= 3 && &buf[lf - 3..lf] == b"\r\n\r" {
            return (Some(lf + 1), examined);
        }
    }
    (None, (buf.len() - from).max(examined))
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;

    const HEAD: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accept_of_rfc_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        // Another known pair (RFC 6455 section 1.2 uses the one above only).
        assert_eq!(
            &accept_key(b"x3JJHMbDL1EzLkh9GBhXDw=="),
            b"HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
    }

    #[test]
    fn head_end_of_whole_head_and_with_trailing_bytes() {
        assert_eq!(find_head_end(HEAD, 0), Some(HEAD.len()));
        let mut more = HEAD.to_vec();
        more.extend_from_slice(b"\x81\x85\r\n\r\nframe");
        assert_eq!(find_head_end(&more, 0), Some(HEAD.len()));
        assert_eq!(find_head_end(b"", 0), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 0), Some(4));
        assert_eq!(find_head_end(b"\n\r\n\r\n", 0), Some(5));
        assert_eq!(find_head_end(b"a\n\nb\r\n\n\r\r\n", 0), None);
    }

    #[test]
    fn head_end_at_every_split() {
        // Feed the head in two parts split at every position, including
        // inside the final `\r\n\r\n`, followed by frame bytes.
        let mut stream = HEAD.to_vec();
        stream.extend_from_slice(b"\x81\x80abcd");
        for split in 0..=stream.len() {
            let first = &stream[..split];
            let early = find_head_end(first, 0);
            if split < HEAD.len() {
                assert_eq!(early, None, "split {split}");
                assert_eq!(
                    find_head_end(&stream, split),
                    Some(HEAD.len()),
                    "split {split}"
                );
            } else {
                assert_eq!(early, Some(HEAD.len()), "split {split}");
            }
        }
    }

    #[test]
    fn head_end_one_byte_at_a_time() {
        let mut scanned = 0;
        for len in 1..=HEAD.len() {
            let found = find_head_end(&HEAD[..len], scanned);
            if len < HEAD.len() {
                assert_eq!(found, None, "len {len}");
                scanned = len;
            } else {
                assert_eq!(found, Some(HEAD.len()));
            }
        }
    }

    #[test]
    fn head_end_matches_a_naive_search() {
        // Both search paths (short window and substring search) against the
        // obvious definition, on buffers dense in CR and LF.
        let naive = |buf: &[u8]| buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut found = 0;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 150) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| b"\r\n\r\nab"[((state >> (i % 60)) as usize + i) % 6])
                .collect();
            let expected = naive(&buf);
            found += usize::from(expected.is_some());
            assert_eq!(find_head_end(&buf, 0), expected, "{buf:?}");
            // Resuming from any point with no match before it.
            for scanned in 0..=len {
                if naive(&buf[..scanned]).is_none() {
                    assert_eq!(find_head_end(&buf, scanned), expected, "{buf:?} {scanned}");
                }
            }
        }
        // Both outcomes are well represented.
        assert!((200..1800).contains(&found), "{found}");
    }

    #[test]
    fn head_end_tolerates_scanned_past_the_buffer() {
        assert_eq!(find_head_end(b"GET", 10), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 6), Some(4));
        // Bytes claimed as searched are not searched again.
        assert_eq!(find_head_end(b"\r\n\r\n", 4), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 3), Some(4));
    }

    #[test]
    fn head_end_is_linear_when_fed_byte_by_byte() {
        // A 16 KiB head of many short lines, the worst case for a search
        // that finds every `\n` and looks back.
        let mut head = String::from("GET / HTTP/1.1\r\n");
        let mut i = 0;
        while head.len() < 16 * 1024 - 4 {
            head.push_str(&format!("X-{i}: v\r\n"));
            i += 1;
        }
        head.push_str("\r\n");
        let head = head.as_bytes();
        let n = head.len();

        let mut scanned = 0;
        let mut work = 0;
        let mut found = None;
        for len in 1..=n {
            let (end, examined) = scan_head(&head[..len], scanned);
            work += examined;
            if end.is_some() {
                found = end;
                break;
            }
            scanned = len;
        }
        assert_eq!(found, Some(n));
        assert!(work <= 3 * n, "{work} bytes examined for a {n}-byte head");

        // Without the `scanned` contract the same feeding is quadratic,
        // which shows the counter measures the search (on a 2 KiB prefix,
        // to keep the test quick).
        let prefix = &head[..2048];
        let naive: usize = (1..=prefix.len())
            .map(|len| scan_head(&prefix[..len], 0).1)
            .sum();
        assert!(naive > 100 * prefix.len(), "{naive}");
    }

    #[test]
    fn client_request_well_formed() {
        let good = ClientRequest {
            host: "127.0.0.1:9001",
            path: "/chat?room=1",
            protocols: &["chat", "v2.json"],
        };
        assert!(good.is_well_formed());
        let bad = [
            ClientRequest { host: "", ..good },
            ClientRequest {
                host: "a\r\nX: y",
                ..good
            },
            ClientRequest {
                path: "/a b",
                ..good
            },
            ClientRequest { path: "", ..good },
            ClientRequest {
                protocols: &["chat", "a,b"],
                ..good
            },
            ClientRequest {
                protocols: &[""],
                ..good
            },
        ];
        for request in bad {
            assert!(!request.is_well_formed(), "{request:?}");
        }
    }
}
