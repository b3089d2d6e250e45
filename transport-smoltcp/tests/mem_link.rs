//! The smoltcp transport over the in-memory link, through the core's
//! event loop: echoes, many connections across shards, close handshakes,
//! large messages over small buffers, and bursts of SYNs.

use std::collections::VecDeque;

use tern_core::{ClientRequest, CloseCode, ConnId, Context, Ended, EventLoop, Handler, Message};
use tern_transport_smoltcp::storm::{self, loop_config, step_until, EchoServer};
use tern_transport_smoltcp::{mem_pair, mem_server, MemPort, SmolTransport, StackConfig};

const PORT: u16 = 9001;

const REQUEST: ClientRequest<'static> = ClientRequest {
    host: "tern",
    path: "/",
    protocols: &[],
};

/// Sends its messages one at a time, keeps the echoes, then closes.
#[derive(Debug, Default)]
struct Client {
    to_send: VecDeque<Vec<u8>>,
    received: Vec<Vec<u8>>,
    opened: usize,
    /// How each connection ended: the code, or `None` for a transport
    /// failure.
    ended: Vec<Option<u16>>,
    /// What each failed end said (handshake refused, protocol error).
    failures: Vec<String>,
    close_when_done: bool,
}

impl Client {
    fn send_next(&mut self, cx: &mut Context<'_>) {
        match self.to_send.pop_front() {
            Some(data) => cx.send_binary(&data).expect("open connection sends"),
            None if self.close_when_done => cx
                .close(CloseCode::NORMAL, "done")
                .expect("open connection closes"),
            None => {}
        }
    }
}

impl Handler for Client {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.opened += 1;
        self.send_next(cx);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Binary(data) = message {
            self.received.push(data.into_owned());
        }
        self.send_next(cx);
    }

    fn on_close(&mut self, _: ConnId, ended: Ended<'_>) {
        if let Ended::Failed(e) = &ended {
            self.failures.push(e.to_string());
        }
        let code = match ended {
            Ended::Transport(_) => None,
            other => Some(other.code().0),
        };
        self.ended.push(code);
    }
}

type Pair<C, S> = (
    EventLoop<SmolTransport<MemPort>, C>,
    EventLoop<SmolTransport<MemPort>, S>,
);

fn pair<C: Handler>(config: StackConfig, client: C) -> Pair<C, EchoServer> {
    let (c, s) = mem_pair(config.clone(), config, PORT).expect("valid configuration");
    (
        EventLoop::new(c, client, loop_config(100_000)),
        EventLoop::new(s, EchoServer::default(), loop_config(100_000)),
    )
}

#[test]
fn echo_round_trips_and_close_handshake() {
    let messages: Vec<Vec<u8>> = vec![b"hello".to_vec(), b"over".to_vec(), b"smoltcp".to_vec()];
    let client = Client {
        to_send: messages.iter().cloned().collect(),
        close_when_done: true,
        ..Client::default()
    };
    let (mut client, mut server) = pair(StackConfig::default(), client);
    client
        .connect(&mem_server(PORT), &REQUEST, 1)
        .expect("connect starts");

    let done = step_until(&mut client, &mut server, 10_000, |c, s| {
        c.is_empty() && s.is_empty() && c.transport().sockets() == 0 && s.transport().sockets() == 0
    })
    .expect("the link never fails");
    assert!(done, "client {client:?} server {server:?}");
    assert_eq!(client.handler().received, messages);
    assert_eq!(client.handler().ended, vec![Some(1000)]);
    assert_eq!(server.handler().ended, 1);
    assert_eq!(server.stats().opened, 1);
}

