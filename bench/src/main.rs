//! `tern`: load tools for WebSocket servers, and the embedded default run.
//!
//! - `tern serve`: the tern echo server;
//! - `tern connections URL -n N`: a connection storm (connections/ms and,
//!   given the server's pid, connections/MiB);
//! - `tern echo URL -n N`: request-response echoes (echoes/ms, latency);
//! - `tern throughput URL --size 100MB`: one large message echoed (MB/s);
//! - `tern attack URL`: echo figures before and during hostile clients;
//! - `tern` or `tern run`: starts `tern serve` as a child and runs all
//!   three phases against it under the live dashboard.
//!
//! Every command ends with a summary table on stdout (or JSON with
//! `--json`); progress goes to stderr. The exit status is 0 when the run
//! succeeded, 1 when it ran but something failed (a connection, a wrong
//! echo, a timeout, an interruption), 2 when it was refused before
//! starting (bad arguments, too few file descriptors).

mod attack;
mod client;
mod commands;
mod compare;
mod latency;
mod limits;
mod payload;
mod procfs;
mod raw;
mod report;
mod run;
mod serve;
mod smoltcp;
mod target;
mod units;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use smoltcp::TransportKind;

/// Load tools for WebSocket servers, and the tern echo server.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the tern echo server.
    Serve(ServeArgs),
    /// Open N connections as fast as the server accepts them.
    Connections(ConnectionsArgs),
    /// Echo small messages on N connections, one in flight on each.
    Echo(EchoArgs),
    /// Echo one large binary message and time the round trip.
    Throughput(ThroughputArgs),
    /// The embedded default: a tern server child, then a connection storm,
    /// echoes and a throughput round under the live dashboard.
    Run(RunArgs),
    /// The three measurements against tern, the raw-TCP limit and the
    /// peer servers, in one table.
    Compare(CompareArgs),
    /// Echo figures before and while hostile clients attack a loopback
    /// server, one scenario after another.
    Attack(attack::AttackArgs),
}

/// Options of `tern serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address or host name to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port; the printed line names it).
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Event loops (threads), sharing the port through SO_REUSEPORT
    /// (1 to 1024).
    #[arg(long, default_value = "1", value_parser = |s: &str| units::parse_count(s, 1, serve::MAX_LOOPS))]
    loops: u64,
    /// Largest message accepted (e.g. 256MiB, 1GB).
    #[arg(long, default_value = "256MiB", value_parser = units::parse_size)]
    max_message_size: u64,
    /// Most connections at once (at least 1); more are refused with 503.
    /// Each loop counts its own: per loop ceil(N/loops), so with several
    /// loops up to loops x ceil(N/loops) in all.
    #[arg(long, value_parser = units::parse_positive)]
    max_connections: Option<u64>,
    /// Run the raw-TCP limit instead: a canned 101, then bytes echoed
    /// without framing (only --host, --port and --loops apply).
    #[arg(long)]
    raw: bool,
    /// std: kernel sockets. tap: tern's smoltcp stack on a TAP device,
    /// serving 10.77.0.2 (run as root under `ip netns exec tern-tap`, see
    /// docs/tap.md; one loop, --host does not apply).
    #[arg(long, value_enum, default_value_t = TransportKind::Std)]
    transport: TransportKind,
    /// TAP device for --transport tap.
    #[arg(long, default_value = "tap0")]
    tap: String,
}

/// Options shared by the client commands.
#[derive(Debug, Args)]
struct ClientArgs {
    /// Server URL, ws://host:port/path (wss is not supported). Optional
    /// and ignored with --transport smoltcp-mem.
    #[arg(
        default_value = "",
        hide_default_value = true,
        required_unless_present = "transport"
    )]
    url: String,
    /// std: kernel sockets to URL. smoltcp-mem: a client and a server
    /// smoltcp stack in this process over an in-memory link (no URL, no
    /// open-file limit; a storm gets at least 200 µs per connection as its
    /// limit and at least 64 handshakes under way per 256 connections;
    /// connections and echo only).
    #[arg(long, value_enum, default_value_t = TransportKind::Std)]
    transport: TransportKind,
    /// Spread connections over K local addresses 127.0.0.1..127.0.0.K
    /// (loopback targets only; default: ceil(N/20000)+1 above 1000
    /// connections; 1 to 254).
    #[arg(long, value_parser = |s: &str| units::parse_count(s, 1, 254))]
    sources: Option<u64>,
    /// Handshakes kept under way at once while connecting (at least 1).
    #[arg(long, default_value = "1000", value_parser = units::parse_positive)]
    in_flight: u64,
    /// Limit for each phase (connecting, waiting for echoes; up to 24 h).
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    timeout: Duration,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Options of `tern connections`.
#[derive(Debug, Args)]
struct ConnectionsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Connections to open.
    #[arg(short = 'n', long = "connections")]
    n: u64,
    /// Process id of the server, to measure its memory per connection.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Options of `tern echo`.
#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Connections echoing at once.
    #[arg(short = 'n', long = "connections", default_value_t = 100)]
    n: u64,
    /// How long to keep echoing (up to 24 h).
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    duration: Duration,
    /// Bytes per message.
    #[arg(long, default_value = "20", value_parser = units::parse_size)]
    size: u64,
    /// Send binary messages (text otherwise).
    #[arg(long)]
    binary: bool,
}

