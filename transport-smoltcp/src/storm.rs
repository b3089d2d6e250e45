//! The connection storm and echo benchmark over the in-memory link.
//!
//! [`run`] builds a client and a server stack joined in memory, opens
//! `connections` WebSocket connections in batches (the handshakes cross
//! both stacks), holds them all open at once, then sends one binary
//! message per connection per round and waits for every echo. Both event
//! loops are stepped in turn on the calling thread.
//!
//! Memory is the whole process's resident set from `/proc/self/status`,
//! read before the stacks are built and after every connection is open,
//! so the figure per connection includes both stacks' sockets and
//! buffers, both loops' slab entries and the allocator's overhead.
//!
//! Every phase is bounded by a step count and by wall time; a phase that
//! runs out returns what it reached with `complete` false.

use std::fmt;
use std::time::{Duration, Instant};

use tern_core::{ClientRequest, ConnId, Context, Ended, EventLoop, Handler, LoopConfig, Message};

use crate::stack::{SmolError, StackConfig};
use crate::{mem_pair, mem_server};

/// Port the storm's server listens on.
pub const STORM_PORT: u16 = 9001;

/// What a storm does.
#[derive(Clone, Debug)]
pub struct StormConfig {
    /// Connections to open and hold.
    pub connections: usize,
    /// Connections started before the loops are stepped.
    pub batch: usize,
    /// Echo rounds: one message per connection each.
    pub rounds: usize,
    /// Bytes in each echoed message.
    pub message: usize,
    /// Stack of each side (shards, buffers).
    pub stack: StackConfig,
    /// Most loop steps in any phase.
    pub max_steps: u64,
    /// Most wall time for the whole run.
    pub max_time: Duration,
}

impl StormConfig {
    /// A storm of `connections` with sizes that suit it.
    pub fn new(connections: usize) -> Self {
        StormConfig {
            connections,
            // Enough handshakes in flight that every shard polled has
            // several to do: the cost of a shard poll is then shared.
            batch: (connections.div_ceil(crate::SOCKETS_PER_SHARD) * 64).max(2048),
            rounds: 1,
            message: 32,
            stack: StackConfig::for_connections(connections),
            max_steps: 50_000_000,
            max_time: Duration::from_secs(1200),
        }
    }
}

/// What a storm reached.
#[derive(Clone, Debug, Default)]
pub struct StormReport {
    /// Connections asked for.
    pub target: usize,
    /// Connections open at once at the end of the storm.
    pub open: usize,
    /// Wall time from the first connect to the last open.
    pub connect_time: Duration,
    /// CPU time (user and system) of the process over the storm: on a
    /// loaded machine a steadier measure of cost than wall time.
    pub connect_cpu: Duration,
    /// Echoes received.
    pub echoes: u64,
    /// Wall time of the echo rounds.
    pub echo_time: Duration,
    /// CPU time of the process over the echo rounds.
    pub echo_cpu: Duration,
    /// Resident set before the stacks were built, in bytes.
    pub rss_start: u64,
    /// Resident set with every connection open, in bytes.
    pub rss_open: u64,
    /// Shards per stack.
    pub shards: usize,
    /// Frames carried by the link.
    pub frames: u64,
    /// Connections that ended before the storm was over.
    pub ended_early: u64,
    /// Every phase finished within its bounds.
    pub complete: bool,
}

impl StormReport {
    /// Connections opened per millisecond.
    pub fn connections_per_ms(&self) -> f64 {
        self.open as f64 / (self.connect_time.as_secs_f64() * 1e3).max(1e-9)
    }

    /// Echoes per millisecond.
    pub fn echoes_per_ms(&self) -> f64 {
        self.echoes as f64 / (self.echo_time.as_secs_f64() * 1e3).max(1e-9)
    }

    /// Connections opened per millisecond of CPU time.
    pub fn connections_per_cpu_ms(&self) -> f64 {
        self.open as f64 / (self.connect_cpu.as_secs_f64() * 1e3).max(1e-9)
    }

    /// Echoes per millisecond of CPU time.
    pub fn echoes_per_cpu_ms(&self) -> f64 {
        self.echoes as f64 / (self.echo_cpu.as_secs_f64() * 1e3).max(1e-9)
    }

    /// Open connections per MiB of resident-set growth.
    pub fn connections_per_mb_growth(&self) -> f64 {
        let grown = self.rss_open.saturating_sub(self.rss_start) as f64 / (1 << 20) as f64;
        self.open as f64 / grown.max(1e-9)
    }

    /// Open connections per MiB of the whole process's resident set.
    pub fn connections_per_mb_process(&self) -> f64 {
        self.open as f64 / (self.rss_open as f64 / (1 << 20) as f64).max(1e-9)
    }

    /// Resident-set growth per open connection, both stacks together.
    pub fn bytes_per_connection(&self) -> f64 {
        self.rss_open.saturating_sub(self.rss_start) as f64 / (self.open.max(1)) as f64
    }
}

impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connections  {} of {} open at once ({} shards per stack)",
            self.open, self.target, self.shards
        )?;
        writeln!(
            f,
            "connect      {:.1} ms, {:.1} connections/ms ({:.1} per CPU ms)",
            self.connect_time.as_secs_f64() * 1e3,
            self.connections_per_ms(),
            self.connections_per_cpu_ms()
        )?;
        writeln!(
            f,
            "memory       {:.0} bytes/connection (RSS growth), {:.0} connections/MB growth, {:.0} connections/MB whole process ({} MiB)",
            self.bytes_per_connection(),
            self.connections_per_mb_growth(),
            self.connections_per_mb_process(),
            self.rss_open >> 20
        )?;
        writeln!(
            f,
            "echo         {} echoes in {:.1} ms, {:.1} echoes/ms ({:.1} per CPU ms)",
            self.echoes,
            self.echo_time.as_secs_f64() * 1e3,
            self.echoes_per_ms(),
            self.echoes_per_cpu_ms()
        )?;
        write!(
            f,
            "link         {} frames; ended early {}; complete {}",
            self.frames, self.ended_early, self.complete
        )
    }
}

/// Why a storm could not run.
#[derive(Debug)]
pub enum StormError {
    /// The stacks could not be built or failed.
    Stack(SmolError),
}

impl fmt::Display for StormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StormError::Stack(e) => write!(f, "stack failed: {e}"),
        }
    }
}

impl std::error::Error for StormError {}

impl From<SmolError> for StormError {
    fn from(e: SmolError) -> Self {
        StormError::Stack(e)
    }
}

/// The server side: every message goes back as it came.
#[derive(Debug, Default)]
pub struct EchoServer {
    /// Connections that ended.
    pub ended: u64,
}

impl Handler for EchoServer {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        // A failed send means the connection is closing: nothing to answer.
        let _ = cx.send(&message);
    }

    fn on_close(&mut self, _: ConnId, _: Ended<'_>) {
        self.ended += 1;
    }
}

/// The client side: counts opens and echoes, keeps the open ids.
#[derive(Debug, Default)]
pub struct StormClient {
    /// Ids of open connections.
    pub open: Vec<ConnId>,
    /// Echoes received.
    pub echoes: u64,
    /// Echoes whose bytes differed from what was sent.
    pub corrupt: u64,
    /// Connections that ended.
    pub ended: u64,
    /// The message every connection sends.
    pub payload: Vec<u8>,
}

impl Handler for StormClient {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.open.push(cx.id());
    }

    fn on_message(&mut self, _: &mut Context<'_>, message: Message<'_>) {
        match message {
            Message::Binary(data) if *data == *self.payload => self.echoes += 1,
            _ => self.corrupt += 1,
        }
    }

    fn on_close(&mut self, _: ConnId, _: Ended<'_>) {
        self.ended += 1;
    }
}

/// The whole process's resident set in bytes, from `/proc/self/status`
/// (0 where it cannot be read).
pub fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user and system) the process has used.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid
    // rusage if it fails.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Event-loop options for a storm of `connections`: no limit below the
/// target, a small shared read buffer, and a handshake deadline long
/// enough for a storm of a million on the simulated clock.
pub fn loop_config(connections: usize) -> LoopConfig {
    LoopConfig {
        max_connections: connections.max(1),
        read_buffer_size: 16 * 1024,
        handshake_timeout: Duration::from_secs(600),
        ..LoopConfig::default()
    }
}

/// Where a running storm is, as [`run_with`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Connections started.
    pub started: usize,
    /// Connections open now.
    pub open: usize,
    /// Echoes received so far.
    pub echoes: u64,
    /// Connections that ended before the storm was over.
    pub ended: u64,
    /// Loop steps so far (each steps both loops once).
    pub steps: u64,
}

/// Steps between two calls of the progress callback of [`run_with`].
pub const PROGRESS_EVERY: u64 = 64;

/// Runs a storm and reports what it reached.
pub fn run(config: &StormConfig) -> Result<StormReport, StormError> {
    run_with(config, |_| {})
}

