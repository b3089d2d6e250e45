//! The mio transport on real loopback sockets: a tern server and tern
//! clients exchange messages, large ones included, and shut down
//! gracefully.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_core::{ClientRequest, Context, Ended, EventLoop, Handler, LoopConfig, Message};
use tern_transport_std::{MioTransport, Server, ServerConfig};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let _ = cx.send_message(message);
    }
}

/// Sends `payloads` one after another on each connection, checks every
/// echo, and records how each connection ended.
#[derive(Default)]
struct Checker {
    payloads: Vec<Vec<u8>>,
    next: Vec<usize>,
    verified: usize,
    ended: Vec<u16>,
}

impl Checker {
    fn send_next(&mut self, cx: &mut Context<'_>) {
        let i = self.next[cx.id()];
        match self.payloads.get(i) {
            Some(p) => cx.send_binary(p).unwrap(),
            None => cx.close(tern_core::CloseCode::NORMAL, "").unwrap(),
        }
    }
}

impl Handler for Checker {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        if self.next.len() <= cx.id() {
            self.next.resize(cx.id() + 1, 0);
        }
        self.send_next(cx);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let i = self.next[cx.id()];
        assert_eq!(
            message.as_bytes(),
            &self.payloads[i][..],
            "echo {i} differs"
        );
        self.verified += 1;
        self.next[cx.id()] += 1;
        self.send_next(cx);
    }

    fn on_close(&mut self, _: usize, ended: Ended<'_>) {
        self.ended.push(ended.code().0);
    }
}

fn start_server() -> Server {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Server::start(ServerConfig::new(addr), |_| Echo).unwrap()
}

fn run_clients(server: &Server, connections: usize, payloads: Vec<Vec<u8>>) -> Checker {
    let transport = MioTransport::client().unwrap();
    let checker = Checker {
        payloads,
        ..Checker::default()
    };
    let mut client = EventLoop::new(transport, checker, LoopConfig::default());
    let host = server.local_addr().to_string();
    let request = ClientRequest {
        host: &host,
        path: "/",
        protocols: &[],
    };
    for seed in 0..connections as u64 {
        client
            .connect(&server.local_addr(), &request, seed + 1)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.handler().ended.len() < connections && Instant::now() < deadline {
        client.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    let checker = std::mem::take(client.handler_mut());
    assert_eq!(
        checker.ended.len(),
        connections,
        "connections that ended in time"
    );
    checker
}

#[test]
fn many_clients_echo_and_close_normally() {
    let server = start_server();
    let payloads = vec![b"hello".to_vec(), vec![7u8; 126], vec![9u8; 70_000]];
    let checker = run_clients(&server, 50, payloads);
    assert_eq!(checker.verified, 150);
    assert!(
        checker.ended.iter().all(|&code| code == 1000),
        "{:?}",
        checker.ended
    );
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn large_message_crosses_partial_writes() {
    // 16 MiB does not fit the kernel's socket buffers: both sides queue,
    // wait for writability and drain.
    let server = start_server();
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let checker = run_clients(&server, 1, vec![big]);
    assert_eq!(checker.verified, 1);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn shutdown_sends_going_away_to_every_peer() {
    struct Idle {
        opened: usize,
        ended: Vec<u16>,
    }
    impl Handler for Idle {
        fn on_open(&mut self, _: &mut Context<'_>) {
            self.opened += 1;
        }
        fn on_message(&mut self, _: &mut Context<'_>, _: Message<'_>) {}
        fn on_close(&mut self, _: usize, ended: Ended<'_>) {
            self.ended.push(ended.code().0);
        }
    }

    let server = start_server();
    let idle = Idle {
        opened: 0,
        ended: Vec::new(),
    };
    let mut client = EventLoop::new(MioTransport::client().unwrap(), idle, LoopConfig::default());
    let host = server.local_addr().to_string();
    let request = ClientRequest {
        host: &host,
        path: "/",
        protocols: &[],
    };
    for seed in 0..20 {
        client
            .connect(&server.local_addr(), &request, seed + 1)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.handler().opened < 20 && Instant::now() < deadline {
        client.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(client.handler().opened, 20);

    server.shutdown();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.handler().ended.len() < 20 && Instant::now() < deadline {
        client.run_once(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(client.handler().ended, vec![1001; 20]);
    server.join().unwrap();
}
