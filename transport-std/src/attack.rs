//! Hostile clients for testing a WebSocket server's defences.
//!
//! Each [`Scenario`] opens a bounded number of connections to one address,
//! misbehaves in one way for at most a bounded time, and returns an
//! [`AttackReport`] tallying how the server answered each connection (an
//! HTTP status, a close code, a reset, the end of the stream). They use
//! plain blocking std sockets with timeouts, independently of tern's own
//! client, so they can be aimed at any server, tern or not.
//!
//! Only aim them at servers you run yourself, on loopback.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One way of misbehaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Sends the opening request one byte at a time, a byte per
    /// connection every 100 ms, to hold connections open in the handshake
    /// (a handshake deadline answers `408`).
    Slowloris,
    /// Completes the handshake, then sends messages to be echoed and never
    /// reads (the server's queue limit and idle timeout should end it).
    NeverRead,
    /// Completes the handshake, then announces a binary frame of
    /// [`AttackLimits::oversize`] bytes (answered with close 1009).
    OversizeFrame,
    /// Completes the handshake, then sends text frames that are not valid
    /// UTF-8 (answered with close 1007).
    InvalidUtf8,
    /// Connects, completes the handshake and closes at once, again and
    /// again.
    Churn,
}

/// Bounds of one attack.
#[derive(Clone, Copy, Debug)]
pub struct AttackLimits {
    /// Connections opened in all (for churn: one after another; for the
    /// others: all at once).
    pub connections: usize,
    /// Wall time after which the attack stops, whatever its state.
    pub duration: Duration,
    /// The frame size [`Scenario::OversizeFrame`] announces.
    pub oversize: u64,
}

impl Default for AttackLimits {
    fn default() -> Self {
        AttackLimits {
            connections: 100,
            duration: Duration::from_secs(10),
            oversize: (128 << 20) + 1,
        }
    }
}

/// How the server ended (or did not end) one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The server answered the handshake with this HTTP status (other
    /// than 101).
    Status(u16),
    /// The server sent a close frame with this code (1005 for none).
    Close(u16),
    /// The stream ended without a close frame.
    Eof,
    /// The server reset the stream.
    Reset,
    /// The server stopped reading: writes stalled and the attack ran out
    /// of time.
    Stalled,
    /// The attack ran out of time with the connection still open.
    StillOpen,
    /// The connection could not be opened.
    ConnectFailed,
    /// Churn only: a connection that opened and closed cleanly.
    Completed,
}

/// What one attack did and how the server answered.
#[derive(Clone, Debug)]
pub struct AttackReport {
    /// The scenario run.
    pub scenario: Scenario,
    /// Connections opened.
    pub connections: usize,
    /// Bytes written to the server.
    pub bytes_sent: u64,
    /// Bytes read from the server.
    pub bytes_received: u64,
    /// How each connection ended, counted.
    pub outcomes: BTreeMap<Outcome, usize>,
    /// Wall time the attack took.
    pub elapsed: Duration,
}

impl AttackReport {
    /// How many connections ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }
}

/// Runs `scenario` against the WebSocket server at `addr` within
/// `limits`.
pub fn run(scenario: Scenario, addr: SocketAddr, limits: &AttackLimits) -> AttackReport {
    let mut attack = Attack {
        addr,
        deadline: Instant::now() + limits.duration,
        report: AttackReport {
            scenario,
            connections: 0,
            bytes_sent: 0,
            bytes_received: 0,
            outcomes: BTreeMap::new(),
            elapsed: Duration::ZERO,
        },
    };
    let start = Instant::now();
    match scenario {
        Scenario::Slowloris => attack.slowloris(limits.connections),
        Scenario::NeverRead => attack.never_read(limits.connections),
        Scenario::OversizeFrame => {
            let mut header = vec![0x82, 0xFF];
            header.extend_from_slice(&limits.oversize.to_be_bytes());
            header.extend_from_slice(&MASK);
            attack.send_and_wait(limits.connections, &header);
        }
        Scenario::InvalidUtf8 => {
            let frame = masked_frame(0x81, b"not utf-8: \xC3\x28 \xFF");
            attack.send_and_wait(limits.connections, &frame);
        }
        Scenario::Churn => attack.churn(limits.connections),
    }
    attack.report.elapsed = start.elapsed();
    attack.report
}

