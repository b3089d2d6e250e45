//! `tern compare`: the three measurements against tern, the raw-TCP limit
//! and the peer servers, one after the other, in one table.
//!
//! For each server in turn the tool starts it on `127.0.0.1` (a free
//! port), waits until it accepts, and runs:
//!
//! 1. a connection storm: connections/ms, and connections per MiB of the
//!    server's resident memory growth with every connection open;
//! 2. echoes on (by default) 10,000 of those connections, one text message
//!    in flight per connection, at each message size: echoes/ms, p50/p99;
//! 3. one binary message echoed, at each large size: MB/s;
//!
//! then stops it (SIGTERM, then SIGKILL). The server's CPU share is read
//! from `/proc` over each phase and printed beside each figure; a figure
//! whose server used less than 95% of the cores it may use is marked `*`:
//! the load generator, not the server, set its pace.
//!
//! The load comes from tern's own client ([`Client`]), several of them in
//! threads of this process, each with its own source addresses
//! (`127.0.0.x`) so ephemeral ports never run short. The raw-TCP server
//! is driven by [`RawClient`] instead, which sends the same bytes but
//! counts the echo rather than parsing it (the raw echo of a masked frame
//! is not a valid server frame).
//!
//! Peers are found where `scripts/install-peers.sh` builds them, under
//! `bench/peers/`; one that is not there is reported as missing, and with
//! `--require-peers` (implied by `--short`) the run fails.
//!
//! With `--tui` the live dashboard of `tern-monitor` shows the run: the
//! phase line names the server and its phase, the tiles come from the
//! client's metrics (rates over the trailing second, so each server's
//! rates are its own; the memory and CPU gauges follow the server under
//! test, sampled every 100 ms) and a "results so far" panel lists the
//! headline figures of the servers already measured. Quitting (q, Esc,
//! Ctrl-C) ends the phase under way, stops the server, skips the rest and
//! prints the table of what was measured.
//!
//! Known limits of the method: on a 2-core machine the client threads and
//! the server share the cores, so a fast server is rarely saturated (the
//! `*` says so); the p50 of several client threads is the mean of their
//! p50s weighted by echoes and the p99 is the largest of their p99s, an
//! approximation of the merged histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tern_core::ConnId;
use tern_monitor::{names, Mode, Monitor, MonitorOptions, Registry, Status};

use crate::client::{Client, EchoOptions};
use crate::procfs;
use crate::raw::RawClient;
use crate::report::{EchoReport, Latency, StormReport, ThroughputReport};
use crate::target::Target;
use crate::{limits, CompareArgs, Outcome};

/// A server below this share of its cores was not saturated.
const SATURATED_PCT: f64 = 95.0;

/// How long a started server may take to accept its first connection.
const START_WAIT: Duration = Duration::from_secs(15);

/// How long a server may take to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// Source addresses given to each client thread.
const SOURCES_PER_THREAD: usize = 8;

/// Largest message every server in the comparison accepts.
const MAX_MESSAGE: u64 = 256 << 20;

/// How often the dashboard's phase line and server gauges are refreshed.
const FEED_EVERY: Duration = Duration::from_millis(100);

/// What a server in the comparison is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `tern serve` with this many loops.
    Tern(usize),
    /// `tern serve --raw` with this many loops.
    Raw(usize),
    /// Node's `ws` package.
    NodeWs,
    /// WebSocket++ on standalone asio.
    WebSocketPp,
    /// tokio-tungstenite on a current-thread tokio runtime.
    Tungstenite,
    /// fastwebsockets behind hyper, on a current-thread tokio runtime.
    FastWebSockets,
    /// A server already running at this URL.
    External(String),
}

impl Kind {
    /// The built-in servers, in table order, for a machine with `cores`.
    pub fn builtin(cores: usize) -> Vec<Kind> {
        let mut kinds = vec![Kind::Raw(1)];
        if cores > 1 {
            kinds.push(Kind::Raw(cores));
        }
        kinds.push(Kind::Tern(1));
        if cores > 1 {
            kinds.push(Kind::Tern(cores));
        }
        kinds.extend([
            Kind::NodeWs,
            Kind::WebSocketPp,
            Kind::Tungstenite,
            Kind::FastWebSockets,
        ]);
        kinds
    }

    /// The name in the table and on `--servers`.
    pub fn name(&self) -> String {
        match self {
            Kind::Tern(1) => "tern".to_string(),
            Kind::Tern(n) => format!("tern-{n}loops"),
            Kind::Raw(1) => "raw-tcp".to_string(),
            Kind::Raw(n) => format!("raw-tcp-{n}loops"),
            Kind::NodeWs => "node-ws".to_string(),
            Kind::WebSocketPp => "websocketpp".to_string(),
            Kind::Tungstenite => "tokio-tungstenite".to_string(),
            Kind::FastWebSockets => "fastwebsockets".to_string(),
            Kind::External(url) => url.clone(),
        }
    }

    /// Threads the server may keep busy: what 100% CPU share means.
    fn cores(&self) -> usize {
        match self {
            Kind::Tern(n) | Kind::Raw(n) => *n,
            _ => 1,
        }
    }

    /// The raw-TCP row tern's figures are a percentage of.
    fn raw_twin(&self) -> Option<Kind> {
        match self {
            Kind::Tern(n) => Some(Kind::Raw(*n)),
            _ => None,
        }
    }
}

/// Picks servers by name from `list` (comma-separated), or all of them.
pub fn select(list: Option<&str>, cores: usize) -> Result<Vec<Kind>, String> {
    let all = Kind::builtin(cores);
    let Some(list) = list else {
        return Ok(all);
    };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(kind) = all.iter().find(|k| k.name() == name) else {
            let names: Vec<String> = all.iter().map(Kind::name).collect();
            return Err(format!(
                "unknown server {name:?}; known: {}",
                names.join(", ")
            ));
        };
        if !chosen.contains(kind) {
            chosen.push(kind.clone());
        }
    }
    Ok(chosen)
}

/// How to start a server, or why it cannot be.
#[derive(Debug)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    /// A file that exists once the peer is installed.
    installed: PathBuf,
}

fn launch(kind: &Kind, peers: &Path, port: u16) -> io::Result<Option<Launch>> {
    let port = port.to_string();
    let tern = std::env::current_exe()?;
    let rust_bin = |name: &str| peers.join("rust/target/release").join(name);
    let l = match kind {
        Kind::Tern(loops) | Kind::Raw(loops) => {
            let mut args = vec!["serve".to_string()];
            if matches!(kind, Kind::Raw(_)) {
                args.push("--raw".to_string());
            } else {
                args.extend(["--max-message-size".to_string(), MAX_MESSAGE.to_string()]);
            }
            args.extend(["--host", "127.0.0.1", "--port", &port].map(String::from));
            args.extend(["--loops".to_string(), loops.to_string()]);
            Launch {
                installed: tern.clone(),
                program: tern,
                args,
            }
        }
        Kind::NodeWs => Launch {
            program: PathBuf::from("node"),
            args: vec![peers.join("node/echo.js").display().to_string(), port],
            installed: peers.join("node/node_modules/ws/package.json"),
        },
        Kind::WebSocketPp => Launch {
            program: peers.join("websocketpp/build/echo"),
            args: vec![port],
            installed: peers.join("websocketpp/build/echo"),
        },
        Kind::Tungstenite => Launch {
            program: rust_bin("tungstenite-echo"),
            args: vec![port],
            installed: rust_bin("tungstenite-echo"),
        },
        Kind::FastWebSockets => Launch {
            program: rust_bin("fastwebsockets-echo"),
            args: vec![port],
            installed: rust_bin("fastwebsockets-echo"),
        },
        Kind::External(_) => return Ok(None),
    };
    Ok(Some(l))
}

