//! `tern attack`: hostile clients while normal echo clients keep measuring.
//!
//! For each scenario of `tern_transport_std::attack`, one after another:
//!
//! 1. **baseline**: the echo connections (opened once, at the start) echo
//!    20-byte text messages for `--seconds`, one in flight each, exactly as
//!    `tern echo` does;
//! 2. **under attack**: the same connections echo for `--seconds` again
//!    while the scenario runs on another thread against the same address
//!    with `--attackers` connections, stopping after `--seconds` at the
//!    latest (or sooner, by its own limits).
//!
//! After each phase a plain TCP connect checks that the server still
//! accepts connections. The run fails (status 1) when an echo was wrong or
//! lost, an echo connection was dropped, or the server stopped accepting.
//!
//! Only loopback targets are accepted: the URL's host must be an address
//! in `127.0.0.0/8`, `::1`, or `localhost` resolving only to such
//! addresses. Any other host is refused before any lookup or connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tern_transport_std::attack::{self as hostile, AttackLimits, AttackReport, Scenario};

use crate::client::{Client, EchoOptions};
use crate::commands::{nothing_open, stop_on_signals};
use crate::report::{EchoReport, StormReport};
use crate::target::{Target, TargetError};
use crate::{limits, units, Outcome};

/// Bytes per echo message (text), as `tern echo`'s default.
const ECHO_SIZE: usize = 20;

/// Handshakes under way at once while the echo connections open.
const IN_FLIGHT: u64 = 1000;

/// How long closing the echo connections may take at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// How long the check that the server still accepts may take.
const ALIVE_WAIT: Duration = Duration::from_secs(2);

/// The frame size the oversize scenario announces: 1 TiB, far above any
/// sensible message limit, so the server has to refuse it.
const OVERSIZE: u64 = 1 << 40;

/// Options of `tern attack`.
#[derive(Debug, Args)]
pub struct AttackArgs {
    /// Server URL, ws://host:port/path; the host must be a loopback
    /// address (127.0.0.0/8, `[::1]`) or localhost.
    url: String,
    /// The hostile scenario, or all of them one after another.
    #[arg(long, value_enum, default_value_t = ScenarioArg::All)]
    scenario: ScenarioArg,
    /// Hostile connections per scenario (churn: one after another; the
    /// others: all at once).
    #[arg(long, default_value = "100", value_parser = units::parse_positive)]
    attackers: u64,
    /// Normal echo connections measuring throughout.
    #[arg(long, default_value = "100", value_parser = units::parse_positive)]
    echo_connections: u64,
    /// Length of each phase (baseline, then under attack), and the most
    /// an attack may last.
    #[arg(long, default_value = "5", value_parser = units::parse_duration)]
    seconds: Duration,
    /// Limit for opening the echo connections, and for the last echoes
    /// of a phase (capped at 10 s).
    #[arg(long, default_value = "60s", value_parser = units::parse_duration)]
    timeout: Duration,
    /// Print the result as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// The `--scenario` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    /// The opening request one byte at a time.
    #[value(name = "slowloris")]
    Slowloris,
    /// Echo requests sent, echoes never read.
    #[value(name = "never-read")]
    NeverRead,
    /// A frame header announcing 1 TiB.
    #[value(name = "oversize")]
    Oversize,
    /// Text frames that are not UTF-8.
    #[value(name = "invalid-utf8")]
    InvalidUtf8,
    /// Connect, handshake, close, again and again.
    #[value(name = "churn")]
    Churn,
    /// Every scenario above, in that order.
    #[value(name = "all")]
    All,
}

impl ScenarioArg {
    fn scenarios(self) -> Vec<Scenario> {
        match self {
            ScenarioArg::Slowloris => vec![Scenario::Slowloris],
            ScenarioArg::NeverRead => vec![Scenario::NeverRead],
            ScenarioArg::Oversize => vec![Scenario::OversizeFrame],
            ScenarioArg::InvalidUtf8 => vec![Scenario::InvalidUtf8],
            ScenarioArg::Churn => vec![Scenario::Churn],
            ScenarioArg::All => vec![
                Scenario::Slowloris,
                Scenario::NeverRead,
                Scenario::OversizeFrame,
                Scenario::InvalidUtf8,
                Scenario::Churn,
            ],
        }
    }
}

