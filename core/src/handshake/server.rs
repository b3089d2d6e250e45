//! Server side of the opening handshake: validating the client's request
//! (RFC 6455 section 4.2.1) and answering it (section 4.2.2).

use alloc::vec::Vec;
use core::fmt::Write;

use base64::Engine;
use httparse::Header;

use super::accept_key;
use super::headers::{self, ByteWriter, Head, LenCounter};
use crate::config::{Config, SelectProtocol};
use crate::error::HandshakeError;

/// What a valid request leads to.
struct Accepted<'b> {
    accept: [u8; 28],
    protocol: Option<&'b str>,
}

/// Server side: validates a complete request head (everything up to and
/// including its blank line) and appends the `101 Switching Protocols`
/// answer to `out`. On refusal, appends the HTTP error response instead
/// (see [`write_rejection`]) and returns why.
pub fn answer_request(
    head: &[u8],
    config: &Config,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    match validate(head, config) {
        Ok(accepted) => {
            write_switching(&accepted, out);
            Ok(())
        }
        Err(error) => {
            write_rejection(&error, out);
            Err(error)
        }
    }
}

/// Checks the request against section 4.2.1, in the order the section
/// lists its fields.
fn validate<'b>(head: &'b [u8], config: &Config) -> Result<Accepted<'b>, HandshakeError> {
    let mut array = headers::header_array(config.max_headers, head);
    let mut request = httparse::Request::new(&mut array);
    let status = request
        .parse(head)
        .map_err(|e| headers::parse_error(e, head, Head::Request, config.max_headers))?;
    headers::check_complete(status, head)?;

    // Item 1: a GET of HTTP/1.1 or later.
    if request.method != Some("GET") {
        return Err(HandshakeError::MethodNotGet);
    }
    if request.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    // Section 3 and 4.1: the target is a resource name (`/path?query`) or
    // an absolute `http`/`https` URI; `*` and other forms are not.
    let target = request.path.unwrap_or("");
    // Compared as bytes: the target may hold multi-byte characters, where a
    // `str` slice would not fall on a boundary.
    let absolute = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|scheme| {
            target.len() > scheme.len()
                && target.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        });
    if !target.starts_with('/') && !absolute {
        return Err(HandshakeError::Malformed(
            "request target is not a resource name",
        ));
    }
    let fields: &[Header<'b>] = request.headers;

    // Item 2: exactly one Host (RFC 7230 section 5.4 refuses several).
    match headers::values(fields, "host").count() {
        0 => return Err(HandshakeError::MissingHost),
        1 => {}
        _ => return Err(HandshakeError::Malformed("more than one Host header")),
    }

    // Items 3 and 4: the upgrade tokens.
    if !headers::has_token(fields, "upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers::has_token(fields, "connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }

    // Item 5: one key, base64 of 16 bytes.
    let key = single_key(fields)?;

    // Item 6: version 13, else 426 with the version we speak (4.2.2).
    if !is_version_13(fields) {
        return Err(HandshakeError::UnsupportedVersion);
    }

    let protocol = match config.select_protocol {
        Some(select) => choose_protocol(fields, select)?,
        None => None,
    };
    Ok(Accepted {
        accept: accept_key(key),
        protocol,
    })
}

/// The one `Sec-WebSocket-Key`, trimmed and checked to decode to 16 bytes.
fn single_key<'b>(fields: &[Header<'b>]) -> Result<&'b [u8], HandshakeError> {
    let mut keys = headers::values(fields, "sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    if keys.next().is_some() {
        return Err(HandshakeError::DuplicateKey);
    }
    let key = headers::trim_ows(key);

    // Canonical base64 of 16 bytes is always 24 characters, `==` included.
    if key.len() != 24 {
        return Err(HandshakeError::InvalidKey);
    }
    let mut decoded = [0u8; 24];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => Ok(key),
        _ => Err(HandshakeError::InvalidKey),
    }
}

