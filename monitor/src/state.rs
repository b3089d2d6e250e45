//! Dashboard state: one sample per tick, rates over a trailing window, the
//! chart series, and the running figures the [`Summary`] is built from.
//!
//! Time is passed in as seconds since the run started, so tests can feed a
//! synthetic sequence of snapshots without a clock.

use std::collections::VecDeque;

use crate::histogram::HistogramSnapshot;
use crate::names;
use crate::registry::Snapshot;
use crate::summary::{Average, Summary};

/// Rates are measured over this many trailing seconds.
pub(crate) const RATE_WINDOW: f64 = 1.0;

/// A window at least this long counts towards the peak rates; shorter ones
/// (right after the start) are too noisy.
const PEAK_MIN_SPAN: f64 = 0.9 * RATE_WINDOW;

/// Points kept per chart series.
pub(crate) const SERIES_LEN: usize = 120;

/// Bytes in a mebibyte, the memory unit of connections/MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Bytes in a megabyte, the unit of MB/s.
const MB: f64 = 1e6;

/// Connections per MiB of server memory growth; `None` when either memory
/// figure is unknown (missing or not positive) or memory did not grow.
pub(crate) fn conn_per_mib(open: f64, rss: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    let rss = rss.filter(|&v| v > 0.0)?;
    let baseline = baseline.filter(|&v| v > 0.0)?;
    let growth = (rss - baseline) / MIB;
    (growth > 0.0).then(|| open.max(0.0) / growth)
}

/// The metrics the dashboard reads, at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// Seconds since the run started.
    t: f64,
    opened: u64,
    failed: u64,
    open: f64,
    echoes: u64,
    bytes: u64,
    rss: Option<f64>,
    baseline: Option<f64>,
    cpu: Option<f64>,
    latency: Option<HistogramSnapshot>,
}

impl Sample {
    fn new(t: f64, snap: &Snapshot) -> Self {
        Self {
            t,
            opened: snap.counter(names::CONNECTIONS_OPENED),
            failed: snap.counter(names::CONNECTIONS_FAILED),
            open: snap.gauge(names::CONNECTIONS_OPEN),
            echoes: snap.counter(names::ECHOES),
            bytes: snap.counter(names::BYTES_ECHOED),
            rss: snap.gauge_opt(names::SERVER_RSS_BYTES),
            baseline: snap.gauge_opt(names::SERVER_BASELINE_RSS_BYTES),
            cpu: snap.gauge_opt(names::SERVER_CPU_PERCENT),
            latency: snap.histogram(names::ECHO_LATENCY_US).cloned(),
        }
    }
}

/// The figures shown on the tiles, from the latest window.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Live {
    pub open: f64,
    pub conn_per_ms: f64,
    pub conn_per_mib: Option<f64>,
    pub echoes_per_ms: f64,
    pub mb_per_s: f64,
    /// Latency percentiles of the echoes completed within the window.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub cpu: Option<f64>,
}

/// A sample of one counter: `(seconds, value)`.
type Point = (f64, u64);

/// The span over which a cumulative counter kept rising.
///
/// Samples only bracket the true start and end: the counter started rising
/// somewhere within the first interval that shows growth, and stopped
/// somewhere within the last. How far into the bracket is estimated from
/// the neighbouring interval's rate (growth in the bracket divided by that
/// rate is the time it was active there); without a usable neighbour the
/// middle of the bracket is taken. A counter still rising at the latest
/// sample ends at that sample.
#[derive(Clone, Debug, Default)]
struct Activity {
    /// `[before, first rise]`, then the sample after the first rise.
    start: Option<([Point; 2], Option<Point>)>,
    /// The sample before `[before, latest rise]`, then that bracket.
    end: Option<(Option<Point>, [Point; 2])>,
    /// The latest two samples, newest last.
    prev: Option<Point>,
    last: Option<Point>,
    /// Highest rate per second over a full window.
    peak: Option<f64>,
}