/// Runs a storm, calling `progress` every [`PROGRESS_EVERY`] steps (to
/// feed a dashboard, for instance), and reports what it reached.
pub fn run_with(
    config: &StormConfig,
    mut progress: impl FnMut(&Progress),
) -> Result<StormReport, StormError> {
    let started = Instant::now();
    let rss_start = rss_bytes();
    let (client, server) = mem_pair(config.stack.clone(), config.stack.clone(), STORM_PORT)?;
    let mut server = EventLoop::new(
        server,
        EchoServer::default(),
        loop_config(config.connections),
    );
    let mut client = EventLoop::new(
        client,
        StormClient {
            payload: (0..config.message).map(|i| i as u8).collect(),
            ..StormClient::default()
        },
        loop_config(config.connections),
    );
    let addr = mem_server(STORM_PORT);
    let request = ClientRequest {
        host: "tern",
        path: "/",
        protocols: &[],
    };
    let mut report = StormReport {
        target: config.connections,
        rss_start,
        shards: config.stack.shards,
        ..StormReport::default()
    };
    let deadline = started + config.max_time;
    let mut steps = 0u64;
    let mut complete = true;

    // The storm: start a batch, step both loops, until all are open.
    let connect_start = Instant::now();
    let connect_cpu = cpu_time();
    let mut started_conns = 0usize;
    loop {
        let open = client.handler().open.len();
        if open >= config.connections {
            break;
        }
        if steps >= config.max_steps || Instant::now() >= deadline {
            complete = false;
            break;
        }
        let in_progress = started_conns - open - client.handler().ended as usize;
        if started_conns < config.connections && in_progress < config.batch {
            let n = (config.connections - started_conns).min(config.batch - in_progress);
            for i in 0..n {
                let seed = (started_conns + i) as u64;
                client.connect(&addr, &request, seed)?;
            }
            started_conns += n;
        }
        step_pair(&mut client, &mut server)?;
        steps += 1;
        if steps.is_multiple_of(PROGRESS_EVERY) {
            progress(&Progress {
                started: started_conns,
                open: client.handler().open.len(),
                echoes: 0,
                ended: client.handler().ended,
                steps,
            });
        }
        if started_conns == config.connections
            && client.handler().ended as usize + client.handler().open.len() >= started_conns
            && client.handler().open.len() < config.connections
        {
            // Every connection either opened or ended: no more will open.
            complete = false;
            break;
        }
    }
    report.connect_time = connect_start.elapsed();
    report.connect_cpu = cpu_time().saturating_sub(connect_cpu);
    report.open = client.handler().open.len();
    report.rss_open = rss_bytes();

    // The echo rounds: one message per open connection, then every echo.
    let echo_start = Instant::now();
    let echo_cpu = cpu_time();
    let ids = std::mem::take(&mut client.handler_mut().open);
    for _ in 0..config.rounds {
        if !complete {
            break;
        }
        let want = client.handler().echoes + ids.len() as u64;
        for &id in &ids {
            client.with_connection(id, |h, cx| {
                // A failed send means this connection is closing; the
                // round then comes up short and says so.
                let _ = cx.send_binary(&h.payload);
            });
        }
        let mut round_steps = 0u64;
        while client.handler().echoes < want {
            if round_steps >= config.max_steps || Instant::now() >= deadline {
                complete = false;
                break;
            }
            step_pair(&mut client, &mut server)?;
            round_steps += 1;
            steps += 1;
            if steps.is_multiple_of(PROGRESS_EVERY) {
                progress(&Progress {
                    started: started_conns,
                    open: ids.len(),
                    echoes: client.handler().echoes,
                    ended: client.handler().ended,
                    steps,
                });
            }
        }
    }
    report.echo_time = echo_start.elapsed();
    report.echo_cpu = cpu_time().saturating_sub(echo_cpu);
    report.echoes = client.handler().echoes;
    report.frames = client.transport().link().frames();
    report.ended_early = client.handler().ended + client.handler().corrupt;
    report.complete = complete && report.ended_early == 0;
    client.handler_mut().open = ids;
    Ok(report)
}

/// One step of both loops of an in-memory pair, client first. When
/// neither moved a frame the simulated clock is let forward 5 ms, so the
/// stacks' own timers (retransmission, close timeouts) can fire.
pub fn step_pair<C: Handler, S: Handler>(
    client: &mut EventLoop<crate::SmolTransport<crate::MemPort>, C>,
    server: &mut EventLoop<crate::SmolTransport<crate::MemPort>, S>,
) -> Result<(), SmolError> {
    let before = client.transport().link().frames();
    client.run_once(Some(Duration::ZERO))?;
    server.run_once(Some(Duration::ZERO))?;
    let idle = client.transport().link().frames() == before
        && client.transport().link().in_flight() == 0
        && !client.transport().has_work()
        && !server.transport().has_work();
    if idle {
        client.run_once(Some(Duration::from_millis(5)))?;
    }
    Ok(())
}

/// Steps both loops of an in-memory pair until `done` holds or `max_steps`
/// pass; returns whether `done` held. For tests and tools that drive a
/// pair by hand.
pub fn step_until<C: Handler, S: Handler>(
    client: &mut EventLoop<crate::SmolTransport<crate::MemPort>, C>,
    server: &mut EventLoop<crate::SmolTransport<crate::MemPort>, S>,
    max_steps: u64,
    mut done: impl FnMut(
        &EventLoop<crate::SmolTransport<crate::MemPort>, C>,
        &EventLoop<crate::SmolTransport<crate::MemPort>, S>,
    ) -> bool,
) -> Result<bool, SmolError> {
    for _ in 0..max_steps {
        if done(client, server) {
            return Ok(true);
        }
        step_pair(client, server)?;
    }
    Ok(done(client, server))
}
