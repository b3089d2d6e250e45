//! The event loop against slow, silent and hostile peers, over the
//! in-process pipes of `examples/pipe_transport.rs` with their simulated
//! clock: idle pings and timeouts, the output high-water mark under both
//! policies, paused reading, drain notices, crossing closes and frames
//! after a close. Every test checks that each connection's slot is freed.

#[path = "../examples/pipe_transport.rs"]
mod pipe;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use pipe::{Network, PipeEnd, PipeTransport, Side};
use tern_core::transport::{Io, Transport};
use tern_core::{
    CloseCode, Context, Ended, EventLoop, Handler, LoopConfig, Message, OnQueueFull, SendError,
};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: pipe\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame with a short payload.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![b0, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// Unmasked server frames read back: (first byte, payload).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (len, start) = match bytes[1] {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        frames.push((bytes[0], bytes[start..start + len].to_vec()));
        bytes = &bytes[start + len..];
    }
    frames
}

/// How a connection ended, in words a test can compare.
fn kind(ended: &Ended<'_>) -> &'static str {
    match ended {
        Ended::Closed(_) => "closed",
        Ended::Abnormal => "abnormal",
        Ended::Failed(_) => "failed",
        Ended::TimedOut => "timed out",
        Ended::Refused => "refused",
        Ended::Transport(_) => "transport",
        Ended::IdleTimeout => "idle",
        Ended::QueueFull => "queue full",
    }
}

/// The application under test: echoes, optionally floods on open and on
/// every drain, and records what happened.
#[derive(Debug, Default)]
struct App {
    /// Floods with messages of this many bytes until the queue is full.
    flood: Option<usize>,
    sent: usize,
    /// `queued_len` right after each refused send.
    full_at: Vec<usize>,
    full_errors: Vec<SendError>,
    drains: usize,
    pongs: usize,
    /// Results of sends tried right after this end started closing.
    after_close: Vec<Result<(), SendError>>,
    ended: Vec<(&'static str, u16)>,
}

impl App {
    /// Starts flooding connection 0 with messages of `size` bytes.
    fn start_flood(s: &mut Setup, size: usize) {
        s.server.handler_mut().flood = Some(size);
        s.server
            .with_connection(0, |app, cx| app.flood(cx))
            .expect("connection 0 is alive");
    }

    fn flood(&mut self, cx: &mut Context<'_>) {
        let Some(size) = self.flood else { return };
        let payload = vec![0x5a; size];
        // Bounded: the high-water mark stops it.
        for _ in 0..100_000 {
            match cx.send_binary(&payload) {
                Ok(()) => self.sent += 1,
                Err(e) => {
                    self.full_at.push(cx.queued_len());
                    self.full_errors.push(e);
                    return;
                }
            }
        }
        panic!("the high-water mark never stopped the flood");
    }
}

impl Handler for App {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.flood(cx);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if message.as_bytes() == b"close please" {
            cx.close(CloseCode::NORMAL, "").unwrap();
            self.after_close.push(cx.send_text("too late"));
            self.after_close.push(cx.send_ping(b""));
            return;
        }
        let _ = cx.send(&message);
    }

    fn on_pong(&mut self, _: &mut Context<'_>, _: &[u8]) {
        self.pongs += 1;
    }

    fn on_drain(&mut self, cx: &mut Context<'_>) {
        self.drains += 1;
        self.flood(cx);
    }

    fn on_close(&mut self, _: usize, ended: Ended<'_>) {
        self.ended.push((kind(&ended), ended.code().0));
    }
}

struct Setup {
    _net: Rc<RefCell<Network>>,
    server: EventLoop<PipeTransport, App>,
    client: PipeTransport,
    end: PipeEnd,
}

impl Setup {
    /// A server over pipes of `capacity` bytes per direction and one
    /// client whose handshake is complete and answer read.
    fn open(capacity: usize, config: LoopConfig, app: App) -> Setup {
        let net = Network::new(capacity);
        let server = EventLoop::new(PipeTransport::new(&net, Side::Server), app, config);
        let mut client = PipeTransport::new(&net, Side::Client);
        let end = client.connect(&()).unwrap();
        let mut setup = Setup {
            _net: net,
            server,
            client,
            end,
        };
        setup.write_all(REQUEST);
        let (answer, _) = setup.read_all();
        assert!(answer.starts_with(b"HTTP/1.1 101 "), "{answer:?}");
        setup
    }

    fn step(&mut self) {
        self.server.run_once(Some(Duration::ZERO)).unwrap();
    }

    /// Writes all of `bytes` from the client, stepping the server while
    /// the pipe is full.
    fn write_all(&mut self, mut bytes: &[u8]) {
        for _ in 0..100_000 {
            if bytes.is_empty() {
                self.step();
                return;
            }
            if let Ok(Io::Done(n)) = self.client.write(&mut self.end, &[bytes]) {
                bytes = &bytes[n..];
            }
            self.step();
        }
        panic!("the server stopped taking input");
    }

    /// Reads what the server sent, stepping it until nothing more comes;
    /// also says whether the stream was closed.
    fn read_all(&mut self) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut quiet = 0;
        for _ in 0..100_000 {
            self.step();
            match self.client.read(&mut self.end, &mut buf).unwrap() {
                Io::Done(n) => {
                    got.extend_from_slice(&buf[..n]);
                    quiet = 0;
                }
                Io::Closed => return (got, true),
                Io::WouldBlock => {
                    quiet += 1;
                    if quiet > 3 {
                        return (got, false);
                    }
                }
            }
        }
        panic!("the server never stopped sending");
    }

    /// Lets the server wait for its next deadline or sweep, which jumps
    /// the simulated clock there when nothing else is ready.
    fn wait(&mut self) {
        let before = self.server.transport().now();
        self.server
            .run_once(Some(Duration::from_secs(3600)))
            .unwrap();
        assert!(
            self.server.transport().now() > before,
            "nothing to wait for"
        );
    }

    fn queued(&mut self) -> usize {
        self.server
            .with_connection(0, |_, cx| cx.queued_len())
            .expect("connection 0 is alive")
    }

    fn assert_all_freed(&self) {
        assert!(self.server.is_empty(), "{} alive", self.server.len());
        let stats = self.server.stats();
        assert_eq!(stats.ended, stats.accepted);
    }
}

