//! Client side of the opening handshake: the request (RFC 6455 section
//! 4.1, first half) and the checks on the server's answer (second half).

use alloc::vec::Vec;

use base64::Engine;

use super::headers::{self, Head};
use super::ClientRequest;
use crate::config::Config;
use crate::error::HandshakeError;

/// Builds a `Sec-WebSocket-Key` from 16 random bytes.
pub fn generate_key(random: [u8; 16]) -> [u8; 24] {
    let mut key = [0u8; 24];
    base64::engine::general_purpose::STANDARD
        .encode_slice(random, &mut key)
        .expect("24 bytes hold the base64 of 16");
    key
}

/// Client side: appends the opening request for `request` with `key`.
///
/// The fields are written as given; [`ClientRequest::is_well_formed`]
/// tells whether they are safe to put in a head.
pub fn write_request(request: &ClientRequest<'_>, key: &[u8; 24], out: &mut Vec<u8>) {
    let protocols_len: usize = request.protocols.iter().map(|p| p.len() + 2).sum();
    out.reserve(160 + request.path.len() + request.host.len() + protocols_len);

    out.extend_from_slice(b"GET ");
    out.extend_from_slice(request.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(request.host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
    if let Some((first, rest)) = request.protocols.split_first() {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(first.as_bytes());
        for protocol in rest {
            out.extend_from_slice(b", ");
            out.extend_from_slice(protocol.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Client side: validates a complete response head against the accept
/// value expected for the key sent and the subprotocols offered
/// (comma-separated, empty if none).
pub fn check_response(
    head: &[u8],
    expected_accept: &[u8; 28],
    offered_protocols: &str,
    config: &Config,
) -> Result<(), HandshakeError> {
    check_response_protocol(head, expected_accept, offered_protocols, config).map(|_| ())
}

/// Like [`check_response`], and also returns the subprotocol the server
/// selected, if any (always one of `offered_protocols`).
pub fn check_response_protocol<'h>(
    head: &'h [u8],
    expected_accept: &[u8; 28],
    offered_protocols: &str,
    config: &Config,
) -> Result<Option<&'h str>, HandshakeError> {
    let mut array = headers::header_array(config.max_headers, head);
    let mut response = httparse::Response::new(&mut array);
    let status = response
        .parse(head)
        .map_err(|e| headers::parse_error(e, head, Head::Response, config.max_headers))?;
    headers::check_complete(status, head)?;

    // Section 4.1, "if the status code received from the server is not
    // 101, the client handles the response per HTTP procedures".
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(HandshakeError::UnexpectedStatus(code));
    }
    if response.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    let fields = response.headers;

    // Section 4.1, items 2 to 6 of the checks on the answer.
    if !headers::has_token(fields, "upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !headers::has_token(fields, "connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut accepts = headers::values(fields, "sec-websocket-accept");
    let accept = accepts.next().map(headers::trim_ows);
    if accept != Some(&expected_accept[..]) || accepts.next().is_some() {
        return Err(HandshakeError::BadAccept);
    }
    // This client offers no extension, so the server may select none.
    if headers::tokens(fields, "sec-websocket-extensions")
        .next()
        .is_some()
    {
        return Err(HandshakeError::Malformed(
            "server selected an extension that was not offered",
        ));
    }
    selected_protocol(fields, offered_protocols)
}

/// The server's `Sec-WebSocket-Protocol`: absent, or a single line holding
/// exactly one of the offered names.
fn selected_protocol<'h>(
    fields: &[httparse::Header<'h>],
    offered: &str,
) -> Result<Option<&'h str>, HandshakeError> {
    let mut lines = headers::values(fields, "sec-websocket-protocol");
    let Some(value) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(HandshakeError::UnexpectedProtocol);
    }
    let chosen =
        headers::as_token(headers::trim_ows(value)).ok_or(HandshakeError::UnexpectedProtocol)?;
    let was_offered = offered
        .split(',')
        .any(|name| name.trim_matches([' ', '\t']) == chosen);
    if !was_offered {
        return Err(HandshakeError::UnexpectedProtocol);
    }
    Ok(Some(chosen))
}

#[cfg(test)]
mod tests {
    use alloc::string::String;

    use super::super::{accept_key, answer_request};
    use super::*;

    const RFC_KEY: &[u8; 24] = b"dGhlIHNhbXBsZSBub25jZQ==";
    const RFC_ACCEPT: &[u8; 28] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    const GOOD: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    fn check<'h>(head: &'h str, offered: &str) -> Result<Option<&'h str>, HandshakeError> {
        check_response_protocol(head.as_bytes(), RFC_ACCEPT, offered, &Config::DEFAULT)
    }

    #[test]
    fn key_from_rfc_nonce() {
        assert_eq!(&generate_key(*b"the sample nonce"), RFC_KEY);
        assert_eq!(&generate_key([0; 16]), b"AAAAAAAAAAAAAAAAAAAAAA==");
    }

    #[test]
    fn request_bytes_exact() {
        let request = ClientRequest {
            host: "127.0.0.1:9001",
            path: "/chat?room=1",
            protocols: &[],
        };
        let mut out = b"x".to_vec();
        write_request(&request, RFC_KEY, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xGET /chat?room=1 HTTP/1.1\r\n\
             Host: 127.0.0.1:9001\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
    }

    #[test]
    fn request_bytes_with_protocols() {
        let request = ClientRequest {
            host: "h",
            path: "/",
            protocols: &["chat", "superchat"],
        };
        let mut out = Vec::new();
        write_request(&request, RFC_KEY, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\n\
             Host: h\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
    }

    #[test]
    fn accepts_a_correct_101() {
        assert_eq!(check(GOOD, ""), Ok(None));
        assert_eq!(
            check_response(GOOD.as_bytes(), RFC_ACCEPT, "", &Config::DEFAULT),
            Ok(())
        );
        let variant = "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive,upgrade\r\n\
            sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= \r\n\r\n";
        assert_eq!(check(variant, "chat"), Ok(None));
    }

    #[test]
    fn rejects_wrong_status() {
        let not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            check(not_found, ""),
            Err(HandshakeError::UnexpectedStatus(404))
        );
        let ok = GOOD.replacen("101 Switching Protocols", "200 OK", 1);
        assert_eq!(check(&ok, ""), Err(HandshakeError::UnexpectedStatus(200)));
        let old = GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert_eq!(check(&old, ""), Err(HandshakeError::HttpVersion));
    }

    #[test]
    fn rejects_wrong_or_missing_accept() {
        let wrong = GOOD.replacen(
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOp=",
            1,
        );
        assert_eq!(check(&wrong, ""), Err(HandshakeError::BadAccept));
        let missing = GOOD.replacen("Sec-WebSocket-Accept", "X-Accept", 1);
        assert_eq!(check(&missing, ""), Err(HandshakeError::BadAccept));
        let twice = GOOD.replacen(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            1,
        );
        assert_eq!(check(&twice, ""), Err(HandshakeError::BadAccept));
    }

    #[test]
    fn rejects_missing_upgrade_or_connection() {
        let no_upgrade = GOOD.replacen("Upgrade: websocket\r\n", "", 1);
        assert_eq!(check(&no_upgrade, ""), Err(HandshakeError::MissingUpgrade));
        let other = GOOD.replacen("Upgrade: websocket", "Upgrade: h2c", 1);
        assert_eq!(check(&other, ""), Err(HandshakeError::MissingUpgrade));
        let no_connection = GOOD.replacen("Connection: Upgrade\r\n", "", 1);
        assert_eq!(
            check(&no_connection, ""),
            Err(HandshakeError::MissingConnectionUpgrade)
        );
    }

    #[test]
    fn subprotocol_must_be_offered() {
        let with = |line: &str| GOOD.replacen("\r\n\r\n", &alloc::format!("\r\n{line}\r\n\r\n"), 1);
        let chat = with("Sec-WebSocket-Protocol: chat");
        assert_eq!(check(&chat, "superchat, chat"), Ok(Some("chat")));
        assert_eq!(check(&chat, "superchat,chat"), Ok(Some("chat")));
        assert_eq!(check(&chat, ""), Err(HandshakeError::UnexpectedProtocol));
        assert_eq!(
            check(&chat, "superchat"),
            Err(HandshakeError::UnexpectedProtocol)
        );
        assert_eq!(
            check(&chat, "Chat"),
            Err(HandshakeError::UnexpectedProtocol)
        );
        let two = with("Sec-WebSocket-Protocol: chat, superchat");
        assert_eq!(
            check(&two, "superchat, chat"),
            Err(HandshakeError::UnexpectedProtocol)
        );
        let empty = with("Sec-WebSocket-Protocol: ");
        assert_eq!(
            check(&empty, "chat"),
            Err(HandshakeError::UnexpectedProtocol)
        );
    }

    #[test]
    fn rejects_unoffered_extension_and_malformed() {
        let ext = GOOD.replacen(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            1,
        );
        assert_eq!(
            check(&ext, ""),
            Err(HandshakeError::Malformed(
                "server selected an extension that was not offered"
            ))
        );
        assert_eq!(
            check("HTTP/1.1 1O1 x\r\n\r\n", ""),
            Err(HandshakeError::Malformed("invalid response status"))
        );
        assert_eq!(
            check("garbage\r\n\r\n", ""),
            Err(HandshakeError::Malformed("invalid http version"))
        );
        assert_eq!(
            check("HTTP/2 101\r\n\r\n", ""),
            Err(HandshakeError::HttpVersion)
        );
        let config = Config {
            max_headers: 2,
            ..Config::DEFAULT
        };
        assert_eq!(
            check_response(GOOD.as_bytes(), RFC_ACCEPT, "", &config),
            Err(HandshakeError::TooManyHeaders { limit: 2 })
        );
    }

    fn pick_first(_: &[&str]) -> Option<usize> {
        Some(0)
    }

    #[test]
    fn client_and_server_agree() {
        let request = ClientRequest {
            host: "localhost",
            path: "/",
            protocols: &["v2.chat", "v1.chat"],
        };
        let key = generate_key(*b"0123456789abcdef");
        let mut head = Vec::new();
        write_request(&request, &key, &mut head);

        let server = Config {
            select_protocol: Some(pick_first),
            ..Config::DEFAULT
        };
        let mut answer = Vec::new();
        answer_request(&head, &server, &mut answer).unwrap();
        let selected = check_response_protocol(
            &answer,
            &accept_key(&key),
            "v2.chat, v1.chat",
            &Config::DEFAULT,
        );
        assert_eq!(selected, Ok(Some("v2.chat")));
    }
}
