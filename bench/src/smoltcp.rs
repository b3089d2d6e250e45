//! `--transport smoltcp-mem` and `--transport tap`: the `tern` commands
//! over tern's userspace TCP/IP stack (`tern-transport-smoltcp`).
//!
//! - `smoltcp-mem` (`tern run`, `tern connections`, `tern echo`): a client
//!   and a server smoltcp stack in this process, joined by an in-memory
//!   link, both event loops stepped in turn on one thread. There is no
//!   server child and no file descriptor per connection, so no open-file
//!   limit applies; memory is the bound. The memory figures are this whole
//!   process's resident set: its growth over the storm covers both stacks,
//!   both loops and the allocator together, and is labelled so.
//! - `tap` (`tern serve`): the tern echo server on a TAP device, at
//!   10.77.0.2, for kernel clients in the namespace `scripts/tap-netns.sh`
//!   makes (see `docs/tap.md`).
//!
//! The in-memory link runs on a simulated clock that moves only while
//! both stacks are idle, so TCP timers never fire spuriously under load;
//! phase limits are wall time.
//!
//! Not done here: phase 3 of `tern run` (one large message) and `tern
//! throughput` over `smoltcp-mem`, and client commands over TAP (the TAP
//! stack's clients are only reachable from the kernel side of the
//! namespace, which `tern` with the default transport already is).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tern_core::{
    ClientRequest, CloseCode, ConnId, Context, Ended, EventLoop, Handler, Message, SendError,
};
use tern_monitor::{names, Mode, Registry, Status};
use tern_transport_smoltcp::storm::{self, EchoServer, StormConfig};
use tern_transport_smoltcp::{
    mem_pair, mem_server, tap_server, MemPort, SmolTransport, StackConfig, TAP_TERN_ADDR,
};

use crate::client::{EchoOptions, Metrics};
use crate::commands::{finish, nothing_open, stop_on_signals};
use crate::latency::Histogram;
use crate::report::{EchoReport, Latency, Report, StormReport};
use crate::{limits, procfs, ConnectionsArgs, EchoArgs, Outcome, RunArgs, ServeArgs};

/// Which TCP/IP stack a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// Kernel sockets (mio).
    Std,
    /// Client and server smoltcp stacks in this process, over an
    /// in-memory link.
    #[value(name = "smoltcp-mem")]
    SmoltcpMem,
    /// A smoltcp stack on a TAP device (server only).
    Tap,
}

/// Port the in-memory server listens on.
const MEM_PORT: u16 = 9001;

/// Resident memory both stacks take per connection with the default 1 KiB
/// socket buffers, rounded up from the measured 5.5 KB (see
/// `docs/smoltcp-results.md`): what a storm is checked against before it
/// starts.
const BYTES_PER_CONNECTION: u64 = 6_000;

/// Least wall time a storm phase is given per connection: the in-memory
/// storm opens some 40 connections per millisecond on a loaded 2-core
/// machine, so a million needs minutes, not the default minute.
const STORM_TIME_PER_CONNECTION: Duration = Duration::from_micros(200);

/// How long the close handshakes of the whole run may take, at least.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Least wall time the close phase gets per connection.
const CLOSE_TIME_PER_CONNECTION: Duration = Duration::from_micros(100);

/// Mismatched echoes described in the report, at most.
const MISMATCH_EXAMPLES: usize = 3;

/// What `--transport smoltcp-mem` measures memory of, as the report
/// labels it.
const RSS_SCOPE: &str =
    "whole tern process (client and server smoltcp stacks together, in-process)";

/// Where a client connection is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Slot {
    /// No connection has this id.
    #[default]
    Free,
    /// Opening handshake under way.
    Connecting,
    /// Open.
    Open,
    /// This side started the close handshake.
    Closing,
}

/// The client side of the in-memory pair: tracks every connection, feeds
/// the dashboard's metrics and runs the echo phase.
struct MemClient {
    slots: Vec<Slot>,
    opened: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
    last_open: Option<Instant>,
    echo: EchoState,
    metrics: Metrics,
}

