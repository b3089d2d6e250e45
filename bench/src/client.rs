//! The load generator: one client event loop holding every connection, and
//! the three measurements it runs over them.
//!
//! [`Client`] wraps an [`EventLoop`] over [`MioTransport`] whose handler,
//! [`LoadHandler`], keeps a little state per connection and the counters of
//! the phase under way. Each phase is a loop of `run_once` calls bounded by
//! a deadline and by the stop flag, so it always ends by itself:
//!
//! - [`Client::open`] opens connections with at most `in_flight`
//!   handshakes under way at once, as fast as the server completes them;
//! - [`Client::echo`] keeps one message in flight per connection: the next
//!   is sent from inside `on_message`, as soon as the echo is checked;
//! - [`Client::throughput`] sends one large binary message and waits for
//!   it to come back whole.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use tern_core::{
    ClientRequest, CloseCode, ConnId, Context, Ended, EventLoop, Handler, LoopConfig, Message,
};
use tern_monitor::names;
use tern_transport_std::MioTransport;

use crate::latency::Histogram;
use crate::payload;
use crate::report::{EchoReport, Latency, StormReport, ThroughputReport};
use crate::target::Target;

/// How often a phase loop looks at its deadline and the stop flag.
const TICK: Duration = Duration::from_millis(5);

/// Mismatches described in full in a report; the rest are only counted.
const MISMATCH_EXAMPLES: usize = 5;

/// Connection seeds fetched from the random source per system call.
const SEED_BATCH: usize = 256;

/// Fresh 64-bit seeds from the operating system's random source, one for
/// each connection and never reused; the core derives the connection's
/// handshake key and masks from it (RFC 6455 section 5.3 asks for masks
/// an attacker cannot predict). They are fetched a batch at a time only
/// to save system calls.
#[derive(Debug, Default)]
struct Seeds {
    batch: Vec<u64>,
}

impl Seeds {
    fn next(&mut self) -> Result<u64, getrandom::Error> {
        loop {
            if let Some(seed) = self.batch.pop() {
                return Ok(seed);
            }
            self.refill()?;
        }
    }

    fn refill(&mut self) -> Result<(), getrandom::Error> {
        let mut bytes = [0u8; 8 * SEED_BATCH];
        getrandom::fill(&mut bytes)?;
        self.batch = bytes
            .chunks_exact(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect();
        Ok(())
    }
}

/// Metric handles, registered once (no-ops when no recorder is set).
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) opened: Counter,
    pub(crate) failed: Counter,
    pub(crate) open: Gauge,
    pub(crate) echoes: Counter,
    pub(crate) bytes: Counter,
    pub(crate) latency: metrics::Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            opened: metrics::counter!(names::CONNECTIONS_OPENED),
            failed: metrics::counter!(names::CONNECTIONS_FAILED),
            open: metrics::gauge!(names::CONNECTIONS_OPEN),
            echoes: metrics::counter!(names::ECHOES),
            bytes: metrics::counter!(names::BYTES_ECHOED),
            latency: metrics::histogram!(names::ECHO_LATENCY_US),
        }
    }
}

/// Where one connection is, as the load tool sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum PeerState {
    /// No connection under this key.
    #[default]
    Free,
    /// Connecting or in the opening handshake.
    Connecting,
    /// Given up on at a phase deadline and already counted as failed; its
    /// end is not counted again.
    Abandoned,
    /// Open.
    Open,
}

#[derive(Clone, Copy, Debug, Default)]
struct Peer {
    state: PeerState,
    /// Seeds this connection's payloads; unique in the run.
    tag: u64,
    /// Sequence number of the next message.
    seq: u64,
    /// When the message awaiting its echo was sent.
    sent_at: Option<Instant>,
}

/// Counters of an echo phase.
#[derive(Debug)]
struct EchoRun {
    size: usize,
    text: bool,
    sending: bool,
    outstanding: u64,
    last_echo_at: Option<Instant>,
    report: EchoReport,
    latency: Histogram,
}

