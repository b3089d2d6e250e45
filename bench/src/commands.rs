//! The plain subcommands: `serve`, `connections`, `echo`, `throughput`.
//!
//! Each one checks its limits before it starts, prints progress lines on
//! stderr while it runs, and prints its report (table or JSON) on stdout.
//! SIGINT stops a load phase early; what was measured is still reported,
//! marked as interrupted, and the exit status is 1.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, EchoOptions};
use crate::report::Report;
use crate::serve::ServeOptions;
use crate::target::Target;
use crate::{
    limits, procfs, ClientArgs, ConnectionsArgs, EchoArgs, Outcome, ServeArgs, ThroughputArgs,
};

/// How long closing every connection may take at the end of a run.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Copies of a throughput message the client holds at its peak.
pub const THROUGHPUT_COPIES: u64 = 3;

/// What those copies are.
pub const THROUGHPUT_HELD: &str = "the message, its queued copy and its echo";

/// Runs `tern serve`.
pub fn serve(args: ServeArgs) -> Outcome {
    if args.raw {
        return raw_serve(&args);
    }
    let options = ServeOptions {
        host: args.host,
        port: args.port,
        // Parsing bounds it to `serve::MAX_LOOPS`.
        loops: args.loops as usize,
        max_message_size: args.max_message_size,
        max_connections: args.max_connections,
    };
    match crate::serve::serve(&options) {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            eprintln!("tern serve: {e}");
            Outcome::Failed
        }
    }
}

/// Runs `tern serve --raw`.
fn raw_serve(args: &ServeArgs) -> Outcome {
    let addr = match std::net::ToSocketAddrs::to_socket_addrs(&(args.host.as_str(), args.port)) {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            eprintln!("tern serve --raw: cannot resolve {:?}: {e}", args.host);
            return Outcome::Refused;
        }
    };
    let Some(addr) = addr else {
        eprintln!("tern serve --raw: {:?} resolved to no address", args.host);
        return Outcome::Refused;
    };
    let Ok(loops) = usize::try_from(args.loops) else {
        eprintln!("tern serve --raw: --loops {} is too many", args.loops);
        return Outcome::Refused;
    };
    match crate::raw::serve(addr, loops) {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            eprintln!("tern serve --raw: {e}");
            Outcome::Failed
        }
    }
}

/// A stop flag set by SIGINT and SIGTERM.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Without the handler a signal still ends the process, only
        // without a report; nothing else depends on it.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
    }
    stop
}

/// Parses the URL, checks the limits and builds the client.
fn prepare(name: &str, args: &ClientArgs, n: u64, max_message: u64) -> Result<Client, Outcome> {
    let refuse = |e: String| {
        eprintln!("tern {name}: {e}");
        Outcome::Refused
    };
    let target = Target::parse(&args.url).map_err(|e| refuse(e.to_string()))?;
    limits::check_this_process(n).map_err(refuse)?;
    let sources =
        limits::source_addresses(n, target.is_loopback_v4(), args.sources).map_err(refuse)?;
    if !sources.is_empty() {
        eprintln!(
            "tern {name}: spreading connections over {} source addresses",
            sources.len()
        );
    }
    let mut client = Client::new(target, sources, max_message, stop_on_signals())
        .map_err(|e| refuse(format!("cannot start the client: {e}")))?;
    let prefix = format!("tern {name}: ");
    client.set_progress(
        Duration::from_secs(1),
        Box::new(move |line| eprintln!("{prefix}{line}")),
    );
    Ok(client)
}