/// Whether `Sec-WebSocket-Version` is present and every value is `13`.
fn is_version_13(fields: &[Header<'_>]) -> bool {
    let mut versions = headers::tokens(fields, "sec-websocket-version").peekable();
    versions.peek().is_some() && versions.all(|v| v == b"13")
}

/// Offered subprotocols held without allocating; more spill into a `Vec`.
const INLINE_PROTOCOLS: usize = 16;

/// Collects every offered subprotocol in the client's order and lets the
/// application's hook pick one (section 4.2.2). An index out of
/// range from the hook is treated as no choice.
fn choose_protocol<'b>(
    fields: &[Header<'b>],
    select: SelectProtocol,
) -> Result<Option<&'b str>, HandshakeError> {
    let mut inline = [""; INLINE_PROTOCOLS];
    let mut count = 0;
    let mut spill: Vec<&'b str> = Vec::new();
    for token in headers::tokens(fields, "sec-websocket-protocol") {
        let name = headers::as_token(token).ok_or(HandshakeError::Malformed(
            "Sec-WebSocket-Protocol is not a list of tokens",
        ))?;
        if count < INLINE_PROTOCOLS {
            inline[count] = name;
        } else {
            if spill.is_empty() {
                spill.extend_from_slice(&inline);
            }
            spill.push(name);
        }
        count += 1;
    }

    let offered: &[&'b str] = if spill.is_empty() {
        &inline[..count]
    } else {
        &spill
    };
    if offered.is_empty() {
        return Ok(None);
    }
    Ok(select(offered).and_then(|i| offered.get(i).copied()))
}