fn idle_config() -> LoopConfig {
    LoopConfig {
        idle_timeout: Some(Duration::from_secs(40)),
        ..LoopConfig::default()
    }
}

#[test]
fn silent_peer_is_pinged_then_closed_with_1001() {
    let mut s = Setup::open(64 * 1024, idle_config(), App::default());
    let opened_at = s.server.transport().now();

    // Wait sweep by sweep until something arrives: the ping.
    let mut ping_at = None;
    for _ in 0..10 {
        s.wait();
        let (bytes, _) = s.read_all();
        if !bytes.is_empty() {
            assert_eq!(server_frames(&bytes), [(0x89, vec![])]);
            ping_at = Some(s.server.transport().now() - opened_at);
            break;
        }
    }
    let ping_at = ping_at.expect("no ping came");
    assert!(ping_at > Duration::from_secs(20) && ping_at <= Duration::from_secs(30));

    // No pong: the close 1001 follows and the connection is dropped.
    let mut closed_at = None;
    for _ in 0..10 {
        s.wait();
        let (bytes, closed) = s.read_all();
        if !bytes.is_empty() {
            let frames = server_frames(&bytes);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].0, 0x88);
            assert_eq!(frames[0].1[..2], 1001u16.to_be_bytes());
            assert_eq!(&frames[0].1[2..], b"idle timeout");
            assert!(closed);
            closed_at = Some(s.server.transport().now() - opened_at);
            break;
        }
    }
    let closed_at = closed_at.expect("no close came");
    assert!(closed_at > Duration::from_secs(40) && closed_at <= Duration::from_secs(50));
    assert_eq!(s.server.handler().ended, [("idle", 1006)]);
    s.assert_all_freed();
}

#[test]
fn pong_keeps_an_idle_connection_open() {
    let mut s = Setup::open(64 * 1024, idle_config(), App::default());
    let mut pings = 0;
    // Ten idle timeouts' worth of sweeps, answering every ping.
    for _ in 0..40 {
        s.wait();
        let (bytes, closed) = s.read_all();
        assert!(!closed);
        for (b0, payload) in server_frames(&bytes) {
            assert_eq!(b0, 0x89);
            pings += 1;
            s.write_all(&client_frame(0x8A, &payload));
        }
    }
    assert!(pings >= 10, "{pings} pings");
    assert_eq!(s.server.len(), 1);
    assert_eq!(s.server.handler().pongs, pings);
    assert!(s.server.handler().ended.is_empty());
}

#[test]
fn unanswered_close_is_dropped_by_the_idle_sweep() {
    let mut s = Setup::open(64 * 1024, idle_config(), App::default());
    s.server
        .with_connection(0, |_, cx| cx.close(CloseCode::GOING_AWAY, "bye"))
        .unwrap()
        .unwrap();
    let (bytes, _) = s.read_all();
    assert_eq!(server_frames(&bytes)[0].0, 0x88);
    for _ in 0..10 {
        if s.server.is_empty() {
            break;
        }
        s.wait();
    }
    // No ping follows a close frame; the stream just ends.
    let (bytes, closed) = s.read_all();
    assert!(bytes.is_empty() && closed);
    assert_eq!(s.server.handler().ended, [("idle", 1006)]);
    s.assert_all_freed();
}

