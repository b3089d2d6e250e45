//! The transport seam used directly, without the event loop: readiness,
//! partial writes, end of stream, resets, the close timeout, bad input.

use std::net::SocketAddr;
use std::time::Duration;

use tern_core::transport::{Io, Readiness, Token, Transport};
use tern_transport_smoltcp::{
    mem_pair, mem_server, Addressing, MemPort, SmolError, SmolStream, SmolTransport, StackConfig,
};

const PORT: u16 = 9001;

fn config() -> StackConfig {
    StackConfig {
        shards: 3,
        rx_buffer: 512,
        tx_buffer: 512,
        ..StackConfig::default()
    }
}

/// Polls both sides a bounded number of times, collecting each side's
/// events.
fn pump(
    client: &mut SmolTransport<MemPort>,
    server: &mut SmolTransport<MemPort>,
    rounds: usize,
) -> (Vec<Readiness>, Vec<Readiness>) {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        client.poll(&mut c, Some(Duration::ZERO)).unwrap();
        server.poll(&mut s, Some(Duration::ZERO)).unwrap();
    }
    (c, s)
}

/// A connected pair of streams, registered under key 0 on both sides.
fn connected() -> (
    SmolTransport<MemPort>,
    SmolTransport<MemPort>,
    SmolStream,
    SmolStream,
) {
    let (mut client, mut server) = mem_pair(config(), config(), PORT).unwrap();
    let mut c = client.connect(&mem_server(PORT)).unwrap();
    client.register(&mut c, 0, true).unwrap();
    let (events, listener) = pump(&mut client, &mut server, 4);
    assert!(listener.iter().any(|e| e.token == Token::Listener));
    assert!(
        events
            .iter()
            .any(|e| e.token == Token::Stream(0) && e.writable),
        "writable once established: {events:?}"
    );
    let mut s = server.accept().unwrap().expect("one waiting connection");
    assert!(server.accept().unwrap().is_none());
    server.register(&mut s, 0, false).unwrap();
    (client, server, c, s)
}