/// State of a throughput round.
#[derive(Debug)]
struct BulkRun {
    data: Vec<u8>,
    sent_at: Option<Instant>,
    result: Option<Result<Duration, String>>,
}

#[derive(Debug)]
enum Work {
    Idle,
    // Boxed: the report makes it several times larger than the others.
    Echo(Box<EchoRun>),
    Bulk(BulkRun),
}

/// The client's [`Handler`]: per-connection state and the counters of the
/// phase under way.
#[derive(Debug)]
pub struct LoadHandler {
    peers: Vec<Peer>,
    next_tag: u64,
    opened: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    last_open_at: Option<Instant>,
    /// Open connections that ended though this side did not close them,
    /// by how they ended.
    dropped: BTreeMap<String, u64>,
    closing: bool,
    work: Work,
    scratch: Vec<u8>,
    metrics: Metrics,
}

impl LoadHandler {
    fn new() -> Self {
        LoadHandler {
            peers: Vec::new(),
            next_tag: 1,
            opened: 0,
            failed: 0,
            failures: BTreeMap::new(),
            last_open_at: None,
            dropped: BTreeMap::new(),
            closing: false,
            work: Work::Idle,
            scratch: Vec::new(),
            metrics: Metrics::new(),
        }
    }

    fn peer(&mut self, id: ConnId) -> &mut Peer {
        if id >= self.peers.len() {
            self.peers.resize(id + 1, Peer::default());
        }
        &mut self.peers[id]
    }

    fn fail(&mut self, reason: String) {
        self.failed += 1;
        self.metrics.failed.increment(1);
        *self.failures.entry(reason).or_default() += 1;
    }

    fn open_ids(&self) -> Vec<ConnId> {
        let open = self.peers.iter().enumerate();
        open.filter(|(_, p)| p.state == PeerState::Open)
            .map(|(id, _)| id)
            .collect()
    }

    /// Sends the next echo message of `cx`'s connection.
    fn send_next(&mut self, cx: &mut Context<'_>) {
        let Work::Echo(run) = &mut self.work else {
            return;
        };
        let Some(peer) = self.peers.get_mut(cx.id()) else {
            return;
        };
        if let Err(e) = payload::fill(&mut self.scratch, run.size, peer.tag, peer.seq, run.text) {
            *run.report.errors.entry(format!("send: {e}")).or_default() += 1;
            return;
        }
        let sent = if run.text {
            // The payload alphabet is ASCII, so this never fails.
            match std::str::from_utf8(&self.scratch) {
                Ok(text) => cx.send_text(text),
                Err(_) => return,
            }
        } else {
            cx.send_binary(&self.scratch)
        };
        match sent {
            Ok(()) => {
                peer.sent_at = Some(Instant::now());
                run.outstanding += 1;
            }
            Err(e) => *run.report.errors.entry(format!("send: {e}")).or_default() += 1,
        }
    }

    /// Checks an echo against what was sent and records it.
    fn on_echo(&mut self, cx: &mut Context<'_>, message: &Message<'_>) {
        let Work::Echo(run) = &mut self.work else {
            return;
        };
        let now = Instant::now();
        let Some(peer) = self.peers.get_mut(cx.id()) else {
            return;
        };
        let Some(sent_at) = peer.sent_at.take() else {
            run.report.mismatches += 1;
            note(
                &mut run.report,
                format!("connection {}: message with none awaited", cx.id()),
            );
            return;
        };
        run.outstanding -= 1;
        let micros = now.duration_since(sent_at).as_micros() as u64;
        run.latency.record(micros);
        self.metrics.latency.record(micros as f64);
        run.last_echo_at = Some(now);

        let filled = payload::fill(&mut self.scratch, run.size, peer.tag, peer.seq, run.text);
        let kind_ok = matches!(message, Message::Text(_)) == run.text;
        if let Err(e) = filled {
            *run.report.errors.entry(format!("check: {e}")).or_default() += 1;
        } else if !kind_ok || message.as_bytes() != self.scratch.as_slice() {
            run.report.mismatches += 1;
            let got = if matches!(message, Message::Text(_)) {
                "text"
            } else {
                "binary"
            };
            let detail = format!(
                "connection {} message {}: got {} bytes of {got}, expected {} bytes of {}",
                cx.id(),
                peer.seq,
                message.as_bytes().len(),
                run.size,
                if run.text { "text" } else { "binary" },
            );
            note(&mut run.report, detail);
        } else {
            run.report.echoes += 1;
            run.report.bytes += run.size as u64;
            self.metrics.echoes.increment(1);
            self.metrics.bytes.increment(run.size as u64);
        }
        peer.seq += 1;
        if run.sending {
            self.send_next(cx);
        }
    }

