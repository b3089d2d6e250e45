//! Results of each phase, printed as a plain table or as JSON.
//!
//! Every figure is computed from exact counts and `Instant` timestamps of
//! the load loop, not from the dashboard's sampled rates.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::Histogram;

/// Phase 1: a storm of connections.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StormReport {
    /// Connections asked for.
    pub requested: u64,
    /// Handshakes completed.
    pub opened: u64,
    /// Connections that never opened.
    pub failed: u64,
    /// Failed connections grouped by reason.
    pub failures: BTreeMap<String, u64>,
    /// From the first connect to the last completed handshake.
    pub elapsed_ms: f64,
    /// `opened / elapsed_ms`.
    pub connections_per_ms: f64,
    /// Server resident memory before the storm, when its process is known.
    pub server_rss_before_bytes: Option<u64>,
    /// Server resident memory with every connection open.
    pub server_rss_after_bytes: Option<u64>,
    /// `opened / (RSS growth in MiB)`.
    pub connections_per_mib: Option<f64>,
    /// Whose resident memory the RSS figures are, when not the server
    /// process's alone (an in-process server and client, for instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_scope: Option<String>,
    /// The user stopped the phase before it finished.
    pub interrupted: bool,
}

impl StormReport {
    /// Whether every connection asked for opened.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.opened == self.requested && !self.interrupted
    }

    /// Fills in the memory figures from RSS readings.
    pub fn set_rss(&mut self, before: u64, after: u64) {
        self.server_rss_before_bytes = Some(before);
        self.server_rss_after_bytes = Some(after);
        let grown_mib = after.saturating_sub(before) as f64 / (1024.0 * 1024.0);
        self.connections_per_mib = (grown_mib > 0.0).then(|| self.opened as f64 / grown_mib);
    }

    fn rows(&self, t: &mut Table) {
        t.row("opened", format!("{} of {}", self.opened, self.requested));
        t.row("failed", self.failed.to_string());
        for (reason, n) in &self.failures {
            t.row("  reason", format!("{n} x {reason}"));
        }
        t.row("time", format!("{:.1} ms", self.elapsed_ms));
        t.row("connections/ms", format!("{:.2}", self.connections_per_ms));
        if let (Some(before), Some(after)) =
            (self.server_rss_before_bytes, self.server_rss_after_bytes)
        {
            let label = match &self.rss_scope {
                None => "server RSS",
                Some(_) => "process RSS",
            };
            t.row(
                label,
                format!(
                    "{} -> {}",
                    crate::units::bytes(before),
                    crate::units::bytes(after)
                ),
            );
            let per_mib = self
                .connections_per_mib
                .map_or("n/a (RSS did not grow)".to_string(), |v| format!("{v:.1}"));
            t.row("connections/MiB", per_mib);
            if let Some(scope) = &self.rss_scope {
                t.row("  measured", scope.clone());
            }
        }
        if self.interrupted {
            t.row("interrupted", "yes".to_string());
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of `h`, or `None` when it is empty.
    pub fn of(h: &Histogram) -> Option<Latency> {
        Some(Latency {
            p50: h.percentile(0.50)?,
            p90: h.percentile(0.90)?,
            p99: h.percentile(0.99)?,
            max: h.max(),
            mean: h.mean()?,
        })
    }
}

/// Phase 2: request-response echoes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EchoReport {
    /// Connections taking part.
    pub connections: u64,
    /// Bytes per message.
    pub size_bytes: u64,
    /// Binary (true) or text messages.
    pub binary: bool,
    /// From the first send to the last echo received.
    pub elapsed_ms: f64,
    /// Echoes received and checked.
    pub echoes: u64,
    /// Payload bytes echoed.
    pub bytes: u64,
    /// `echoes / elapsed_ms`.
    pub echoes_per_ms: f64,
    /// Round-trip latency of the echoes.
    pub latency_us: Option<Latency>,
    /// Echoes whose type or bytes differed from what was sent.
    pub mismatches: u64,
    /// The first few mismatches, described.
    pub mismatch_examples: Vec<String>,
    /// Messages sent whose echo never came back in time.
    pub unanswered: u64,
    /// Other errors (send failures, connections dropped by the server).
    pub errors: BTreeMap<String, u64>,
    /// The user stopped the phase before it finished.
    pub interrupted: bool,
}

impl EchoReport {
    /// Whether every echo came back and matched.
    pub fn ok(&self) -> bool {
        self.mismatches == 0
            && self.unanswered == 0
            && self.errors.is_empty()
            && (self.echoes > 0 || self.interrupted)
    }