/// How long a counter was active within an interval that grew by `grew`,
/// going by a neighbouring interval's growth and length; `None` if that
/// neighbour says nothing.
fn active_time(grew: u64, neighbour: (Point, Point), bracket: f64) -> Option<f64> {
    let ((t0, v0), (t1, v1)) = neighbour;
    if v1 <= v0 || t1 <= t0 {
        return None;
    }
    let rate = (v1 - v0) as f64 / (t1 - t0);
    Some((grew as f64 / rate).min(bracket))
}

impl Activity {
    fn observe(&mut self, t: f64, v: u64) {
        if let Some(([_, first], next @ None)) = &mut self.start {
            *next = Some((t, v)).filter(|_| self.last == Some(*first));
        }
        if let Some(last) = self.last.filter(|&(_, lv)| v > lv) {
            self.start.get_or_insert(([last, (t, v)], None));
            self.end = Some((self.prev, [last, (t, v)]));
        }
        self.prev = self.last;
        self.last = Some((t, v));
    }

    /// Average rate per second while active.
    fn average_per_s(&self) -> Option<f64> {
        let ([(s0, from), (s1, v1)], next) = self.start?;
        let (before, [(e0, ve0), (e1, to)]) = self.end?;

        let start = next
            .and_then(|n| active_time(v1 - from, ((s1, v1), n), s1 - s0))
            .map_or((s0 + s1) / 2.0, |active| s1 - active);
        let still_rising = self.last.is_some_and(|(t, _)| t == e1);
        let end = if still_rising {
            e1
        } else {
            before
                .and_then(|b| active_time(to - ve0, (b, (e0, ve0)), e1 - e0))
                .map_or((e0 + e1) / 2.0, |active| e0 + active)
        };

        let mut span = end - start;
        if span <= 0.0 {
            // All of it happened between two samples.
            span = e1 - s0;
        }
        (span > 0.0).then(|| (to - from) as f64 / span)
    }

    fn peak(&mut self, rate: f64) {
        self.peak = Some(self.peak.map_or(rate, |p| p.max(rate)));
    }

    /// Average and peak rate per second, times `factor`.
    fn average(&self, factor: f64) -> Average {
        let avg = self.average_per_s();
        Average {
            average: avg.map(|v| v * factor),
            peak: self.peak.or(avg).map(|v| v * factor),
        }
    }
}

/// One time series for a chart: `(seconds, value)`, oldest first.
pub(crate) type Series = VecDeque<(f64, f64)>;

fn push(series: &mut Series, point: (f64, f64)) {
    if series.len() == SERIES_LEN {
        series.pop_front();
    }
    series.push_back(point);
}

/// Everything the dashboard draws and the summary reports.
#[derive(Clone, Debug, Default)]
pub(crate) struct DashState {
    pub title: String,
    pub phase: String,
    /// Seconds since the run started, at the latest sample.
    pub elapsed: f64,
    pub live: Live,
    pub conn_series: Series,
    pub echo_series: Series,
    pub open_series: Series,
    /// Lines of the "results so far" panel (empty: no panel).
    pub results: Vec<String>,
    /// Samples back to the newest one at least one window old.
    window: VecDeque<Sample>,
    conns: Activity,
    echoes: Activity,
    bytes: Activity,
    peak_open: f64,
    conn_per_mib_at_peak_open: Option<f64>,
    peak_rss: Option<f64>,
    cpu_peak: Option<f64>,
    cpu_sum: f64,
    cpu_samples: u64,
}