/// The version of each server, as installed.
fn version(kind: &Kind, peers: &Path) -> String {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    match kind {
        Kind::Tern(_) | Kind::Raw(_) => format!("tern {}", env!("CARGO_PKG_VERSION")),
        Kind::NodeWs => {
            let manifest = read(peers.join("node/node_modules/ws/package.json"));
            let ws = serde_json::from_str::<serde_json::Value>(&manifest)
                .ok()
                .and_then(|v| v["version"].as_str().map(String::from))
                .unwrap_or_else(|| "?".to_string());
            let node = command_output("node", &["--version"]).unwrap_or_else(|| "?".to_string());
            format!("ws {ws} on Node {}", node.trim_start_matches('v'))
        }
        Kind::WebSocketPp => {
            let dpkg = |p: &str| {
                command_output("dpkg-query", &["-W", "-f", "${Version}", p])
                    .unwrap_or_else(|| "?".to_string())
            };
            format!(
                "websocketpp {} (Debian), asio {}",
                dpkg("libwebsocketpp-dev"),
                dpkg("libasio-dev")
            )
        }
        Kind::Tungstenite => {
            let lock = read(peers.join("rust/Cargo.lock"));
            format!(
                "tokio-tungstenite {}, tokio {}",
                locked(&lock, "tokio-tungstenite"),
                locked(&lock, "tokio")
            )
        }
        Kind::FastWebSockets => {
            let lock = read(peers.join("rust/Cargo.lock"));
            format!(
                "fastwebsockets {}, hyper {}",
                locked(&lock, "fastwebsockets"),
                locked(&lock, "hyper")
            )
        }
        Kind::External(_) => "external".to_string(),
    }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The version of package `name` in a Cargo.lock.
fn locked(lock: &str, name: &str) -> String {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() != wanted {
            continue;
        }
        let version = lines
            .next()
            .and_then(|l| l.trim().strip_prefix("version = "));
        if let Some(v) = version {
            return v.trim_matches('"').to_string();
        }
    }
    "?".to_string()
}

/// A server child, stopped when dropped.
#[derive(Debug)]
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server wrote on stderr.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill has no memory preconditions; the pid is our child,
        // not reaped yet, so it cannot name another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `l` and waits until it accepts on `port`.
fn start(name: &str, l: &Launch, port: u16) -> Result<Running, String> {
    let log = std::env::temp_dir().join(format!("tern-compare-{}-{port}.log", std::process::id()));
    let stderr =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let child = Command::new(&l.program)
        .args(&l.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", l.program.display()))?;
    let mut running = Running { child, log };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "{name} exited at start ({status}): {}",
                running.log_tail()
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(running);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} did not accept within {} s",
                START_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The load generator of one thread: tern's client, or the byte counter
/// for the raw server.
#[derive(Debug)]
enum Driver {
    Tern(Box<Client>),
    Raw(Box<RawClient>),
}

/// A job for a client thread.
#[derive(Debug, Clone, Copy)]
enum Job {
    Open {
        n: u64,
        in_flight: u64,
        timeout: Duration,
    },
    Echo {
        count: usize,
        size: usize,
        duration: Duration,
        drain: Duration,
    },
    Throughput {
        size: u64,
        timeout: Duration,
    },
    Close,
}

/// What a client thread did.
#[derive(Debug)]
enum Done {
    Open(StormReport),
    Echo(EchoReport),
    Throughput(ThroughputReport),
    Closed,
}

impl Driver {
    fn ids(&self) -> Vec<ConnId> {
        match self {
            Driver::Tern(c) => c.open_ids(),
            Driver::Raw(c) => c.open_ids(),
        }
    }

    fn run(&mut self, job: Job) -> Done {
        match (self, job) {
            (
                Driver::Tern(c),
                Job::Open {
                    n,
                    in_flight,
                    timeout,
                },
            ) => Done::Open(c.open(n, in_flight, timeout)),
            (
                Driver::Raw(c),
                Job::Open {
                    n,
                    in_flight,
                    timeout,
                },
            ) => Done::Open(c.open(n, in_flight, timeout)),
            (
                d,
                Job::Echo {
                    count,
                    size,
                    duration,
                    drain,
                },
            ) => {
                let ids = d.ids();
                let ids = &ids[..count.min(ids.len())];
                Done::Echo(match d {
                    Driver::Tern(c) => {
                        let options = EchoOptions {
                            size,
                            binary: false,
                            duration,
                            drain,
                        };
                        c.echo(ids, options)
                    }
                    Driver::Raw(c) => c.echo(ids, size, duration, drain),
                })
            }
            (d, Job::Throughput { size, timeout }) => {
                let Some(&id) = d.ids().first() else {
                    let mut report = ThroughputReport {
                        size_bytes: size,
                        ..ThroughputReport::default()
                    };
                    report.failures.push("no connection open".to_string());
                    return Done::Throughput(report);
                };
                Done::Throughput(match d {
                    Driver::Tern(c) => c.throughput(id, size, 1, timeout),
                    Driver::Raw(c) => c.throughput(id, size, timeout),
                })
            }
            (Driver::Tern(c), Job::Close) => {
                c.close(STOP_WAIT);
                Done::Closed
            }
            (Driver::Raw(c), Job::Close) => {
                c.close();
                Done::Closed
            }
        }
    }
}

/// A client thread and its job channel.
#[derive(Debug)]
struct Worker {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
    handle: JoinHandle<()>,
}

impl Worker {
    fn spawn(
        target: Target,
        sources: Vec<IpAddr>,
        raw: bool,
        stop: Arc<AtomicBool>,
    ) -> Result<Worker, String> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let (ready_tx, ready) = mpsc::channel::<Result<(), String>>();
        let handle = std::thread::spawn(move || {
            let driver = if raw {
                RawClient::new(target, sources, stop).map(|c| Driver::Raw(Box::new(c)))
            } else {
                Client::new(target, sources, MAX_MESSAGE, stop).map(|c| Driver::Tern(Box::new(c)))
            };
            let mut driver = match driver {
                Ok(d) => d,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start a client: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while let Ok(job) = job_rx.recv() {
                if done_tx.send(driver.run(job)).is_err() {
                    return;
                }
            }
        });
        match ready.recv() {
            Ok(Ok(())) => Ok(Worker { jobs, done, handle }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("a client thread ended at start".to_string()),
        }
    }
}

/// Sends `jobs[i]` to worker `i` (those given one) and collects the
/// answers in order.
fn run_all(workers: &[Worker], jobs: &[Job]) -> Vec<Done> {
    let busy: Vec<&Worker> = workers
        .iter()
        .zip(jobs)
        .filter_map(|(w, &job)| w.jobs.send(job).is_ok().then_some(w))
        .collect();
    busy.iter().filter_map(|w| w.done.recv().ok()).collect()
}

/// CPU time of every thread of process `pid`, in nanoseconds: the first
/// field of `/proc/PID/task/TID/schedstat`. Clock ticks (`/proc/PID/stat`)
/// are 10 ms, too coarse for a phase that lasts a few.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Turns CPU-time readings of the server into its share over each phase.
#[derive(Debug)]
struct CpuSampler {
    pid: u32,
    last: Option<(u64, Instant)>,
}

impl CpuSampler {
    fn new(pid: u32) -> Self {
        CpuSampler { pid, last: None }
    }

    /// CPU used since the previous call (`None` on the first).
    fn sample(&mut self) -> Option<Cpu> {
        let now = (cpu_ns(self.pid)?, Instant::now());
        let (ns, at) = self.last.replace(now)?;
        let wall = now.1.duration_since(at).as_nanos() as f64;
        let used = now.0.saturating_sub(ns);
        (wall > 0.0).then(|| Cpu {
            pct: 100.0 * used as f64 / wall,
            ns: used,
        })
    }
}

/// The server's CPU over one phase.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cpu {
    /// Percent of one core.
    pct: f64,
    /// CPU time, in nanoseconds.
    ns: u64,
}

/// A phase's CPU use by the server.
fn cpu_of(sampler: &mut Option<CpuSampler>) -> Option<Cpu> {
    sampler.as_mut().and_then(CpuSampler::sample)
}

/// CPU time per event, in nanoseconds.
fn per_event(cpu: Option<Cpu>, events: u64) -> Option<f64> {
    (events > 0).then_some(cpu?.ns as f64 / events as f64)
}

/// Phase 1 as measured, with the server's share of CPU.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StormResult {
    /// The client threads' storms added up.
    pub report: StormReport,
    /// Server resident memory growth per open connection, in bytes.
    pub bytes_per_connection: Option<f64>,
    /// Server CPU over the phase, in percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU time per connection opened, in nanoseconds.
    pub server_cpu_ns_per_connection: Option<f64>,
}