/// The `--scenario` name of `scenario`.
fn name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Slowloris => "slowloris",
        Scenario::NeverRead => "never-read",
        Scenario::OversizeFrame => "oversize",
        Scenario::InvalidUtf8 => "invalid-utf8",
        Scenario::Churn => "churn",
    }
}

/// How one hostile connection ended, as a short phrase.
fn outcome_name(outcome: hostile::Outcome) -> String {
    match outcome {
        hostile::Outcome::Status(code) => format!("http {code}"),
        hostile::Outcome::Close(code) => format!("close {code}"),
        hostile::Outcome::Eof => "eof".to_string(),
        hostile::Outcome::Reset => "reset".to_string(),
        hostile::Outcome::Stalled => "stalled".to_string(),
        hostile::Outcome::StillOpen => "still open".to_string(),
        hostile::Outcome::ConnectFailed => "connect failed".to_string(),
        hostile::Outcome::Completed => "completed".to_string(),
    }
}

/// What one attack did, in report form.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Hostile connections opened.
    pub connections: usize,
    /// Bytes the attack wrote.
    pub bytes_sent: u64,
    /// Bytes the attack read.
    pub bytes_received: u64,
    /// Wall time of the attack.
    pub elapsed_ms: f64,
    /// How the hostile connections ended, counted (`http 408`,
    /// `close 1007`, `reset`, `still open`, ...).
    pub outcomes: BTreeMap<String, usize>,
}

impl From<&AttackReport> for Tally {
    fn from(r: &AttackReport) -> Tally {
        Tally {
            connections: r.connections,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            elapsed_ms: r.elapsed.as_secs_f64() * 1000.0,
            outcomes: r
                .outcomes
                .iter()
                .map(|(&o, &n)| (outcome_name(o), n))
                .collect(),
        }
    }
}

impl Tally {
    fn summary(&self) -> String {
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        let outcomes = if outcomes.is_empty() {
            "no outcome".to_string()
        } else {
            outcomes.join(", ")
        };
        format!(
            "{} connections in {:.1} s: {outcomes}",
            self.connections,
            self.elapsed_ms / 1000.0
        )
    }
}

/// One scenario: the echoes before and during it, and the attack itself.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    /// The `--scenario` name.
    pub scenario: String,
    /// Echoes with no attack running.
    pub baseline: EchoReport,
    /// Echoes while the attack ran; absent when the baseline could not run
    /// or the server died during it.
    pub under_attack: Option<EchoReport>,
    /// `under_attack.echoes_per_ms / baseline.echoes_per_ms`.
    pub echo_rate_ratio: Option<f64>,
    /// The attack's tally.
    pub attack: Option<Tally>,
    /// Whether the server still accepted a TCP connection afterwards.
    pub server_alive: bool,
}

/// Everything `tern attack` measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackRunReport {
    /// Always `attack`.
    pub command: String,
    /// The server's URL.
    pub url: String,
    /// `--attackers`.
    pub attackers: u64,
    /// `--echo-connections`.
    pub echo_connections: u64,
    /// `--seconds`, in seconds.
    pub seconds: f64,
    /// Opening the echo connections.
    pub connections: StormReport,
    /// Each scenario run, in order.
    pub scenarios: Vec<ScenarioReport>,
    /// Problems outside the echo figures (the server died, connections
    /// dropped at the end).
    pub errors: Vec<String>,
    /// The user stopped the run before it finished.
    pub interrupted: bool,
    /// Whether the run succeeded; the exit code follows it.
    pub ok: bool,
}

impl AttackRunReport {
    fn finish(&mut self) {
        let echoes = self
            .scenarios
            .iter()
            .flat_map(|s| std::iter::once(&s.baseline).chain(&s.under_attack));
        self.interrupted |= self.connections.interrupted || echoes.clone().any(|e| e.interrupted);
        self.ok = !self.interrupted
            && self.errors.is_empty()
            && self.connections.ok()
            && !self.scenarios.is_empty()
            && echoes.clone().all(EchoReport::ok)
            && self
                .scenarios
                .iter()
                .all(|s| s.server_alive && s.under_attack.is_some());
    }