/// Options of `tern throughput`.
#[derive(Debug, Args)]
struct ThroughputArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Size of the message (e.g. 100MB, 30MB, 64KiB, 1GB).
    #[arg(long, default_value = "100MB", value_parser = units::parse_size)]
    size: u64,
    /// Round trips to make.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

/// Options of `tern run` (and of `tern` alone).
#[derive(Debug, Args)]
struct RunArgs {
    /// Connections in the storm (phase 1).
    #[arg(long, default_value_t = 10_000)]
    connections: u64,
    /// Connections that echo in phase 2, from 1 to --connections (default:
    /// all of them).
    #[arg(long, value_parser = units::parse_positive)]
    echo_connections: Option<u64>,
    /// Seconds of echoes in phase 2 (up to 24 h).
    #[arg(long, default_value = "5", value_parser = units::parse_duration)]
    echo_seconds: Duration,
    /// Bytes per echo message.
    #[arg(long, default_value = "20", value_parser = units::parse_size)]
    size: u64,
    /// Size of the phase 3 message (1 B to 1 GiB). The server child's
    /// --max-message-size is raised to fit it.
    #[arg(long, default_value = "30MB", value_parser = units::parse_size)]
    throughput_size: u64,
    /// Plain progress lines instead of the full-screen dashboard.
    #[arg(long)]
    no_tui: bool,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Limit for each phase (up to 24 h).
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    timeout: Duration,
    /// std: a `tern serve` child on loopback. smoltcp-mem: client and
    /// server smoltcp stacks in this process over an in-memory link (no
    /// child, no open-file limit; memory figures are the whole process's;
    /// the storm gets at least 200 µs per connection; no phase 3).
    #[arg(long, value_enum, default_value_t = TransportKind::Std)]
    transport: TransportKind,
}

/// Options of `tern compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// Built-in servers to run, comma-separated (default: all of them:
    /// raw-tcp, raw-tcp-Nloops, tern, tern-Nloops, node-ws, websocketpp,
    /// tokio-tungstenite, fastwebsockets).
    #[arg(long)]
    servers: Option<String>,
    /// A running server to measure too (repeatable), e.g. ws://127.0.0.1:9001.
    #[arg(long)]
    url: Vec<String>,
    /// The CI mode: 1,000 connections, 500 echoing for 1 s, one 8 MB
    /// message, 20 s limits; fails when a peer is missing.
    #[arg(long)]
    short: bool,
    /// Connections in the storm (default 15,000).
    #[arg(long)]
    connections: Option<u64>,
    /// Connections that echo (default 10,000).
    #[arg(long)]
    echo_connections: Option<u64>,
    /// Time of echoes at each message size (default 5s).
    #[arg(long, value_parser = units::parse_duration)]
    echo_seconds: Option<Duration>,
    /// Echo message sizes, comma-separated (default 20,512).
    #[arg(long, value_delimiter = ',', value_parser = units::parse_size)]
    sizes: Option<Vec<u64>>,
    /// Large message sizes, comma-separated (default 100MB,30MB).
    #[arg(long, value_delimiter = ',', value_parser = units::parse_size)]
    big: Option<Vec<u64>>,
    /// Client threads making the load (default: one per core).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Handshakes under way at once in the storm (all threads together).
    #[arg(long, default_value_t = 1000)]
    in_flight: u64,
    /// Limit for each phase (default 60s, 20s with --short).
    #[arg(long, value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// Also echo (first --sizes size) on all of N connections for each N
    /// given, comma-separated, on fresh connections (e.g.
    /// 1000,5000,10000,15000,19000): the cost curve.
    #[arg(long, value_delimiter = ',')]
    curve: Option<Vec<u64>>,
    /// Fail when a peer is not installed (implied by --short).
    #[arg(long)]
    require_peers: bool,
    /// Where the peers are built (default: bench/peers of this source tree).
    #[arg(long)]
    peers_dir: Option<std::path::PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
    /// Show the live dashboard while the comparison runs (off by default;
    /// one progress line a second when stdout is not a terminal); q quits,
    /// stopping the servers, and the table of what was measured follows.
    #[arg(long)]
    tui: bool,
}

#[cfg(test)]
impl CompareArgs {
    /// Short-mode options with `threads` client threads.
    fn for_tests(threads: usize) -> CompareArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: CompareArgs,
        }
        let threads = threads.to_string();
        Wrap::parse_from(["compare", "--short", "--client-threads", &threads]).args
    }
}

/// The exit status of a command: 0 ok, 1 the run failed, 2 refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Refused,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::Refused => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli
        .command
        .unwrap_or_else(|| match Cli::parse_from(["tern", "run"]).command {
            Some(run) => run,
            None => unreachable!("`tern run` parses to the run command"),
        });
    let outcome = match command {
        Command::Serve(args) => smoltcp::serve(args),
        Command::Connections(args) if args.client.transport != TransportKind::Std => {
            smoltcp::connections(args)
        }
        Command::Connections(args) => commands::connections(args),
        Command::Echo(args) if args.client.transport != TransportKind::Std => smoltcp::echo(args),
        Command::Echo(args) => commands::echo(args),
        Command::Throughput(args) if args.client.transport != TransportKind::Std => {
            eprintln!("tern throughput: only --transport std is supported");
            Outcome::Refused
        }
        Command::Throughput(args) => commands::throughput(args),
        Command::Run(args) if args.transport != TransportKind::Std => smoltcp::run(args),
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::compare(args),
        Command::Attack(args) => attack::attack(args),
    };
    outcome.into()
}