fn flood_config(on_queue_full: OnQueueFull) -> LoopConfig {
    LoopConfig {
        max_queued: 64 * 1024,
        read_buffer_size: 4 * 1024,
        on_queue_full,
        ..LoopConfig::default()
    }
}

const MESSAGE: usize = 10_000;

#[test]
fn high_water_mark_rejects_sends_and_drain_resumes_them() {
    let mut s = Setup::open(1024, flood_config(OnQueueFull::Reject), App::default());
    App::start_flood(&mut s, MESSAGE);

    // The flood stopped at the mark, within one message of it.
    let app = s.server.handler();
    assert_eq!(app.full_errors, [SendError::QueueFull]);
    let full_at = app.full_at[0];
    assert!(
        (64 * 1024..64 * 1024 + MESSAGE + 14).contains(&full_at),
        "{full_at}"
    );
    let sent = app.sent;
    assert!(s.queued() <= 64 * 1024 + MESSAGE + 14);

    // The client reads everything: the queue drains, the handler hears of
    // it and floods again.
    let mut buf = vec![0u8; 1024];
    for _ in 0..10_000 {
        if s.server.handler().drains > 0 {
            break;
        }
        let _ = s.client.read(&mut s.end, &mut buf).unwrap();
        s.step();
    }
    let app = s.server.handler();
    assert_eq!(app.drains, 1);
    assert_eq!(app.full_errors.len(), 2);
    assert!(app.sent > sent);
    assert_eq!(s.server.len(), 1);
}

#[test]
fn high_water_mark_closes_with_1008_when_asked() {
    let mut s = Setup::open(1024, flood_config(OnQueueFull::Close), App::default());
    App::start_flood(&mut s, MESSAGE);
    let sent = s.server.handler().sent;
    assert_eq!(s.server.handler().full_errors, [SendError::QueueFull]);
    assert_eq!(s.server.handler().ended, [("queue full", 1008)]);

    // Everything sent before the mark arrives, then close 1008, then the
    // end of the stream.
    let (bytes, closed) = s.read_all();
    assert!(closed);
    let frames = server_frames(&bytes);
    assert_eq!(frames.len(), sent + 1);
    assert!(frames[..sent]
        .iter()
        .all(|(b0, p)| *b0 == 0x82 && p.len() == MESSAGE));
    let (b0, payload) = &frames[sent];
    assert_eq!(*b0, 0x88);
    assert_eq!(payload[..2], 1008u16.to_be_bytes());
    s.assert_all_freed();
}

#[test]
fn peer_that_never_reads_cannot_grow_the_queue_with_pings() {
    let config = flood_config(OnQueueFull::Reject);
    let mut s = Setup::open(2048, config, App::default());
    let ping = client_frame(0x89, &[7; 125]);
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 64).collect();

    // The client writes pings as fast as the server takes them and never
    // reads the pongs. The server stops reading once its queue is near
    // the mark, so the client's writes stall.
    let mut stalled = 0;
    let mut most = 0;
    let mut pending = Vec::new();
    for _ in 0..20_000 {
        if pending.is_empty() {
            pending.extend_from_slice(&burst);
        }
        match s.client.write(&mut s.end, &[&pending]).unwrap() {
            Io::Done(n) => {
                pending.drain(..n);
                stalled = 0;
            }
            _ => stalled += 1,
        }
        s.step();
        assert!(
            s.server.handler().ended.is_empty(),
            "{:?}",
            s.server.handler().ended
        );
        most = most.max(s.queued());
        if stalled > 50 {
            break;
        }
    }
    assert!(stalled > 50, "the server kept reading");
    assert!(most <= 64 * 1024, "queue grew to {most}");
    assert!(
        most > 64 * 1024 - 2 * 4 * 1024,
        "queue stopped early at {most}"
    );
    assert_eq!(s.server.len(), 1);
}

#[test]
fn sends_after_close_fail() {
    let mut s = Setup::open(64 * 1024, LoopConfig::default(), App::default());
    s.write_all(&client_frame(0x81, b"close please"));
    let (bytes, _) = s.read_all();
    assert_eq!(
        server_frames(&bytes),
        [(0x88, 1000u16.to_be_bytes().to_vec())]
    );
    assert_eq!(
        s.server.handler().after_close,
        [Err(SendError::Closing), Err(SendError::Closing)]
    );

    // The peer's answer completes the close; the connection is gone and
    // sending through it is impossible.
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()));
    assert!(s.server.with_connection(0, |_, _| ()).is_none());
    assert_eq!(s.server.handler().ended, [("closed", 1000)]);
    s.assert_all_freed();
}