#[test]
fn thousands_of_connections_across_shards() {
    let n = 3000;
    let config = StackConfig {
        shards: 12,
        ..StackConfig::default()
    };
    let client = Client {
        to_send: VecDeque::new(),
        ..Client::default()
    };
    let (mut client, mut server) = pair(config, client);
    for seed in 0..n {
        client
            .connect(&mem_server(PORT), &REQUEST, seed)
            .expect("connect starts");
    }
    let all_open = step_until(&mut client, &mut server, 100_000, |c, _| {
        c.handler().opened == n as usize
    })
    .expect("the link never fails");
    assert!(all_open, "opened {}", client.handler().opened);
    assert_eq!(server.len(), n as usize);

    // The 4-tuple hash spreads the connections: every shard holds a fair
    // share on both sides (3000 over 12 is 250 each).
    for loads in [
        client.transport().shard_loads(),
        server.transport().shard_loads(),
    ] {
        assert_eq!(loads.len(), 12);
        assert!(loads.iter().all(|&l| l > 150), "{loads:?}");
    }

    // One echo per connection, with a payload naming the connection.
    for id in 0..n as usize {
        let sent = client.with_connection(id, |_, cx| {
            cx.send_binary(&id.to_be_bytes()).expect("open");
        });
        assert!(sent.is_some());
    }
    let echoed = step_until(&mut client, &mut server, 100_000, |c, _| {
        c.handler().received.len() == n as usize
    })
    .expect("the link never fails");
    assert!(echoed);
    let mut ids: Vec<usize> = client
        .handler()
        .received
        .iter()
        .map(|b| usize::from_be_bytes(b[..].try_into().expect("8 bytes")))
        .collect();
    ids.sort_unstable();
    assert!(ids.iter().copied().eq(0..n as usize));

    // Close every connection from the client side; both stacks release
    // every socket.
    client.close_all(CloseCode::NORMAL, "bye");
    let closed = step_until(&mut client, &mut server, 100_000, |c, s| {
        c.is_empty() && s.is_empty() && c.transport().sockets() == 0 && s.transport().sockets() == 0
    })
    .expect("the link never fails");
    assert!(closed, "client {client:?} server {server:?}");
    assert!(client.handler().ended.iter().all(|&e| e == Some(1000)));
}

#[test]
fn large_message_crosses_small_socket_buffers() {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let config = StackConfig {
        shards: 2,
        rx_buffer: 256,
        tx_buffer: 256,
        ..StackConfig::default()
    };
    let client = Client {
        to_send: VecDeque::from([big.clone(), b"after".to_vec()]),
        close_when_done: true,
        ..Client::default()
    };
    let (mut client, mut server) = pair(config, client);
    client
        .connect(&mem_server(PORT), &REQUEST, 7)
        .expect("connect starts");
    let done = step_until(&mut client, &mut server, 200_000, |c, s| {
        c.is_empty() && s.is_empty()
    })
    .expect("the link never fails");
    assert!(done);
    assert_eq!(client.handler().received.len(), 2);
    assert!(
        client.handler().received[0] == big,
        "the large echo differs"
    );
    assert_eq!(client.handler().received[1], b"after");
    assert_eq!(client.handler().ended, vec![Some(1000)]);
}

#[test]
fn listener_rearms_for_a_burst_of_syns() {
    // One shard with one listening socket: every SYN of the burst reaches
    // the stack in the same poll, so each needs the pool re-armed before
    // it, or it would be reset.
    let config = StackConfig {
        shards: 1,
        listen_pool: 1,
        ..StackConfig::default()
    };
    let (mut client, mut server) = pair(config, Client::default());
    let n = 500;
    for seed in 0..n {
        client
            .connect(&mem_server(PORT), &REQUEST, seed)
            .expect("connect starts");
    }
    // The first client step sends all 500 SYNs; the server takes them in
    // one poll.
    client.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert_eq!(client.transport().link().in_flight(), n as usize);
    let all_open = step_until(&mut client, &mut server, 10_000, |c, _| {
        c.handler().opened == n as usize
    })
    .expect("the link never fails");
    assert!(all_open, "opened {}", client.handler().opened);
    assert!(
        client.handler().ended.is_empty(),
        "{:?}",
        client.handler().ended
    );
    assert!(server.transport().stats().listeners_armed > n);
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let (mut client, mut server) = pair(StackConfig::default(), Client::default());
    client
        .connect(&mem_server(PORT + 1), &REQUEST, 3)
        .expect("connect starts");
    let done = step_until(&mut client, &mut server, 10_000, |c, _| c.is_empty())
        .expect("the link never fails");
    assert!(done);
    assert_eq!(
        client.handler().ended,
        vec![None],
        "a reset is a transport failure"
    );
    assert_eq!(client.handler().opened, 0);
    assert_eq!(client.transport().sockets(), 0);
}