    fn rows(&self, t: &mut Table) {
        let kind = if self.binary { "binary" } else { "text" };
        t.row(
            "setup",
            format!(
                "{} connections, {} B {kind}",
                self.connections, self.size_bytes
            ),
        );
        t.row("echoes", self.echoes.to_string());
        t.row("time", format!("{:.1} ms", self.elapsed_ms));
        t.row("echoes/ms", format!("{:.2}", self.echoes_per_ms));
        if let Some(l) = &self.latency_us {
            t.row(
                "latency",
                format!(
                    "p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
                    l.p50, l.p90, l.p99, l.max
                ),
            );
        }
        t.row("mismatches", self.mismatches.to_string());
        for example in &self.mismatch_examples {
            t.row("  example", example.clone());
        }
        if self.unanswered > 0 {
            t.row("unanswered", self.unanswered.to_string());
        }
        for (reason, n) in &self.errors {
            t.row("error", format!("{n} x {reason}"));
        }
        if self.interrupted {
            t.row("interrupted", "yes".to_string());
        }
    }
}

/// One round trip of a large message.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Round {
    /// Round-trip time.
    pub seconds: f64,
    /// `size / seconds`, in MB (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// Phase 3: one large message echoed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ThroughputReport {
    /// Bytes in the message.
    pub size_bytes: u64,
    /// Each successful round trip, in order.
    pub rounds: Vec<Round>,
    /// The fastest round.
    pub best_mb_per_s: f64,
    /// The median round.
    pub median_mb_per_s: f64,
    /// Rounds that failed (wrong echo, timeout, dropped connection).
    pub failures: Vec<String>,
    /// The user stopped the phase before it finished.
    pub interrupted: bool,
}

impl ThroughputReport {
    /// An empty report for a message of `size` bytes, and the size as a
    /// length in memory; `None` (with the failure noted) when it does not
    /// fit.
    pub fn start(size: u64) -> (ThroughputReport, Option<usize>) {
        let mut report = ThroughputReport {
            size_bytes: size,
            ..ThroughputReport::default()
        };
        let len = usize::try_from(size).ok();
        if len.is_none() {
            report
                .failures
                .push(format!("{size} bytes do not fit in memory"));
        }
        (report, len)
    }
    /// Whether every round came back intact.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && (!self.rounds.is_empty() || self.interrupted)
    }

    /// Adds a round and updates the best and median figures.
    pub fn push(&mut self, seconds: f64) {
        let mb = self.size_bytes as f64 / 1e6;
        let mb_per_s = if seconds > 0.0 {
            mb / seconds
        } else {
            f64::INFINITY
        };
        self.rounds.push(Round { seconds, mb_per_s });
        let mut rates: Vec<f64> = self.rounds.iter().map(|r| r.mb_per_s).collect();
        rates.sort_by(f64::total_cmp);
        self.best_mb_per_s = rates[rates.len() - 1];
        self.median_mb_per_s = rates[rates.len() / 2];
    }

    fn rows(&self, t: &mut Table) {
        t.row(
            "size",
            format!(
                "{} B ({})",
                self.size_bytes,
                crate::units::bytes(self.size_bytes)
            ),
        );
        for (i, r) in self.rounds.iter().enumerate() {
            t.row(
                &format!("round {}", i + 1),
                format!("{:.1} ms, {:.1} MB/s", r.seconds * 1000.0, r.mb_per_s),
            );
        }
        if !self.rounds.is_empty() {
            t.row(
                "MB/s",
                format!(
                    "best {:.1}, median {:.1}",
                    self.best_mb_per_s, self.median_mb_per_s
                ),
            );
        }
        for f in &self.failures {
            t.row("failure", f.clone());
        }
        if self.interrupted {
            t.row("interrupted", "yes".to_string());
        }
    }
}

/// Everything one command measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The subcommand: `connections`, `echo`, `throughput` or `run`.
    pub command: String,
    /// The server's URL.
    pub url: String,
    /// Phase 1, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<StormReport>,
    /// Phase 2, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<EchoReport>,
    /// Phase 3, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<ThroughputReport>,
    /// Process id of the server child (`tern run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_pid: Option<u32>,
    /// Problems outside any phase (server child, dropped connections).
    pub errors: Vec<String>,
    /// The user stopped the run (Ctrl-C, q) before it finished.
    pub interrupted: bool,
    /// Whether the run succeeded; the exit code follows it.
    pub ok: bool,
}

impl Report {
    /// A report for `command` against `url`, with no phase yet.
    pub fn new(command: &str, url: &str) -> Report {
        Report {
            command: command.to_string(),
            url: url.to_string(),
            ..Report::default()
        }
    }

    /// Adds one error line per way open connections ended without this
    /// side closing them (`dropped`: how they ended, and how many).
    pub fn note_dropped(&mut self, dropped: &BTreeMap<String, u64>) {
        for (how, &n) in dropped {
            let noun = if n == 1 { "connection" } else { "connections" };
            self.errors.push(format!("{n} {noun} dropped: {how}"));
        }
    }