#[test]
fn bytes_cross_and_writes_are_partial() {
    let (mut client, mut server, mut c, mut s) = connected();

    // The send buffer is 512 bytes: a 2000-byte write takes at most that.
    let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let Io::Done(first) = client
        .write(&mut c, &[&data[..1000], &data[1000..]])
        .unwrap()
    else {
        panic!("an empty send buffer takes something");
    };
    assert!(first <= 512, "took {first}");

    let mut sent = first;
    let mut received = Vec::new();
    let mut buf = [0u8; 300];
    for _ in 0..200 {
        if received.len() == data.len() {
            break;
        }
        if sent < data.len() {
            if let Io::Done(n) = client.write(&mut c, &[&data[sent..]]).unwrap() {
                sent += n;
            }
        }
        let (_, events) = pump(&mut client, &mut server, 1);
        if events
            .iter()
            .any(|e| e.token == Token::Stream(0) && e.readable)
        {
            while let Io::Done(n) = server.read(&mut s, &mut buf).unwrap() {
                received.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert!(
        received == data,
        "got {} of {} bytes",
        received.len(),
        data.len()
    );
    assert_eq!(server.read(&mut s, &mut buf).unwrap(), Io::WouldBlock);
}

#[test]
fn end_of_stream_then_release() {
    let (mut client, mut server, c, mut s) = connected();
    client.close(c);
    let (_, events) = pump(&mut client, &mut server, 4);
    assert!(events
        .iter()
        .any(|e| e.token == Token::Stream(0) && e.readable));
    let mut buf = [0u8; 16];
    assert_eq!(server.read(&mut s, &mut buf).unwrap(), Io::Closed);
    // The peer's half is closed; this side can still send until it closes.
    assert!(matches!(
        server.write(&mut s, &[b"late"]).unwrap(),
        Io::Done(4)
    ));
    server.close(s);
    pump(&mut client, &mut server, 4);
    assert_eq!(client.sockets(), 0);
    assert_eq!(server.sockets(), 0);
}

#[test]
fn a_peer_that_never_closes_is_aborted_after_the_close_timeout() {
    let (mut client, mut server, mut c, s) = connected();
    server.close(s);
    pump(&mut client, &mut server, 4);
    // The client has the FIN but never closes its side.
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut c, &mut buf).unwrap(), Io::Closed);
    assert_eq!(server.sockets(), 1, "waiting in FIN-WAIT-2");

    client
        .link()
        .advance(config().close_timeout + Duration::from_secs(1));
    pump(&mut client, &mut server, 4);
    assert_eq!(server.sockets(), 0);
    assert_eq!(server.stats().close_aborts, 1);
    // The abort reached the client as a reset.
    assert!(matches!(
        client.write(&mut c, &[b"x"]),
        Err(SmolError::NotConnected | SmolError::Closed)
    ));
    assert!(matches!(
        client.read(&mut c, &mut buf),
        Err(SmolError::Reset)
    ));
}

#[test]
fn bad_input_is_an_error() {
    let (mut client, mut server) = mem_pair(config(), config(), PORT).unwrap();
    let v6: SocketAddr = "[::1]:9001".parse().unwrap();
    assert!(matches!(client.connect(&v6), Err(SmolError::Unaddressable)));
    assert!(matches!(
        client.connect(&mem_server(0)),
        Err(SmolError::Unaddressable)
    ));
    assert!(matches!(server.listen(0), Err(SmolError::Unaddressable)));

    let (port, _) = MemPort::pair(1500);
    let addressing = Addressing {
        addr: std::net::Ipv4Addr::new(10, 0, 0, 9),
        prefix: 8,
        mac: [0; 6],
        sources: Vec::new(),
    };
    let no_shards = StackConfig {
        shards: 0,
        ..StackConfig::default()
    };
    assert!(matches!(
        SmolTransport::new(port, &addressing, no_shards),
        Err(SmolError::BadConfig(_))
    ));
    let (port, _) = MemPort::pair(1500);
    let wide = Addressing {
        prefix: 33,
        ..addressing.clone()
    };
    assert!(matches!(
        SmolTransport::new(port, &wide, StackConfig::default()),
        Err(SmolError::BadConfig(_))
    ));
    let (tiny, _) = MemPort::pair(40);
    assert!(matches!(
        SmolTransport::new(tiny, &addressing, StackConfig::default()),
        Err(SmolError::BadConfig(_))
    ));
    let (port, _) = MemPort::pair(1500);
    let no_buffer = StackConfig {
        rx_buffer: 0,
        ..StackConfig::default()
    };
    assert!(matches!(
        SmolTransport::new(port, &addressing, no_buffer),
        Err(SmolError::BadConfig(_))
    ));
}

#[test]
fn garbage_frames_are_dropped_not_fatal() {
    let (mut client, mut server) = mem_pair(config(), config(), PORT).unwrap();
    // Frames no stack would send: short, wrong version, TCP with a bad
    // header length. The server must drop them and keep serving.
    let mut events = Vec::new();
    for frame in [vec![], vec![0x45], vec![0x60; 40], {
        let mut f = vec![0u8; 40];
        f[0] = 0x4f;
        f[9] = 6;
        f
    }] {
        server_inject(&mut client, frame);
        server.poll(&mut events, Some(Duration::ZERO)).unwrap();
    }
    let mut c = client.connect(&mem_server(PORT)).unwrap();
    client.register(&mut c, 0, true).unwrap();
    let (_, listener) = pump(&mut client, &mut server, 4);
    assert!(listener.iter().any(|e| e.token == Token::Listener));
}

/// Sends a raw frame from the client's end of the link to the server.
fn server_inject(client: &mut SmolTransport<MemPort>, frame: Vec<u8>) {
    use tern_transport_smoltcp::Link;
    client.link_mut().send(frame).unwrap();
}

#[test]
fn a_tap_stack_can_move_to_its_own_thread() {
    // A server builds its transports and hands each to a thread.
    fn assert_send<T: Send>() {}
    assert_send::<SmolTransport<tern_transport_smoltcp::TapLink>>();
    assert_send::<SmolStream>();
}
