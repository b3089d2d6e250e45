//! The dashboard's whole-run figures, as a text table or JSON.
//!
//! Rates come from samples taken once per tick, so an activity's start and
//! end are known only to within a tick; the bench's own per-phase figures
//! are exact where they differ.

use serde::Serialize;

use crate::format;
use crate::histogram::HistogramSummary;

/// A rate averaged over the span where it was non-zero, and its peak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Average {
    /// Total growth divided by the time it took; the start and end are each
    /// taken midway between the samples that bracket them. `None` if the
    /// figure never rose.
    pub average: Option<f64>,
    /// Highest rate over a trailing one-second window; the average when the
    /// run was too short for a full window.
    pub peak: Option<f64>,
}

/// Derived figures over the whole run. `None` fields are unknown ("n/a").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The dashboard title.
    pub title: String,
    /// Seconds from the start of the run to the last sample.
    pub duration_s: f64,
    /// The user quit before the work finished.
    pub interrupted: bool,
    /// Handshakes completed.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connections_failed: u64,
    /// Most connections open at one sample.
    pub open_connections_peak: f64,
    /// Connections open at the last sample.
    pub open_connections_final: f64,
    /// Connections opened per millisecond.
    pub conn_per_ms: Average,
    /// Open connections per MiB of server memory growth over the baseline,
    /// at the sample with the most open connections.
    pub conn_per_mib_at_peak_open: Option<f64>,
    /// The same at the last sample.
    pub conn_per_mib_final: Option<f64>,
    /// Verified echoes.
    pub echoes: u64,
    /// Echoes per millisecond.
    pub echoes_per_ms: Average,
    /// Payload bytes echoed.
    pub bytes_echoed: u64,
    /// Payload megabytes (10^6 bytes) echoed per second.
    pub mb_per_s: Average,
    /// Echo round-trip latency in microseconds, over the whole run.
    pub latency_us: Option<HistogramSummary>,
    /// Highest server resident memory seen.
    pub server_rss_bytes_peak: Option<f64>,
    /// Server resident memory before the storm.
    pub server_baseline_rss_bytes: Option<f64>,
    /// Highest server CPU share seen (100 = one core).
    pub server_cpu_percent_peak: Option<f64>,
    /// Mean of the sampled server CPU shares.
    pub server_cpu_percent_mean: Option<f64>,
}

/// Lays out rows with the first column left-aligned and the others
/// right-aligned, two spaces apart.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let cell = |r: &Vec<String>| r.get(c).map_or(0, |s| s.chars().count());
            rows.iter().map(cell).max().unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c == 0 {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str("  ");
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|&c| c.to_owned()).collect()
}

fn bytes_mib(v: Option<f64>) -> String {
    v.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{} MiB", format::num(b / 1048576.0)),
    )
}