/// Phase 2 at one message size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EchoResult {
    /// The client threads' echoes added up.
    pub report: EchoReport,
    /// Server CPU over the phase, in percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU time per echo, in nanoseconds.
    pub server_cpu_ns_per_echo: Option<f64>,
}

/// One point of the cost curve: echoes on every one of `connections`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CurvePoint {
    /// Connections open, all of them echoing.
    pub connections: u64,
    /// The echoes.
    pub echo: EchoResult,
}

/// Phase 3 at one message size.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BulkResult {
    /// The round trip.
    pub report: ThroughputReport,
    /// Server CPU over the round trip, in percent of one core.
    pub server_cpu_pct: Option<f64>,
}

/// tern's figures as a percentage of the raw-TCP limit on as many loops.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OfRaw {
    /// Which raw-TCP row.
    pub raw: String,
    /// Connections/ms.
    pub connections_per_ms_pct: Option<f64>,
    /// Echoes/ms, by message size.
    pub echoes_per_ms_pct: BTreeMap<u64, f64>,
    /// MB/s, by message size.
    pub mb_per_s_pct: BTreeMap<u64, f64>,
    /// The raw server's CPU time per connection over tern's: 100% is as
    /// cheap as the raw limit.
    pub cpu_per_connection_pct: Option<f64>,
    /// The same per echo, by message size.
    pub cpu_per_echo_pct: BTreeMap<u64, f64>,
}

/// One server's row.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerResult {
    /// Its name in the table.
    pub name: String,
    /// Versions of what ran.
    pub version: String,
    /// `ok`, `missing`, `failed` or `skipped`.
    pub status: String,
    /// Cores whose full use is 100% of the CPU share.
    pub cores: usize,
    /// Why it is missing or failed, and errors of its phases.
    pub errors: Vec<String>,
    /// Phase 1.
    pub storm: Option<StormResult>,
    /// Phase 2, one per message size.
    pub echo: Vec<EchoResult>,
    /// Phase 3, one per message size.
    pub bulk: Vec<BulkResult>,
    /// Cost per echo by number of connections (`--curve`).
    pub curve: Vec<CurvePoint>,
    /// For tern: its figures against the raw-TCP limit.
    pub of_raw: Option<OfRaw>,
}

/// What `tern compare` measured, as written by `--json-out`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompareReport {
    /// The command line.
    pub command: String,
    /// Cores of this machine.
    pub cores: usize,
    /// Client threads that made the load.
    pub client_threads: usize,
    /// Connections in the storm.
    pub connections: u64,
    /// Connections that echo.
    pub echo_connections: u64,
    /// Seconds of echoes per size.
    pub echo_seconds: f64,
    /// `/proc/loadavg` when the run started and when it ended: other work
    /// on the machine shows here.
    pub load_average: [String; 2],
    /// One row per server.
    pub servers: Vec<ServerResult>,
    /// Whether every server ran cleanly and no required peer was missing.
    pub ok: bool,
}

/// The settled options of a run.
#[derive(Clone, Debug)]
struct Plan {
    connections: u64,
    echo_connections: u64,
    echo_time: Duration,
    sizes: Vec<usize>,
    bulk_sizes: Vec<u64>,
    threads: usize,
    in_flight: u64,
    timeout: Duration,
    require_peers: bool,
    peers: PathBuf,
    curve: Vec<u64>,
}

