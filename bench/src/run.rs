//! `tern run` (and `tern` alone): the embedded default benchmark.
//!
//! 1. Starts `tern serve --host 127.0.0.1 --port 0` as a child process and
//!    reads the port from its first line.
//! 2. Phase 1, connection storm: opens `--connections` connections.
//! 3. Phase 2, echo: small messages on the open connections (or the first
//!    `--echo-connections` of them) for `--echo-seconds`.
//! 4. Phase 3, throughput: one `--throughput-size` message (30 MB by
//!    default) echoed on one connection.
//!
//! The child's `--max-message-size` is its default, 256 MiB, or the larger
//! of `--size` and `--throughput-size` when that is more, so the server
//! never refuses a message the run itself asked for.
//!
//! The load runs on a worker thread; the dashboard runs on the main
//! thread; a sampler thread reads the child's memory and CPU every 100 ms
//! into the gauges the dashboard shows. Quitting the dashboard (q, Esc,
//! Ctrl-C) sets the stop flag: the phase under way ends, the connections
//! are closed and the summary is printed with what was measured.
//!
//! The child never outlives the run: [`ServerChild`]'s `Drop` stops it
//! (SIGTERM, then SIGKILL after a bounded wait) on every way out,
//! including errors and panics, and the kernel kills it
//! (`PR_SET_PDEATHSIG`) if this process dies without unwinding.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tern_monitor::{names, Mode, Monitor, MonitorOptions, Registry, Status};

use crate::client::{Client, EchoOptions};
use crate::commands::{finish, stop_on_signals};
use crate::report::Report;
use crate::target::Target;
use crate::{limits, procfs, Outcome, RunArgs};

/// How long the child may take to print its listening line.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// How long the child may take to shut down after SIGTERM before SIGKILL.
/// Its own close handshakes take at most its grace time (2 s).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How often the sampler reads the child's memory and CPU.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Bytes of the child's stderr kept to explain a failure.
const STDERR_TAIL: usize = 4096;

/// The child's `--max-message-size` unless the run needs more: the
/// default of `tern serve`.
const CHILD_MAX_MESSAGE: u64 = 256 << 20;

/// The largest message size `tern run` takes.
const MAX_RUN_MESSAGE: u64 = 1 << 30;

/// Copies of an echo message the server child holds per connection (the
/// message being reassembled and its queued echo).
const SERVER_COPIES: u64 = 2;

/// The `tern serve` child process; stopped when dropped.
#[derive(Debug)]
pub struct ServerChild {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl ServerChild {
    /// Starts `tern serve` on a free loopback port, taking messages up to
    /// `max_message_size` bytes, and waits for its listening line; returns
    /// the child and its URL.
    pub fn start(max_message_size: u64) -> Result<(ServerChild, String), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the tern binary: {e}"))?;
        let mut command = Command::new(exe);
        let max_message = max_message_size.to_string();
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(["--max-message-size", &max_message])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches only
            // this process, which then stops the child itself.
            .process_group(0);
        // The child is killed if this process dies without running its
        // destructors (SIGKILL, abort).
        let die_with_parent = || {
            // SAFETY: prctl with these arguments touches no memory.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: the hook runs in the forked child before exec and only
        // calls prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(die_with_parent);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the server child: {e}"))?;

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            std::thread::spawn(move || keep_tail(pipe, &tail));
        }
        let (lines, listening) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let _ = lines.send(line);
                }
            });
        }
        let guard = ServerChild { child, stderr };

        let deadline = Instant::now() + LISTEN_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match listening.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the server child printed no listening line within {} s{}",
                        LISTEN_WAIT.as_secs(),
                        guard.stderr_note()
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Give the stderr reader a moment to catch the reason.
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!(
                        "the server child exited before listening{}",
                        guard.stderr_note()
                    ));
                }
            };
            if let Some(url) = line.strip_prefix("tern serve: listening on ") {
                return Ok((guard, url.trim().to_string()));
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_note(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.trim().is_empty() {
            String::new()
        } else {
            format!("; its stderr: {}", tail.trim())
        }
    }

    /// Stops the child: SIGTERM (graceful shutdown), then SIGKILL if it is
    /// still running after [`STOP_WAIT`]. Returns how it exited.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our
        // unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot wait for the server child: {e}")),
            }
        }
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|e| format!("cannot wait for the server child: {e}"))?;
        Err(format!(
            "the server child did not stop within {} s of SIGTERM and was killed ({status})",
            STOP_WAIT.as_secs()
        ))
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn keep_tail(mut pipe: impl Read, tail: &Mutex<String>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
        if tail.len() > STDERR_TAIL {
            let mut cut = tail.len() - STDERR_TAIL;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
    }
}

