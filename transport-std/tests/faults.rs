//! Faults on real loopback sockets: peers that reset mid-handshake,
//! mid-write and mid-close, thousands of peers vanishing at once while the
//! server writes to them, the hostile scenarios of the attack module, and
//! graceful shutdown losing no echo. Every test counts the server's
//! connections back to zero.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::Socket;
use tern_core::{Context, Ended, EventLoop, Handler, LoopConfig, LoopStats, Message, OnQueueFull};
use tern_transport_std::attack::{self, masked_frame, AttackLimits, Outcome, Scenario};
use tern_transport_std::{bind, MioTransport, Server, ServerConfig};

fn request() -> &'static [u8] {
    b"GET / HTTP/1.1\r\nHost: loopback\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

/// Echoes every message `copies` times and records how connections end.
#[derive(Clone, Default)]
struct Echo {
    copies: usize,
    echoed: Arc<AtomicUsize>,
    ended: Arc<Mutex<Vec<String>>>,
}

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        for _ in 0..self.copies.max(1) {
            if cx.send(&message).is_ok() {
                self.echoed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn on_close(&mut self, _: usize, ended: Ended<'_>) {
        self.ended.lock().unwrap().push(format!("{ended}"));
    }
}

/// An event loop on its own thread, stepped until told to stop; hands
/// back what is left alive and its counters.
struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(usize, LoopStats)>,
}

impl Running {
    fn start(handler: Echo, config: LoopConfig) -> Running {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 4096, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = MioTransport::server(listener).unwrap();
        let mut event_loop = EventLoop::new(transport, handler, config);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                event_loop
                    .run_once(Some(Duration::from_millis(10)))
                    .unwrap();
            }
            (event_loop.len(), event_loop.stats())
        });
        Running { addr, stop, thread }
    }

    /// Waits (bounded) for the loop to have ended `ended` connections,
    /// then stops it and returns its count of live connections and stats.
    fn finish(self, echo: &Echo, ended: usize) -> (usize, LoopStats) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while echo.ended.lock().unwrap().len() < ended && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn open(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    stream
}

/// Closes `stream` with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    let socket = Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket);
}

/// Reads one server frame: (first byte, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    let len = match head[1] {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

#[test]
fn slot_per_connection_stays_small() {
    // A mio stream is its descriptor, plus a selector id in debug builds.
    let limit = if cfg!(debug_assertions) { 48 } else { 40 };
    let size = EventLoop::<MioTransport, Echo>::bytes_per_connection();
    assert!(size <= limit, "{size} bytes per connection");
}