/// Prints the report and turns it into the exit status.
pub fn finish(mut report: Report, json: bool) -> Outcome {
    report.finish();
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.ok {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

/// Closes every connection, noting the ones that did not close in time.
fn close(client: &mut Client, report: &mut Report) {
    let left = client.close(CLOSE_WAIT);
    if left > 0 {
        eprintln!("tern: {left} connections did not finish their close handshake in time");
    }
    report.note_dropped(client.dropped());
}

/// Refuses a message size whose copies do not fit in the memory available.
fn check_memory(
    name: &str,
    option: String,
    needed: u64,
    what: &'static str,
) -> Result<(), Outcome> {
    limits::check_this_machine(option, needed, what).map_err(|e| {
        eprintln!("tern {name}: {e}");
        Outcome::Refused
    })
}

/// Why there is nothing to run the `phase` on (`task`: what it would
/// have done) after a storm that left no connection open.
pub fn nothing_open(opened: u64, phase: &str, task: &str) -> String {
    let which = match opened {
        0 => return format!("no connection opened; nothing to {task}"),
        1 => "the connection that opened".to_string(),
        n => format!("all {n} connections that opened"),
    };
    format!("{which} ended before the {phase} phase; nothing to {task}")
}

/// Runs `tern connections`.
pub fn connections(args: ConnectionsArgs) -> Outcome {
    if args.n == 0 {
        eprintln!("tern connections: -n must be at least 1");
        return Outcome::Refused;
    }
    // A process that cannot be read is refused before the storm, not
    // found out after it.
    let rss_before = match args.server_pid.map(|pid| (pid, procfs::rss_bytes(pid))) {
        None => None,
        Some((pid, Ok(bytes))) => Some((pid, bytes)),
        Some((pid, Err(e))) => {
            eprintln!(
                "tern connections: --server-pid {pid}: cannot read /proc/{pid}/status: {e} \
                 (give the pid of a running server this user may inspect)"
            );
            return Outcome::Refused;
        }
    };
    let mut client = match prepare("connections", &args.client, args.n, 0) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let mut report = Report::new("connections", &args.client.url);
    let mut storm = client.open(args.n, args.client.in_flight, args.client.timeout);

    // Read with every connection still open, then close them.
    if let Some((pid, before)) = rss_before {
        match procfs::rss_bytes(pid) {
            Ok(after) => storm.set_rss(before, after),
            Err(e) => report
                .errors
                .push(format!("cannot read the RSS of process {pid}: {e}")),
        }
    }
    report.connections = Some(storm);
    close(&mut client, &mut report);
    finish(report, args.client.json)
}

/// Runs `tern echo`.
pub fn echo(args: EchoArgs) -> Outcome {
    if args.n == 0 {
        eprintln!("tern echo: -n must be at least 1");
        return Outcome::Refused;
    }
    let Ok(size) = usize::try_from(args.size) else {
        eprintln!("tern echo: --size {} does not fit in memory", args.size);
        return Outcome::Refused;
    };
    // Each connection holds a queued message and an echo; one more copy
    // is the message being built or checked.
    let copies = args.n.saturating_mul(2).saturating_add(1);
    let needed = limits::message_memory(args.size, copies);
    let option = format!("--size {} with -n {}", args.size, args.n);
    let what = "a queued message and an echo per connection";
    if let Err(o) = check_memory("echo", option, needed, what) {
        return o;
    }
    let mut client = match prepare("echo", &args.client, args.n, args.size) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let mut report = Report::new("echo", &args.client.url);
    let storm = client.open(args.n, args.client.in_flight, args.client.timeout);
    let ids = client.open_ids();
    let opened = storm.opened;
    report.connections = Some(storm);
    if ids.is_empty() {
        report.errors.push(nothing_open(opened, "echo", "echo on"));
    } else {
        let options = EchoOptions {
            size,
            binary: args.binary,
            duration: args.duration,
            drain: args.client.timeout.min(Duration::from_secs(10)),
        };
        report.echo = Some(client.echo(&ids, options));
    }
    close(&mut client, &mut report);
    finish(report, args.client.json)
}

/// Runs `tern throughput`.
pub fn throughput(args: ThroughputArgs) -> Outcome {
    if args.size == 0 || args.repeat == 0 {
        eprintln!("tern throughput: --size and --repeat must be at least 1");
        return Outcome::Refused;
    }
    let needed = limits::message_memory(args.size, THROUGHPUT_COPIES);
    let option = format!("--size {}", args.size);
    if let Err(o) = check_memory("throughput", option, needed, THROUGHPUT_HELD) {
        return o;
    }
    let mut client = match prepare("throughput", &args.client, 1, args.size) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let mut report = Report::new("throughput", &args.client.url);
    let storm = client.open(1, 1, args.client.timeout);
    let ids = client.open_ids();
    let opened = storm.opened;
    report.connections = Some(storm);
    match ids.first() {
        None => report
            .errors
            .push(nothing_open(opened, "throughput", "send the message on")),
        Some(&id) => {
            report.throughput =
                Some(client.throughput(id, args.size, args.repeat, args.client.timeout))
        }
    }
    close(&mut client, &mut report);
    finish(report, args.client.json)
}