#[test]
fn frames_after_a_close_are_ignored() {
    let mut s = Setup::open(64 * 1024, LoopConfig::default(), App::default());
    let mut bytes = client_frame(0x88, &1000u16.to_be_bytes());
    bytes.extend(client_frame(0x81, b"after the close"));
    bytes.extend(client_frame(0x89, b"ping after the close"));
    s.write_all(&bytes);

    // One close reply, nothing for the frames after it.
    let (got, closed) = s.read_all();
    assert_eq!(got, [0x88, 0x02, 0x03, 0xe8]);
    assert!(closed);
    assert_eq!(s.server.handler().ended, [("closed", 1000)]);
    s.assert_all_freed();
}

#[test]
fn crossing_closes_complete_without_a_second_close_frame() {
    let mut s = Setup::open(64 * 1024, LoopConfig::default(), App::default());
    // The server starts closing; before reading that, the client starts
    // its own close.
    s.server
        .with_connection(0, |_, cx| cx.close(CloseCode::GOING_AWAY, ""))
        .unwrap()
        .unwrap();
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()));

    let (got, closed) = s.read_all();
    assert_eq!(got, [0x88, 0x02, 0x03, 0xe9]);
    assert!(closed);
    assert_eq!(s.server.handler().ended, [("closed", 1000)]);
    s.assert_all_freed();
}

#[test]
fn resets_in_every_phase_free_the_connection() {
    // A peer that vanishes mid-handshake, mid-frame, and after sending
    // its close but before reading the answer.
    let phases: [&[u8]; 3] = [
        &REQUEST[..30],
        &[0x81, 0x85, 1, 2],
        &[0x88, 0x80, 1, 2, 3, 4],
    ];
    for (i, partial) in phases.iter().enumerate() {
        let net = Network::new(64 * 1024);
        let mut server = EventLoop::new(
            PipeTransport::new(&net, Side::Server),
            App::default(),
            LoopConfig::default(),
        );
        let mut client = PipeTransport::new(&net, Side::Client);
        let mut end = client.connect(&()).unwrap();
        if i > 0 {
            client.write(&mut end, &[REQUEST]).unwrap();
        }
        server.run_once(Some(Duration::ZERO)).unwrap();
        server.run_once(Some(Duration::ZERO)).unwrap();
        client.write(&mut end, &[partial]).unwrap();
        client.close(end);
        for _ in 0..10 {
            server.run_once(Some(Duration::ZERO)).unwrap();
        }
        assert!(server.is_empty(), "phase {i}");
        let stats = server.stats();
        assert_eq!(stats.ended, stats.accepted, "phase {i}");
        let expected = if i == 2 {
            ("closed", 1005)
        } else {
            ("abnormal", 1006)
        };
        assert_eq!(server.handler().ended, [expected], "phase {i}");
    }
}

#[test]
fn oversized_control_frame_error_does_not_depend_on_read_cuts() {
    use tern_core::{Config, Connection, Event, Input, ProtocolError, Role};

    // A ping announcing 300 bytes through the 16-bit length, cut after
    // its second byte or delivered whole: both name 300 bytes and answer
    // 1002.
    let frame = [0x89, 0xFE, 0x01, 0x2C, 1, 2, 3, 4];
    let run = |cut: usize| {
        let mut conn = Connection::open(Role::Server, 0);
        let mut out = Vec::new();
        let mut result = Ok(None::<Event<'static>>);
        for part in [&frame[..cut], &frame[cut..]] {
            let mut buf = part.to_vec();
            let mut input = Input::new(&mut buf);
            result = conn
                .poll_event(&Config::DEFAULT, &mut input, &mut out)
                .map(|e| e.map(Event::into_owned));
            if result.is_err() {
                break;
            }
        }
        (result, out)
    };
    let (whole, whole_out) = run(frame.len());
    let (cut, cut_out) = run(2);
    let expected = Err(tern_core::Error::Protocol(ProtocolError::ControlTooLong(
        300,
    )));
    assert_eq!(whole, expected);
    assert_eq!(cut, expected);
    assert_eq!(whole_out, [0x88, 0x02, 0x03, 0xea]);
    assert_eq!(cut_out, whole_out);
}

#[test]
fn lingering_close_is_dropped_at_its_deadline_when_never_read() {
    let config = LoopConfig {
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: None,
        ..flood_config(OnQueueFull::Close)
    };
    let mut s = Setup::open(1024, config, App::default());
    App::start_flood(&mut s, MESSAGE);
    // Reported at once; the slot stays to flush the close 1008.
    assert_eq!(s.server.handler().ended, [("queue full", 1008)]);
    assert_eq!(s.server.len(), 1);

    // The client never reads: the linger deadline drops it.
    let start = s.server.transport().now();
    s.wait();
    assert!(s.server.is_empty());
    assert_eq!(s.server.transport().now() - start, Duration::from_secs(5));
    assert_eq!(s.server.handler().ended.len(), 1);
    s.assert_all_freed();
}