impl DashState {
    /// An empty state for a dashboard titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Takes in the snapshot taken `t` seconds into the run.
    pub fn update(&mut self, t: f64, phase: impl Into<String>, snap: &Snapshot) {
        self.phase = phase.into();
        self.elapsed = t;
        let sample = Sample::new(t, snap);

        // Keep one sample at or before the window start as its base.
        self.window.push_back(sample);
        while self.window.len() >= 2 && self.window[1].t <= t - RATE_WINDOW {
            self.window.pop_front();
        }
        let (base, now) = (&self.window[0], &self.window[self.window.len() - 1]);
        let span = now.t - base.t;
        let per_s = |a: u64, b: u64| {
            if span > 0.0 {
                b.saturating_sub(a) as f64 / span
            } else {
                0.0
            }
        };
        let conn_rate = per_s(base.opened, now.opened);
        let echo_rate = per_s(base.echoes, now.echoes);
        let byte_rate = per_s(base.bytes, now.bytes);

        let window_latency = match (&base.latency, &now.latency) {
            (Some(old), Some(new)) => Some(new.since(old)),
            (None, Some(new)) => Some(new.clone()),
            _ => None,
        };
        let latency_q = |q| window_latency.as_ref().and_then(|h| h.percentile(q));
        self.live = Live {
            open: now.open,
            conn_per_ms: conn_rate / 1000.0,
            conn_per_mib: conn_per_mib(now.open, now.rss, now.baseline),
            echoes_per_ms: echo_rate / 1000.0,
            mb_per_s: byte_rate / MB,
            p50_us: latency_q(0.5),
            p99_us: latency_q(0.99),
            cpu: now.cpu,
        };

        if span >= PEAK_MIN_SPAN {
            self.conns.peak(conn_rate);
            self.echoes.peak(echo_rate);
            self.bytes.peak(byte_rate);
        }
        self.conns.observe(t, now.opened);
        self.echoes.observe(t, now.echoes);
        self.bytes.observe(t, now.bytes);
        self.track_extremes();

        push(&mut self.conn_series, (t, self.live.conn_per_ms));
        push(&mut self.echo_series, (t, self.live.echoes_per_ms));
        push(&mut self.open_series, (t, self.live.open));
    }

    /// Peak open connections, memory and CPU.
    fn track_extremes(&mut self) {
        let Some(now) = self.window.back() else {
            return;
        };
        // A memory figure that arrives while the peak holds still counts.
        let at_peak_unknown = self.conn_per_mib_at_peak_open.is_none();
        if now.open > self.peak_open || (now.open == self.peak_open && at_peak_unknown) {
            self.peak_open = now.open;
            self.conn_per_mib_at_peak_open = conn_per_mib(now.open, now.rss, now.baseline);
        }
        if let Some(rss) = now.rss.filter(|&v| v > 0.0) {
            self.peak_rss = Some(self.peak_rss.map_or(rss, |p| p.max(rss)));
        }
        if let Some(cpu) = now.cpu.filter(|v| v.is_finite()) {
            self.cpu_peak = Some(self.cpu_peak.map_or(cpu, |p| p.max(cpu)));
            self.cpu_sum += cpu;
            self.cpu_samples += 1;
        }
    }

