//! The event loop over the in-process pipe transport of
//! `examples/pipe_transport.rs`: echo, partial writes, deadlines, the
//! connection limit and graceful close, all deterministic.

#[path = "../examples/pipe_transport.rs"]
mod pipe;

use std::time::Duration;

use pipe::{Echo, Network, PipeTransport, Side};
use tern_core::transport::{Io, Transport};
use tern_core::{EventLoop, LoopConfig};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: pipe\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Reads everything the server has sent to `end` so far.
fn drain(client: &mut PipeTransport, end: &mut pipe::PipeEnd) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.read(end, &mut buf) {
            Ok(Io::Done(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Io::WouldBlock) => return (got, false),
            Ok(Io::Closed) => return (got, true),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn server(
    net: &std::rc::Rc<std::cell::RefCell<Network>>,
    config: LoopConfig,
) -> EventLoop<PipeTransport, Echo> {
    EventLoop::new(
        PipeTransport::new(net, Side::Server),
        Echo::default(),
        config,
    )
}

#[test]
fn echo_round_trip() {
    let echoes = pipe::echo_over_pipes(&["one", "two", "three"], 64 * 1024);
    assert_eq!(echoes, ["one", "two", "three"]);
}

#[test]
fn echo_through_tiny_pipes_uses_the_queue() {
    // Seven bytes per direction: every handshake and frame is written in
    // pieces, so queueing and writable interest carry the exchange.
    let long = "x".repeat(300);
    let echoes = pipe::echo_over_pipes(&["short", &long, "ünïcödé"], 7);
    assert_eq!(echoes, ["short", long.as_str(), "ünïcödé"]);
}

#[test]
fn handshake_deadline_is_absolute() {
    let net = Network::new(64 * 1024);
    let config = LoopConfig {
        handshake_timeout: Duration::from_secs(5),
        ..LoopConfig::default()
    };
    let mut server = server(&net, config);
    let mut client = PipeTransport::new(&net, Side::Client);
    let mut end = client.connect(&()).unwrap();

    // Trickle one header byte per simulated second: the deadline counts
    // from accept, so the trickle cannot keep the connection alive.
    for (second, byte) in REQUEST.iter().take(5).enumerate() {
        let byte = std::slice::from_ref(byte);
        client.write(&mut end, &[byte]).unwrap();
        server.run_once(Some(Duration::ZERO)).unwrap();
        assert_eq!(server.len(), 1, "still waiting at second {second}");
        net.borrow_mut().advance(Duration::from_secs(1));
    }
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert!(server.is_empty());
    let (answer, closed) = drain(&mut client, &mut end);
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed);
    assert_eq!(server.handler().ended, [(0, 1006)]);
}

#[test]
fn connection_limit_answers_503() {
    let net = Network::new(64 * 1024);
    let config = LoopConfig {
        max_connections: 1,
        ..LoopConfig::default()
    };
    let mut server = server(&net, config);
    let mut client = PipeTransport::new(&net, Side::Client);
    let mut first = client.connect(&()).unwrap();
    server.run_once(Some(Duration::ZERO)).unwrap();
    let mut second = client.connect(&()).unwrap();
    server.run_once(Some(Duration::ZERO)).unwrap();

    let (answer, closed) = drain(&mut client, &mut second);
    assert!(
        answer.starts_with(b"HTTP/1.1 503 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(closed);
    assert_eq!(server.stats().refused, 1);

    client.write(&mut first, &[REQUEST]).unwrap();
    server.run_once(Some(Duration::ZERO)).unwrap();
    let (answer, _) = drain(&mut client, &mut first);
    assert!(answer.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
}

#[test]
fn close_all_sends_going_away() {
    let net = Network::new(64 * 1024);
    let mut server = server(&net, LoopConfig::default());
    let mut client = PipeTransport::new(&net, Side::Client);
    let mut end = client.connect(&()).unwrap();
    client.write(&mut end, &[REQUEST]).unwrap();
    // One step accepts the stream, the next reads the request.
    server.run_once(Some(Duration::ZERO)).unwrap();
    server.run_once(Some(Duration::ZERO)).unwrap();
    let (answer, _) = drain(&mut client, &mut end);
    assert!(answer.starts_with(b"HTTP/1.1 101 "));

    server.close_all(tern_core::CloseCode::GOING_AWAY, "");
    server.run_once(Some(Duration::ZERO)).unwrap();
    let (frame, _) = drain(&mut client, &mut end);
    assert_eq!(frame, [0x88, 0x02, 0x03, 0xe9]);

    // The client answers with a masked close 1001; the server ends it.
    client
        .write(&mut end, &[&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]])
        .unwrap();
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert!(server.is_empty());
    assert_eq!(server.handler().ended, [(0, 1001)]);
}

#[test]
fn completed_handshakes_leave_no_deadlines_behind() {
    let net = Network::new(64 * 1024);
    let mut server = server(&net, LoopConfig::default());
    let mut client = PipeTransport::new(&net, Side::Client);
    let mut ends: Vec<_> = (0..200).map(|_| client.connect(&()).unwrap()).collect();
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(server.pending_deadlines(), 200);

    for end in &mut ends {
        client.write(end, &[REQUEST]).unwrap();
    }
    server.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(server.len(), 200);
    assert_eq!(server.pending_deadlines(), 0);
}