/// The echo phase's state inside [`MemClient`].
#[derive(Default)]
struct EchoState {
    /// Keep sending after each echo.
    sending: bool,
    payload: Vec<u8>,
    binary: bool,
    /// When the message in flight on each connection was sent.
    sent_at: Vec<Option<Instant>>,
    in_flight: u64,
    echoes: u64,
    bytes: u64,
    latency: Histogram,
    mismatches: u64,
    examples: Vec<String>,
    errors: BTreeMap<String, u64>,
    last_echo: Option<Instant>,
}

impl MemClient {
    fn new() -> Self {
        MemClient {
            slots: Vec::new(),
            opened: 0,
            failed: 0,
            failures: BTreeMap::new(),
            dropped: BTreeMap::new(),
            last_open: None,
            echo: EchoState::default(),
            metrics: Metrics::new(),
        }
    }

    fn set(&mut self, id: ConnId, slot: Slot) {
        if self.slots.len() <= id {
            self.slots.resize(id + 1, Slot::Free);
        }
        self.slots[id] = slot;
    }

    fn slot(&self, id: ConnId) -> Slot {
        self.slots.get(id).copied().unwrap_or_default()
    }

    fn fail(&mut self, reason: String) {
        self.failed += 1;
        self.metrics.failed.increment(1);
        *self.failures.entry(reason).or_default() += 1;
    }

    fn open_ids(&self) -> Vec<ConnId> {
        let open = self.slots.iter().enumerate();
        open.filter(|(_, s)| **s == Slot::Open)
            .map(|(id, _)| id)
            .collect()
    }

    /// Sends the next echo message on `cx`'s connection.
    fn send_next(&mut self, cx: &mut Context<'_>) {
        let echo = &mut self.echo;
        let sent = if echo.binary {
            cx.send_binary(&echo.payload)
        } else {
            // The payload is built from ASCII letters.
            cx.send_text(std::str::from_utf8(&echo.payload).unwrap_or_default())
        };
        match sent {
            Ok(()) => {
                let id = cx.id();
                if echo.sent_at.len() <= id {
                    echo.sent_at.resize(id + 1, None);
                }
                echo.sent_at[id] = Some(Instant::now());
                echo.in_flight += 1;
            }
            Err(e) => *echo.errors.entry(format!("send failed: {e}")).or_default() += 1,
        }
    }

    /// Checks an echo against what was sent; a mismatch is described.
    fn check(&self, message: &Message<'_>) -> Result<(), String> {
        let echo = &self.echo;
        let binary = matches!(message, Message::Binary(_));
        if binary != echo.binary {
            let kind = if binary { "binary" } else { "text" };
            return Err(format!("a {kind} message came back for the other kind"));
        }
        let got = message.as_bytes();
        if got != echo.payload.as_slice() {
            return Err(format!(
                "{} bytes came back for {} sent, with different content",
                got.len(),
                echo.payload.len()
            ));
        }
        Ok(())
    }
}

impl Handler for MemClient {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.set(cx.id(), Slot::Open);
        self.opened += 1;
        self.last_open = Some(Instant::now());
        self.metrics.opened.increment(1);
        self.metrics.open.increment(1.0);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let id = cx.id();
        let sent = self.echo.sent_at.get_mut(id).and_then(Option::take);
        let Some(sent) = sent else {
            self.echo.mismatches += 1;
            if self.echo.examples.len() < MISMATCH_EXAMPLES {
                let note = "a message arrived with nothing in flight".to_string();
                self.echo.examples.push(note);
            }
            return;
        };
        self.echo.in_flight -= 1;
        match self.check(&message) {
            Ok(()) => {
                let micros = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
                let len = message.as_bytes().len() as u64;
                let echo = &mut self.echo;
                echo.echoes += 1;
                echo.bytes += len;
                echo.latency.record(micros);
                echo.last_echo = Some(Instant::now());
                self.metrics.echoes.increment(1);
                self.metrics.bytes.increment(len);
                self.metrics.latency.record(micros as f64);
            }
            Err(note) => {
                self.echo.mismatches += 1;
                if self.echo.examples.len() < MISMATCH_EXAMPLES {
                    self.echo.examples.push(note);
                }
            }
        }
        if self.echo.sending && self.slot(id) == Slot::Open {
            self.send_next(cx);
        }
    }

    fn on_close(&mut self, id: ConnId, ended: Ended<'_>) {
        let slot = self.slot(id);
        self.set(id, Slot::Free);
        if let Some(Some(_)) = self.echo.sent_at.get_mut(id).map(Option::take) {
            self.echo.in_flight -= 1;
            let reason = format!("connection ended with an echo in flight: {ended}");
            *self.echo.errors.entry(reason).or_default() += 1;
        }
        match slot {
            Slot::Connecting => self.fail(ended.to_string()),
            Slot::Open => {
                self.metrics.open.decrement(1.0);
                *self.dropped.entry(ended.to_string()).or_default() += 1;
            }
            Slot::Closing => self.metrics.open.decrement(1.0),
            Slot::Free => {}
        }
    }
}

