//! The raw-TCP limit: what the kernel allows on the loop design of
//! transport-std, with no WebSocket work at all.
//!
//! [`serve`] (`tern serve --raw`) is a minimal mio server built like
//! transport-std's loop: edge-triggered readiness, accept until
//! `WouldBlock`, read until `WouldBlock` into one buffer shared by every
//! connection, write straight from it and keep only what the socket would
//! not take. It answers the first request head of a connection (anything
//! up to an empty line) with a canned `101 Switching Protocols` and from
//! then on echoes bytes as they come, without looking at frames.
//!
//! Such an echo of a masked client frame is not a valid server frame
//! (RFC 6455 section 5.1 forbids masked frames from a server), so tern's
//! client cannot talk to it. [`RawClient`] is the matching load
//! generator: it sends the same upgrade request and the same masked
//! frames as tern's client would, and counts the bytes that come back
//! instead of parsing them. Its measurements fill the bench's reports, so
//! `tern compare` shows them beside the WebSocket servers'.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tern_core::frame::{FrameHeader, OpCode};
use tern_core::mask::apply_mask;

use crate::latency::Histogram;
use crate::payload;
use crate::report::{EchoReport, Latency, StormReport, ThroughputReport};
use crate::target::Target;

/// The reply to every request head. The accept value is fixed: no
/// client of this server checks it.
const CANNED_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// A request head longer than this is refused (the connection is closed).
const MAX_HEAD: usize = 8 * 1024;

/// The shared read buffer, as large as the core's default.
const READ_BUFFER: usize = 64 * 1024;

/// Echo bytes a server connection queues before it stops reading.
const MAX_QUEUED: usize = 4 << 20;

const LISTENER: Token = Token(usize::MAX);

/// How often loops look at their stop flag and deadlines.
const TICK: Duration = Duration::from_millis(5);

/// Finds the end of an HTTP head (the empty line) in `buf`.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// One connection of the raw server.
#[derive(Debug)]
struct ServerConn {
    stream: TcpStream,
    /// The request head so far; emptied (and freed) once it is complete.
    head: Vec<u8>,
    upgraded: bool,
    /// Bytes the socket did not take yet; empty (and freed) at rest.
    out: Vec<u8>,
    /// How much of `out` is written.
    out_pos: usize,
    writable: bool,
}

/// Writes `data` to `stream` until it is all written or the socket is full;
/// returns how much was written.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl ServerConn {
    /// Sends `data`, or queues it behind what is already waiting.
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.out.is_empty() {
            self.out.extend_from_slice(data);
            return Ok(());
        }
        let n = write_some(&mut self.stream, data)?;
        self.out.extend_from_slice(&data[n..]);
        self.out_pos = 0;
        Ok(())
    }

    /// Bytes queued and not written yet.
    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes what is queued; frees the queue once it is empty.
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.out_pos += write_some(&mut self.stream, &self.out[self.out_pos..])?;
        if self.queued() == 0 {
            self.out = Vec::new();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Takes what was read: the head first, then bytes to echo.
    fn received(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.upgraded {
            let before = self.head.len();
            self.head.extend_from_slice(data);
            // The terminator may straddle two reads: search from 3 bytes
            // before the new data.
            let from = before.saturating_sub(3);
            let Some(end) = head_end(&self.head[from..]).map(|e| e + from) else {
                if self.head.len() > MAX_HEAD {
                    return Err(io::Error::other("request head too long"));
                }
                return Ok(());
            };
            data = &data[end - before..];
            self.head = Vec::new();
            self.upgraded = true;
            self.send(CANNED_101)?;
        }
        if data.is_empty() {
            return Ok(());
        }
        self.send(data)
    }
}

/// Runs one raw server loop on `listener` until `stop` is set.
fn run_loop(listener: std::net::TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: slab::Slab<ServerConn> = slab::Slab::new();
    let mut buf = vec![0u8; READ_BUFFER];

    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns)?;
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if service(conn, &poll, key, &mut buf, event.is_read_closed()).is_err() {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
    Ok(())
}