impl Plan {
    fn from_args(args: &CompareArgs) -> Result<Plan, String> {
        let short = args.short;
        let pick = |given: Option<u64>, full: u64, small: u64| {
            given.unwrap_or(if short { small } else { full })
        };
        let connections = pick(args.connections, 15_000, 1_000);
        let echo_connections = pick(args.echo_connections, 10_000, 500).min(connections);
        let echo_time = args
            .echo_seconds
            .unwrap_or(Duration::from_secs(if short { 1 } else { 5 }));
        let bulk_sizes = match &args.big {
            Some(sizes) => sizes.clone(),
            None if short => vec![8_000_000],
            None => vec![100_000_000, 30_000_000],
        };
        let sizes = args.sizes.clone().unwrap_or_else(|| vec![20, 512]);
        let sizes = sizes
            .into_iter()
            .map(|s| {
                usize::try_from(s).map_err(|_| format!("message size {s} does not fit in memory"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = args.client_threads.unwrap_or(cores);
        // Servers inherit this process's limit, raised here when it can be.
        let most = args
            .curve
            .iter()
            .flatten()
            .chain([&connections])
            .max()
            .copied()
            .unwrap_or(0);
        let limit = limits::open_files_limit(most.saturating_add(limits::FD_MARGIN))
            .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
        if let Err(e) = limits::check_fits(most, limit, "this process and each server") {
            return Err(e.to_string());
        }
        if connections == 0 || threads == 0 || args.curve.iter().flatten().any(|&n| n == 0) {
            return Err("--connections and --client-threads must be at least 1".to_string());
        }
        if bulk_sizes.iter().any(|&s| s == 0 || s > MAX_MESSAGE) || sizes.contains(&0) {
            return Err(format!(
                "message sizes must be between 1 and {MAX_MESSAGE} bytes"
            ));
        }
        let timeout = args
            .timeout
            .unwrap_or(Duration::from_secs(if short { 20 } else { 60 }));
        Ok(Plan {
            connections,
            echo_connections,
            echo_time,
            sizes,
            bulk_sizes,
            threads,
            in_flight: args.in_flight.max(1),
            timeout,
            require_peers: args.require_peers || short,
            curve: args.curve.clone().unwrap_or_default(),
            peers: args
                .peers_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))),
        })
    }

    /// Source addresses of client thread `t`: 127.0.0.2 and up, none
    /// shared between threads (127.0.0.1 is left to the servers' probes).
    fn sources(&self, t: usize, loopback: bool) -> Vec<IpAddr> {
        if !loopback {
            return Vec::new();
        }
        let first = 2 + t * SOURCES_PER_THREAD;
        (first..first + SOURCES_PER_THREAD)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
            .collect()
    }

    /// `total` split over the threads, the first ones taking the rest.
    fn split(&self, total: u64) -> Vec<u64> {
        let k = self.threads as u64;
        (0..k)
            .map(|i| total / k + u64::from(i < total % k))
            .collect()
    }
}

/// Adds up the storms of the client threads; the phase lasted as long as
/// the slowest thread.
fn merge_storms(parts: Vec<StormReport>) -> StormReport {
    let mut all = StormReport::default();
    for p in parts {
        all.requested += p.requested;
        all.opened += p.opened;
        all.failed += p.failed;
        for (reason, n) in p.failures {
            *all.failures.entry(reason).or_default() += n;
        }
        all.elapsed_ms = all.elapsed_ms.max(p.elapsed_ms);
        all.interrupted |= p.interrupted;
    }
    if all.elapsed_ms > 0.0 {
        all.connections_per_ms = all.opened as f64 / all.elapsed_ms;
    }
    all
}

/// Adds up the echoes of the client threads (see the module doc for how
/// the percentiles are combined).
fn merge_echoes(parts: Vec<EchoReport>) -> EchoReport {
    let mut all = EchoReport::default();
    let mut p50_weighted = 0.0;
    let mut mean_weighted = 0.0;
    let mut latency: Option<Latency> = None;
    for p in parts {
        all.connections += p.connections;
        all.size_bytes = p.size_bytes;
        all.elapsed_ms = all.elapsed_ms.max(p.elapsed_ms);
        all.echoes += p.echoes;
        all.bytes += p.bytes;
        all.mismatches += p.mismatches;
        all.unanswered += p.unanswered;
        all.interrupted |= p.interrupted;
        let room = 5usize.saturating_sub(all.mismatch_examples.len());
        all.mismatch_examples
            .extend(p.mismatch_examples.into_iter().take(room));
        for (reason, n) in p.errors {
            *all.errors.entry(reason).or_default() += n;
        }
        let Some(l) = p.latency_us else {
            continue;
        };
        p50_weighted += l.p50 as f64 * p.echoes as f64;
        mean_weighted += l.mean * p.echoes as f64;
        let merged = latency.get_or_insert(l);
        merged.p90 = merged.p90.max(l.p90);
        merged.p99 = merged.p99.max(l.p99);
        merged.max = merged.max.max(l.max);
    }
    if let Some(l) = &mut latency {
        if all.echoes > 0 {
            l.p50 = (p50_weighted / all.echoes as f64).round() as u64;
            l.mean = mean_weighted / all.echoes as f64;
        }
    }
    all.latency_us = latency;
    if all.elapsed_ms > 0.0 {
        all.echoes_per_ms = all.echoes as f64 / all.elapsed_ms;
    }
    all
}

/// Client threads for one server, each with its own source addresses.
fn spawn_workers(
    target: &Target,
    raw: bool,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<Worker>, String> {
    (0..plan.threads)
        .map(|t| {
            let sources = plan.sources(t, target.is_loopback_v4());
            Worker::spawn(target.clone(), sources, raw, Arc::clone(stop))
        })
        .collect()
}

/// Closes every connection of the workers and ends their threads.
fn finish_workers(workers: Vec<Worker>) {
    let closes = vec![Job::Close; workers.len()];
    let _: Vec<Done> = run_all(&workers, &closes);
    for w in workers {
        drop(w.jobs);
        let _ = w.handle.join();
    }
}

/// Opens `n` connections over the workers.
fn storm(workers: &[Worker], n: u64, plan: &Plan) -> StormReport {
    let jobs: Vec<Job> = plan
        .split(n)
        .into_iter()
        .map(|n| Job::Open {
            n,
            in_flight: plan.in_flight.div_ceil(plan.threads as u64),
            timeout: plan.timeout,
        })
        .collect();
    let parts = run_all(workers, &jobs).into_iter();
    merge_storms(
        parts
            .filter_map(|d| if let Done::Open(r) = d { Some(r) } else { None })
            .collect(),
    )
}

/// Echoes `size` bytes on `n` of the workers' connections; `None` for
/// `row` when all went well, or what went wrong.
fn echo(
    workers: &[Worker],
    n: u64,
    size: usize,
    plan: &Plan,
    sampler: &mut Option<CpuSampler>,
) -> (EchoResult, Option<String>) {
    cpu_of(sampler);
    let jobs: Vec<Job> = plan
        .split(n)
        .into_iter()
        .map(|count| Job::Echo {
            count: count as usize,
            size,
            duration: plan.echo_time,
            drain: plan.timeout.min(Duration::from_secs(10)),
        })
        .collect();
    let parts = run_all(workers, &jobs).into_iter();
    let cpu = cpu_of(sampler);
    let report = merge_echoes(
        parts
            .filter_map(|d| if let Done::Echo(r) = d { Some(r) } else { None })
            .collect(),
    );
    let problem = (!report.ok()).then(|| {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|(r, n)| format!("{n} x {r}"))
            .collect();
        format!(
            "echo {size} B on {n}: {} echoes, {} mismatches, {} unanswered {}",
            report.echoes,
            report.mismatches,
            report.unanswered,
            errors.join("; ")
        )
    });
    let result = EchoResult {
        server_cpu_pct: cpu.map(|c| c.pct),
        server_cpu_ns_per_echo: per_event(cpu, report.echoes),
        report,
    };
    (result, problem)
}

/// Runs the three phases (and the curve) against one started (or
/// external) server.
fn measure(
    kind: &Kind,
    target: &Target,
    pid: Option<u32>,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
    feed: &Feed,
    row: &mut ServerResult,
) {
    let raw = matches!(kind, Kind::Raw(_));
    let workers = match spawn_workers(target, raw, plan, stop) {
        Ok(w) => w,
        Err(e) => return row.errors.push(e),
    };
    let mut sampler = pid.map(CpuSampler::new);
    let name = row.name.clone();
    let say = |what: String| feed.say(&format!("{name}: {what}"));

    // Phase 1: the storm, with every connection kept open.
    say(format!("connection storm of {}", plan.connections));
    let rss_before = pid.and_then(|p| procfs::rss_bytes(p).ok());
    feed.step(Step::Storm {
        total: plan.connections,
        base: 0,
    });
    feed.baseline(rss_before);
    cpu_of(&mut sampler);
    let mut report = storm(&workers, plan.connections, plan);
    let cpu = cpu_of(&mut sampler);
    let rss_after = pid.and_then(|p| procfs::rss_bytes(p).ok());
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        report.set_rss(before, after);
    }
    let bytes_per_connection = match (rss_before, rss_after) {
        (Some(b), Some(a)) if report.opened > 0 => {
            Some(a.saturating_sub(b) as f64 / report.opened as f64)
        }
        _ => None,
    };
    if !report.ok() {
        row.errors.push(format!(
            "storm: {} of {} opened",
            report.opened, report.requested
        ));
    }
    row.storm = Some(StormResult {
        server_cpu_pct: cpu.map(|c| c.pct),
        server_cpu_ns_per_connection: per_event(cpu, report.opened),
        report,
        bytes_per_connection,
    });

    // Phase 2: echoes at each size on the first connections of each thread.
    for &size in &plan.sizes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        say(format!(
            "echo of {size} B on {} connections",
            plan.echo_connections
        ));
        feed.step(Step::Echo {
            size,
            started: Instant::now(),
            seconds: plan.echo_time.as_secs_f64(),
        });
        let (result, problem) = echo(&workers, plan.echo_connections, size, plan, &mut sampler);
        row.errors.extend(problem);
        row.echo.push(result);
    }

    // Phase 3: one large message at a time, on the first thread.
    for &size in &plan.bulk_sizes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        say(format!("one message of {size} B"));
        feed.step(Step::Bulk { size });
        cpu_of(&mut sampler);
        let job = Job::Throughput {
            size,
            timeout: plan.timeout,
        };
        let report = match run_all(&workers[..1], &[job]).pop() {
            Some(Done::Throughput(r)) => r,
            _ => ThroughputReport::default(),
        };
        let server_cpu_pct = cpu_of(&mut sampler).map(|c| c.pct);
        if !report.ok() {
            row.errors
                .push(format!("{size} B message: {}", report.failures.join("; ")));
        }
        row.bulk.push(BulkResult {
            report,
            server_cpu_pct,
        });
    }
    feed.step(Step::Closing);
    finish_workers(workers);

    // The curve: fresh connections for each point, every one echoing.
    let size = plan.sizes.first().copied().unwrap_or(20);
    for &n in &plan.curve {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        say(format!("curve: echo of {size} B on all of {n} connections"));
        feed.step(Step::Curve { size, n });
        let workers = match spawn_workers(target, raw, plan, stop) {
            Ok(w) => w,
            Err(e) => return row.errors.push(e),
        };
        let opened = storm(&workers, n, plan);
        if !opened.ok() {
            row.errors.push(format!(
                "curve storm: {} of {} opened",
                opened.opened, opened.requested
            ));
        }
        let (echo, problem) = echo(&workers, n, size, plan, &mut sampler);
        row.errors.extend(problem);
        row.curve.push(CurvePoint {
            connections: n,
            echo,
        });
        finish_workers(workers);
    }
}