    /// Sets [`Report::ok`] from the phases and errors.
    pub fn finish(&mut self) {
        self.interrupted |= self.connections.as_ref().is_some_and(|s| s.interrupted)
            || self.echo.as_ref().is_some_and(|e| e.interrupted)
            || self.throughput.as_ref().is_some_and(|t| t.interrupted);
        self.ok = !self.interrupted
            && self.errors.is_empty()
            && self.connections.as_ref().is_none_or(StormReport::ok)
            && self.echo.as_ref().is_none_or(EchoReport::ok)
            && self.throughput.as_ref().is_none_or(ThroughputReport::ok);
    }

    /// The plain summary table.
    pub fn table(&self) -> String {
        let mut t = Table::default();
        t.section(&format!("tern {} {}", self.command, self.url));
        if let Some(s) = &self.connections {
            t.section("connections");
            s.rows(&mut t);
        }
        if let Some(e) = &self.echo {
            t.section("echo");
            e.rows(&mut t);
        }
        if let Some(p) = &self.throughput {
            t.section("throughput");
            p.rows(&mut t);
        }
        if !self.errors.is_empty() {
            t.section("errors");
            for e in &self.errors {
                t.row("error", e.clone());
            }
        }
        let result = match (self.ok, self.interrupted) {
            (true, _) => "result: ok",
            (false, true) => "result: INTERRUPTED",
            (false, false) => "result: FAILED",
        };
        t.section(result);
        t.render()
    }

    /// The JSON form.
    pub fn json(&self) -> String {
        // Serializing plain structs of numbers, strings and maps with
        // string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// A two-column table with section headings.
#[derive(Debug, Default)]
struct Table {
    lines: Vec<(String, Option<String>)>,
}

impl Table {
    fn section(&mut self, title: &str) {
        self.lines.push((title.to_string(), None));
    }

    fn row(&mut self, key: &str, value: String) {
        self.lines.push((key.to_string(), Some(value)));
    }

    fn render(&self) -> String {
        let width = self
            .lines
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.lines {
            match value {
                None => {
                    let _ = writeln!(out, "{key}");
                }
                Some(v) => {
                    let _ = writeln!(out, "  {key:<width$}  {v}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_figures() {
        let mut s = StormReport {
            requested: 1000,
            opened: 1000,
            ..StormReport::default()
        };
        s.set_rss(10 << 20, 12 << 20);
        assert_eq!(s.connections_per_mib, Some(500.0));
        s.set_rss(10 << 20, 10 << 20);
        assert_eq!(s.connections_per_mib, None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"connections_per_mib\":null"), "{json}");
        assert!(s.ok());
    }

    #[test]
    fn throughput_best_and_median() {
        let mut p = ThroughputReport {
            size_bytes: 10_000_000,
            ..ThroughputReport::default()
        };
        p.push(0.1);
        p.push(0.05);
        p.push(0.2);
        assert_eq!(p.best_mb_per_s, 200.0);
        assert_eq!(p.median_mb_per_s, 100.0);
        assert!(p.ok());
    }

    #[test]
    fn failures_fail_the_report() {
        let mut r = Report::new("echo", "ws://127.0.0.1:1");
        r.echo = Some(EchoReport {
            echoes: 10,
            mismatches: 1,
            ..EchoReport::default()
        });
        r.finish();
        assert!(!r.ok);
        assert!(r.table().contains("result: FAILED"));
        assert!(r.json().contains("\"mismatches\": 1"));

        let mut r = Report::new("connections", "ws://127.0.0.1:1");
        r.connections = Some(StormReport {
            requested: 3,
            opened: 3,
            ..StormReport::default()
        });
        r.finish();
        assert!(r.ok);
        assert!(!r.json().contains("\"echo\""));
    }

    #[test]
    fn latency_in_microseconds() {
        let mut h = Histogram::default();
        h.record(42);
        let r = EchoReport {
            latency_us: Latency::of(&h),
            echoes: 1,
            ..EchoReport::default()
        };
        let mut t = Table::default();
        r.rows(&mut t);
        let text = t.render();
        assert!(text.contains("p50 42 µs, p90 42 µs"), "{text}");
    }

    #[test]
    fn dropped_connections_are_counted_once() {
        let mut r = Report::new("echo", "ws://127.0.0.1:1");
        let dropped = BTreeMap::from([
            ("closed with code 1001".to_string(), 1),
            ("stream ended without a close frame".to_string(), 3),
        ]);
        r.note_dropped(&dropped);
        assert_eq!(
            r.errors,
            [
                "1 connection dropped: closed with code 1001",
                "3 connections dropped: stream ended without a close frame"
            ]
        );
    }
}