#[test]
fn storm_reports_what_it_reached() {
    let mut config = storm::StormConfig::new(600);
    config.rounds = 2;
    config.max_steps = 100_000;
    let report = storm::run(&config).expect("the stacks build");
    assert!(report.complete, "{report}");
    assert_eq!(report.open, 600);
    assert_eq!(report.echoes, 1200);
    assert!(report.rss_open >= report.rss_start);
}

#[test]
fn a_server_at_its_limit_answers_503() {
    let (c, s) = mem_pair(StackConfig::default(), StackConfig::default(), PORT).unwrap();
    let mut client = EventLoop::new(c, Client::default(), loop_config(10));
    let server_config = tern_core::LoopConfig {
        max_connections: 1,
        ..loop_config(1)
    };
    let mut server = EventLoop::new(s, EchoServer::default(), server_config);
    client.connect(&mem_server(PORT), &REQUEST, 1).unwrap();
    let first = step_until(&mut client, &mut server, 10_000, |c, _| {
        c.handler().opened == 1
    })
    .expect("the link never fails");
    assert!(first);

    client.connect(&mem_server(PORT), &REQUEST, 2).unwrap();
    let refused = step_until(&mut client, &mut server, 10_000, |c, _| {
        !c.handler().ended.is_empty()
    })
    .expect("the link never fails");
    assert!(refused);
    // The refusal arrived as an HTTP answer the client could read (a
    // failed handshake), not as a bare reset or close.
    assert_eq!(client.handler().ended, vec![Some(1006)]);
    assert_eq!(client.handler().failures.len(), 1, "a failed handshake");
    assert!(
        client.handler().failures[0].contains("503"),
        "{:?}",
        client.handler().failures
    );
    assert_eq!(server.stats().refused, 1);
    assert_eq!(client.len(), 1, "the first connection stays open");
}

/// Closes every connection with 4000 on its first message.
#[derive(Debug, Default)]
struct Closer {
    ended: Vec<u16>,
}

impl Handler for Closer {
    fn on_message(&mut self, cx: &mut Context<'_>, _: Message<'_>) {
        cx.close(CloseCode(4000), "enough").expect("open");
    }

    fn on_close(&mut self, _: ConnId, ended: Ended<'_>) {
        self.ended.push(ended.code().0);
    }
}

#[test]
fn server_initiated_close_handshake() {
    let (c, s) = mem_pair(StackConfig::default(), StackConfig::default(), PORT).unwrap();
    // Each connection sends one message as it opens; the server answers
    // each with a close.
    let handler = Client {
        to_send: (0..20u8).map(|i| vec![i]).collect(),
        ..Client::default()
    };
    let mut client = EventLoop::new(c, handler, loop_config(20));
    let mut server = EventLoop::new(s, Closer::default(), loop_config(20));
    for seed in 0..20 {
        client.connect(&mem_server(PORT), &REQUEST, seed).unwrap();
    }
    let done = step_until(&mut client, &mut server, 10_000, |c, s| {
        c.is_empty() && s.is_empty() && c.transport().sockets() == 0 && s.transport().sockets() == 0
    })
    .expect("the link never fails");
    assert!(done, "client {client:?} server {server:?}");
    assert_eq!(client.handler().opened, 20);
    assert_eq!(client.handler().ended, vec![Some(4000); 20]);
    assert_eq!(server.handler().ended, vec![4000; 20]);
}