/// Starts, measures and stops one server.
fn run_server(kind: &Kind, plan: &Plan, stop: &Arc<AtomicBool>, feed: &Feed) -> ServerResult {
    let mut row = ServerResult {
        name: kind.name(),
        version: version(kind, &plan.peers),
        cores: kind.cores(),
        ..ServerResult::default()
    };
    if let Kind::External(url) = kind {
        match Target::parse(url) {
            Ok(target) => {
                feed.server(&row.name, None);
                measure(kind, &target, None, plan, stop, feed, &mut row);
            }
            Err(e) => row.errors.push(e.to_string()),
        }
        row.status = if row.errors.is_empty() {
            "ok"
        } else {
            "failed"
        }
        .to_string();
        return row;
    }

    let port = match free_port() {
        Ok(p) => p,
        Err(e) => {
            row.status = "failed".to_string();
            row.errors.push(format!("no free port: {e}"));
            return row;
        }
    };
    let l = match launch(kind, &plan.peers, port) {
        Ok(Some(l)) => l,
        Ok(None) => unreachable!("only external servers have no launch"),
        Err(e) => {
            row.status = "failed".to_string();
            row.errors.push(format!("cannot find this program: {e}"));
            return row;
        }
    };
    if *kind == Kind::NodeWs && command_output("node", &["--version"]).is_none() {
        row.status = "missing".to_string();
        row.errors.push(
            "node is not on PATH: install Node.js, then run scripts/install-peers.sh".to_string(),
        );
        return row;
    }
    if !l.installed.exists() {
        row.status = "missing".to_string();
        row.errors.push(format!(
            "not installed ({} is absent): run scripts/install-peers.sh",
            l.installed.display()
        ));
        return row;
    }
    feed.say(&format!("starting {} ({})", row.name, row.version));
    feed.server(&row.name, None);
    let mut running = match start(&row.name, &l, port) {
        Ok(r) => r,
        Err(e) => {
            row.status = "failed".to_string();
            row.errors.push(e);
            return row;
        }
    };
    let url = format!("ws://127.0.0.1:{port}/");
    match Target::parse(&url) {
        Ok(target) => {
            feed.server(&row.name, Some(running.pid()));
            measure(
                kind,
                &target,
                Some(running.pid()),
                plan,
                stop,
                feed,
                &mut row,
            );
        }
        Err(e) => row.errors.push(e.to_string()),
    }
    if let Ok(Some(status)) = running.child.try_wait() {
        row.errors.push(format!(
            "the server died ({status}): {}",
            running.log_tail()
        ));
    }
    feed.step(Step::Stopping);
    running.stop();
    feed.server("", None);
    row.status = if row.errors.is_empty() {
        "ok"
    } else {
        "failed"
    }
    .to_string();
    row
}

/// Fills in tern's figures as a percentage of the raw row on as many loops.
fn percent_of_raw(rows: &mut [ServerResult], kinds: &[Kind]) {
    let pct = |a: f64, b: f64| (b > 0.0).then(|| 100.0 * a / b);
    for i in 0..rows.len() {
        let Some(twin) = kinds[i].raw_twin() else {
            continue;
        };
        let Some(j) = kinds.iter().position(|k| *k == twin) else {
            continue;
        };
        let raw = rows[j].clone();
        let row = &rows[i];
        let mut of = OfRaw {
            raw: raw.name.clone(),
            ..OfRaw::default()
        };
        if let (Some(t), Some(r)) = (&row.storm, &raw.storm) {
            of.connections_per_ms_pct =
                pct(t.report.connections_per_ms, r.report.connections_per_ms);
        }
        if let (Some(t), Some(r)) = (&row.storm, &raw.storm) {
            let cost = t
                .server_cpu_ns_per_connection
                .zip(r.server_cpu_ns_per_connection);
            of.cpu_per_connection_pct = cost.and_then(|(t, r)| pct(r, t));
        }
        for (t, r) in row.echo.iter().zip(&raw.echo) {
            let size = t.report.size_bytes;
            if let Some(p) = pct(t.report.echoes_per_ms, r.report.echoes_per_ms) {
                of.echoes_per_ms_pct.insert(size, p);
            }
            let cost = t.server_cpu_ns_per_echo.zip(r.server_cpu_ns_per_echo);
            if let Some(p) = cost.and_then(|(t, r)| pct(r, t)) {
                of.cpu_per_echo_pct.insert(size, p);
            }
        }
        for (t, r) in row.bulk.iter().zip(&raw.bulk) {
            if let Some(p) = pct(t.report.median_mb_per_s, r.report.median_mb_per_s) {
                of.mb_per_s_pct.insert(t.report.size_bytes, p);
            }
        }
        rows[i].of_raw = Some(of);
    }
}

/// A figure with its server's CPU share, `*` when not saturated.
fn cell(value: Option<String>, cpu: Option<f64>, cores: usize) -> String {
    let Some(value) = value else {
        return "-".to_string();
    };
    let Some(cpu) = cpu else {
        return value;
    };
    let mark = if cpu < SATURATED_PCT * cores as f64 {
        "*"
    } else {
        ""
    };
    format!("{value} ({cpu:.0}%{mark})")
}

fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 && b % 1_000_000 == 0 => format!("{} MB", b / 1_000_000),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} B"),
    }
}

/// The table: one row per server, each figure with the server's CPU
/// share; then tern against the raw limit, the versions and the problems.
pub fn table(report: &CompareReport) -> String {
    let mut out = match report.servers.iter().find(|s| s.storm.is_some()) {
        Some(first) => figures(report, first),
        None => "tern compare: nothing was measured\n".to_string(),
    };
    costs(report, &mut out);
    curve(report, &mut out);
    footer(report, &mut out);
    out
}