    /// The whole-run figures so far. `interrupted` records that the user
    /// quit before the work finished.
    pub fn summary(&self, interrupted: bool) -> Summary {
        let last = self.window.back();
        Summary {
            title: self.title.clone(),
            duration_s: self.elapsed,
            interrupted,
            connections_opened: last.map_or(0, |s| s.opened),
            connections_failed: last.map_or(0, |s| s.failed),
            open_connections_peak: self.peak_open,
            open_connections_final: last.map_or(0.0, |s| s.open),
            conn_per_ms: self.conns.average(1e-3),
            conn_per_mib_at_peak_open: self.conn_per_mib_at_peak_open,
            conn_per_mib_final: last.and_then(|s| conn_per_mib(s.open, s.rss, s.baseline)),
            echoes: last.map_or(0, |s| s.echoes),
            echoes_per_ms: self.echoes.average(1e-3),
            bytes_echoed: last.map_or(0, |s| s.bytes),
            mb_per_s: self.bytes.average(1.0 / MB),
            latency_us: last
                .and_then(|s| s.latency.as_ref())
                .and_then(HistogramSnapshot::summary),
            server_rss_bytes_peak: self.peak_rss,
            server_baseline_rss_bytes: last.and_then(|s| s.baseline).filter(|&v| v > 0.0),
            server_cpu_percent_peak: self.cpu_peak,
            server_cpu_percent_mean: (self.cpu_samples > 0)
                .then(|| self.cpu_sum / self.cpu_samples as f64),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::histogram::AtomicHistogram;

    /// A snapshot with the given counters, gauges and latency values.
    pub(crate) fn snap(
        opened: u64,
        open: f64,
        echoes: u64,
        bytes: u64,
        rss: Option<f64>,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        s.set_counter(names::CONNECTIONS_OPENED, opened);
        s.set_counter(names::ECHOES, echoes);
        s.set_counter(names::BYTES_ECHOED, bytes);
        s.set_gauge(names::CONNECTIONS_OPEN, open);
        if let Some(rss) = rss {
            s.set_gauge(names::SERVER_RSS_BYTES, rss);
            s.set_gauge(names::SERVER_BASELINE_RSS_BYTES, 10.0 * MIB);
        }
        s
    }

    pub(crate) fn with_latency(mut s: Snapshot, values: &[f64]) -> Snapshot {
        let h = AtomicHistogram::new();
        for &v in values {
            h.record_n(v, 1);
        }
        s.set_histogram(names::ECHO_LATENCY_US, h.snapshot());
        s
    }

    #[test]
    fn conn_per_mib_needs_known_positive_growth() {
        assert_eq!(conn_per_mib(100.0, None, Some(MIB)), None);
        assert_eq!(conn_per_mib(100.0, Some(2.0 * MIB), None), None);
        assert_eq!(conn_per_mib(100.0, Some(0.0), Some(MIB)), None);
        assert_eq!(conn_per_mib(100.0, Some(MIB), Some(MIB)), None);
        assert_eq!(conn_per_mib(100.0, Some(MIB), Some(2.0 * MIB)), None);
        assert_eq!(conn_per_mib(100.0, Some(3.0 * MIB), Some(MIB)), Some(50.0));
    }

    #[test]
    fn rates_come_from_the_trailing_window() {
        let mut st = DashState::new("t");
        // 2,000 connections per second for 3 s, sampled every 0.25 s.
        for i in 0..=12u32 {
            let t = f64::from(i) * 0.25;
            let opened = u64::from(i) * 500;
            st.update(t, "storm", &snap(opened, opened as f64, 0, 0, None));
        }
        assert_eq!(st.phase, "storm");
        assert!((st.live.conn_per_ms - 2.0).abs() < 1e-9, "{:?}", st.live);
        assert_eq!(st.live.echoes_per_ms, 0.0);
        assert_eq!(st.live.conn_per_mib, None);
        assert_eq!(st.conn_series.len(), 13);
        assert_eq!(st.open_series.back(), Some(&(3.0, 6000.0)));
    }

    #[test]
    fn series_are_capped() {
        let mut st = DashState::new("t");
        for i in 0..(SERIES_LEN as u32 + 30) {
            st.update(f64::from(i), "", &snap(u64::from(i), 0.0, 0, 0, None));
        }
        assert_eq!(st.conn_series.len(), SERIES_LEN);
        assert_eq!(st.conn_series.front().unwrap().0, 30.0);
    }

    #[test]
    fn summary_averages_over_the_active_span_and_finds_the_peak() {
        let mut st = DashState::new("bench");
        // Idle for 1 s, then 1,000 conn/s for 2 s, then 3,000 conn/s for
        // 1 s, then idle for 2 s. Echoes start after the storm.
        let mut opened = 0;
        let mut echoes = 0;
        for i in 0..=24u32 {
            let t = f64::from(i) * 0.25;
            opened += match t {
                t if t > 1.0 && t <= 3.0 => 250,
                t if t > 3.0 && t <= 4.0 => 750,
                _ => 0,
            };
            if t > 4.0 {
                echoes += 5_000;
            }
            let rss = 10.0 * MIB + opened as f64 * 1024.0;
            st.update(
                t,
                "",
                &snap(opened, opened as f64, echoes, echoes * 32, Some(rss)),
            );
        }
        let s = st.summary(false);
        assert_eq!(s.connections_opened, 5000);
        // 5,000 connections, rising from t = 1 to t = 4.
        let avg = s.conn_per_ms.average.unwrap();
        assert!((avg - 5.0 / 3.0).abs() < 1e-9, "{avg}");
        let peak = s.conn_per_ms.peak.unwrap();
        assert!((peak - 3.0).abs() < 1e-9, "{peak}");
        // 1 KiB per connection: 1,024 connections per MiB.
        assert!((s.conn_per_mib_at_peak_open.unwrap() - 1024.0).abs() < 1e-6);
        assert_eq!(s.open_connections_peak, 5000.0);
        // Echoes: 40,000 from t = 4, still rising at t = 6.
        assert!((s.echoes_per_ms.average.unwrap() - 20.0).abs() < 1e-9);
        assert!((s.mb_per_s.average.unwrap() - 0.64).abs() < 1e-9);
        assert_eq!(s.latency_us, None);
        assert!(!s.interrupted);
    }

    #[test]
    fn a_rate_still_rising_at_the_end_is_not_cut_short() {
        let mut st = DashState::new("t");
        for i in 0..=8u32 {
            let t = f64::from(i) * 0.25;
            st.update(t, "", &snap(0, 0.0, u64::from(i) * 250, 0, None));
        }
        // 1,000 echoes/s from t = 0, still going at t = 2.
        let avg = st.summary(true).echoes_per_ms.average.unwrap();
        assert!((avg - 1.0).abs() < 1e-9, "{avg}");
    }

    #[test]
    fn partial_first_and_last_intervals_are_estimated_from_their_neighbours() {
        let mut st = DashState::new("t");
        // 4,000 conn/s from t = 0.15 to t = 1.1, sampled every 0.25 s.
        let opened = |t: f64| ((t.clamp(0.15, 1.1) - 0.15) * 4000.0).round() as u64;
        for i in 0..=8u32 {
            let t = f64::from(i) * 0.25;
            st.update(t, "", &snap(opened(t), 0.0, 0, 0, None));
        }
        let avg = st.summary(false).conn_per_ms.average.unwrap();
        assert!((avg - 4.0).abs() < 1e-9, "{avg}");
    }

    #[test]
    fn a_burst_within_one_tick_uses_the_whole_interval() {
        let mut st = DashState::new("t");
        st.update(0.0, "", &snap(0, 0.0, 0, 0, None));
        st.update(0.25, "", &snap(500, 0.0, 0, 0, None));
        st.update(0.5, "", &snap(500, 0.0, 0, 0, None));
        let avg = st.summary(false).conn_per_ms.average.unwrap();
        assert!((avg - 2.0).abs() < 1e-9, "{avg}");
    }

    #[test]
    fn summary_without_activity_reports_nothing() {
        let mut st = DashState::new("idle");
        st.update(0.0, "", &snap(0, 0.0, 0, 0, None));
        st.update(2.0, "", &snap(0, 0.0, 0, 0, None));
        let s = st.summary(true);
        assert_eq!(s.conn_per_ms.average, None);
        assert_eq!(s.conn_per_ms.peak, Some(0.0));
        assert_eq!(s.conn_per_mib_final, None);
        assert!(s.interrupted);
    }

    #[test]
    fn window_latency_only_counts_recent_echoes() {
        let mut st = DashState::new("t");
        let slow: Vec<f64> = vec![1000.0; 100];
        st.update(0.0, "", &with_latency(snap(0, 0.0, 100, 0, None), &slow));
        let mut both = slow.clone();
        both.extend(std::iter::repeat_n(10.0, 300));
        st.update(1.0, "", &with_latency(snap(0, 0.0, 400, 0, None), &both));
        let near = |got: Option<f64>, exact: f64| {
            let got = got.unwrap();
            assert!((got - exact).abs() <= exact * 0.004, "{got} vs {exact}");
        };
        near(st.live.p50_us, 10.0);
        near(st.live.p99_us, 10.0);
        let whole = st.summary(false).latency_us.unwrap();
        assert_eq!(whole.count, 400);
        near(Some(whole.p50), 10.0);
        near(Some(whole.p99), 1000.0);
    }
}