    fn on_bulk(&mut self, message: &Message<'_>) {
        let Work::Bulk(run) = &mut self.work else {
            return;
        };
        let Some(sent_at) = run.sent_at.take() else {
            run.result = Some(Err("message with none awaited".to_string()));
            return;
        };
        let elapsed = sent_at.elapsed();
        let got = message.as_bytes();
        let result = match message {
            Message::Text(_) => Err(format!("echo came back as text ({} bytes)", got.len())),
            Message::Binary(_) if got.len() != run.data.len() => Err(format!(
                "echo has {} bytes, sent {}",
                got.len(),
                run.data.len()
            )),
            Message::Binary(_) if got != run.data.as_slice() => {
                let at = got.iter().zip(&run.data).position(|(a, b)| a != b);
                Err(format!(
                    "echo differs from the message at byte {}",
                    at.unwrap_or(0)
                ))
            }
            Message::Binary(_) => {
                self.metrics.echoes.increment(1);
                self.metrics.bytes.increment(got.len() as u64);
                Ok(elapsed)
            }
        };
        run.result = Some(result);
    }
}

fn note(report: &mut EchoReport, detail: String) {
    if report.mismatch_examples.len() < MISMATCH_EXAMPLES {
        report.mismatch_examples.push(detail);
    }
}

impl Handler for LoadHandler {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let peer = self.peer(cx.id());
        if peer.state == PeerState::Abandoned {
            // Opened after its phase gave up on it: already counted as
            // failed, so it is closed rather than counted again.
            let _ = cx.close(CloseCode::NORMAL, "too late");
            return;
        }
        *peer = Peer {
            state: PeerState::Open,
            tag,
            ..Peer::default()
        };
        self.opened += 1;
        self.last_open_at = Some(Instant::now());
        self.metrics.opened.increment(1);
        self.metrics.open.increment(1.0);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        match self.work {
            Work::Echo(_) => self.on_echo(cx, &message),
            Work::Bulk(_) => self.on_bulk(&message),
            Work::Idle => {}
        }
    }

    fn on_close(&mut self, id: ConnId, ended: Ended<'_>) {
        let peer = std::mem::take(self.peer(id));
        match peer.state {
            PeerState::Free | PeerState::Abandoned => {}
            PeerState::Connecting => self.fail(ended.to_string()),
            PeerState::Open => {
                self.metrics.open.decrement(1.0);
                if self.closing {
                    return;
                }
                let reason = format!("connection dropped: {ended}");
                match &mut self.work {
                    Work::Echo(run) => {
                        if peer.sent_at.is_some() {
                            run.outstanding -= 1;
                        }
                        *run.report.errors.entry(reason.clone()).or_default() += 1;
                    }
                    Work::Bulk(run) if run.result.is_none() => {
                        run.result = Some(Err(reason));
                    }
                    _ => {}
                }
                *self.dropped.entry(ended.to_string()).or_default() += 1;
            }
        }
    }
}

/// Options of [`Client::echo`].
#[derive(Clone, Copy, Debug)]
pub struct EchoOptions {
    /// Bytes per message.
    pub size: usize,
    /// Binary messages (text otherwise).
    pub binary: bool,
    /// How long to keep sending.
    pub duration: Duration,
    /// How long to wait, after sending stops, for the last echoes.
    pub drain: Duration,
}

/// Where progress lines go: stderr for plain commands, the dashboard's
/// phase text for `tern run`.
pub type ProgressSink = Box<dyn FnMut(String) + Send>;