/// The rows of figures, with `first` (a measured row) setting the columns.
fn figures(report: &CompareReport, first: &ServerResult) -> String {
    let mut header = vec![
        "server".to_string(),
        "conn/ms".to_string(),
        "conn/MiB".to_string(),
        "B/conn".to_string(),
    ];
    for e in &first.echo {
        let size = size_label(e.report.size_bytes);
        header.push(format!("echo/ms {size}"));
        header.push(format!("p50/p99 us {size}"));
    }
    for b in &first.bulk {
        header.push(format!("MB/s {}", size_label(b.report.size_bytes)));
    }

    let mut rows = vec![header];
    for s in &report.servers {
        let mut r = vec![s.name.clone()];
        let Some(storm) = &s.storm else {
            r.push(format!("{} (see problems)", s.status));
            rows.push(r);
            continue;
        };
        let rep = &storm.report;
        r.push(cell(
            Some(format!("{:.1}", rep.connections_per_ms)),
            storm.server_cpu_pct,
            s.cores,
        ));
        r.push(
            rep.connections_per_mib
                .map_or("-".to_string(), |v| format!("{v:.0}")),
        );
        r.push(
            storm
                .bytes_per_connection
                .map_or("-".to_string(), |v| format!("{v:.0}")),
        );
        for e in &s.echo {
            let rate = (e.report.echoes > 0).then(|| format!("{:.1}", e.report.echoes_per_ms));
            r.push(cell(rate, e.server_cpu_pct, s.cores));
            r.push(
                e.report
                    .latency_us
                    .map_or("-".to_string(), |l| format!("{}/{}", l.p50, l.p99)),
            );
        }
        for b in &s.bulk {
            let rate = b
                .report
                .ok()
                .then(|| format!("{:.0}", b.report.median_mb_per_s));
            r.push(cell(rate, b.server_cpu_pct, s.cores));
        }
        rows.push(r);
    }

    let mut out = String::new();
    columns(&rows, &mut out);
    let _ = writeln!(
        out,
        "\n(N%) server CPU over the phase, 100% = one core; * below {SATURATED_PCT:.0}% of its cores: not saturated"
    );
    let _ = writeln!(
        out,
        "{} connections in the storm, echoes on {} of them for {:.1} s per size, {} client thread(s), {} cores",
        report.connections, report.echo_connections, report.echo_seconds, report.client_threads, report.cores
    );
    let _ = writeln!(
        out,
        "load average at the start {}, at the end {}",
        report.load_average[0], report.load_average[1]
    );

    for s in &report.servers {
        if let Some(of) = &s.of_raw {
            let mut parts = Vec::new();
            if let Some(p) = of.connections_per_ms_pct {
                parts.push(format!("conn/ms {p:.0}%"));
            }
            for (size, p) in &of.echoes_per_ms_pct {
                parts.push(format!("echo {} {p:.0}%", size_label(*size)));
            }
            for (size, p) in &of.mb_per_s_pct {
                parts.push(format!("{} {p:.0}%", size_label(*size)));
            }
            if parts.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "{} as a share of {}: {}",
                s.name,
                of.raw,
                parts.join(", ")
            );
            let mut cost = Vec::new();
            if let Some(p) = of.cpu_per_connection_pct {
                cost.push(format!("per connection {p:.0}%"));
            }
            for (size, p) in &of.cpu_per_echo_pct {
                cost.push(format!("per echo {} {p:.0}%", size_label(*size)));
            }
            if !cost.is_empty() {
                let _ = writeln!(
                    out,
                    "{} CPU efficiency (raw CPU time / tern's): {}",
                    s.name,
                    cost.join(", ")
                );
            }
        }
    }
    out
}

/// Lays out `rows` (the first is the header) in aligned columns.
fn columns(rows: &[Vec<String>], out: &mut String) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
            );
        }
    }
}

fn nanos(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.0}"))
}

/// The server's CPU time per event: steadier than rates on a busy machine.
fn costs(report: &CompareReport, out: &mut String) {
    let measured: Vec<&ServerResult> = report
        .servers
        .iter()
        .filter(|s| s.storm.is_some())
        .collect();
    let Some(first) = measured.first() else {
        return;
    };
    if first
        .storm
        .as_ref()
        .is_none_or(|s| s.server_cpu_ns_per_connection.is_none())
        && measured.len() == 1
    {
        return;
    }
    let mut header = vec!["server CPU per event".to_string(), "ns/conn".to_string()];
    header.extend(
        first
            .echo
            .iter()
            .map(|e| format!("ns/echo {}", size_label(e.report.size_bytes))),
    );
    let mut rows = vec![header];
    for s in &measured {
        let mut r = vec![s.name.clone()];
        r.push(nanos(
            s.storm
                .as_ref()
                .and_then(|st| st.server_cpu_ns_per_connection),
        ));
        r.extend(s.echo.iter().map(|e| nanos(e.server_cpu_ns_per_echo)));
        rows.push(r);
    }
    let _ = writeln!(out);
    columns(&rows, out);
}

/// Echo rate and CPU per echo by number of connections.
fn curve(report: &CompareReport, out: &mut String) {
    let Some(first) = report.servers.iter().find(|s| !s.curve.is_empty()) else {
        return;
    };
    let size = size_label(first.curve[0].echo.report.size_bytes);
    let mut header = vec![format!("echo {size} by connections")];
    header.extend(first.curve.iter().map(|p| p.connections.to_string()));
    let mut rows = vec![header];
    for s in report.servers.iter().filter(|s| !s.curve.is_empty()) {
        let mut rate = vec![format!("{} echo/ms", s.name)];
        let mut cost = vec![format!("{} ns/echo", s.name)];
        for p in &s.curve {
            let e = &p.echo;
            let value = (e.report.echoes > 0).then(|| format!("{:.1}", e.report.echoes_per_ms));
            rate.push(cell(value, e.server_cpu_pct, s.cores));
            cost.push(nanos(e.server_cpu_ns_per_echo));
        }
        rows.push(rate);
        rows.push(cost);
    }
    let _ = writeln!(out);
    columns(&rows, out);
}

/// Versions of every server and the problems met.
fn footer(report: &CompareReport, out: &mut String) {
    let _ = writeln!(out, "\nversions:");
    for s in &report.servers {
        let _ = writeln!(out, "  {}: {} [{}]", s.name, s.version, s.status);
    }
    let problems: Vec<&ServerResult> = report
        .servers
        .iter()
        .filter(|s| !s.errors.is_empty())
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nproblems:");
        for s in problems {
            for e in &s.errors {
                let _ = writeln!(out, "  {}: {e}", s.name);
            }
        }
    }
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the server under test is doing, for the dashboard's phase line.
#[derive(Clone, Copy, Debug, Default)]
enum Step {
    /// Between servers, or starting one.
    #[default]
    Starting,
    /// Opening `total` connections; `base` is the opened counter at the start.
    Storm { total: u64, base: u64 },
    /// Echoing `size` bytes for `seconds`.
    Echo {
        size: usize,
        started: Instant,
        seconds: f64,
    },
    /// One message of `size` bytes.
    Bulk { size: u64 },
    /// A point of the cost curve.
    Curve { size: usize, n: u64 },
    /// Closing the connections.
    Closing,
    /// Stopping the server.
    Stopping,
}

/// The server under test and its step.
#[derive(Debug, Default)]
struct Current {
    server: String,
    pid: Option<u32>,
    /// The server's resident memory before the storm, in bytes.
    baseline: Option<u64>,
    step: Step,
}

/// The dashboard's side of a run.
#[derive(Debug)]
struct Live {
    registry: &'static Registry,
    status: Status,
    current: std::sync::Mutex<Current>,
}

/// What the run tells the dashboard: inert (progress on stderr) without
/// `--tui`.
#[derive(Clone, Debug, Default)]
struct Feed {
    live: Option<Arc<Live>>,
}