const MASK: [u8; 4] = [0x1F, 0x2E, 0x3D, 0x4C];

/// A final client frame with a payload shorter than 64 KiB, masked with a
/// fixed key: hand-built, so it does not depend on tern's own encoder.
pub fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![b0];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

fn request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

struct Attack {
    addr: SocketAddr,
    deadline: Instant,
    report: AttackReport,
}

impl Attack {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn tally(&mut self, outcome: Outcome) {
        *self.report.outcomes.entry(outcome).or_insert(0) += 1;
    }

    fn connect(&mut self) -> Option<TcpStream> {
        let timeout = self.left().max(Duration::from_millis(10));
        match TcpStream::connect_timeout(&self.addr, timeout) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                self.report.connections += 1;
                Some(stream)
            }
            Err(_) => {
                self.tally(Outcome::ConnectFailed);
                None
            }
        }
    }

    /// Connects and completes the opening handshake; tallies and returns
    /// `None` when the server refuses or the time runs out.
    fn open(&mut self) -> Option<TcpStream> {
        let mut stream = self.connect()?;
        let request = request(self.addr);
        if stream.write_all(&request).is_err() {
            self.tally(Outcome::Reset);
            return None;
        }
        self.report.bytes_sent += request.len() as u64;
        match self.read_head(&mut stream) {
            Ok(101) => Some(stream),
            Ok(status) => {
                self.tally(Outcome::Status(status));
                None
            }
            Err(outcome) => {
                self.tally(outcome);
                None
            }
        }
    }

    /// Reads an HTTP head and returns its status.
    fn read_head(&mut self, stream: &mut TcpStream) -> Result<u16, Outcome> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(Outcome::Eof);
            }
            let _ = stream.set_read_timeout(Some(self.left().max(Duration::from_millis(1))));
            match stream.read(&mut byte) {
                Ok(0) => return Err(Outcome::Eof),
                Ok(_) => head.push(byte[0]),
                Err(e) => return Err(self.read_failure(&e)),
            }
        }
        self.report.bytes_received += head.len() as u64;
        let status = head
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(status)
    }

    fn read_failure(&self, e: &io::Error) -> Outcome {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Outcome::StillOpen,
            _ => Outcome::Reset,
        }
    }

    /// Reads server frames until a close frame, the end of the stream or
    /// the deadline.
    fn wait_close(&mut self, stream: &mut TcpStream) -> Outcome {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(code) = close_code(&mut buf) {
                return Outcome::Close(code);
            }
            let left = self.left();
            if left.is_zero() {
                return Outcome::StillOpen;
            }
            let _ = stream.set_read_timeout(Some(left));
            match stream.read(&mut chunk) {
                Ok(0) => return Outcome::Eof,
                Ok(n) => {
                    self.report.bytes_received += n as u64;
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => return self.read_failure(&e),
            }
        }
    }

    fn slowloris(&mut self, connections: usize) {
        let request = request(self.addr);
        let mut streams: Vec<(TcpStream, usize)> = Vec::new();
        for _ in 0..connections {
            if let Some(stream) = self.connect() {
                let _ = stream.set_nonblocking(true);
                streams.push((stream, 0));
            }
        }
        // One byte per connection per tick until each is answered.
        while !streams.is_empty() && !self.left().is_zero() {
            let mut i = 0;
            while i < streams.len() {
                let (stream, sent) = &mut streams[i];
                let mut answer = [0u8; 64];
                let ended = match stream.read(&mut answer) {
                    Ok(0) => Some(Outcome::Eof),
                    Ok(n) => {
                        self.report.bytes_received += n as u64;
                        let status = std::str::from_utf8(&answer[..n])
                            .ok()
                            .and_then(|s| s.get(9..12))
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        Some(Outcome::Status(status))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    Err(_) => Some(Outcome::Reset),
                };
                let mut wrote = 0;
                let ended = ended.or_else(|| {
                    // Never the last byte: the head stays incomplete.
                    if *sent + 1 >= request.len() {
                        return None;
                    }
                    match stream.write(&request[*sent..*sent + 1]) {
                        Ok(n) => {
                            *sent += n;
                            wrote = n;
                            None
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                        Err(_) => Some(Outcome::Reset),
                    }
                });
                self.report.bytes_sent += wrote as u64;
                match ended {
                    Some(outcome) => {
                        self.tally(outcome);
                        streams.swap_remove(i);
                    }
                    None => i += 1,
                }
            }
            std::thread::sleep(Duration::from_millis(100).min(self.left()));
        }
        for _ in streams {
            self.tally(Outcome::StillOpen);
        }
    }

    fn never_read(&mut self, connections: usize) {
        let message = masked_frame(0x82, &[0x42; 16 * 1024]);
        let mut streams = Vec::new();
        for _ in 0..connections {
            if let Some(stream) = self.open() {
                let _ = stream.set_nonblocking(true);
                streams.push((stream, 0usize));
            }
        }
        // Write echo requests round-robin, never reading, until every
        // stream stalls or fails, or the time is up.
        let mut ended: Vec<Option<Outcome>> = vec![None; streams.len()];
        while !self.left().is_zero() && ended.iter().any(Option::is_none) {
            let mut progress = false;
            for ((stream, offset), ended) in streams.iter_mut().zip(&mut ended) {
                if ended.is_some() {
                    continue;
                }
                match stream.write(&message[*offset..]) {
                    Ok(0) => *ended = Some(Outcome::Eof),
                    Ok(n) => {
                        self.report.bytes_sent += n as u64;
                        *offset = (*offset + n) % message.len();
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => *ended = Some(Outcome::Reset),
                }
            }
            if !progress {
                std::thread::sleep(Duration::from_millis(20).min(self.left()));
            }
        }
        for outcome in ended {
            self.tally(outcome.unwrap_or(Outcome::Stalled));
        }
    }

    /// Opens `connections`, sends `bytes` on each, and waits for each
    /// answer.
    fn send_and_wait(&mut self, connections: usize, bytes: &[u8]) {
        let mut streams = Vec::new();
        for _ in 0..connections {
            let Some(mut stream) = self.open() else {
                continue;
            };
            if stream.write_all(bytes).is_err() {
                self.tally(Outcome::Reset);
                continue;
            }
            self.report.bytes_sent += bytes.len() as u64;
            streams.push(stream);
        }
        for mut stream in streams {
            let outcome = self.wait_close(&mut stream);
            self.tally(outcome);
        }
    }

    fn churn(&mut self, connections: usize) {
        let close = masked_frame(0x88, &1000u16.to_be_bytes());
        for _ in 0..connections {
            if self.left().is_zero() {
                break;
            }
            let Some(mut stream) = self.open() else {
                continue;
            };
            if stream.write_all(&close).is_err() {
                self.tally(Outcome::Reset);
                continue;
            }
            self.report.bytes_sent += close.len() as u64;
            let outcome = match self.wait_close(&mut stream) {
                Outcome::Close(1000) => Outcome::Completed,
                other => other,
            };
            self.tally(outcome);
        }
    }
}

/// The code of the first close frame in `buf`, dropping whole frames
/// before it; `None` while no close frame is complete.
fn close_code(buf: &mut Vec<u8>) -> Option<u16> {
    loop {
        let [b0, b1, ..] = buf[..] else {
            return None;
        };
        let (len, start): (usize, usize) = match b1 & 0x7F {
            126 => (
                usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
                4,
            ),
            127 => {
                let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let end = len.checked_add(start)?;
        if buf.len() < end {
            return None;
        }
        if b0 & 0x0F == 0x8 {
            return Some(match &buf[start..end] {
                [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                _ => 1005,
            });
        }
        buf.drain(..end);
    }
}