/// A progress sink called at most once per `every`.
struct Progress {
    every: Duration,
    next: Instant,
    sink: ProgressSink,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("every", &self.every)
            .finish()
    }
}

/// Every connection of a load run, in one event loop.
#[derive(Debug)]
pub struct Client {
    event_loop: EventLoop<MioTransport, LoadHandler>,
    target: Target,
    /// Seeds the throughput payload (not the masks).
    payload_seed: u64,
    seeds: Seeds,
    stop: Arc<AtomicBool>,
    progress: Option<Progress>,
}

impl Client {
    /// A client for `target`, spreading connections over `sources`, that
    /// accepts messages up to `max_message` bytes, and whose phases end
    /// early when `stop` is set.
    pub fn new(
        target: Target,
        sources: Vec<IpAddr>,
        max_message: u64,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let transport = MioTransport::client()?.with_sources(sources);
        let mut config = LoopConfig::default();
        config.protocol.max_message_size = config.protocol.max_message_size.max(max_message);
        config.protocol.max_frame_size = config.protocol.max_frame_size.max(max_message);
        let mut seeds = Seeds::default();
        let payload_seed = seeds
            .next()
            .map_err(|e| io::Error::other(format!("no random seed: {e}")))?;
        Ok(Client {
            event_loop: EventLoop::new(transport, LoadHandler::new(), config),
            target,
            payload_seed,
            seeds,
            stop,
            progress: None,
        })
    }

    /// Sends a line about the phase under way to `sink` at most once per
    /// `every` (and once at the start of each phase).
    pub fn set_progress(&mut self, every: Duration, sink: ProgressSink) {
        self.progress = Some(Progress {
            every,
            next: Instant::now(),
            sink,
        });
    }