    /// The plain table: one block per scenario, baseline against under
    /// attack.
    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tern attack {}: {} attackers, {} echo connections, {:.1} s per phase",
            self.url, self.attackers, self.echo_connections, self.seconds
        );
        let c = &self.connections;
        let _ = writeln!(
            out,
            "echo connections: {} of {} opened in {:.1} ms",
            c.opened, c.requested, c.elapsed_ms
        );
        for (reason, n) in &c.failures {
            let _ = writeln!(out, "  failed: {n} x {reason}");
        }
        let _ = writeln!(
            out,
            "{:<13} {:<13} {:>9} {:>10} {:>9} {:>9} {:>5} {:>6}",
            "scenario", "phase", "echoes", "echoes/ms", "p50 µs", "p99 µs", "lost", "ratio"
        );
        for s in &self.scenarios {
            row(&mut out, &s.scenario, "baseline", &s.baseline, None);
            if let Some(e) = &s.under_attack {
                row(&mut out, "", "under attack", e, s.echo_rate_ratio);
            }
            if let Some(t) = &s.attack {
                let _ = writeln!(out, "  attack: {}", t.summary());
            }
            for e in std::iter::once(&s.baseline).chain(&s.under_attack) {
                for example in &e.mismatch_examples {
                    let _ = writeln!(out, "  mismatch: {example}");
                }
                for (reason, n) in &e.errors {
                    let _ = writeln!(out, "  error: {n} x {reason}");
                }
            }
            if !s.server_alive {
                let _ = writeln!(out, "  server: no longer accepts connections");
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        let result = match (self.ok, self.interrupted) {
            (true, _) => "result: ok",
            (false, true) => "result: INTERRUPTED",
            (false, false) => "result: FAILED",
        };
        let _ = writeln!(out, "{result}");
        out
    }
}

/// Echoes that did not come back right: wrong ones and missing ones.
fn lost(e: &EchoReport) -> u64 {
    e.mismatches + e.unanswered
}

fn row(out: &mut String, scenario: &str, phase: &str, e: &EchoReport, ratio: Option<f64>) {
    let (p50, p99) = e
        .latency_us
        .map_or(("-".to_string(), "-".to_string()), |l| {
            (l.p50.to_string(), l.p99.to_string())
        });
    let ratio = ratio.map_or(String::new(), |r| format!("{r:.2}"));
    let _ = writeln!(
        out,
        "{scenario:<13} {phase:<13} {:>9} {:>10.2} {p50:>9} {p99:>9} {:>5} {ratio:>6}",
        e.echoes,
        e.echoes_per_ms,
        lost(e)
    );
}

/// The host of a `ws://` URL as written (brackets of an IPv6 address
/// removed), or `None` when the URL does not start with `ws://`.
fn url_host(url: &str) -> Option<&str> {
    let url = url.trim();
    let scheme = url.get(..5)?;
    if !scheme.eq_ignore_ascii_case("ws://") {
        return None;
    }
    let rest = &url[5..];
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(inner) = authority.strip_prefix('[') {
        return Some(inner.split_once(']').map_or(inner, |(h, _)| h));
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// Refuses any URL whose host is not loopback. A name other than
/// `localhost` is refused without being looked up.
fn check_loopback(url: &str) -> Result<(), String> {
    let Some(host) = url_host(url) else {
        let lower = url.trim().to_ascii_lowercase();
        let e = if lower.starts_with("wss://") {
            TargetError::Tls
        } else {
            TargetError::Scheme
        };
        return Err(e.to_string());
    };
    let refused = || {
        format!(
            "attacks are only aimed at loopback: the host must be in 127.0.0.0/8, ::1 or \
             localhost, and {host:?} is not"
        )
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(())
        } else {
            Err(refused())
        };
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(refused());
    }
    let addrs: Vec<SocketAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{host:?} resolves to {addrs:?}, not only to loopback addresses"
        ));
    }
    Ok(())
}