/// Where progress lines go, at most once per period.
struct Progress {
    every: Duration,
    next: Instant,
    sink: Box<dyn FnMut(String)>,
}

impl Progress {
    fn new(every: Duration, sink: Box<dyn FnMut(String)>) -> Self {
        Progress {
            every,
            next: Instant::now() + every,
            sink,
        }
    }

    fn tick(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        (self.sink)(line());
    }
}

/// The in-memory pair: both loops, the stop flag and where progress goes.
struct MemBench {
    client: EventLoop<SmolTransport<MemPort>, MemClient>,
    server: EventLoop<SmolTransport<MemPort>, EchoServer>,
    stop: Arc<AtomicBool>,
    progress: Progress,
    /// The stacks failed; every later phase is skipped.
    broken: bool,
}

impl MemBench {
    /// Builds both stacks, sized for `connections`, with messages up to
    /// `max_message` bytes.
    fn new(
        connections: u64,
        max_message: u64,
        stop: Arc<AtomicBool>,
        progress: Progress,
    ) -> Result<Self, String> {
        let n = usize::try_from(connections).map_err(|_| "too many connections".to_string())?;
        let stack = StackConfig::for_connections(n);
        let (client, server) = mem_pair(stack.clone(), stack, MEM_PORT)
            .map_err(|e| format!("cannot build the smoltcp stacks: {e}"))?;
        let mut config = storm::loop_config(n);
        let max = max_message.max(config.protocol.max_message_size);
        config.protocol.max_message_size = max;
        config.protocol.max_frame_size = max;
        Ok(MemBench {
            client: EventLoop::new(client, MemClient::new(), config.clone()),
            server: EventLoop::new(server, EchoServer::default(), config),
            stop,
            progress,
            broken: false,
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Steps both loops once; a stack failure is fatal to the run.
    fn step(&mut self) -> Result<(), String> {
        storm::step_pair(&mut self.client, &mut self.server).map_err(|e| {
            self.broken = true;
            format!("the smoltcp stacks failed: {e}")
        })
    }

    /// Phase 1: opens `n` connections, at most `in_flight` handshakes at
    /// once, within `limit`.
    fn storm(&mut self, n: u64, in_flight: u64, limit: Duration) -> Result<StormReport, String> {
        let addr = mem_server(MEM_PORT);
        let request = ClientRequest {
            host: "tern",
            path: "/",
            protocols: &[],
        };
        let started = Instant::now();
        let deadline = started + limit;
        let mut report = StormReport {
            requested: n,
            ..StormReport::default()
        };
        let mut begun = 0u64;
        let mut timed_out = false;
        loop {
            let h = self.client.handler();
            let settled = h.opened + h.failed;
            if settled >= n {
                break;
            }
            // One step over a large pair can take a good part of a
            // second: the clock is read before every one.
            if self.stopped() {
                report.interrupted = true;
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }

            // Keep `in_flight` handshakes under way.
            let pending = begun - settled;
            let room = in_flight.saturating_sub(pending).min(n - begun);
            for _ in 0..room {
                match self.client.connect(&addr, &request, begun) {
                    Ok(id) => self.client.handler_mut().set(id, Slot::Connecting),
                    Err(e) => self
                        .client
                        .handler_mut()
                        .fail(format!("connect failed: {e}")),
                }
                begun += 1;
            }

            self.step()?;
            let (opened, failed) = (self.client.handler().opened, self.client.handler().failed);
            self.progress
                .tick(|| format!("storm {opened}/{n} open, {failed} failed"));
        }

        let h = self.client.handler();
        report.opened = h.opened;
        report.failed = h.failed;
        report.failures = h.failures.clone();
        if timed_out {
            let left = n - h.opened - h.failed;
            report.failed += left;
            let reason = format!("not open within the phase limit of {} s", limit.as_secs());
            report.failures.insert(reason, left);
        }
        let end = h.last_open.unwrap_or(started);
        report.elapsed_ms = end.duration_since(started).as_secs_f64() * 1e3;
        report.connections_per_ms = report.opened as f64 / report.elapsed_ms.max(1e-9);
        Ok(report)
    }

    /// Phase 2: echoes on `ids`, one message in flight on each.
    fn echo(&mut self, ids: &[ConnId], options: &EchoOptions) -> Result<EchoReport, String> {
        let mut report = EchoReport {
            connections: ids.len() as u64,
            size_bytes: options.size as u64,
            binary: options.binary,
            ..EchoReport::default()
        };
        let echo = &mut self.client.handler_mut().echo;
        echo.payload = (0..options.size).map(|i| b'a' + (i % 26) as u8).collect();
        echo.binary = options.binary;
        echo.sending = true;

        let started = Instant::now();
        for &id in ids {
            self.client.with_connection(id, |h, cx| h.send_next(cx));
        }
        let send_until = started + options.duration;
        while self.client.handler().echo.in_flight > 0 {
            if self.stopped() {
                report.interrupted = true;
                break;
            }
            if Instant::now() >= send_until {
                break;
            }
            self.step()?;
            let (echoes, elapsed) = (self.client.handler().echo.echoes, started.elapsed());
            self.progress.tick(|| {
                let (t, d) = (elapsed.as_secs_f64(), options.duration.as_secs_f64());
                format!("echo {t:.1} s/{d:.0} s, {echoes} echoes")
            });
        }

        // Stop sending and wait for the echoes still in flight.
        self.client.handler_mut().echo.sending = false;
        let drain_until = Instant::now() + options.drain;
        while self.client.handler().echo.in_flight > 0 && !report.interrupted {
            if self.stopped() || Instant::now() >= drain_until {
                break;
            }
            self.step()?;
        }

        let echo = &mut self.client.handler_mut().echo;
        let end = echo.last_echo.unwrap_or(started);
        report.elapsed_ms = end.duration_since(started).as_secs_f64() * 1e3;
        report.echoes = echo.echoes;
        report.bytes = echo.bytes;
        report.echoes_per_ms = echo.echoes as f64 / report.elapsed_ms.max(1e-9);
        report.latency_us = Latency::of(&echo.latency);
        report.mismatches = echo.mismatches;
        report.mismatch_examples = std::mem::take(&mut echo.examples);
        report.unanswered = echo.in_flight;
        report.errors = std::mem::take(&mut echo.errors);
        Ok(report)
    }

    /// Closes every connection with 1000 and waits, within `limit`, for
    /// both loops to be empty; returns the connections left.
    fn close(&mut self, limit: Duration) -> Result<usize, String> {
        let h = self.client.handler_mut();
        for slot in h.slots.iter_mut().filter(|s| **s == Slot::Open) {
            *slot = Slot::Closing;
        }
        self.client.close_all(CloseCode::NORMAL, "");
        let deadline = Instant::now() + limit;
        while !(self.client.is_empty() && self.server.is_empty()) {
            if Instant::now() >= deadline {
                break;
            }
            self.step()?;
            let left = self.client.len();
            self.progress.tick(|| format!("closing, {left} left"));
        }
        Ok(self.client.len())
    }
}

/// The wall time a phase over `n` connections gets: `timeout`, or more
/// for a storm too large to open within it.
fn phase_limit(timeout: Duration, per_connection: Duration, n: u64) -> Duration {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    timeout.max(per_connection.saturating_mul(n))
}

/// Handshakes kept under way in a storm of `n`: `asked`, or more when
/// that is too few for the shards. A stack polls only the shards with
/// work, and a shard poll walks all its sockets, so each polled shard
/// should have several handshakes to advance: at least 64 per
/// [`tern_transport_smoltcp::SOCKETS_PER_SHARD`] connections (as in the crate's own storm).
fn in_flight(asked: u64, n: u64) -> u64 {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    asked.max(StormConfig::new(n).batch as u64)
}

/// Refuses a storm whose stacks would not fit in the memory available.
fn check_memory(n: u64, message: u64, echoing: u64) -> Result<(), String> {
    // Each echoing connection holds a message on each side and its echo.
    let messages = limits::message_memory(message, echoing.saturating_mul(3));
    let needed = n
        .saturating_mul(BYTES_PER_CONNECTION)
        .saturating_add(messages);
    let option = format!("--connections {n}");
    let what = "both smoltcp stacks (about 6 KB per connection) and the echo messages";
    limits::check_this_machine(option, needed, what)
}

/// What one in-memory command does.
struct MemPlan {
    command: &'static str,
    connections: u64,
    in_flight: u64,
    timeout: Duration,
    echo: Option<(Option<u64>, EchoOptions)>,
}

/// Runs the storm, the echoes if asked, and the close, into a report.
fn run_plan(plan: &MemPlan, stop: Arc<AtomicBool>, progress: Progress) -> Report {
    let url = format!("ws://{}/", mem_server(MEM_PORT));
    let mut report = Report::new(plan.command, &url);
    let n = plan.connections;
    let max_message = plan.echo.as_ref().map_or(0, |(_, o)| o.size as u64);
    let rss_before = procfs::rss_bytes(std::process::id());
    if let Ok(bytes) = &rss_before {
        metrics::gauge!(names::SERVER_BASELINE_RSS_BYTES).set(*bytes as f64);
    }
    let mut bench = match MemBench::new(n, max_message, stop, progress) {
        Ok(b) => b,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    if let Err(e) = phases(&mut bench, plan, rss_before, &mut report) {
        report.errors.push(e);
    }
    report.note_dropped(&bench.client.handler().dropped);
    report
}

fn phases(
    bench: &mut MemBench,
    plan: &MemPlan,
    rss_before: io::Result<u64>,
    report: &mut Report,
) -> Result<(), String> {
    let n = plan.connections;
    let limit = phase_limit(plan.timeout, STORM_TIME_PER_CONNECTION, n);
    let mut storm = bench.storm(n, plan.in_flight, limit)?;
    match (rss_before, procfs::rss_bytes(std::process::id())) {
        (Ok(before), Ok(after)) => {
            storm.set_rss(before, after);
            storm.rss_scope = Some(RSS_SCOPE.to_string());
        }
        (Err(e), _) | (_, Err(e)) => report
            .errors
            .push(format!("cannot read this process's RSS: {e}")),
    }
    let (opened, interrupted) = (storm.opened, storm.interrupted);
    report.connections = Some(storm);

    if let Some((count, options)) = &plan.echo {
        let mut ids = bench.client.handler().open_ids();
        if let Some(m) = count {
            ids.truncate(usize::try_from(*m).unwrap_or(usize::MAX));
        }
        if ids.is_empty() && !interrupted {
            report.errors.push(nothing_open(opened, "echo", "echo on"));
        }
        if !ids.is_empty() && !bench.stopped() {
            report.echo = Some(bench.echo(&ids, options)?);
        }
    }

    let limit = phase_limit(CLOSE_WAIT, CLOSE_TIME_PER_CONNECTION, n);
    let left = bench.close(limit)?;
    if left > 0 {
        report.errors.push(format!(
            "{left} connections did not finish their close handshake in time"
        ));
    }
    Ok(())
}

/// Stderr progress lines for the plain commands, one a second.
fn stderr_progress(name: &'static str) -> Progress {
    let sink = Box::new(move |line: String| eprintln!("tern {name}: {line}"));
    Progress::new(Duration::from_secs(1), sink)
}

/// Refuses what `smoltcp-mem` cannot do for a client command.
fn check_client(name: &str, args: &crate::ClientArgs, n: u64) -> Result<(), Outcome> {
    let refuse = |e: String| {
        eprintln!("tern {name}: {e}");
        Err(Outcome::Refused)
    };
    if args.transport == TransportKind::Tap {
        return refuse(
            "--transport tap serves only (tern serve); point a kernel client at it".to_string(),
        );
    }
    if n == 0 {
        return refuse("-n must be at least 1".to_string());
    }
    if args.sources.is_some() {
        return refuse(
            "--sources does not apply to smoltcp-mem: its client stack has 32 addresses of its own"
                .to_string(),
        );
    }
    Ok(())
}

/// `tern connections --transport smoltcp-mem`.
pub fn connections(args: ConnectionsArgs) -> Outcome {
    if let Err(o) = check_client("connections", &args.client, args.n) {
        return o;
    }
    if args.server_pid.is_some() {
        eprintln!("tern connections: --server-pid does not apply: the server is in-process");
        return Outcome::Refused;
    }
    if let Err(e) = check_memory(args.n, 0, 0) {
        eprintln!("tern connections: {e}");
        return Outcome::Refused;
    }
    let plan = MemPlan {
        command: "connections",
        connections: args.n,
        in_flight: in_flight(args.client.in_flight, args.n),
        timeout: args.client.timeout,
        echo: None,
    };
    let report = run_plan(&plan, stop_on_signals(), stderr_progress("connections"));
    finish(report, args.client.json)
}

/// `tern echo --transport smoltcp-mem`.
pub fn echo(args: EchoArgs) -> Outcome {
    if let Err(o) = check_client("echo", &args.client, args.n) {
        return o;
    }
    let Ok(size) = usize::try_from(args.size) else {
        eprintln!("tern echo: --size {} does not fit in memory", args.size);
        return Outcome::Refused;
    };
    if let Err(e) = check_memory(args.n, args.size, args.n) {
        eprintln!("tern echo: {e}");
        return Outcome::Refused;
    }
    let options = EchoOptions {
        size,
        binary: args.binary,
        duration: args.duration,
        drain: args.client.timeout.min(Duration::from_secs(10)),
    };
    let plan = MemPlan {
        command: "echo",
        connections: args.n,
        in_flight: in_flight(args.client.in_flight, args.n),
        timeout: args.client.timeout,
        echo: Some((None, options)),
    };
    let report = run_plan(&plan, stop_on_signals(), stderr_progress("echo"));
    finish(report, args.client.json)
}

/// `tern run --transport smoltcp-mem`: the storm and the echoes over the
/// in-memory pair under the live dashboard. Phase 3 is not run.
pub fn run(args: RunArgs) -> Outcome {
    let refuse = |e: String| {
        eprintln!("tern run: {e}");
        Outcome::Refused
    };
    if args.transport == TransportKind::Tap {
        return refuse("--transport tap serves only (tern serve)".to_string());
    }
    if args.connections == 0 {
        return refuse("--connections must be at least 1".to_string());
    }
    if args.echo_connections.is_some_and(|m| m > args.connections) {
        return refuse(format!(
            "--echo-connections must be from 1 to --connections ({})",
            args.connections
        ));
    }
    let Ok(size) = usize::try_from(args.size) else {
        return refuse(format!("--size {} does not fit in memory", args.size));
    };
    let echoing = args.echo_connections.unwrap_or(args.connections);
    if let Err(e) = check_memory(args.connections, args.size, echoing) {
        return refuse(e);
    }
    let json = args.json;
    let mode = Mode::detect(args.no_tui);
    let stop = stop_on_signals();
    if mode == Mode::Plain {
        eprintln!(
            "tern run: smoltcp-mem: client and server stacks in this process (no server child); \
             the memory and CPU figures are this whole process's; phase 3 (throughput) is not run"
        );
    }

    let registry = Registry::install();
    let status = Status::new();
    status.set_phase("smoltcp-mem: building the stacks");
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&sampling_done);
        std::thread::Builder::new()
            .name("tern-sampler".into())
            .spawn(move || crate::run::sample(std::process::id(), &done))
    };
    let plan = MemPlan {
        command: "run",
        connections: args.connections,
        in_flight: in_flight(0, args.connections),
        timeout: args.timeout,
        echo: Some((
            args.echo_connections,
            EchoOptions {
                size,
                binary: false,
                duration: args.echo_seconds,
                drain: args.timeout.min(Duration::from_secs(10)),
            },
        )),
    };
    // The pair is not `Send` (its link is shared through an `Rc`): it is
    // built and driven on the load thread.
    let worker = {
        let (stop, phase) = (Arc::clone(&stop), status.clone());
        std::thread::Builder::new()
            .name("tern-load".into())
            .spawn(move || {
                let lines = phase.clone();
                let sink = Box::new(move |line: String| {
                    lines.set_phase(format!("{line} | smoltcp-mem, in-process"))
                });
                let report = run_plan(&plan, stop, Progress::new(Duration::from_millis(100), sink));
                phase.set_phase("done | smoltcp-mem, in-process");
                report
            })
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tern run: cannot start the load thread: {e}");
            return Outcome::Failed;
        }
    };

    let watch_error = crate::run::watch(registry, &status, mode, json, &stop, &worker);
    let url = format!("ws://{}/", mem_server(MEM_PORT));
    let mut report = worker.join().unwrap_or_else(|_| {
        let mut r = Report::new("run", &url);
        r.errors.push("the load thread panicked".to_string());
        r
    });
    sampling_done.store(true, Ordering::Relaxed);
    if let Ok(sampler) = sampler {
        let _ = sampler.join();
    }
    report.errors.extend(watch_error);
    report.interrupted = stop.load(Ordering::Relaxed);
    finish(report, json)
}

/// Sends every message back as it came; a peer that does not read its
/// echoes is closed with 1008 rather than buffered for without bound.
#[derive(Debug, Default)]
struct TapEcho;

impl Handler for TapEcho {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if let Err(SendError::QueueFull) = cx.send_message(message) {
            let _ = cx.close(CloseCode::POLICY, "echo queue full");
        }
    }
}