/// Accepts until `WouldBlock`.
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut slab::Slab<ServerConn>,
) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors or a connection reset before it was
            // accepted: that one is lost, the server goes on.
            Err(_) => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let entry = conns.vacant_entry();
        let token = Token(entry.key());
        if poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            continue;
        }
        entry.insert(ServerConn {
            stream,
            head: Vec::new(),
            upgraded: false,
            out: Vec::new(),
            out_pos: 0,
            writable: false,
        });
    }
}

/// Reads until a read leaves the buffer unfilled (all that was waiting is
/// taken; later bytes bring a new edge) or, after a `hangup`, until the
/// end of the stream, echoing as it goes, and writes what is queued. An
/// error or the peer's end of stream closes the connection. This is the
/// read rule of tern's runtime, which saves the read that would only say
/// `WouldBlock`.
///
/// A peer that sends faster than it reads fills the queue; above
/// [`MAX_QUEUED`] the connection is not read until the queue has drained
/// (the writable edge that empties it brings the loop back here).
fn service(
    conn: &mut ServerConn,
    poll: &Poll,
    key: usize,
    buf: &mut [u8],
    hangup: bool,
) -> io::Result<()> {
    conn.flush()?;
    while conn.queued() <= MAX_QUEUED {
        match conn.stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                conn.received(&buf[..n])?;
                if n < buf.len() && !hangup {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }

    // Ask for writability only while something waits to be written.
    let want = !conn.out.is_empty();
    if want != conn.writable {
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut conn.stream, Token(key), interest)?;
        conn.writable = want;
    }
    Ok(())
}

/// Runs the raw server on `addr` with `loops` threads until SIGINT or
/// SIGTERM.
pub fn serve(addr: SocketAddr, loops: usize) -> Result<(), String> {
    let loops = loops.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }

    // The first listener fixes the port (0 picks one); the others share
    // it through SO_REUSEPORT, as transport-std's loops do.
    let reuse = loops > 1;
    let first = tern_transport_std::bind(addr, tern_transport_std::DEFAULT_BACKLOG, reuse)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = first
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    let mut listeners = vec![first];
    for _ in 1..loops {
        let l = tern_transport_std::bind(bound, tern_transport_std::DEFAULT_BACKLOG, true)
            .map_err(|e| format!("cannot listen on {bound}: {e}"))?;
        listeners.push(l);
    }
    println!("tern serve --raw: listening on ws://{bound}");

    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || run_loop(l, &stop))
        })
        .collect();
    let mut failure = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(format!("event loop failed: {e}")),
            Err(_) => failure = Some("event loop panicked".to_string()),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Where a client connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Request sent (or queued), waiting for the `101` head.
    Handshake,
    /// Upgraded: every byte read is an echo.
    Open,
}

/// One connection of the raw client.
#[derive(Debug)]
struct ClientConn {
    stream: TcpStream,
    phase: Phase,
    /// The part of the upgrade request the socket did not take yet.
    out: Vec<u8>,
    /// Bytes of the shared frame written for the message in flight.
    frame_sent: usize,
    /// The response head so far.
    head: Vec<u8>,
    /// Echo bytes still to come back for the message in flight.
    expect: usize,
    /// When the message in flight was sent.
    sent_at: Option<Instant>,
    writable: bool,
}

/// Counters of the phase under way.
#[derive(Debug, Default)]
struct Counters {
    opened: u64,
    failed: u64,
    failures: std::collections::BTreeMap<String, u64>,
    last_open_at: Option<Instant>,
    echoes: u64,
    /// Bytes that came back beyond what the message in flight expected.
    surplus: u64,
    outstanding: u64,
    last_echo_at: Option<Instant>,
    latency: Histogram,
}