/// Whether the server at `addr` still accepts a TCP connection.
fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, ALIVE_WAIT).is_ok()
}

/// Runs `tern attack`.
pub fn attack(args: AttackArgs) -> Outcome {
    let refuse = |e: String| {
        eprintln!("tern attack: {e}");
        Outcome::Refused
    };
    if let Err(e) = check_loopback(&args.url) {
        return refuse(e);
    }
    let target = match Target::parse(&args.url) {
        Ok(t) if t.addr.ip().is_loopback() => t,
        Ok(t) => return refuse(format!("{} is not a loopback address", t.addr.ip())),
        Err(e) => return refuse(e.to_string()),
    };
    let Ok(attackers) = usize::try_from(args.attackers) else {
        return refuse(format!("--attackers {} is too many", args.attackers));
    };

    // Attackers and echo connections are open at the same time.
    let descriptors = args.attackers.saturating_add(args.echo_connections);
    if let Err(e) = limits::check_this_process(descriptors) {
        return refuse(format!(
            "--attackers {} with --echo-connections {}: {e}",
            args.attackers, args.echo_connections
        ));
    }
    let sources =
        match limits::source_addresses(args.echo_connections, target.is_loopback_v4(), None) {
            Ok(s) => s,
            Err(e) => return refuse(e),
        };
    let addr = target.addr;
    let mut client = match Client::new(target, sources, ECHO_SIZE as u64, stop_on_signals()) {
        Ok(c) => c,
        Err(e) => return refuse(format!("cannot start the client: {e}")),
    };
    client.set_progress(
        Duration::from_secs(1),
        Box::new(|line| eprintln!("tern attack: {line}")),
    );

    let mut report = AttackRunReport {
        command: "attack".to_string(),
        url: args.url.clone(),
        attackers: args.attackers,
        echo_connections: args.echo_connections,
        seconds: args.seconds.as_secs_f64(),
        ..AttackRunReport::default()
    };
    report.connections = client.open(args.echo_connections, IN_FLIGHT, args.timeout);
    let limits = AttackLimits {
        connections: attackers,
        duration: args.seconds,
        oversize: OVERSIZE,
    };
    let options = EchoOptions {
        size: ECHO_SIZE,
        binary: false,
        duration: args.seconds,
        drain: args.timeout.min(Duration::from_secs(10)),
    };
    for scenario in args.scenario.scenarios() {
        let done = run_scenario(&mut client, scenario, addr, &limits, options, &mut report);
        if !done {
            break;
        }
    }

    let left = client.close(CLOSE_WAIT);
    if left > 0 {
        eprintln!("tern attack: {left} connections did not finish their close handshake in time");
    }
    for (how, n) in client.dropped() {
        report
            .errors
            .push(format!("{n} echo connection(s) dropped: {how}"));
    }
    report.finish();
    if args.json {
        // Plain structs of numbers, strings and string-keyed maps.
        let json = serde_json::to_string_pretty(&report)
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    if report.ok {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

/// Runs the baseline and the attacked phase of one scenario; returns
/// whether the run may go on to the next scenario.
fn run_scenario(
    client: &mut Client,
    scenario: Scenario,
    addr: SocketAddr,
    limits: &AttackLimits,
    options: EchoOptions,
    report: &mut AttackRunReport,
) -> bool {
    let label = name(scenario);
    let ids = client.open_ids();
    if ids.is_empty() {
        let opened = report.connections.opened;
        let why = nothing_open(opened, &format!("{label} baseline"), "echo on");
        report.errors.push(why);
        return false;
    }
    eprintln!(
        "tern attack: {label}: baseline on {} connections",
        ids.len()
    );
    let baseline = client.echo(&ids, options);
    let mut s = ScenarioReport {
        scenario: label.to_string(),
        baseline,
        under_attack: None,
        echo_rate_ratio: None,
        attack: None,
        server_alive: accepts(addr),
    };
    if !s.server_alive || s.baseline.interrupted {
        report.scenarios.push(s);
        return false;
    }

    let ids = client.open_ids();
    eprintln!(
        "tern attack: {label}: under attack by {} connections, echoing on {}",
        limits.connections,
        ids.len()
    );
    let limits = *limits;
    let attacker = std::thread::spawn(move || hostile::run(scenario, addr, &limits));
    let echoed = client.echo(&ids, options);
    // The attack stops by its own deadline (`--seconds`) at the latest.
    let tally = match attacker.join() {
        Ok(r) => Some(Tally::from(&r)),
        Err(_) => {
            report.errors.push(format!("the {label} attack panicked"));
            None
        }
    };
    s.server_alive = accepts(addr);
    if s.baseline.echoes_per_ms > 0.0 {
        s.echo_rate_ratio = Some(echoed.echoes_per_ms / s.baseline.echoes_per_ms);
    }
    let go_on = s.server_alive && !echoed.interrupted;
    s.under_attack = Some(echoed);
    s.attack = tally;
    report.scenarios.push(s);
    go_on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(url_host("ws://127.0.0.1:9001/x"), Some("127.0.0.1"));
        assert_eq!(url_host("WS://[::1]:9001"), Some("::1"));
        assert_eq!(url_host("ws://localhost?x=1"), Some("localhost"));
        assert_eq!(url_host("ws://u@10.0.0.1:80"), Some("10.0.0.1"));
        assert_eq!(url_host("http://127.0.0.1"), None);
    }

    #[test]
    fn only_loopback_is_accepted() {
        assert!(check_loopback("ws://127.0.0.1:9001").is_ok());
        assert!(check_loopback("ws://127.4.5.6:9001/path").is_ok());
        assert!(check_loopback("ws://[::1]:9001").is_ok());
        assert!(check_loopback("ws://localhost:9001").is_ok());
        for url in [
            "ws://10.0.0.1:9001",
            "ws://192.0.2.1",
            "ws://[2001:db8::1]:80",
            "ws://[::ffff:127.0.0.1]:80",
            "ws://0.0.0.0:9001",
            "ws://example.com:80",
            "ws://127.0.0.1.example.com",
        ] {
            let e = check_loopback(url).unwrap_err();
            assert!(e.contains("only aimed at loopback"), "{url}: {e}");
        }
        assert!(check_loopback("wss://127.0.0.1")
            .unwrap_err()
            .contains("TLS"));
        assert!(check_loopback("http://127.0.0.1").is_err());
    }

    #[test]
    fn all_runs_every_scenario_once() {
        let all = ScenarioArg::All.scenarios();
        assert_eq!(all.len(), 5);
        let names: Vec<&str> = all.iter().map(|&s| name(s)).collect();
        assert_eq!(
            names,
            [
                "slowloris",
                "never-read",
                "oversize",
                "invalid-utf8",
                "churn"
            ]
        );
    }

    #[test]
    fn a_lost_echo_or_a_dead_server_fails_the_run() {
        let echo = EchoReport {
            connections: 1,
            echoes: 10,
            echoes_per_ms: 1.0,
            ..EchoReport::default()
        };
        let scenario = ScenarioReport {
            scenario: "churn".to_string(),
            baseline: echo.clone(),
            under_attack: Some(echo.clone()),
            echo_rate_ratio: Some(1.0),
            attack: None,
            server_alive: true,
        };
        let mut report = AttackRunReport {
            connections: StormReport {
                requested: 1,
                opened: 1,
                ..StormReport::default()
            },
            scenarios: vec![scenario.clone()],
            ..AttackRunReport::default()
        };
        report.finish();
        assert!(report.ok);
        assert!(report.table().contains("result: ok"));

        let mut lost = report.clone();
        if let Some(e) = &mut lost.scenarios[0].under_attack {
            e.unanswered = 1;
        }
        lost.finish();
        assert!(!lost.ok);
        assert!(lost.table().contains("result: FAILED"));

        let mut dead = report.clone();
        dead.scenarios[0].server_alive = false;
        dead.finish();
        assert!(!dead.ok);
        assert!(dead.table().contains("no longer accepts"));
    }
}