    fn progress(&mut self, force: bool, line: impl FnOnce(&LoadHandler) -> String) {
        let Some(p) = &mut self.progress else {
            return;
        };
        let now = Instant::now();
        if !force && now < p.next {
            return;
        }
        p.next = now + p.every;
        (p.sink)(line(self.event_loop.handler()));
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Connections open right now.
    pub fn open_ids(&self) -> Vec<ConnId> {
        self.event_loop.handler().open_ids()
    }

    /// Open connections that ended without this side closing them so far,
    /// by how they ended.
    pub fn dropped(&self) -> &BTreeMap<String, u64> {
        &self.event_loop.handler().dropped
    }

    fn turn(&mut self, timeout: Duration) -> Result<(), String> {
        self.event_loop
            .run_once(Some(timeout))
            .map_err(|e| format!("client event loop failed: {e}"))
    }

    /// Opens `n` connections, with at most `in_flight` handshakes under way,
    /// giving up on those not open `timeout` after the first connect.
    pub fn open(&mut self, n: u64, in_flight: u64, timeout: Duration) -> StormReport {
        let start = Instant::now();
        let deadline = start + timeout;
        let (opened0, failed0) = {
            let h = self.event_loop.handler();
            (h.opened, h.failed)
        };
        let failures0 = self.event_loop.handler().failures.clone();
        let mut issued = 0u64;
        let mut report = StormReport {
            requested: n,
            ..StormReport::default()
        };
        let (host, path) = (self.target.host.clone(), self.target.path.clone());
        let addr = self.target.addr;
        let request = ClientRequest {
            host: &host,
            path: &path,
            protocols: &[],
        };

        let mut first = true;
        loop {
            let progress_line = |h: &LoadHandler| {
                format!(
                    "connection storm {}/{n} open, {} failed",
                    h.opened - opened0,
                    h.failed - failed0
                )
            };
            self.progress(first, progress_line);
            first = false;
            let h = self.event_loop.handler();
            let settled = (h.opened - opened0) + (h.failed - failed0);
            if settled >= n {
                break;
            }
            if self.stop.load(Ordering::Relaxed) {
                report.interrupted = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            while issued < n && issued - settled.min(issued) < in_flight {
                issued += 1;
                let seed = match self.seeds.next() {
                    Ok(seed) => seed,
                    Err(e) => {
                        let h = self.event_loop.handler_mut();
                        h.fail(format!("no random seed: {e}"));
                        continue;
                    }
                };
                let result = self.event_loop.connect(&addr, &request, seed);
                let h = self.event_loop.handler_mut();
                match result {
                    Ok(id) => h.peer(id).state = PeerState::Connecting,
                    Err(e) => h.fail(format!("connect: {e}")),
                }
            }
            if let Err(e) = self.event_loop.run_once(Some(TICK)) {
                self.event_loop.handler_mut().fail(e.to_string());
                break;
            }
        }

        // Whatever is still connecting is given up on and counted.
        let why = if report.interrupted {
            "interrupted before the handshake completed"
        } else {
            "no handshake answer before the --timeout deadline"
        };
        let h = self.event_loop.handler_mut();
        let pending: Vec<ConnId> = (0..h.peers.len())
            .filter(|&id| h.peers[id].state == PeerState::Connecting)
            .collect();
        for id in pending {
            h.peers[id].state = PeerState::Abandoned;
            h.fail(why.to_string());
        }
        let unstarted = n - issued;
        for _ in 0..unstarted {
            h.fail(why.replace("handshake completed", "connect started"));
        }

        report.opened = h.opened - opened0;
        report.failed = h.failed - failed0;
        report.failures = h.failures.clone();
        for (reason, n) in &failures0 {
            if let Some(count) = report.failures.get_mut(reason) {
                *count -= n;
            }
        }
        report.failures.retain(|_, n| *n > 0);
        let end = h.last_open_at.filter(|&t| t >= start).unwrap_or(start);
        report.elapsed_ms = end.duration_since(start).as_secs_f64() * 1000.0;
        if report.elapsed_ms > 0.0 {
            report.connections_per_ms = report.opened as f64 / report.elapsed_ms;
        }
        report
    }

    /// Echoes on `ids` for `options.duration`, one message in flight per
    /// connection, then waits at most `options.drain` for the last echoes.
    pub fn echo(&mut self, ids: &[ConnId], options: EchoOptions) -> EchoReport {
        let run = EchoRun {
            size: options.size,
            text: !options.binary,
            sending: true,
            outstanding: 0,
            last_echo_at: None,
            report: EchoReport {
                connections: ids.len() as u64,
                size_bytes: options.size as u64,
                binary: options.binary,
                ..EchoReport::default()
            },
            latency: Histogram::default(),
        };
        self.event_loop.handler_mut().work = Work::Echo(Box::new(run));

        let start = Instant::now();
        for &id in ids {
            self.event_loop.with_connection(id, |h, cx| h.send_next(cx));
        }
        let mut failure = None;
        let end = start + options.duration;
        let total = options.duration.as_secs_f64();
        let mut first = true;
        while !self.stopped() {
            self.progress(first, |h| {
                let echoes = match &h.work {
                    Work::Echo(run) => run.report.echoes,
                    _ => 0,
                };
                let at = start.elapsed().as_secs_f64().min(total);
                format!(
                    "echo {at:.1}/{total:.1} s on {} connections, {echoes} echoes",
                    ids.len()
                )
            });
            first = false;
            // Messages are sent only when an echo arrives: with none in
            // flight (every connection dropped or failed to send) nothing
            // more can happen.
            if let Work::Echo(run) = &self.event_loop.handler().work {
                if run.outstanding == 0 {
                    break;
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = self.turn(left.min(TICK)) {
                failure = Some(e);
                break;
            }
        }
        let interrupted = self.stopped();

        // Stop sending, then collect the echoes still on their way.
        if let Work::Echo(run) = &mut self.event_loop.handler_mut().work {
            run.sending = false;
        }
        let drain_end = Instant::now() + options.drain;
        while failure.is_none() && !self.stopped() && Instant::now() < drain_end {
            let Work::Echo(run) = &self.event_loop.handler().work else {
                break;
            };
            if run.outstanding == 0 {
                break;
            }
            if let Err(e) = self.turn(TICK) {
                failure = Some(e);
            }
        }

        let work = std::mem::replace(&mut self.event_loop.handler_mut().work, Work::Idle);
        let Work::Echo(run) = work else {
            return EchoReport::default();
        };
        let run = *run;
        let mut report = run.report;
        report.interrupted = interrupted || self.stopped();
        if !report.interrupted {
            report.unanswered = run.outstanding;
        }
        if let Some(e) = failure {
            *report.errors.entry(e).or_default() += 1;
        }
        let last = run.last_echo_at.unwrap_or(start);
        report.elapsed_ms = last.duration_since(start).as_secs_f64() * 1000.0;
        if report.elapsed_ms > 0.0 {
            report.echoes_per_ms = report.echoes as f64 / report.elapsed_ms;
        }
        report.latency_us = Latency::of(&run.latency);
        // Connections whose echoes were lost must not answer a later phase.
        for peer in &mut self.event_loop.handler_mut().peers {
            peer.sent_at = None;
        }
        report
    }

    /// Echoes one binary message of `size` bytes on connection `id`,
    /// `repeat` times, each round given at most `timeout`.
    pub fn throughput(
        &mut self,
        id: ConnId,
        size: u64,
        repeat: u32,
        timeout: Duration,
    ) -> ThroughputReport {
        let (mut report, len) = ThroughputReport::start(size);
        let Some(len) = len else {
            return report;
        };
        for round in 0..repeat {
            self.progress(true, |_| {
                format!("throughput round {}/{repeat} of {size} bytes", round + 1)
            });
            if self.stopped() {
                report.interrupted = true;
                break;
            }
            match self.bulk_round(id, len, round, timeout) {
                Ok(elapsed) => report.push(elapsed.as_secs_f64()),
                Err(e) => {
                    report.failures.push(format!("round {}: {e}", round + 1));
                    break;
                }
            }
        }
        report.interrupted |= self.stopped();
        report
    }

    fn bulk_round(
        &mut self,
        id: ConnId,
        len: usize,
        round: u32,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let mut data = Vec::new();
        let tag = 0xb01c ^ self.payload_seed;
        payload::fill(&mut data, len, tag, u64::from(round), false)
            .map_err(|e| format!("cannot hold the {len}-byte message: {e}"))?;
        self.event_loop.handler_mut().work = Work::Bulk(BulkRun {
            data,
            sent_at: None,
            result: None,
        });

        let sent = self.event_loop.with_connection(id, |h, cx| {
            let Work::Bulk(run) = &mut h.work else {
                return Ok(());
            };
            run.sent_at = Some(Instant::now());
            cx.send_binary(&run.data)
        });
        let deadline = Instant::now() + timeout;
        let outcome = match sent {
            None => Err("the connection is no longer open".to_string()),
            Some(Err(e)) => Err(format!("send: {e}")),
            Some(Ok(())) => loop {
                if let Work::Bulk(BulkRun {
                    result: Some(r), ..
                }) = &self.event_loop.handler().work
                {
                    break r.clone();
                }
                if self.stopped() {
                    break Err("interrupted".to_string());
                }
                if Instant::now() >= deadline {
                    break Err(format!("no echo within {:.1} s", timeout.as_secs_f64()));
                }
                self.turn(TICK)?;
            },
        };
        self.event_loop.handler_mut().work = Work::Idle;
        outcome
    }

    /// Closes every connection with 1000 and waits at most `wait` for the
    /// close handshakes; returns how many connections were still alive.
    pub fn close(&mut self, wait: Duration) -> usize {
        self.event_loop.handler_mut().closing = true;
        self.event_loop
            .close_all(CloseCode::NORMAL, "load run done");
        let deadline = Instant::now() + wait;
        while !self.event_loop.is_empty() && Instant::now() < deadline {
            if self.turn(TICK).is_err() {
                break;
            }
        }
        self.event_loop.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_its_own_seed() {
        let mut seeds = Seeds::default();
        let drawn: Vec<u64> = (0..3 * SEED_BATCH).map(|_| seeds.next().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u64> = drawn.iter().copied().collect();
        assert_eq!(distinct.len(), drawn.len());
    }
}