impl Feed {
    fn current(&self) -> Option<std::sync::MutexGuard<'_, Current>> {
        let live = self.live.as_ref()?;
        Some(
            live.current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A progress note: on stderr, unless the dashboard owns the terminal.
    fn say(&self, what: &str) {
        if self.live.is_none() {
            eprintln!("tern compare: {what}");
        }
    }

    /// The server now under test (`""` for none), and its process.
    fn server(&self, name: &str, pid: Option<u32>) {
        if let Some(mut c) = self.current() {
            *c = Current {
                server: name.to_string(),
                pid,
                baseline: None,
                step: Step::Starting,
            };
        }
    }

    /// The server's memory before the storm, for the conn/MiB tile.
    fn baseline(&self, bytes: Option<u64>) {
        if let Some(mut c) = self.current() {
            c.baseline = bytes;
        }
    }

    /// The step now under way.
    fn step(&self, mut step: Step) {
        let Some(live) = &self.live else {
            return;
        };
        if let Step::Storm { base, .. } = &mut step {
            *base = live.registry.snapshot().counter(names::CONNECTIONS_OPENED);
        }
        if let Some(mut c) = self.current() {
            c.step = step;
        }
    }

    /// Lists the finished rows in the "results so far" panel.
    fn results(&self, rows: &[ServerResult]) {
        if let Some(live) = &self.live {
            live.status.set_results(headlines(rows));
        }
    }
}

/// The phase line for `current`, given the opened counter now.
fn phase_line(current: &Current, opened: u64) -> String {
    let what = match current.step {
        Step::Starting if current.server.is_empty() => return "between servers".to_string(),
        Step::Starting => "starting".to_string(),
        Step::Storm { total, base } => format!(
            "storm {}/{}",
            thousands(opened.saturating_sub(base).min(total)),
            thousands(total)
        ),
        Step::Echo {
            size,
            started,
            seconds,
        } => format!(
            "echo {} {:.1}/{seconds:.1} s",
            size_label(size as u64),
            started.elapsed().as_secs_f64().min(seconds)
        ),
        Step::Bulk { size } => format!("one {} message", size_label(size)),
        Step::Curve { size, n } => {
            format!(
                "curve: echo {} on {}",
                size_label(size as u64),
                thousands(n)
            )
        }
        Step::Closing => "closing connections".to_string(),
        Step::Stopping => "stopping the server".to_string(),
    };
    format!("{}: {what}", current.server)
}

/// `n` with a comma every three digits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keeps the phase line and the server gauges current until `done`.
fn follow(live: &Live, done: &AtomicBool) {
    let rss = metrics::gauge!(names::SERVER_RSS_BYTES);
    let baseline = metrics::gauge!(names::SERVER_BASELINE_RSS_BYTES);
    let cpu = metrics::gauge!(names::SERVER_CPU_PERCENT);
    let mut sampler: Option<procfs::CpuSampler> = None;
    let mut followed: Option<u32> = None;
    while !done.load(Ordering::Relaxed) {
        let (line, pid, base) = {
            let c = live
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let opened = live.registry.snapshot().counter(names::CONNECTIONS_OPENED);
            (phase_line(&c, opened), c.pid, c.baseline)
        };
        live.status.set_phase(line);
        if pid != followed {
            // A new server: its figures start from nothing.
            followed = pid;
            sampler = pid.map(procfs::CpuSampler::new);
            rss.set(0.0);
            cpu.set(0.0);
        }
        baseline.set(base.map_or(0.0, |b| b as f64));
        if let Some(pid) = pid {
            if let Ok(bytes) = procfs::rss_bytes(pid) {
                rss.set(bytes as f64);
            }
        }
        if let Some(percent) = sampler.as_mut().and_then(procfs::CpuSampler::sample) {
            cpu.set(percent);
        }
        std::thread::sleep(FEED_EVERY);
    }
}

/// The "results so far" panel: each finished server's headline figures.
fn headlines(rows: &[ServerResult]) -> Vec<String> {
    let first = rows.iter().find(|r| r.storm.is_some());
    let echo_size = first
        .and_then(|r| r.echo.first())
        .map(|e| e.report.size_bytes);
    let bulk_size = first
        .and_then(|r| r.bulk.first())
        .map(|b| b.report.size_bytes);
    let mut header = vec![
        "server".to_string(),
        "conn/ms".to_string(),
        "conn/MiB".to_string(),
    ];
    header.push(match echo_size {
        Some(size) => format!("echoes/ms {}", size_label(size)),
        None => "echoes/ms".to_string(),
    });
    header.push(match bulk_size {
        Some(size) => format!("MB/s {}", size_label(size)),
        None => "MB/s".to_string(),
    });
    let mut table = vec![header];
    for r in rows {
        let Some(storm) = &r.storm else {
            table.push(vec![r.name.clone(), r.status.clone()]);
            continue;
        };
        let rep = &storm.report;
        let echo = r
            .echo
            .first()
            .filter(|e| e.report.echoes > 0)
            .map_or("-".to_string(), |e| {
                format!("{:.1}", e.report.echoes_per_ms)
            });
        let bulk = r
            .bulk
            .first()
            .filter(|b| b.report.ok())
            .map_or("-".to_string(), |b| {
                format!("{:.0}", b.report.median_mb_per_s)
            });
        table.push(vec![
            r.name.clone(),
            format!("{:.1}", rep.connections_per_ms),
            rep.connections_per_mib
                .map_or("-".to_string(), |v| format!("{v:.0}")),
            echo,
            bulk,
        ]);
    }
    let mut out = String::new();
    columns(&table, &mut out);
    out.lines().map(str::to_string).collect()
}

/// Measures every server in turn, skipping the rest once `stop` is set.
fn run_servers(
    kinds: &[Kind],
    plan: &Plan,
    stop: &Arc<AtomicBool>,
    feed: &Feed,
) -> Vec<ServerResult> {
    let mut rows = Vec::new();
    for kind in kinds {
        if stop.load(Ordering::Relaxed) {
            rows.push(ServerResult {
                name: kind.name(),
                status: "skipped".to_string(),
                errors: vec!["interrupted".to_string()],
                ..ServerResult::default()
            });
            continue;
        }
        rows.push(run_server(kind, plan, stop, feed));
        feed.results(&rows);
    }
    rows
}

/// Runs the servers on a worker thread under the dashboard; the errors of
/// the dashboard itself come back beside the rows.
fn run_with_dashboard(
    kinds: Vec<Kind>,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
) -> Result<(Vec<ServerResult>, Option<String>), String> {
    let registry = Registry::try_install().map_err(|e| format!("no dashboard: {e}"))?;
    let live = Arc::new(Live {
        registry,
        status: Status::new(),
        current: std::sync::Mutex::new(Current::default()),
    });
    let feed = Feed {
        live: Some(Arc::clone(&live)),
    };
    let done = Arc::new(AtomicBool::new(false));
    let follower = {
        let (live, done) = (Arc::clone(&live), Arc::clone(&done));
        std::thread::Builder::new()
            .name("tern-follow".into())
            .spawn(move || follow(&live, &done))
            .map_err(|e| format!("cannot start the sampler thread: {e}"))?
    };
    let worker = {
        let (plan, stop, feed) = (plan.clone(), Arc::clone(stop), feed.clone());
        std::thread::Builder::new()
            .name("tern-compare".into())
            .spawn(move || run_servers(&kinds, &plan, &stop, &feed))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            done.store(true, Ordering::Relaxed);
            let _ = follower.join();
            return Err(format!("cannot start the load thread: {e}"));
        }
    };
    let options = MonitorOptions {
        title: "tern compare".to_string(),
        mode: Mode::detect(false),
        ..MonitorOptions::default()
    };
    let mut monitor = Monitor::new(registry, live.status.clone(), options);
    let shown = monitor.run(stop, &|| worker.is_finished());
    // After a quit the phase under way winds down and the server stops.
    let rows = worker.join();
    done.store(true, Ordering::Relaxed);
    let _ = follower.join();
    let rows = rows.map_err(|_| "the load thread panicked".to_string())?;
    Ok((rows, shown.err().map(|e| format!("dashboard failed: {e}"))))
}

