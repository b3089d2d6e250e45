//! The handshake states of `Connection`: heads split across reads, frames
//! behind the head in the same read, refusals, and a full client/server
//! conversation from the first byte.

mod common;

use common::*;
use tern_core::handshake::{accept_key, ClientRequest};
use tern_core::{CloseCode, Config, Connection, Error, Event, HandshakeError, SendError, State};

/// The sample request of RFC 6455 section 1.3 (without Origin).
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

fn cfg() -> Config {
    Config::default()
}

fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && &bytes[..prefix.len()] == prefix
}

fn find(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn one_shot_request_is_answered_with_101() {
    let mut s = Connection::server();
    assert_eq!(s.state(), State::Handshake);
    let fed = feed(&mut s, &cfg(), REQUEST);
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [Event::Open]);
    assert!(starts_with(&fed.out, b"HTTP/1.1 101"));
    assert!(
        find(&fed.out, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{}",
        String::from_utf8_lossy(&fed.out)
    );
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn request_split_anywhere_gives_the_same_101() {
    let mut s = Connection::server();
    let one_shot = feed(&mut s, &cfg(), REQUEST);

    // One byte per read.
    let mut s = Connection::server();
    let every: Vec<usize> = (1..REQUEST.len()).collect();
    let fed = feed_split(&mut s, &cfg(), REQUEST, &every);
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [Event::Open]);
    assert_eq!(fed.out, one_shot.out);

    // Inside the final CRLFCRLF, and inside a header name.
    let end = REQUEST.len();
    let name = REQUEST.windows(7).position(|w| w == b"Upgrade").unwrap() + 3;
    for cuts in [
        vec![end - 1],
        vec![end - 2],
        vec![end - 3],
        vec![name],
        vec![name, end - 2],
    ] {
        let mut s = Connection::server();
        let fed = feed_split(&mut s, &cfg(), REQUEST, &cuts);
        assert_eq!(fed.error, None, "cuts {cuts:?}");
        assert_eq!(fed.events, [Event::Open], "cuts {cuts:?}");
        assert_eq!(fed.out, one_shot.out, "cuts {cuts:?}");
        assert_eq!(s.buffered_bytes(), 0);
    }
}

#[test]
fn frames_behind_the_head_in_the_same_read_are_processed() {
    let mut wire = REQUEST.to_vec();
    wire.extend(cframe(0x81, b"hello"));
    wire.extend(cframe(0x89, b"hb"));

    let mut s = Connection::server();
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(fed.error, None);
    assert_eq!(
        fed.events,
        [
            Event::Open,
            text("hello"),
            Event::Ping(b"hb".to_vec().into())
        ]
    );
    assert!(starts_with(&fed.out, b"HTTP/1.1 101"));
    assert!(fed.out.ends_with(&[0x8A, 0x02, b'h', b'b']));

    // The same when the head itself came over two reads.
    let mut s = Connection::server();
    let fed = feed_split(&mut s, &cfg(), &wire, &[REQUEST.len() - 2]);
    assert_eq!(
        fed.events,
        [
            Event::Open,
            text("hello"),
            Event::Ping(b"hb".to_vec().into())
        ]
    );
}

#[test]
fn part_of_a_frame_behind_the_head() {
    let f = cframe(0x81, b"split message");
    for part in [1, 2, 5, 9] {
        let mut wire = REQUEST.to_vec();
        wire.extend(&f[..part]);
        let mut s = Connection::server();
        let fed = feed(&mut s, &cfg(), &wire);
        assert_eq!(fed.events, [Event::Open], "part {part}");
        let fed = feed(&mut s, &cfg(), &f[part..]);
        assert_eq!(fed.events, [text("split message")], "part {part}");
        assert!(fed.out.is_empty());
        assert_eq!(s.buffered_bytes(), 0);
    }
}

#[test]
fn head_larger_than_the_limit_is_refused_with_431() {
    let config = Config {
        max_head_size: 64,
        ..Config::default()
    };

    // In one read.
    let mut s = Connection::server();
    let fed = feed(&mut s, &config, REQUEST);
    assert_eq!(
        fed.error,
        Some(Error::Handshake(HandshakeError::HeadTooLarge { limit: 64 }))
    );
    assert!(starts_with(&fed.out, b"HTTP/1.1 431"));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.buffered_bytes(), 0);

    // One byte per read: refused on the 65th byte, with no more buffered
    // than the limit.
    let mut s = Connection::server();
    for (i, b) in REQUEST.iter().enumerate() {
        let fed = feed(&mut s, &config, &[*b]);
        if i < 64 {
            assert_eq!(fed.error, None, "byte {i}");
            continue;
        }
        assert_eq!(
            fed.error,
            Some(Error::Handshake(HandshakeError::HeadTooLarge { limit: 64 }))
        );
        assert!(starts_with(&fed.out, b"HTTP/1.1 431"));
        break;
    }
    assert_eq!(s.state(), State::Closed);

    // A head of exactly the limit is accepted.
    let exact = Config {
        max_head_size: REQUEST.len(),
        ..Config::default()
    };
    let mut s = Connection::server();
    let fed = feed_split(&mut s, &exact, REQUEST, &[10]);
    assert_eq!(fed.events, [Event::Open]);
}