/// Appends the `101` answer (section 4.2.2, item 5).
fn write_switching(accepted: &Accepted<'_>, out: &mut Vec<u8>) {
    const START: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: ";
    const PROTOCOL: &[u8] = b"Sec-WebSocket-Protocol: ";

    let protocol_len = accepted
        .protocol
        .map_or(0, |p| PROTOCOL.len() + p.len() + 2);
    out.reserve(START.len() + accepted.accept.len() + 2 + protocol_len + 2);
    out.extend_from_slice(START);
    out.extend_from_slice(&accepted.accept);
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = accepted.protocol {
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the HTTP error response for a refused request: the status of
/// [`HandshakeError::status`], `Connection: close`, a `text/plain` body
/// naming the problem, and `Sec-WebSocket-Version: 13` with a 426.
pub fn write_rejection(error: &HandshakeError, out: &mut Vec<u8>) {
    let status = error.status();
    let mut body = LenCounter::default();
    // Neither writer can fail, so neither result carries information.
    let _ = writeln!(body, "{error}");
    let body_len = body.0;

    let mut w = ByteWriter(out);
    let _ = write!(
        w,
        "HTTP/1.1 {status} {}\r\n\
         Connection: close\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {body_len}\r\n",
        reason_phrase(status),
    );
    // Section 4.4: tell the client which version this server speaks.
    if status == 426 {
        let _ = w.write_str("Sec-WebSocket-Version: 13\r\n");
    }
    let _ = write!(w, "\r\n{error}\n");
}

/// The reason phrase of the statuses a refusal can carry (RFC 7231 section
/// 6, RFC 6585 section 5).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;

    use super::*;

    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid request with `extra` header lines (each ending in CRLF)
    /// replacing the key and version lines when they name those fields.
    fn request(extra: &str) -> String {
        let mut head = String::from("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n");
        head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
        head.push_str(extra);
        head.push_str("\r\n");
        head
    }

    fn standard() -> String {
        request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    }

    fn answer(head: &str, config: &Config) -> (Result<(), HandshakeError>, String) {
        let mut out = Vec::new();
        let result = answer_request(head.as_bytes(), config, &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    fn rejection(error: &HandshakeError) -> String {
        let mut out = Vec::new();
        write_rejection(error, &mut out);
        String::from_utf8(out).unwrap()
    }

    const RFC_101: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn rfc_example_gets_exact_101() {
        let (result, out) = answer(&standard(), &Config::DEFAULT);
        assert_eq!(result, Ok(()));
        assert_eq!(out, RFC_101);
    }

    #[test]
    fn answer_appends_after_existing_output() {
        let mut out = b"earlier".to_vec();
        answer_request(standard().as_bytes(), &Config::DEFAULT, &mut out).unwrap();
        assert_eq!(&out[..7], b"earlier");
        assert_eq!(&out[7..], RFC_101.as_bytes());
    }

    #[test]
    fn request_targets_must_name_a_resource() {
        // The last has a two-byte character across the scheme lengths.
        for target in [
            "/",
            "/chat?room=1",
            "http://h/x",
            "HTTPS://h:443/",
            "/ch;\u{3de}t",
        ] {
            let head = standard().replacen("/chat", target, 1);
            assert_eq!(answer(&head, &Config::DEFAULT).0, Ok(()), "{target}");
        }
        for target in ["*", "chat", "ftp://h/x", "http://"] {
            let head = standard().replacen("/chat", target, 1);
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(
                result,
                Err(HandshakeError::Malformed(
                    "request target is not a resource name"
                )),
                "{target}"
            );
            assert!(out.starts_with("HTTP/1.1 400 "), "{target}");
        }
    }

    /// A request whose Upgrade and Connection lines are `lines`.
    fn with_upgrade_lines(lines: &str) -> String {
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{lines}\
             Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    #[test]
    fn connection_token_variants_upgrade() {
        let variants = [
            "Connection: keep-alive, Upgrade\r\n",
            "Connection: Upgrade, Keep-Alive\r\n",
            "Connection: keep-alive,Upgrade\r\n",
            "CONNECTION: UPGRADE\r\n",
            "Connection: keep-alive\r\nConnection: Upgrade\r\n",
            "connection:upgrade\r\n",
            "Connection: \tupgrade \t\r\n",
            "Connection: ,,Upgrade,\r\n",
        ];
        for connection in variants {
            let head = with_upgrade_lines(&format!("Upgrade: websocket\r\n{connection}"));
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(result, Ok(()), "{connection:?}");
            assert_eq!(out, RFC_101, "{connection:?}");
        }
    }

    #[test]
    fn connection_without_upgrade_token_is_refused() {
        let variants = [
            "",
            "Connection: keep-alive\r\n",
            "Connection: upgrades\r\n",
            "Connection: up grade\r\n",
            "Connection: keep-alive; Upgrade\r\n",
        ];
        for connection in variants {
            let head = with_upgrade_lines(&format!("Upgrade: websocket\r\n{connection}"));
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(
                result,
                Err(HandshakeError::MissingConnectionUpgrade),
                "{connection:?}"
            );
            assert_eq!(out, rejection(&HandshakeError::MissingConnectionUpgrade));
        }
    }

    #[test]
    fn upgrade_token_variants() {
        let good = [
            "Upgrade: websocket\r\n",
            "UPGRADE: WebSocket\r\n",
            "Upgrade: h2c, websocket\r\n",
            "Upgrade: h2c\r\nUpgrade: websocket\r\n",
        ];
        for upgrade in good {
            let head = with_upgrade_lines(&format!("{upgrade}Connection: Upgrade\r\n"));
            assert_eq!(answer(&head, &Config::DEFAULT).0, Ok(()), "{upgrade:?}");
        }
        let bad = ["", "Upgrade: h2c\r\n", "Upgrade: websockets\r\n"];
        for upgrade in bad {
            let head = with_upgrade_lines(&format!("{upgrade}Connection: Upgrade\r\n"));
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(result, Err(HandshakeError::MissingUpgrade), "{upgrade:?}");
            assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        }
    }

    #[test]
    fn key_cases_are_400_without_upgrade() {
        // Empty; 15, 18, 20 and 17 decoded bytes; a bad character; no padding;
        // non-zero trailing bits; missing; twice.
        let cases: [(&str, HandshakeError); 10] = [
            ("Sec-WebSocket-Key: \r\n", HandshakeError::InvalidKey),
            (
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
                HandshakeError::InvalidKey,
            ),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n",
                HandshakeError::InvalidKey,
            ),
            ("", HandshakeError::MissingKey),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                HandshakeError::DuplicateKey,
            ),
        ];
        for (key_lines, expected) in cases {
            let head = request(&format!("{key_lines}Sec-WebSocket-Version: 13\r\n"));
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(result.as_ref(), Err(&expected), "{key_lines:?}");
            assert_eq!(out, rejection(&expected));
            assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));
            assert!(!out.contains("101"), "{out}");
        }
    }

    #[test]
    fn refused_keys_do_decode_to_other_lengths() {
        // The wrong-length keys above are valid base64, just not of 16 bytes.
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(engine.decode("AAAAAAAAAAAAAAAAAAAA").unwrap().len(), 15);
        assert_eq!(engine.decode("AAAAAAAAAAAAAAAAAAAAAA==").unwrap().len(), 16);
        assert_eq!(engine.decode("AAAAAAAAAAAAAAAAAAAAAAA=").unwrap().len(), 17);
        assert_eq!(engine.decode("AAAAAAAAAAAAAAAAAAAAAAAA").unwrap().len(), 18);
        assert_eq!(
            engine.decode("AAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap().len(),
            20
        );
        let head =
            request("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n");
        assert_eq!(answer(&head, &Config::DEFAULT).0, Ok(()));
    }

    #[test]
    fn key_with_surrounding_whitespace_is_trimmed() {
        let head = request(
            "Sec-WebSocket-Key: \t dGhlIHNhbXBsZSBub25jZQ== \t\r\nSec-WebSocket-Version: 13\r\n",
        );
        assert_eq!(
            answer(&head, &Config::DEFAULT),
            (Ok(()), String::from(RFC_101))
        );
    }

    #[test]
    fn unsupported_version_is_426_with_version_header() {
        let expected = "HTTP/1.1 426 Upgrade Required\r\n\
            Connection: close\r\n\
            Content-Type: text/plain\r\n\
            Content-Length: 43\r\n\
            Sec-WebSocket-Version: 13\r\n\
            \r\n\
            Sec-WebSocket-Version is missing or not 13\n";
        let versions = [
            "Sec-WebSocket-Version: 12\r\n",
            "",
            "Sec-WebSocket-Version: \r\n",
            "Sec-WebSocket-Version: 13, 8\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 130\r\n",
        ];
        for version in versions {
            let head = request(&format!("Sec-WebSocket-Key: {RFC_KEY}\r\n{version}"));
            let (result, out) = answer(&head, &Config::DEFAULT);
            assert_eq!(
                result,
                Err(HandshakeError::UnsupportedVersion),
                "{version:?}"
            );
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn request_line_rules() {
        let key = format!("Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n");
        let post = standard().replacen("GET", "POST", 1);
        let (result, out) = answer(&post, &Config::DEFAULT);
        assert_eq!(result, Err(HandshakeError::MethodNotGet));
        assert_eq!(
            out,
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 26\r\n\r\nrequest method is not GET\n"
        );

        let lower = standard().replacen("GET", "get", 1);
        assert_eq!(
            answer(&lower, &Config::DEFAULT).0,
            Err(HandshakeError::MethodNotGet)
        );

        let old = standard().replacen("HTTP/1.1", "HTTP/1.0", 1);
        let (result, out) = answer(&old, &Config::DEFAULT);
        assert_eq!(result, Err(HandshakeError::HttpVersion));
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));

        let newer = standard().replacen("HTTP/1.1", "HTTP/2.0", 1);
        assert_eq!(
            answer(&newer, &Config::DEFAULT).0,
            Err(HandshakeError::HttpVersion)
        );

        let no_host =
            format!("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}\r\n");
        let (result, out) = answer(&no_host, &Config::DEFAULT);
        assert_eq!(result, Err(HandshakeError::MissingHost));
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(out.ends_with("\r\n\r\nrequest has no Host header\n"));

        let two_hosts = request(&format!("Host: other\r\n{key}"));
        assert_eq!(
            answer(&two_hosts, &Config::DEFAULT).0,
            Err(HandshakeError::Malformed("more than one Host header"))
        );
    }

    #[test]
    fn too_many_headers_is_431() {
        let config = Config {
            max_headers: 5,
            ..Config::DEFAULT
        };
        // Exactly at the limit: five header lines.
        assert_eq!(
            answer(&standard(), &config),
            (Ok(()), String::from(RFC_101))
        );

        let six = request(&format!(
            "Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\nOrigin: o\r\n"
        ));
        let (result, out) = answer(&six, &config);
        assert_eq!(result, Err(HandshakeError::TooManyHeaders { limit: 5 }));
        assert_eq!(
            out,
            "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
             Content-Type: text/plain\r\nContent-Length: 25\r\n\r\nmore than 5 header lines\n"
        );

        let mut many = String::new();
        // Three standard lines and 62 fillers: one past the default 64.
        for i in 0..62 {
            many.push_str(&format!("X-Filler-{i}: {i}\r\n"));
        }
        let (result, out) = answer(&request(&many), &Config::DEFAULT);
        assert_eq!(result, Err(HandshakeError::TooManyHeaders { limit: 64 }));
        assert!(out.starts_with("HTTP/1.1 431 "));
    }

    fn pick_second(offered: &[&str]) -> Option<usize> {
        (offered.len() > 1).then_some(1)
    }

    fn pick_last(offered: &[&str]) -> Option<usize> {
        Some(offered.len() - 1)
    }

    fn pick_none(_: &[&str]) -> Option<usize> {
        None
    }

    fn pick_out_of_range(offered: &[&str]) -> Option<usize> {
        Some(offered.len())
    }

    fn pick_chat(offered: &[&str]) -> Option<usize> {
        offered.iter().position(|p| *p == "chat")
    }

    fn with_protocols(lines: &str) -> String {
        request(&format!(
            "Sec-WebSocket-Key: {RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n{lines}"
        ))
    }

    fn rfc_101_with(protocol: &str) -> String {
        let mut expected = String::from(RFC_101.trim_end_matches("\r\n"));
        expected.push_str(&format!("\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"));
        expected
    }

    #[test]
    fn subprotocol_hook_chooses_and_echoes() {
        let config = |select: SelectProtocol| Config {
            select_protocol: Some(select),
            ..Config::DEFAULT
        };
        let offer = "Sec-WebSocket-Protocol: superchat, chat\r\n";

        let (result, out) = answer(&with_protocols(offer), &config(pick_chat));
        assert_eq!(result, Ok(()));
        assert_eq!(out, rfc_101_with("chat"));

        // Several lines, no space after a comma, whitespace around tokens.
        let lines = "Sec-WebSocket-Protocol: a,b\r\nsec-websocket-protocol:  c \r\n";
        let (_, out) = answer(&with_protocols(lines), &config(pick_last));
        assert_eq!(out, rfc_101_with("c"));
        let (_, out) = answer(&with_protocols(lines), &config(pick_second));
        assert_eq!(out, rfc_101_with("b"));

        // No choice, a choice out of range, no offer, or no hook: no header.
        let (_, out) = answer(&with_protocols(offer), &config(pick_none));
        assert_eq!(out, RFC_101);
        let (_, out) = answer(&with_protocols(offer), &config(pick_out_of_range));
        assert_eq!(out, RFC_101);
        let (_, out) = answer(&with_protocols(""), &config(pick_last));
        assert_eq!(out, RFC_101);
        let (_, out) = answer(&with_protocols(offer), &Config::DEFAULT);
        assert_eq!(out, RFC_101);
    }

    #[test]
    fn many_subprotocols_spill_past_the_inline_array() {
        let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let lines = format!(
            "Sec-WebSocket-Protocol: {}\r\nSec-WebSocket-Protocol: {}\r\n",
            names[..10].join(", "),
            names[10..].join(",")
        );
        let config = Config {
            select_protocol: Some(pick_last),
            ..Config::DEFAULT
        };
        let (result, out) = answer(&with_protocols(&lines), &config);
        assert_eq!(result, Ok(()));
        assert_eq!(out, rfc_101_with("p39"));
    }

    #[test]
    fn subprotocol_that_is_not_a_token_is_refused() {
        let config = Config {
            select_protocol: Some(pick_last),
            ..Config::DEFAULT
        };
        let head = with_protocols("Sec-WebSocket-Protocol: chat, a/b\r\n");
        let (result, out) = answer(&head, &config);
        assert_eq!(
            result,
            Err(HandshakeError::Malformed(
                "Sec-WebSocket-Protocol is not a list of tokens"
            ))
        );
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn malformed_heads_are_400_naming_the_problem() {
        let cases: [(&[u8], &str); 9] = [
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                "invalid request method",
            ),
            (b"GET /\r\n\r\n", "request line has no http version"),
            (b"GET / FTP/1.1\r\nHost: h\r\n\r\n", "invalid http version"),
            (
                b"GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n",
                "invalid byte in a header value",
            ),
            (
                b"GET /\x00 HTTP/1.1\r\nHost: h\r\n\r\n",
                "invalid request target",
            ),
            (
                b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
                "invalid header name or a header line without a colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHo st: h\r\n\r\n",
                "invalid header name or a header line without a colon",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: h\n\nUpgrade: websocket\r\n\r\n",
                "bare line feed ends the http head early",
            ),
            (b"GET / HTTP/1.1\r\nHost: h\r\n", "http head is incomplete"),
        ];
        for (head, what) in cases {
            let mut out = Vec::new();
            let result = answer_request(head, &Config::DEFAULT, &mut out);
            let expected = HandshakeError::Malformed(what);
            assert_eq!(
                result.as_ref(),
                Err(&expected),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(out, rejection(&expected).into_bytes());
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with(&format!("\r\n\r\nmalformed http head: {what}\n")));
        }
    }

    #[test]
    fn rejection_bytes_for_every_status() {
        assert_eq!(
            rejection(&HandshakeError::ServerBusy),
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 34\r\n\r\nserver is at its connection limit\n"
        );
        assert_eq!(
            rejection(&HandshakeError::TimedOut),
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 35\r\n\r\nhandshake did not complete in time\n"
        );
        assert_eq!(
            rejection(&HandshakeError::HeadTooLarge { limit: 8192 }),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
             Content-Type: text/plain\r\nContent-Length: 42\r\n\r\n\
             http head larger than the 8192-byte limit\n"
        );
    }

    /// xorshift64*: deterministic pseudo-random numbers for the no-panic test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Checks the shape of whatever `answer_request` produced.
    fn check_answer(head: &[u8], config: &Config) {
        let mut out = Vec::new();
        let result = answer_request(head, config, &mut out);
        let text = core::str::from_utf8(&out).expect("answers are ASCII");
        match result {
            Ok(()) => {
                assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
                assert!(text.ends_with("\r\n\r\n"));
            }
            Err(error) => {
                let status = format!("HTTP/1.1 {} ", error.status());
                assert!(text.starts_with(&status), "{text}");
                let (headers, body) = text.split_once("\r\n\r\n").unwrap();
                assert_eq!(body, format!("{error}\n"));
                let length = format!("\r\nContent-Length: {}\r\n", body.len());
                assert!(format!("{headers}\r\n").contains(&length));
            }
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let config = Config {
            max_headers: 8,
            select_protocol: Some(pick_last),
            ..Config::DEFAULT
        };
        let alphabet: &[u8] = b"GET HTTP/1.1\r\n:, \tabcxyzUpgradewebsocket=+/\x00\x7f\xff13";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

        // Random bytes, drawn from everything or from a head-like alphabet,
        // usually ending in a blank line as find_head_end would deliver.
        for _ in 0..3000 {
            let len = rng.below(200);
            let from_alphabet = rng.below(2) == 0;
            let mut head: Vec<u8> = (0..len)
                .map(|_| match from_alphabet {
                    true => alphabet[rng.below(alphabet.len())],
                    false => rng.next() as u8,
                })
                .collect();
            if rng.below(4) != 0 {
                head.extend_from_slice(b"\r\n\r\n");
            }
            check_answer(&head, &config);
        }

        // Mutations of a valid head with a subprotocol offer.
        let valid = with_protocols("Sec-WebSocket-Protocol: chat, superchat\r\n").into_bytes();
        check_answer(&valid, &config);
        let mut upgraded = 0;
        for _ in 0..5000 {
            let mut head = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(head.len());
                match rng.below(4) {
                    0 => head[at] = rng.next() as u8,
                    1 => head[at] = alphabet[rng.below(alphabet.len())],
                    2 => {
                        head.remove(at);
                    }
                    _ => head.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            let mut out = Vec::new();
            if answer_request(&head, &config, &mut out).is_ok() {
                upgraded += 1;
            }
            check_answer(&head, &config);
        }
        // Some mutations (inside the Host value, say) leave the head valid.
        assert!(upgraded > 0);
        assert!(upgraded < 5000);
    }

    #[test]
    fn header_array_follows_config() {
        // max_headers of zero refuses any header line rather than panicking.
        let config = Config {
            max_headers: 0,
            ..Config::DEFAULT
        };
        assert_eq!(
            answer(&standard(), &config).0,
            Err(HandshakeError::TooManyHeaders { limit: 0 })
        );

        // A huge limit allocates by the head's size, not the limit's.
        let config = Config {
            max_headers: usize::MAX,
            ..Config::DEFAULT
        };
        assert_eq!(
            answer(&standard(), &config),
            (Ok(()), String::from(RFC_101))
        );

        // The shortest possible header lines, up to the bound the array
        // is sized by, all fit.
        let mut dense = String::from("GET / HTTP/1.1\r\n");
        while dense.len() < 600 {
            dense.push_str("a:\n");
        }
        dense.push_str("\r\n");
        let config = Config {
            max_headers: 1000,
            ..Config::DEFAULT
        };
        assert_eq!(answer(&dense, &config).0, Err(HandshakeError::MissingHost));
    }
}