impl Summary {
    /// A plain aligned text table, one figure per cell, "n/a" where unknown.
    pub fn table(&self) -> String {
        let how = if self.interrupted {
            "stopped by user"
        } else {
            "finished"
        };
        let mut out = format!(
            "{}: {}, {how}\n\n",
            self.title,
            format::secs(self.duration_s)
        );

        let rate = |label: &str, a: &Average| {
            vec![
                label.to_owned(),
                format::opt(a.average),
                format::opt(a.peak),
            ]
        };
        out.push_str(&align(&[
            row(&["rate", "average", "peak 1 s"]),
            rate("connections/ms", &self.conn_per_ms),
            rate("echoes/ms", &self.echoes_per_ms),
            rate("MB/s", &self.mb_per_s),
        ]));
        out.push('\n');

        out.push_str(&align(&[
            row(&["memory", "at peak open", "at end"]),
            vec![
                "open connections".to_owned(),
                format::num(self.open_connections_peak),
                format::num(self.open_connections_final),
            ],
            vec![
                "connections/MiB".to_owned(),
                format::opt(self.conn_per_mib_at_peak_open),
                format::opt(self.conn_per_mib_final),
            ],
        ]));
        out.push('\n');

        let mut latency = vec![row(&[
            "latency µs",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
        ])];
        latency.push(match &self.latency_us {
            Some(l) => [l.p50, l.p90, l.p99, l.p999, l.max, l.mean]
                .iter()
                .map(|&v| format::num(v))
                .fold(
                    vec![format!("{} echoes", format::int(l.count))],
                    |mut r, v| {
                        r.push(v);
                        r
                    },
                ),
            None => row(&["no echoes", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]),
        });
        out.push_str(&align(&latency));
        out.push('\n');

        out.push_str(&align(&[
            vec![
                "connections opened".into(),
                format::int(self.connections_opened),
            ],
            vec![
                "connections failed".into(),
                format::int(self.connections_failed),
            ],
            vec!["echoes".into(), format::int(self.echoes)],
            vec!["bytes echoed".into(), format::int(self.bytes_echoed)],
            vec![
                "server rss peak".into(),
                bytes_mib(self.server_rss_bytes_peak),
            ],
            vec![
                "server rss baseline".into(),
                bytes_mib(self.server_baseline_rss_bytes),
            ],
            vec![
                "server cpu % peak".into(),
                format::opt(self.server_cpu_percent_peak),
            ],
            vec![
                "server cpu % mean".into(),
                format::opt(self.server_cpu_percent_mean),
            ],
        ]));
        out
    }

    /// The summary as JSON; unknown figures are `null`.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain numbers, strings and options cannot fail; a
        // non-finite float becomes `null`.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        Summary {
            title: "tern storm".into(),
            duration_s: 12.34,
            interrupted: false,
            connections_opened: 10_000,
            connections_failed: 3,
            open_connections_peak: 10_000.0,
            open_connections_final: 9_997.0,
            conn_per_ms: Average {
                average: Some(4.5),
                peak: Some(12.26),
            },
            conn_per_mib_at_peak_open: Some(512.0),
            conn_per_mib_final: None,
            echoes: 1_234_567,
            echoes_per_ms: Average::default(),
            bytes_echoed: 39_506_144,
            mb_per_s: Average {
                average: Some(3.2),
                peak: Some(4.0),
            },
            latency_us: None,
            server_rss_bytes_peak: Some(64.0 * 1048576.0),
            server_baseline_rss_bytes: None,
            server_cpu_percent_peak: Some(95.5),
            server_cpu_percent_mean: None,
        }
    }

    #[test]
    fn table_shows_figures_and_na() {
        let t = sample().table();
        assert!(t.starts_with("tern storm: 12.3 s, finished\n"), "{t}");
        let line = |label: &str| {
            t.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in\n{t}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("connections/ms"), ["connections/ms", "4.50", "12.3"]);
        assert_eq!(line("echoes/ms"), ["echoes/ms", "n/a", "n/a"]);
        assert_eq!(line("connections/MiB"), ["connections/MiB", "512", "n/a"]);
        assert_eq!(
            line("open connections"),
            ["open", "connections", "10,000", "9,997"]
        );
        assert_eq!(line("echoes "), ["echoes", "1,234,567"]);
        assert_eq!(
            line("server rss peak"),
            ["server", "rss", "peak", "64.0", "MiB"]
        );
        assert_eq!(
            line("server rss baseline"),
            ["server", "rss", "baseline", "n/a"]
        );
        assert_eq!(line("no echoes").len(), 8);
    }

    #[test]
    fn table_columns_line_up() {
        let t = sample().table();
        let rates: Vec<&str> = t.lines().skip(2).take(4).collect();
        let ends: Vec<usize> = rates.iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{rates:#?}");
    }

    #[test]
    fn json_has_nulls_for_unknowns() {
        let mut s = sample();
        s.interrupted = true;
        let j = s.to_json();
        assert_eq!(j["connections_opened"], 10_000);
        assert_eq!(j["conn_per_ms"]["peak"], 12.26);
        assert!(j["conn_per_mib_final"].is_null());
        assert!(j["latency_us"].is_null());
        assert_eq!(j["interrupted"], true);
        assert!(s.table().contains("stopped by user"));
    }
}