/// Runs `tern compare`.
pub fn compare(args: CompareArgs) -> Outcome {
    let refuse = |e: String| {
        eprintln!("tern compare: {e}");
        Outcome::Refused
    };
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut kinds = match select(args.servers.as_deref(), cores) {
        Ok(k) => k,
        Err(e) => return refuse(e),
    };
    kinds.extend(args.url.iter().cloned().map(Kind::External));
    if kinds.is_empty() {
        return refuse("no server to measure".to_string());
    }
    let stop = crate::commands::stop_on_signals();
    let load_before = load_average();

    let (mut rows, dashboard_error) = if args.tui {
        match run_with_dashboard(kinds.clone(), &plan, &stop) {
            Ok(done) => done,
            Err(e) => {
                eprintln!("tern compare: {e}");
                return Outcome::Failed;
            }
        }
    } else {
        (run_servers(&kinds, &plan, &stop, &Feed::default()), None)
    };
    percent_of_raw(&mut rows, &kinds);

    let missing = rows.iter().any(|r| r.status == "missing");
    let failed = rows
        .iter()
        .any(|r| r.status == "failed" || r.status == "skipped");
    let report = CompareReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cores,
        client_threads: plan.threads,
        connections: plan.connections,
        echo_connections: plan.echo_connections,
        echo_seconds: plan.echo_time.as_secs_f64(),
        load_average: [load_before, load_average()],
        ok: !(failed || missing && plan.require_peers),
        servers: rows,
    };
    print!("{}", table(&report));
    if let Some(e) = &dashboard_error {
        eprintln!("tern compare: {e}");
    }
    if let Some(path) = &args.json_out {
        let json = match serde_json::to_string_pretty(&report) {
            Ok(j) => j,
            Err(e) => return refuse(format!("cannot encode the report: {e}")),
        };
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("tern compare: cannot write {}: {e}", path.display());
            return Outcome::Failed;
        }
    }
    if missing && plan.require_peers {
        eprintln!("tern compare: a peer is missing (run scripts/install-peers.sh)");
    }
    if report.ok {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_servers_by_name() {
        let all = select(None, 2).unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(all[0], Kind::Raw(1));
        let two = select(Some("tern, node-ws,tern"), 2).unwrap();
        assert_eq!(two, vec![Kind::Tern(1), Kind::NodeWs]);
        let err = select(Some("nginx"), 2).unwrap_err();
        assert!(err.contains("unknown server \"nginx\""), "{err}");
        assert_eq!(select(None, 1).unwrap().len(), 6);
    }

    #[test]
    fn reads_versions_from_a_lock_file() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.2.3\"\n\n[[package]]\nname = \"tokio-tungstenite\"\nversion = \"0.30.0\"\n";
        assert_eq!(locked(lock, "tokio"), "1.2.3");
        assert_eq!(locked(lock, "tokio-tungstenite"), "0.30.0");
        assert_eq!(locked(lock, "hyper"), "?");
    }

    #[test]
    fn merges_storms_by_the_slowest_thread() {
        let a = StormReport {
            requested: 10,
            opened: 10,
            elapsed_ms: 4.0,
            ..StormReport::default()
        };
        let mut b = a.clone();
        b.opened = 8;
        b.failed = 2;
        b.elapsed_ms = 6.0;
        b.failures.insert("refused".to_string(), 2);
        let all = merge_storms(vec![a, b]);
        assert_eq!((all.requested, all.opened, all.failed), (20, 18, 2));
        assert_eq!(all.connections_per_ms, 3.0);
        assert_eq!(all.failures["refused"], 2);
        assert!(!all.ok());
    }

    #[test]
    fn merges_echo_latencies() {
        let part = |echoes, p50, p99| EchoReport {
            connections: 5,
            size_bytes: 20,
            elapsed_ms: 10.0,
            echoes,
            latency_us: Some(Latency {
                p50,
                p90: p99,
                p99,
                max: p99,
                mean: 0.0,
            }),
            ..EchoReport::default()
        };
        let all = merge_echoes(vec![part(300, 100, 400), part(100, 200, 900)]);
        assert_eq!(all.echoes, 400);
        assert_eq!(all.echoes_per_ms, 40.0);
        let l = all.latency_us.unwrap();
        assert_eq!((l.p50, l.p99), (125, 900));
        assert!(all.ok());
    }

    #[test]
    fn splits_work_over_threads() {
        let args = CompareArgs::for_tests(3);
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.split(10), vec![4, 3, 3]);
        assert_eq!(plan.split(2), vec![1, 1, 0]);
        let s0 = plan.sources(0, true);
        let s1 = plan.sources(1, true);
        assert_eq!(s0.len(), SOURCES_PER_THREAD);
        assert!(s0.iter().all(|a| !s1.contains(a)));
        assert!(plan.sources(0, false).is_empty());
    }

    #[test]
    fn marks_unsaturated_figures() {
        assert_eq!(cell(Some("10.0".into()), Some(99.0), 1), "10.0 (99%)");
        assert_eq!(cell(Some("10.0".into()), Some(120.0), 2), "10.0 (120%*)");
        assert_eq!(cell(Some("10.0".into()), None, 1), "10.0");
        assert_eq!(cell(None, Some(99.0), 1), "-");
    }

    #[test]
    fn samples_cpu_of_a_busy_process() {
        let mut sampler = CpuSampler::new(std::process::id());
        assert_eq!(sampler.sample(), None);
        let start = Instant::now();
        let mut x = 1u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        assert!(sampler.sample().is_some_and(|c| c.pct > 0.0 && c.ns > 0));
        assert!(cpu_ns(u32::MAX).is_none());
    }

    #[test]
    fn cost_per_event() {
        let cpu = Some(Cpu {
            pct: 50.0,
            ns: 9_000,
        });
        assert_eq!(per_event(cpu, 3), Some(3_000.0));
        assert_eq!(per_event(cpu, 0), None);
        assert_eq!(per_event(None, 3), None);
    }

    #[test]
    fn phase_line_names_the_server_and_its_progress() {
        let mut c = Current {
            server: "tern".to_string(),
            ..Current::default()
        };
        assert_eq!(phase_line(&c, 0), "tern: starting");
        c.step = Step::Storm {
            total: 15_000,
            base: 1_000,
        };
        assert_eq!(phase_line(&c, 5_213), "tern: storm 4,213/15,000");
        assert_eq!(phase_line(&c, 900), "tern: storm 0/15,000");
        c.step = Step::Echo {
            size: 20,
            started: Instant::now(),
            seconds: 0.0,
        };
        assert_eq!(phase_line(&c, 0), "tern: echo 20 B 0.0/0.0 s");
        c.step = Step::Bulk { size: 8_000_000 };
        assert_eq!(phase_line(&c, 0), "tern: one 8 MB message");
        let between = Current::default();
        assert_eq!(phase_line(&between, 7), "between servers");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn headlines_list_finished_servers() {
        let measured = ServerResult {
            name: "raw-tcp".to_string(),
            status: "ok".to_string(),
            storm: Some(StormResult {
                report: StormReport {
                    connections_per_ms: 9.54,
                    connections_per_mib: Some(11_130.2),
                    ..StormReport::default()
                },
                ..StormResult::default()
            }),
            echo: vec![EchoResult {
                report: EchoReport {
                    size_bytes: 20,
                    echoes: 10,
                    echoes_per_ms: 65.43,
                    ..EchoReport::default()
                },
                ..EchoResult::default()
            }],
            ..ServerResult::default()
        };
        let missing = ServerResult {
            name: "node-ws".to_string(),
            status: "missing".to_string(),
            ..ServerResult::default()
        };
        let lines = headlines(&[measured, missing]);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].starts_with("server"), "{lines:?}");
        assert!(lines[0].contains("echoes/ms 20 B"), "{lines:?}");
        let raw: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(raw, ["raw-tcp", "9.5", "11130", "65.4", "-"]);
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["node-ws", "missing"]
        );
    }

    #[test]
    fn missing_peer_is_reported() {
        let mut args = CompareArgs::for_tests(1);
        args.peers_dir = Some(PathBuf::from("/nonexistent/peers"));
        let plan = Plan::from_args(&args).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let row = run_server(&Kind::WebSocketPp, &plan, &stop, &Feed::default());
        assert_eq!(row.status, "missing");
        assert!(
            row.errors[0].contains("install-peers.sh"),
            "{:?}",
            row.errors
        );
    }
}