#[test]
fn resets_mid_handshake_mid_write_and_mid_close_free_everything() {
    let echo = Echo {
        copies: 64,
        ..Echo::default()
    };
    let server = Running::start(echo.clone(), LoopConfig::default());

    // Mid-handshake: half a request, then a reset.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(&request()[..40]).unwrap();
    reset(s);

    // Mid-write: ask for 64 echoes of 60 KB (more than the socket buffers
    // hold), read none, reset.
    let mut s = open(server.addr);
    s.write_all(&masked_frame(0x82, &[1; 60_000])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    reset(s);

    // Mid-close: send a close frame and reset before reading the answer.
    let mut s = open(server.addr);
    s.write_all(&masked_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    reset(s);

    let (alive, stats) = server.finish(&echo, 3);
    assert_eq!(alive, 0);
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.ended, stats.accepted);
    let ended = echo.ended.lock().unwrap();
    assert_eq!(ended.len(), 3, "{ended:?}");
}

#[test]
fn three_thousand_peers_vanish_while_the_server_writes() {
    const PEERS: usize = 3_000;
    let echo = Echo {
        copies: 8,
        ..Echo::default()
    };
    let server = Running::start(echo.clone(), LoopConfig::default());
    let mut peers: Vec<TcpStream> = (0..PEERS).map(|_| open(server.addr)).collect();

    // Every peer asks for eight 8 KB echoes, then all of them go at once:
    // half with a reset, half with a FIN, none reading.
    let message = masked_frame(0x82, &[3; 8 * 1024]);
    for peer in &mut peers {
        peer.write_all(&message).unwrap();
    }
    for (i, peer) in peers.into_iter().enumerate() {
        if i % 2 == 0 {
            reset(peer);
        } else {
            drop(peer);
        }
    }

    let (alive, stats) = server.finish(&echo, PEERS);
    assert_eq!(alive, 0);
    assert_eq!(stats.accepted, PEERS as u64);
    assert_eq!(stats.ended, stats.accepted);
    assert!(echo.echoed.load(Ordering::SeqCst) > 0);
}

#[test]
fn graceful_shutdown_loses_no_echo_in_flight() {
    let echo = Echo {
        copies: 4,
        ..Echo::default()
    };
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.shutdown_grace = Duration::from_secs(10);
    let handler = echo.clone();
    let server = Server::start(config, move |_| handler.clone()).unwrap();

    // Echoes pile up in the kernel and in the server's queue while the
    // client is not reading.
    let mut client = open(server.local_addr());
    let payload = [7u8; 30_000];
    for _ in 0..40 {
        client.write_all(&masked_frame(0x82, &payload)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while echo.echoed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    server.shutdown();

    // Every echo the server accepted arrives, whole, before the 1001.
    let mut received = 0;
    loop {
        let (b0, body) = read_frame(&mut client);
        if b0 == 0x88 {
            assert_eq!(body[..2], 1001u16.to_be_bytes());
            break;
        }
        assert_eq!(b0, 0x82);
        assert_eq!(body, payload);
        received += 1;
    }
    client
        .write_all(&masked_frame(0x88, &1001u16.to_be_bytes()))
        .unwrap();
    server.join().unwrap();
    assert!(received > 0);
    assert_eq!(received, echo.echoed.load(Ordering::SeqCst));
}

#[test]
fn attack_scenarios_get_their_answers() {
    let echo = Echo::default();
    let config = LoopConfig {
        handshake_timeout: Duration::from_millis(500),
        max_queued: 256 * 1024,
        on_queue_full: OnQueueFull::Close,
        idle_timeout: Some(Duration::from_secs(2)),
        protocol: tern_core::Config {
            max_frame_size: 1 << 20,
            ..tern_core::Config::DEFAULT
        },
        ..LoopConfig::default()
    };
    let server = Running::start(echo.clone(), config);
    let limits = AttackLimits {
        connections: 20,
        duration: Duration::from_secs(10),
        oversize: (1 << 20) + 1,
    };

    let report = attack::run(Scenario::Slowloris, server.addr, &limits);
    assert_eq!(report.count(Outcome::Status(408)), 20, "{report:?}");

    let report = attack::run(Scenario::OversizeFrame, server.addr, &limits);
    assert_eq!(report.count(Outcome::Close(1009)), 20, "{report:?}");

    let report = attack::run(Scenario::InvalidUtf8, server.addr, &limits);
    assert_eq!(report.count(Outcome::Close(1007)), 20, "{report:?}");

    let report = attack::run(Scenario::Churn, server.addr, &limits);
    assert_eq!(report.count(Outcome::Completed), 20, "{report:?}");

    // Never-read clients stall: the server stops reading them, then its
    // idle sweep drops them (they show no life).
    let report = attack::run(Scenario::NeverRead, server.addr, &limits);
    assert_eq!(report.connections, 20);
    assert_eq!(
        report.count(Outcome::Reset) + report.count(Outcome::Stalled),
        20
    );

    let (alive, stats) = server.finish(&echo, 100);
    assert_eq!(alive, 0, "{stats:?}");
    assert_eq!(stats.ended, stats.accepted);
    assert_eq!(stats.accepted, 100);
}