#[test]
fn bad_request_is_refused_and_closes() {
    let bad = b"POST /chat HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut s = Connection::server();
    let fed = feed(&mut s, &cfg(), bad);
    assert!(matches!(fed.error, Some(Error::Handshake(_))));
    assert!(starts_with(&fed.out, b"HTTP/1.1 4"));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.handle_eof(), Some(CloseCode::ABNORMAL));
}

#[test]
fn reject_and_eof_during_the_handshake() {
    let mut s = Connection::server();
    feed(&mut s, &cfg(), &REQUEST[..20]);
    assert!(s.buffered_bytes() > 0);
    assert_eq!(
        s.send_text("early", &mut Vec::new()),
        Err(SendError::NotOpen)
    );
    let mut out = Vec::new();
    s.reject(&HandshakeError::ServerBusy, &mut out);
    assert!(starts_with(&out, b"HTTP/1.1 503"));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.buffered_bytes(), 0);

    // Rejecting an open connection does nothing.
    let mut s = Connection::server();
    feed(&mut s, &cfg(), REQUEST);
    let mut out = Vec::new();
    s.reject(&HandshakeError::TimedOut, &mut out);
    assert!(out.is_empty());
    assert_eq!(s.state(), State::Open);

    let mut s = Connection::server();
    feed(&mut s, &cfg(), &REQUEST[..20]);
    assert_eq!(s.handle_eof(), Some(CloseCode::ABNORMAL));
    assert_eq!(s.buffered_bytes(), 0);
}

/// A client and a server that start from nothing.
fn fresh_pair(seed: u64, protocols: &'static [&'static str]) -> Pair {
    let request = ClientRequest {
        host: "127.0.0.1:9001",
        path: "/",
        protocols,
    };
    let mut client_out = Vec::new();
    let client = Connection::client(&request, seed, &mut client_out);
    Pair {
        config: Config::default(),
        client,
        server: Connection::server(),
        client_out,
        server_out: Vec::new(),
    }
}

#[test]
fn client_and_server_handshake_then_talk() {
    let mut p = fresh_pair(0x5EED, &[]);
    assert_eq!(p.client.state(), State::Handshake);
    assert!(starts_with(&p.client_out, b"GET / HTTP/1.1\r\n"));

    let fed = p.deliver_to_server();
    assert_eq!(fed.events, [Event::Open]);
    let fed = p.deliver_to_client();
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [Event::Open]);
    assert_eq!(p.client.state(), State::Open);
    assert_eq!(p.client.buffered_bytes(), 0);
    assert_eq!(p.server.buffered_bytes(), 0);

    p.client.send_text("hi", &mut p.client_out).unwrap();
    assert_eq!(p.deliver_to_server().events, [text("hi")]);
    p.server.send_binary(&[1, 2], &mut p.server_out).unwrap();
    assert_eq!(p.deliver_to_client().events, [binary(&[1, 2])]);

    p.client
        .close(CloseCode::NORMAL, "", &mut p.client_out)
        .unwrap();
    p.deliver_to_server();
    let fed = p.deliver_to_client();
    assert!(matches!(fed.events[..], [Event::Close { .. }]));
    assert_eq!(p.client.handle_eof(), None);
}

#[test]
fn frames_right_behind_the_101_reach_the_client() {
    let mut p = fresh_pair(3, &[]);
    p.deliver_to_server();
    p.server.send_text("welcome", &mut p.server_out).unwrap();
    p.server.send_ping(b"?", &mut p.server_out).unwrap();

    let fed = p.deliver_to_client();
    assert_eq!(
        fed.events,
        [
            Event::Open,
            text("welcome"),
            Event::Ping(b"?".to_vec().into())
        ]
    );
    let pong = frames(&fed.out);
    assert_eq!(pong.len(), 1);
    assert_eq!((pong[0].b0, &pong[0].payload[..]), (0x8A, &b"?"[..]));
}