/// Reads the child's RSS and CPU into the gauges until `done` is set.
pub(crate) fn sample(pid: u32, done: &AtomicBool) {
    let rss = metrics::gauge!(names::SERVER_RSS_BYTES);
    let cpu = metrics::gauge!(names::SERVER_CPU_PERCENT);
    let mut sampler = procfs::CpuSampler::new(pid);
    while !done.load(Ordering::Relaxed) {
        if let Ok(bytes) = procfs::rss_bytes(pid) {
            rss.set(bytes as f64);
        }
        if let Some(percent) = sampler.sample() {
            cpu.set(percent);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// What the worker thread needs.
struct Plan {
    url: String,
    pid: u32,
    args: RunArgs,
    status: Status,
    stop: Arc<AtomicBool>,
}

/// The three phases, on the worker thread.
fn load(plan: Plan) -> Report {
    let Plan {
        url,
        pid,
        args,
        status,
        stop,
    } = plan;
    let mut report = Report::new("run", &url);
    report.server_pid = Some(pid);
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(e) => {
            report
                .errors
                .push(format!("the server child printed a bad url {url:?}: {e}"));
            return report;
        }
    };
    let sources = match limits::source_addresses(args.connections, target.is_loopback_v4(), None) {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let mut client = match Client::new(target, sources, args.throughput_size, Arc::clone(&stop)) {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("cannot start the client: {e}"));
            return report;
        }
    };
    let phase = status.clone();
    client.set_progress(
        Duration::from_millis(100),
        Box::new(move |line| phase.set_phase(line)),
    );

    // Phase 1: the storm, between two readings of the server's memory.
    let baseline = procfs::rss_bytes(pid);
    if let Ok(bytes) = &baseline {
        metrics::gauge!(names::SERVER_BASELINE_RSS_BYTES).set(*bytes as f64);
    }
    let mut storm = client.open(args.connections, 1000, args.timeout);
    match (baseline, procfs::rss_bytes(pid)) {
        (Ok(before), Ok(after)) => storm.set_rss(before, after),
        (Err(e), _) | (_, Err(e)) => report
            .errors
            .push(format!("cannot read the server's RSS: {e}")),
    }
    let storm_note = format!(
        "storm: {} opened, {:.2} conn/ms",
        storm.opened, storm.connections_per_ms
    );
    report.connections = Some(storm);

    // Phase 2: echoes on the open connections.
    let mut ids = client.open_ids();
    if let Some(m) = args.echo_connections {
        ids.truncate(usize::try_from(m).unwrap_or(usize::MAX));
    }
    let opened = report.connections.as_ref().map_or(0, |s| s.opened);
    if ids.is_empty() && !stop.load(Ordering::Relaxed) {
        report
            .errors
            .push(crate::commands::nothing_open(opened, "echo", "echo on"));
    }
    if !stop.load(Ordering::Relaxed) && !ids.is_empty() {
        let note = storm_note.clone();
        let phase = status.clone();
        client.set_progress(
            Duration::from_millis(100),
            Box::new(move |line| phase.set_phase(format!("{line} | {note}"))),
        );
        let options = EchoOptions {
            size: args.size as usize,
            binary: false,
            duration: args.echo_seconds,
            drain: args.timeout.min(Duration::from_secs(10)),
        };
        report.echo = Some(client.echo(&ids, options));
    }

    // Phase 3: one large message.
    if let Some(&id) = client.open_ids().first() {
        if !stop.load(Ordering::Relaxed) {
            report.throughput = Some(client.throughput(id, args.throughput_size, 1, args.timeout));
        }
    }

    status.set_phase(format!("closing connections | {storm_note}"));
    let left = client.close(Duration::from_secs(3));
    if left > 0 {
        report.errors.push(format!(
            "{left} connections did not finish their close handshake in time"
        ));
    }
    report.note_dropped(client.dropped());
    status.set_phase(format!("done | {storm_note}"));
    report
}

/// Runs `tern run`.
pub fn run(args: RunArgs) -> Outcome {
    let refuse = |e: String| {
        eprintln!("tern run: {e}");
        Outcome::Refused
    };
    if args.connections == 0 {
        return refuse("--connections must be at least 1".to_string());
    }
    if let Some(m) = args.echo_connections {
        if m > args.connections {
            return refuse(format!(
                "--echo-connections {m} is more than --connections {}: it must be from 1 to {}",
                args.connections, args.connections
            ));
        }
    }
    if args.throughput_size == 0 {
        return refuse("--throughput-size must be from 1 B to 1 GiB".to_string());
    }
    if args.size > MAX_RUN_MESSAGE || args.throughput_size > MAX_RUN_MESSAGE {
        return refuse("--size and --throughput-size must be at most 1 GiB".to_string());
    }
    if let Err(e) = limits::check_this_process(args.connections) {
        return refuse(e);
    }
    if let Err(e) = check_memory(&args) {
        return refuse(e);
    }
    let max_message = child_max_message(&args);
    if max_message > CHILD_MAX_MESSAGE {
        eprintln!(
            "tern run: starting the server child with --max-message-size {} to fit the \
             run's messages",
            crate::units::bytes(max_message)
        );
    }
    let json = args.json;
    let mode = Mode::detect(args.no_tui);

    // Registered before the child starts, so Ctrl-C is never missed.
    let stop = stop_on_signals();
    let (mut child, url) = match ServerChild::start(max_message) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("tern run: {e}");
            return Outcome::Failed;
        }
    };
    match procfs::open_files_limit(child.pid()) {
        Ok(Some(limit)) => {
            if let Err(e) = limits::check_fits(args.connections, limit, "the server child") {
                return refuse(e.to_string());
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("tern run: cannot read the server child's open-file limit: {e}"),
    }
    if mode == Mode::Plain {
        eprintln!("tern run: server child {} listening on {url}", child.pid());
    }

    let registry = Registry::install();
    let status = Status::new();
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&sampling_done);
        let pid = child.pid();
        std::thread::Builder::new()
            .name("tern-sampler".into())
            .spawn(move || sample(pid, &done))
    };
    let plan = Plan {
        url: url.clone(),
        pid: child.pid(),
        args,
        status: status.clone(),
        stop: Arc::clone(&stop),
    };
    let worker = std::thread::Builder::new()
        .name("tern-load".into())
        .spawn(move || load(plan));
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tern run: cannot start the load thread: {e}");
            return Outcome::Failed;
        }
    };

    let watch_error = watch(registry, &status, mode, json, &stop, &worker);
    let mut report = match worker.join() {
        Ok(report) => report,
        Err(_) => {
            let mut r = Report::new("run", &url);
            r.errors.push("the load thread panicked".to_string());
            r
        }
    };
    sampling_done.store(true, Ordering::Relaxed);
    if let Ok(sampler) = sampler {
        let _ = sampler.join();
    }
    if let Some(e) = watch_error {
        report.errors.push(e);
    }
    match child.stop() {
        Ok(status) if status.success() => {}
        Ok(status) => report
            .errors
            .push(format!("the server child exited with {status}")),
        Err(e) => report.errors.push(e),
    }
    report.interrupted = stop.load(Ordering::Relaxed);
    finish(report, json)
}