/// A load generator for the raw server: tern's upgrade request and masked
/// frames out, bytes counted back.
#[derive(Debug)]
pub struct RawClient {
    poll: Poll,
    events: Events,
    target: Target,
    sources: Vec<IpAddr>,
    next_source: usize,
    conns: slab::Slab<ClientConn>,
    buf: Vec<u8>,
    stop: Arc<AtomicBool>,
    counters: Counters,
    /// The frame each echo sends, shared by every connection.
    frame: Vec<u8>,
    /// Whether an echo is sent again as soon as the last one is back.
    sending: bool,
}

impl RawClient {
    /// A client for `target`, spreading connections over `sources`, whose
    /// phases end early when `stop` is set.
    pub fn new(target: Target, sources: Vec<IpAddr>, stop: Arc<AtomicBool>) -> io::Result<Self> {
        Ok(RawClient {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            target,
            sources,
            next_source: 0,
            conns: slab::Slab::new(),
            buf: vec![0; READ_BUFFER],
            stop,
            counters: Counters::default(),
            frame: Vec::new(),
            sending: false,
        })
    }

    fn connect(&mut self, seed: u64) -> io::Result<()> {
        let addr = self.target.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !self.sources.is_empty() {
            let ip = self.sources[self.next_source % self.sources.len()];
            self.next_source += 1;
            socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
        }
        match socket.connect(&SockAddr::from(addr)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        let entry = self.conns.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, Token(entry.key()), interest)?;

        // The request tern's client sends (RFC 6455 section 4.1), with a
        // key made from the seed; this server does not check it.
        let key = payload::mix(seed).to_le_bytes();
        let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}aaaaaa==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.target.path, self.target.host
        );
        entry.insert(ClientConn {
            stream,
            phase: Phase::Handshake,
            out: request.into_bytes(),
            frame_sent: 0,
            head: Vec::new(),
            expect: 0,
            sent_at: None,
            writable: true,
        });
        Ok(())
    }

    fn fail(&mut self, reason: String) {
        self.counters.failed += 1;
        *self.counters.failures.entry(reason).or_default() += 1;
    }

    /// Drops connection `key`, counting a failure if it was not open yet.
    fn drop_conn(&mut self, key: usize, why: &io::Error) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        match conn.phase {
            Phase::Handshake => self.fail(format!("handshake: {why}")),
            Phase::Open if conn.sent_at.is_some() => self.counters.outstanding -= 1,
            Phase::Open => {}
        }
    }

    /// One turn of the loop: waits at most `timeout` for readiness and
    /// services every ready connection.
    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("client poll failed: {e}")),
        }
        let keys: Vec<(usize, bool)> = self
            .events
            .iter()
            .map(|e| (e.token().0, e.is_read_closed()))
            .collect();
        for (key, hangup) in keys {
            if let Err(e) = self.service(key, hangup) {
                self.drop_conn(key, &e);
            }
        }
        Ok(())
    }

    /// Writes what waits, then reads by the server's rule (see [`service`]).
    fn service(&mut self, key: usize, hangup: bool) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if !conn.out.is_empty() {
            let n = write_some(&mut conn.stream, &conn.out)?;
            conn.out.drain(..n);
        }
        if conn.sent_at.is_some() && conn.frame_sent < self.frame.len() {
            conn.frame_sent += write_some(&mut conn.stream, &self.frame[conn.frame_sent..])?;
        }
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return Ok(());
            };
            let n = match conn.stream.read(&mut self.buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.received(key, n)?;
            if n < self.buf.len() && !hangup {
                break;
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let frame_left = conn.sent_at.is_some() && conn.frame_sent < self.frame.len();
        let want = !conn.out.is_empty() || frame_left;
        if want != conn.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)?;
            conn.writable = want;
        }
        Ok(())
    }

    /// Takes `n` bytes read into the buffer for connection `key`.
    fn received(&mut self, key: usize, n: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        let mut data = &self.buf[..n];
        if conn.phase == Phase::Handshake {
            let before = conn.head.len();
            conn.head.extend_from_slice(data);
            let Some(end) = head_end(&conn.head) else {
                if conn.head.len() > MAX_HEAD {
                    return Err(io::Error::other("response head too long"));
                }
                return Ok(());
            };
            if !conn.head.starts_with(b"HTTP/1.1 101") {
                let line = conn.head.split(|&b| b == b'\r').next().unwrap_or(&[]);
                let line = String::from_utf8_lossy(line).into_owned();
                return Err(io::Error::other(format!("refused: {line}")));
            }
            data = &data[end.saturating_sub(before)..];
            conn.head = Vec::new();
            conn.phase = Phase::Open;
            self.counters.opened += 1;
            self.counters.last_open_at = Some(Instant::now());
        }
        if data.is_empty() {
            return Ok(());
        }

        // Every byte back belongs to the message in flight; more than it
        // had is counted, not parsed.
        let take = data.len().min(conn.expect);
        self.counters.surplus += (data.len() - take) as u64;
        conn.expect -= take;
        if take == 0 || conn.expect > 0 {
            return Ok(());
        }
        let Some(sent_at) = conn.sent_at.take() else {
            return Ok(());
        };
        let now = Instant::now();
        self.counters.outstanding -= 1;
        self.counters.echoes += 1;
        self.counters.last_echo_at = Some(now);
        let micros = now.duration_since(sent_at).as_micros() as u64;
        self.counters.latency.record(micros);
        if self.sending {
            self.send_frame(key)?;
        }
        Ok(())
    }

    /// Sends the shared frame on connection `key`.
    fn send_frame(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        conn.sent_at = Some(Instant::now());
        conn.expect = self.frame.len();
        self.counters.outstanding += 1;
        conn.frame_sent = write_some(&mut conn.stream, &self.frame)?;
        if conn.frame_sent < self.frame.len() && !conn.writable {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)?;
            conn.writable = true;
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Opens `n` connections with at most `in_flight` handshakes under way,
    /// giving up on those not open `timeout` after the first connect.
    pub fn open(&mut self, n: u64, in_flight: u64, timeout: Duration) -> StormReport {
        let start = Instant::now();
        let deadline = start + timeout;
        self.counters = Counters::default();
        let mut issued = 0u64;
        let mut report = StormReport {
            requested: n,
            ..StormReport::default()
        };
        loop {
            let settled = self.counters.opened + self.counters.failed;
            if settled >= n {
                break;
            }
            if self.stopped() {
                report.interrupted = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            while issued < n && issued - settled.min(issued) < in_flight {
                if let Err(e) = self.connect(issued) {
                    self.fail(format!("connect: {e}"));
                }
                issued += 1;
            }
            if let Err(e) = self.turn(TICK) {
                self.fail(e);
                break;
            }
        }

        // Whatever is still in its handshake is given up on.
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Handshake)
            .map(|(k, _)| k)
            .collect();
        for key in pending {
            let why = io::Error::other("no handshake answer before the deadline");
            self.drop_conn(key, &why);
        }
        for _ in issued..n {
            self.fail("connect not started before the deadline".to_string());
        }
        report.opened = self.counters.opened;
        report.failed = self.counters.failed;
        report.failures = std::mem::take(&mut self.counters.failures);
        let end = self.counters.last_open_at.unwrap_or(start);
        report.elapsed_ms = end.duration_since(start).as_secs_f64() * 1000.0;
        if report.elapsed_ms > 0.0 {
            report.connections_per_ms = report.opened as f64 / report.elapsed_ms;
        }
        report
    }

    /// Connections open right now.
    pub fn open_ids(&self) -> Vec<usize> {
        let open = self.conns.iter().filter(|(_, c)| c.phase == Phase::Open);
        open.map(|(k, _)| k).collect()
    }

    /// Builds a masked frame of `size` payload bytes, as a client sends it
    /// (RFC 6455 section 5.3); fails when the memory cannot be had.
    fn build_frame(size: usize, opcode: OpCode, seed: u64) -> Result<Vec<u8>, String> {
        let key = (payload::mix(seed) as u32).to_le_bytes();
        let header = FrameHeader {
            fin: true,
            opcode,
            mask: Some(key),
            len: size as u64,
        };
        let no_memory = |e| format!("no memory for a {size}-byte message: {e}");
        let mut body = Vec::new();
        payload::fill(&mut body, size, seed, 0, opcode == OpCode::Text).map_err(no_memory)?;
        apply_mask(&mut body, key, 0);
        let head = header.encode();
        let mut frame = Vec::new();
        frame
            .try_reserve_exact(head.as_bytes().len() + size)
            .map_err(no_memory)?;
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Echoes on `ids` for `duration`, one text message of `size` bytes in
    /// flight per connection, then waits at most `drain` for the last
    /// echoes.
    pub fn echo(
        &mut self,
        ids: &[usize],
        size: usize,
        duration: Duration,
        drain: Duration,
    ) -> EchoReport {
        self.counters = Counters::default();
        let mut report = EchoReport {
            connections: ids.len() as u64,
            size_bytes: size as u64,
            ..EchoReport::default()
        };
        self.frame = match Self::build_frame(size, OpCode::Text, size as u64) {
            Ok(frame) => frame,
            Err(e) => {
                report.errors.insert(e, 1);
                return report;
            }
        };
        self.sending = true;
        let start = Instant::now();
        for &id in ids {
            if !self.conns.contains(id) {
                continue;
            }
            if let Err(e) = self.send_frame(id) {
                self.drop_conn(id, &e);
            }
        }
        let end = start + duration;
        let mut failure = None;
        while !self.stopped() && Instant::now() < end {
            if let Err(e) = self.turn(TICK) {
                failure = Some(e);
                break;
            }
        }
        self.sending = false;
        let drain_end = Instant::now() + drain;
        while failure.is_none() && !self.stopped() && self.counters.outstanding > 0 {
            if Instant::now() >= drain_end {
                break;
            }
            if let Err(e) = self.turn(TICK) {
                failure = Some(e);
            }
        }

        let c = &mut self.counters;
        report.interrupted = self.stop.load(Ordering::Relaxed);
        report.echoes = c.echoes;
        report.bytes = c.echoes * size as u64;
        report.unanswered = c.outstanding;
        if c.surplus > 0 {
            report.mismatches += 1;
            report.mismatch_examples.push(format!(
                "{} bytes came back that were never sent",
                c.surplus
            ));
        }
        if let Some(e) = failure {
            report.errors.insert(e, 1);
        }
        let dropped = ids.len() - ids.iter().filter(|&&id| self.conns.contains(id)).count();
        if dropped > 0 {
            report
                .errors
                .insert("connection dropped".to_string(), dropped as u64);
        }
        let last = c.last_echo_at.unwrap_or(start);
        report.elapsed_ms = last.duration_since(start).as_secs_f64() * 1000.0;
        if report.elapsed_ms > 0.0 {
            report.echoes_per_ms = report.echoes as f64 / report.elapsed_ms;
        }
        report.latency_us = Latency::of(&c.latency);
        for (_, conn) in &mut self.conns {
            conn.sent_at = None;
            conn.expect = 0;
        }
        self.frame = Vec::new();
        report
    }

    /// Echoes one binary message of `size` bytes on connection `id`, at
    /// most `timeout` for the round trip.
    pub fn throughput(&mut self, id: usize, size: u64, timeout: Duration) -> ThroughputReport {
        let (mut report, len) = ThroughputReport::start(size);
        let Some(len) = len else {
            return report;
        };
        self.frame = match Self::build_frame(len, OpCode::Binary, 0xb01c) {
            Ok(frame) => frame,
            Err(e) => {
                report.failures.push(e);
                return report;
            }
        };
        self.counters = Counters::default();
        self.sending = false;
        if !self.conns.contains(id) {
            report
                .failures
                .push("the connection is no longer open".to_string());
            return report;
        }
        let start = Instant::now();
        if let Err(e) = self.send_frame(id) {
            self.drop_conn(id, &e);
        }
        let deadline = start + timeout;
        let result = loop {
            if self.counters.echoes == 1 {
                break Ok(start.elapsed());
            }
            if !self.conns.contains(id) {
                break Err("connection dropped".to_string());
            }
            if self.stopped() {
                report.interrupted = true;
                break Err("interrupted".to_string());
            }
            if Instant::now() >= deadline {
                break Err(format!("no echo within {:.1} s", timeout.as_secs_f64()));
            }
            if let Err(e) = self.turn(TICK) {
                break Err(e);
            }
        };
        match result {
            Ok(elapsed) => report.push(elapsed.as_secs_f64()),
            Err(e) => report.failures.push(e),
        }
        self.frame = Vec::new();
        report
    }

    /// Drops every connection with a reset (`SO_LINGER` 0), so that no
    /// client port is left in `TIME_WAIT` for the next server's run.
    pub fn close(&mut self) {
        for conn in self.conns.drain() {
            let _ = SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_server() -> (
        SocketAddr,
        Arc<AtomicBool>,
        std::thread::JoinHandle<io::Result<()>>,
    ) {
        let listener =
            tern_transport_std::bind("127.0.0.1:0".parse().unwrap(), 128, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || run_loop(listener, &flag));
        (addr, stop, handle)
    }

    #[test]
    fn finds_the_head_end() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn answers_a_split_head_then_echoes() {
        let (addr, stop, handle) = start_server();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The terminator arrives split over two writes, with bytes after it.
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(b"\nhello").unwrap();
        let mut got = vec![0u8; CANNED_101.len() + 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got[..CANNED_101.len()], CANNED_101);
        assert_eq!(&got[CANNED_101.len()..], b"hello");
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn refuses_an_endless_head() {
        let (addr, stop, handle) = start_server();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let junk = vec![b'a'; MAX_HEAD + 10];
        let _ = s.write_all(&junk);
        let mut buf = [0u8; 16];
        // Closed without an answer: end of stream or a reset.
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn raw_client_measures_the_raw_server() {
        let (addr, stop, handle) = start_server();
        let target = Target::parse(&format!("ws://{addr}/")).unwrap();
        let never = Arc::new(AtomicBool::new(false));
        let mut client = RawClient::new(target, Vec::new(), never).unwrap();

        let storm = client.open(20, 8, Duration::from_secs(20));
        assert_eq!(
            (storm.opened, storm.failed),
            (20, 0),
            "{:?}",
            storm.failures
        );

        let ids = client.open_ids();
        let echo = client.echo(
            &ids,
            512,
            Duration::from_millis(200),
            Duration::from_secs(10),
        );
        assert!(echo.echoes >= 20, "{echo:?}");
        assert_eq!((echo.mismatches, echo.unanswered), (0, 0), "{echo:?}");
        assert!(echo.errors.is_empty(), "{:?}", echo.errors);

        let bulk = client.throughput(ids[0], 3 << 20, Duration::from_secs(30));
        assert!(bulk.ok(), "{:?}", bulk.failures);
        client.close();
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn raw_client_reports_a_refusal() {
        // A server that answers with 400 instead of 101.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let target = Target::parse(&format!("ws://{addr}/")).unwrap();
        let mut client =
            RawClient::new(target, Vec::new(), Arc::new(AtomicBool::new(false))).unwrap();
        let storm = client.open(1, 1, Duration::from_secs(10));
        assert_eq!((storm.opened, storm.failed), (0, 1));
        let reason = storm.failures.keys().next().unwrap();
        assert!(reason.contains("400"), "{reason}");
        server.join().unwrap();
    }
}