#[test]
fn response_split_at_every_byte_opens_the_client() {
    let mut p = fresh_pair(11, &[]);
    p.deliver_to_server();
    p.server.send_text("after", &mut p.server_out).unwrap();
    let response = std::mem::take(&mut p.server_out);
    for cut in 1..response.len() {
        let mut q = fresh_pair(11, &[]);
        let request = std::mem::take(&mut q.client_out);
        feed(&mut q.server, &q.config, &request);
        let fed = feed_split(&mut q.client, &q.config, &response, &[cut]);
        assert_eq!(fed.error, None, "cut {cut}");
        assert_eq!(fed.events, [Event::Open, text("after")], "cut {cut}");
    }
}

#[test]
fn client_refuses_a_wrong_accept() {
    let mut p = fresh_pair(5, &[]);
    p.client_out.clear();
    let wrong = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
    let mut response = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: "
        .to_vec();
    response.extend(wrong);
    response.extend(b"\r\n\r\n");
    let fed = feed(&mut p.client, &p.config, &response);
    assert_eq!(fed.error, Some(Error::Handshake(HandshakeError::BadAccept)));
    assert!(fed.out.is_empty());
    assert_eq!(p.client.state(), State::Closed);
    assert_eq!(p.client.buffered_bytes(), 0);
}

#[test]
fn client_refuses_a_non_101_status() {
    let mut p = fresh_pair(5, &[]);
    let fed = feed(
        &mut p.client,
        &p.config,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        fed.error,
        Some(Error::Handshake(HandshakeError::UnexpectedStatus(403)))
    );
    assert_eq!(p.client.state(), State::Closed);
}

#[test]
fn subprotocol_offered_by_the_client_is_accepted() {
    fn pick_last(offered: &[&str]) -> Option<usize> {
        offered.len().checked_sub(1)
    }
    let mut p = fresh_pair(8, &["chat", "superchat"]);
    p.config.select_protocol = Some(pick_last);
    let fed = p.deliver_to_server();
    assert_eq!(fed.events, [Event::Open]);
    assert!(find(&fed.out, b"superchat"));
    let fed = p.deliver_to_client();
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [Event::Open]);
}

#[test]
fn bare_lf_heads_are_refused_at_once() {
    let bare = b"GET /chat HTTP/1.1\nHost: x\nUpgrade: websocket\n\n";
    let want = Error::Handshake(HandshakeError::Malformed("head lines must end in CRLF"));

    // In one read, and one byte per read: refused as soon as the blank
    // line arrives, with a 400 naming the problem.
    let mut s = Connection::server();
    let fed = feed(&mut s, &cfg(), bare);
    assert_eq!(fed.error, Some(want.clone()));
    assert!(starts_with(&fed.out, b"HTTP/1.1 400 "));
    assert!(find(&fed.out, b"head lines must end in CRLF"));
    assert_eq!(s.state(), State::Closed);

    let mut s = Connection::server();
    let cuts: Vec<usize> = (1..bare.len()).collect();
    let fed = feed_split(&mut s, &cfg(), bare, &cuts);
    assert_eq!(fed.error, Some(want));
    assert!(starts_with(&fed.out, b"HTTP/1.1 400 "));

    // Without its blank line a bare-LF head just waits, as any partial
    // head does.
    let mut s = Connection::server();
    let fed = feed(&mut s, &cfg(), b"GET /chat HTTP/1.1\nHost: x\n");
    assert_eq!(fed.error, None);
    assert_eq!(s.state(), State::Handshake);
}

#[test]
fn bare_lf_before_the_end_is_refused_the_same_however_cut() {
    // A blank line ended by a bare LF inside a head that does end in
    // CRLFCRLF later: one read and one byte per read give the same answer.
    let mut head = b"GET /chat HTTP/1.1\r\nHos\n\nt: x\r\n".to_vec();
    head.extend_from_slice(&REQUEST[REQUEST.len() - 2..]);
    let want = Error::Handshake(HandshakeError::Malformed("head lines must end in CRLF"));

    let mut s = Connection::server();
    let one_shot = feed(&mut s, &cfg(), &head);
    assert_eq!(one_shot.error, Some(want.clone()));

    let mut s = Connection::server();
    let cuts: Vec<usize> = (1..head.len()).collect();
    let split = feed_split(&mut s, &cfg(), &head, &cuts);
    assert_eq!(split.error, Some(want));
    assert_eq!(split.out, one_shot.out);
}
