//! Header helpers shared by both roles: parsing a head with `httparse`,
//! comma-separated token lists (RFC 7230 section 7) and a `fmt::Write`
//! adapter over the output buffer.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use httparse::Header;

use crate::error::HandshakeError;

/// A header array for `httparse` to fill: `max` empty entries, or fewer
/// when `head` is too short to hold that many header lines.
pub(super) fn header_array<'b>(max: usize, head: &[u8]) -> Vec<Header<'b>> {
    // The shortest header line, `a:\n`, takes 3 bytes, so a head never
    // holds more than `len / 3` of them and a shorter array cannot report
    // too many headers by mistake. This also keeps a huge configured limit
    // from allocating more than the head itself warrants.
    let room = head.len() / 3 + 1;
    vec![httparse::EMPTY_HEADER; max.min(room)]
}

/// Checks what `httparse` made of a head that `find_head_end` called
/// complete: it must end exactly at the end of `head`.
pub(super) fn check_complete(
    status: httparse::Status<usize>,
    head: &[u8],
) -> Result<(), HandshakeError> {
    match status {
        httparse::Status::Complete(n) if n == head.len() => Ok(()),
        // httparse also accepts a bare `\n` as a line end, so it can find a
        // blank line before the `\r\n\r\n` that delimited the head. Bytes
        // after it would otherwise be silently dropped.
        httparse::Status::Complete(_) => Err(HandshakeError::Malformed(
            "bare line feed ends the http head early",
        )),
        httparse::Status::Partial => Err(HandshakeError::Malformed("http head is incomplete")),
    }
}

/// Which kind of head is being parsed, for naming the problem in it.
#[derive(Clone, Copy)]
pub(super) enum Head {
    Request,
    Response,
}

/// Maps a parse error of `httparse` to a refusal naming the problem.
pub(super) fn parse_error(
    error: httparse::Error,
    head: &[u8],
    kind: Head,
    max_headers: usize,
) -> HandshakeError {
    let first_line = first_line(head);
    let what = match (error, kind) {
        (httparse::Error::TooManyHeaders, _) => {
            return HandshakeError::TooManyHeaders { limit: max_headers };
        }
        (httparse::Error::Token | httparse::Error::Version, Head::Request) => {
            return request_line_error(first_line);
        }
        (httparse::Error::Version, Head::Response) => {
            let version = first_line.split(|&b| b == b' ').next().unwrap_or(b"");
            return version_error(version);
        }
        (httparse::Error::Token, Head::Response) => "invalid status line",
        (httparse::Error::HeaderName, _) => "invalid header name or a header line without a colon",
        (httparse::Error::HeaderValue, _) => "invalid byte in a header value",
        (httparse::Error::NewLine, _) => "invalid line ending",
        (httparse::Error::Status, _) => "invalid response status",
    };
    HandshakeError::Malformed(what)
}

/// The first line of `head`, without its line ending.
fn first_line(head: &[u8]) -> &[u8] {
    let end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = &head[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Names what is wrong with a request line `httparse` refused.
fn request_line_error(line: &[u8]) -> HandshakeError {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    if as_token(method).is_none() {
        return HandshakeError::Malformed("invalid request method");
    }
    let Some(target) = parts.next() else {
        return HandshakeError::Malformed("request line has no target");
    };
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return HandshakeError::Malformed("invalid request target");
    }
    match parts.next() {
        None => HandshakeError::Malformed("request line has no http version"),
        Some(version) => version_error(version),
    }
}

/// `httparse` only knows HTTP/1.0 and HTTP/1.1. A head that names some
/// other version is refused as such; anything else is malformed.
fn version_error(version: &[u8]) -> HandshakeError {
    let names_version = version.len() > 5
        && version[..5].eq_ignore_ascii_case(b"HTTP/")
        && version[5].is_ascii_digit();
    if names_version {
        HandshakeError::HttpVersion
    } else {
        HandshakeError::Malformed("invalid http version")
    }
}

/// Values of every header line called `name` (ASCII case-insensitive), in
/// order.
pub(super) fn values<'h, 'b: 'h>(
    headers: &'h [Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The elements of a comma-separated list header over all its lines, with
/// optional whitespace trimmed and empty elements skipped (RFC 7230
/// section 7).
pub(super) fn tokens<'h, 'b: 'h>(
    headers: &'h [Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    values(headers, name)
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|token| !token.is_empty())
}

/// Whether the list header `name` contains `token` (ASCII case-insensitive).
pub(super) fn has_token(headers: &[Header<'_>], name: &str, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// `bytes` without leading and trailing spaces and tabs.
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `bytes` as a `str` if it is a non-empty HTTP token (RFC 7230 section
/// 3.2.6), which is what a subprotocol name must be (RFC 6455 section 4.1).
pub(super) fn as_token(bytes: &[u8]) -> Option<&str> {
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if bytes.is_empty() || !bytes.iter().all(is_tchar) {
        return None;
    }
    // Token characters are all ASCII.
    core::str::from_utf8(bytes).ok()
}

/// Appends formatted text to a byte buffer.
pub(super) struct ByteWriter<'a>(pub(super) &'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Counts the bytes of formatted text without storing them.
#[derive(Default)]
pub(super) struct LenCounter(pub(super) usize);

impl fmt::Write for LenCounter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a str, value: &'a [u8]) -> Header<'a> {
        Header { name, value }
    }

    #[test]
    fn tokens_join_lines_and_trim() {
        let headers = [
            header("Connection", b" keep-alive ,Upgrade"),
            header("Host", b"x"),
            header("CONNECTION", b",, te\t"),
        ];
        let got: Vec<&[u8]> = tokens(&headers, "connection").collect();
        assert_eq!(got, [&b"keep-alive"[..], b"Upgrade", b"te"]);
        assert!(has_token(&headers, "Connection", "upgrade"));
        assert!(!has_token(&headers, "Connection", "close"));
        assert!(!has_token(&headers, "Upgrade", "websocket"));
    }

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\ta b "), b"a b");
    }

    #[test]
    fn token_characters() {
        assert_eq!(as_token(b"chat.v2+json"), Some("chat.v2+json"));
        assert_eq!(as_token(b""), None);
        assert_eq!(as_token(b"a b"), None);
        assert_eq!(as_token(b"a/b"), None);
        assert_eq!(as_token("é".as_bytes()), None);
    }

    #[test]
    fn request_line_errors() {
        let malformed = |line: &[u8]| match request_line_error(line) {
            HandshakeError::Malformed(what) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            request_line_error(b"GET / HTTP/2.0"),
            HandshakeError::HttpVersion
        );
        assert_eq!(malformed(b"GET / FTP/1.1"), "invalid http version");
        assert_eq!(malformed(b"GET /"), "request line has no http version");
        assert_eq!(malformed(b"GET"), "request line has no target");
        assert_eq!(malformed(b"G(T / HTTP/1.1"), "invalid request method");
        assert_eq!(malformed(b""), "invalid request method");
        assert_eq!(malformed(b"GET /\x00 HTTP/1.1"), "invalid request target");
        assert_eq!(malformed(b"GET  HTTP/1.1"), "invalid request target");
        assert_eq!(first_line(b"GET /\r\nHost: x\r\n"), b"GET /");
        assert_eq!(first_line(b"GET /"), b"GET /");
    }
}