/// How long the close handshakes may take at shutdown.
const SERVE_GRACE: Duration = Duration::from_secs(2);

/// How long one wait of the TAP server's loop lasts at most, so that a
/// signal is seen soon.
const SERVE_TICK: Duration = Duration::from_millis(50);

/// `tern serve --transport tap`: the echo server on a TAP device until
/// SIGINT or SIGTERM, then close 1001 to every peer within
/// [`SERVE_GRACE`]. A second signal during that wait ends the process at
/// once with status 1.
pub fn serve(args: ServeArgs) -> Outcome {
    let fail = |e: String| {
        eprintln!("tern serve: {e}");
        Outcome::Failed
    };
    match args.transport {
        TransportKind::Tap => {}
        TransportKind::SmoltcpMem => {
            eprintln!(
                "tern serve: --transport smoltcp-mem has no peer outside this process; \
                 use tern run, connections or echo with it, or --transport tap"
            );
            return Outcome::Refused;
        }
        TransportKind::Std => return crate::commands::serve(args),
    }
    if args.loops != 1 {
        eprintln!("tern serve: --transport tap runs one loop (one process per device)");
        return Outcome::Refused;
    }
    if args.max_connections == Some(0) {
        eprintln!("tern serve: --max-connections must be at least 1");
        return Outcome::Refused;
    }

    // Registered before the device is opened, so no signal is lost; the
    // conditional exit fires only on a second signal.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered =
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)));
        if let Err(e) = registered {
            return fail(format!("cannot install the signal handler: {e}"));
        }
    }

    // Large enough windows for big messages over the TAP link.
    let stack = StackConfig {
        shards: 4,
        rx_buffer: 64 * 1024,
        tx_buffer: 64 * 1024,
        ..StackConfig::default()
    };
    let transport = match tap_server(&args.tap, args.port, stack) {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "cannot serve on TAP device {}: {e} (run as root inside the namespace: \
                 scripts/tap-netns.sh up, then ip netns exec tern-tap tern serve --transport tap)",
                args.tap
            ))
        }
    };
    let mut config = tern_core::LoopConfig::default();
    config.protocol.max_message_size = args.max_message_size;
    config.protocol.max_frame_size = args.max_message_size;
    if let Some(max) = args.max_connections {
        config.max_connections = usize::try_from(max).unwrap_or(usize::MAX);
    }
    let mut server = EventLoop::new(transport, TapEcho, config);

    let mut stdout = io::stdout().lock();
    let line = writeln!(
        stdout,
        "tern serve: listening on ws://{TAP_TERN_ADDR}:{}",
        args.port
    );
    if let Err(e) = line.and_then(|()| stdout.flush()) {
        return fail(format!("cannot write to stdout: {e}"));
    }
    drop(stdout);
    eprintln!("tern serve: smoltcp on TAP device {} (one loop)", args.tap);

    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = server.run_once(Some(SERVE_TICK)) {
            return fail(format!("the TAP stack failed: {e}"));
        }
    }

    eprintln!("tern serve: shutting down (close 1001 to every peer)");
    server.close_all(CloseCode::GOING_AWAY, "server shutting down");
    let deadline = Instant::now() + SERVE_GRACE;
    while !server.is_empty() && Instant::now() < deadline {
        if let Err(e) = server.run_once(Some(SERVE_TICK)) {
            return fail(format!("the TAP stack failed while closing: {e}"));
        }
    }
    if !server.is_empty() {
        eprintln!(
            "tern serve: {} connections did not finish their close handshake in time",
            server.len()
        );
    }
    eprintln!("tern serve: stopped");
    Outcome::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_storms_keep_more_handshakes_under_way() {
        assert_eq!(in_flight(1000, 10), 2048);
        assert_eq!(in_flight(5000, 10), 5000);
        assert_eq!(in_flight(1000, 1_000_000), 3907 * 64);
    }

    #[test]
    fn large_storms_get_more_time() {
        let minute = Duration::from_secs(60);
        let per = STORM_TIME_PER_CONNECTION;
        assert_eq!(phase_limit(minute, per, 10), minute);
        assert_eq!(
            phase_limit(minute, per, 1_000_000),
            Duration::from_secs(200)
        );
        assert!(phase_limit(minute, per, u64::MAX) >= minute);
    }

    #[test]
    fn a_small_storm_opens_echoes_and_closes() {
        let plan = MemPlan {
            command: "echo",
            connections: 50,
            in_flight: 16,
            timeout: Duration::from_secs(60),
            echo: Some((
                Some(20),
                EchoOptions {
                    size: 100,
                    binary: true,
                    duration: Duration::from_millis(50),
                    drain: Duration::from_secs(10),
                },
            )),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Progress::new(Duration::from_secs(3600), Box::new(|_| {}));
        let mut report = run_plan(&plan, stop, progress);
        report.finish();
        assert!(report.ok, "{}", report.table());
        let storm = report.connections.as_ref().unwrap();
        assert_eq!(storm.opened, 50);
        assert_eq!(storm.rss_scope.as_deref(), Some(RSS_SCOPE));
        let echo = report.echo.as_ref().unwrap();
        assert_eq!(echo.connections, 20);
        assert!(echo.echoes > 0);
        assert_eq!(echo.bytes, echo.echoes * 100);
    }

    #[test]
    fn a_stop_before_the_storm_interrupts_it() {
        let plan = MemPlan {
            command: "connections",
            connections: 10,
            in_flight: 10,
            timeout: Duration::from_secs(60),
            echo: None,
        };
        let stop = Arc::new(AtomicBool::new(true));
        let progress = Progress::new(Duration::from_secs(3600), Box::new(|_| {}));
        let mut report = run_plan(&plan, stop, progress);
        report.finish();
        assert!(report.interrupted);
        assert!(!report.ok);
    }
}
