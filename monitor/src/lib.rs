//! Live terminal dashboard for tern benchmarks, fed by the `metrics` facade.
//!
//! The bench installs the [`Registry`] as the global `metrics` recorder,
//! records through `metrics::counter!`, `gauge!` and `histogram!` under the
//! names in [`names`], and runs a [`Monitor`] on its main thread until the
//! work is done. The monitor samples the registry every tick, draws a
//! ratatui dashboard (or prints one line a second when stdout is not a
//! terminal) and hands back a [`Summary`] of the whole run.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use tern_monitor::{names, Mode, Monitor, MonitorOptions, Registry, Status};
//!
//! let registry = Registry::install();
//! let status = Status::new();
//! let options = MonitorOptions {
//!     title: "tern echo".into(),
//!     mode: Mode::detect(false),
//!     ..MonitorOptions::default()
//! };
//! let echoes = metrics::counter!(names::ECHOES); // keep handles in hot loops
//! echoes.increment(1);
//! status.set_phase("echo 0.0 s/5 s");
//! let stop = AtomicBool::new(false);
//! let summary = Monitor::new(registry, status, options)
//!     .run(&stop, &|| true)
//!     .expect("dashboard failed");
//! println!("{}", summary.table());
//! ```
//!
//! Figures are derived from samples taken once per tick, so their timing is
//! only as fine as the tick (250 ms by default). The live tiles show rates
//! and latency percentiles over the trailing second; the [`Summary`] covers
//! the whole run. Memory figures are per MiB (2^20 bytes), throughput in MB
//! (10^6 bytes).
//!
//! While the TUI runs it owns the terminal: nothing else in the process may
//! write to stdout or stderr, or the output lands in the middle of the
//! dashboard. A panic on any thread restores the terminal before its message
//! is printed.

#![warn(missing_docs)]

mod format;
mod histogram;
mod monitor;
mod registry;
mod state;
mod summary;
mod ui;

pub use histogram::{AtomicHistogram, HistogramSnapshot, HistogramSummary};
pub use monitor::{Mode, Monitor, MonitorOptions, Status};
pub use registry::{InstallError, Registry, Snapshot};
pub use summary::{Average, Summary};

/// Metric names the bench records and the dashboard reads.
pub mod names {
    /// Counter: WebSocket handshakes completed.
    pub const CONNECTIONS_OPENED: &str = "tern.connections.opened";
    /// Counter: connection attempts that failed.
    pub const CONNECTIONS_FAILED: &str = "tern.connections.failed";
    /// Gauge: connections currently open.
    pub const CONNECTIONS_OPEN: &str = "tern.connections.open";
    /// Counter: echoes received back and verified.
    pub const ECHOES: &str = "tern.echoes";
    /// Counter: payload bytes echoed (a round trip counts once).
    pub const BYTES_ECHOED: &str = "tern.bytes.echoed";
    /// Histogram: echo round-trip latency in microseconds.
    pub const ECHO_LATENCY_US: &str = "tern.echo.latency_us";
    /// Gauge: server resident memory in bytes.
    pub const SERVER_RSS_BYTES: &str = "tern.server.rss_bytes";
    /// Gauge: server resident memory in bytes before the connection storm.
    pub const SERVER_BASELINE_RSS_BYTES: &str = "tern.server.baseline_rss_bytes";
    /// Gauge: server CPU share in percent, 100 = one core.
    pub const SERVER_CPU_PERCENT: &str = "tern.server.cpu_percent";
}