/// The server child's `--max-message-size`: its default, or the run's
/// largest message when that is larger.
fn child_max_message(args: &RunArgs) -> u64 {
    CHILD_MAX_MESSAGE.max(args.size).max(args.throughput_size)
}

/// Checks that the largest phase's messages fit in this machine's memory,
/// counting the client's copies and the server child's.
fn check_memory(args: &RunArgs) -> Result<(), String> {
    let echoing = args.echo_connections.unwrap_or(args.connections);
    let echo_copies = echoing.saturating_mul(2 + SERVER_COPIES).saturating_add(1);
    let echo = limits::message_memory(args.size, echo_copies);
    let bulk_copies = crate::commands::THROUGHPUT_COPIES + SERVER_COPIES;
    let bulk = limits::message_memory(args.throughput_size, bulk_copies);
    let (option, needed, what) = if echo >= bulk {
        let option = format!("--size {} on {echoing} echoing connections", args.size);
        (
            option,
            echo,
            "messages and echoes in this process and the server child",
        )
    } else {
        let option = format!("--throughput-size {}", args.throughput_size);
        (
            option,
            bulk,
            "the message and its copies in this process and the server child",
        )
    };
    limits::check_this_machine(option, needed, what)
}

/// Shows the run until the worker is done or the user quits: the
/// dashboard (TUI, or its plain lines on stdout), or, with `--json` and no
/// terminal, one progress line a second on stderr. Returns a dashboard
/// error, if any.
pub(crate) fn watch(
    registry: &'static Registry,
    status: &Status,
    mode: Mode,
    json: bool,
    stop: &AtomicBool,
    worker: &JoinHandle<Report>,
) -> Option<String> {
    let finished = || worker.is_finished();
    if mode == Mode::Plain && json {
        let mut next_line = Instant::now();
        while !finished() {
            if Instant::now() >= next_line {
                eprintln!("tern run: {}", status.phase());
                next_line += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        return None;
    }
    let options = MonitorOptions {
        title: "tern run".to_string(),
        mode,
        ..MonitorOptions::default()
    };
    let mut monitor = Monitor::new(registry, status.clone(), options);
    let outcome = monitor.run(stop, &finished);
    // The user may have quit: wait for the worker to wind down.
    while !finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The run's own report, printed by the caller, holds the exact
    // per-phase figures; the dashboard's sampled summary would repeat them
    // less precisely, so it is not printed.
    match outcome {
        Ok(_) => None,
        Err(e) => Some(format!("dashboard failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(extra: &[&str]) -> RunArgs {
        let cli = crate::Cli::parse_from(["tern", "run"].iter().chain(extra));
        match cli.command {
            Some(crate::Command::Run(args)) => args,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn child_limit_fits_the_run() {
        assert_eq!(child_max_message(&run_args(&[])), 256 << 20);
        let big = run_args(&["--throughput-size", "300MiB"]);
        assert_eq!(child_max_message(&big), 300 << 20);
        let echo = run_args(&["--size", "512MiB", "--throughput-size", "1MB"]);
        assert_eq!(child_max_message(&echo), 512 << 20);
    }
}
