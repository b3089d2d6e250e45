//! An in-process `metrics::Recorder` backed by atomics, and its snapshots.
//!
//! Registering a metric takes a lock on a map; the handle returned holds an
//! `Arc` to the atomic itself, so every update through a kept handle is one
//! atomic operation and never touches the map. The `metrics::counter!` family
//! of macros registers on every call, so hot loops should keep the handle.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::histogram::{AtomicHistogram, HistogramSnapshot, HistogramSummary};

/// A map from metric key to its shared storage.
type Handles<T> = RwLock<HashMap<Key, Arc<T>>>;

/// The recorder: counters and gauges are one `AtomicU64` each (gauges hold
/// `f64` bits), histograms an [`AtomicHistogram`].
#[derive(Debug, Default)]
pub struct Registry {
    counters: Handles<AtomicU64>,
    gauges: Handles<AtomicU64>,
    histograms: Handles<AtomicHistogram>,
}

/// Why [`Registry::try_install`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallError {
    /// Another global `metrics` recorder was installed first.
    ForeignRecorder,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForeignRecorder => f.write_str("another global metrics recorder is installed"),
        }
    }
}

impl std::error::Error for InstallError {}

static GLOBAL: OnceLock<Registry> = OnceLock::new();
static INSTALLED: OnceLock<Result<(), InstallError>> = OnceLock::new();

/// Returns the handle for `key`, creating it on first use.
fn handle<T: Default>(map: &Handles<T>, key: &Key) -> Arc<T> {
    let found = map
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .cloned();
    if let Some(found) = found {
        return found;
    }
    let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
    map.entry(key.clone()).or_default().clone()
}

impl Registry {
    /// A registry that is not installed anywhere; use it with
    /// `metrics::with_local_recorder` or read it directly.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the process-wide registry as the global recorder and returns
    /// it. Calling it again returns the same registry.
    ///
    /// # Panics
    ///
    /// If a different global recorder was installed before; that is a setup
    /// bug in the program, and nothing would ever reach the dashboard. Use
    /// [`Registry::try_install`] to handle it instead.
    pub fn install() -> &'static Registry {
        match Self::try_install() {
            Ok(registry) => registry,
            Err(e) => panic!("tern-monitor: {e}"),
        }
    }

    /// Like [`Registry::install`], but reports a foreign recorder as an error.
    pub fn try_install() -> Result<&'static Registry, InstallError> {
        let registry = GLOBAL.get_or_init(Registry::new);
        let installed = INSTALLED.get_or_init(|| {
            metrics::set_global_recorder(registry).map_err(|_| InstallError::ForeignRecorder)
        });
        installed.map(|()| registry)
    }

    /// Reads every metric. Series that share a name but differ in labels are
    /// combined: counters and gauges summed, histograms merged.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::default();

        let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        for (key, c) in counters.iter() {
            *snap.counters.entry(key.name().to_owned()).or_default() += c.load(Ordering::Relaxed);
        }
        drop(counters);

        let gauges = self.gauges.read().unwrap_or_else(PoisonError::into_inner);
        for (key, g) in gauges.iter() {
            let v = f64::from_bits(g.load(Ordering::Relaxed));
            *snap.gauges.entry(key.name().to_owned()).or_default() += v;
        }
        drop(gauges);

        let histograms = self
            .histograms
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, h) in histograms.iter() {
            let entry = snap.histograms.entry(key.name().to_owned()).or_default();
            entry.merge(&h.snapshot());
        }
        snap
    }
}

impl Recorder for Registry {
    fn describe_counter(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn describe_gauge(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn describe_histogram(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(handle(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(handle(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(handle(&self.histograms, key))
    }
}

/// Every metric's value at one moment, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub(crate) counters: BTreeMap<String, u64>,
    pub(crate) gauges: BTreeMap<String, f64>,
    pub(crate) histograms: BTreeMap<String, HistogramSnapshot>,
}

impl Snapshot {
    /// The counter's value; 0 if it was never registered.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The gauge's value; 0.0 if it was never registered.
    pub fn gauge(&self, name: &str) -> f64 {
        self.gauge_opt(name).unwrap_or(0.0)
    }

    /// The gauge's value, or `None` if it was never registered.
    pub fn gauge_opt(&self, name: &str) -> Option<f64> {
        self.gauges.get(name).copied()
    }

    /// The histogram's value at quantile `q`, a fraction in `0.0..=1.0`
    /// (0.99 is p99). `None` if the histogram is unknown or empty, or `q` is
    /// out of range.
    pub fn percentile(&self, name: &str, q: f64) -> Option<f64> {
        self.histograms.get(name)?.percentile(q)
    }

    /// The whole histogram, if it was registered.
    pub fn histogram(&self, name: &str) -> Option<&HistogramSnapshot> {
        self.histograms.get(name)
    }

    /// count, p50, p90, p99, p99.9, max and mean of a histogram; `None` if
    /// it is unknown or empty.
    pub fn histogram_summary(&self, name: &str) -> Option<HistogramSummary> {
        self.histograms.get(name)?.summary()
    }

    /// Sets a counter (for building synthetic snapshots, e.g. in tests).
    pub fn set_counter(&mut self, name: &str, value: u64) {
        self.counters.insert(name.to_owned(), value);
    }

    /// Sets a gauge (for building synthetic snapshots, e.g. in tests).
    pub fn set_gauge(&mut self, name: &str, value: f64) {
        self.gauges.insert(name.to_owned(), value);
    }

    /// Sets a histogram (for building synthetic snapshots, e.g. in tests).
    pub fn set_histogram(&mut self, name: &str, value: HistogramSnapshot) {
        self.histograms.insert(name.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    #[test]
    fn macros_reach_a_local_registry() {
        let registry = Registry::new();
        metrics::with_local_recorder(&registry, || {
            metrics::counter!(names::ECHOES).increment(3);
            let opened = metrics::counter!(names::CONNECTIONS_OPENED);
            for _ in 0..10 {
                opened.increment(1);
            }
            metrics::counter!(names::ECHOES).absolute(2); // lower: ignored
            metrics::gauge!(names::CONNECTIONS_OPEN).set(7.0);
            metrics::gauge!(names::CONNECTIONS_OPEN).increment(2.5);
            metrics::gauge!(names::CONNECTIONS_OPEN).decrement(0.5);
            for v in 1..=100 {
                metrics::histogram!(names::ECHO_LATENCY_US).record(f64::from(v));
            }
        });
        let snap = registry.snapshot();
        assert_eq!(snap.counter(names::ECHOES), 3);
        assert_eq!(snap.counter(names::CONNECTIONS_OPENED), 10);
        assert_eq!(snap.counter(names::CONNECTIONS_FAILED), 0);
        assert_eq!(snap.gauge(names::CONNECTIONS_OPEN), 9.0);
        assert_eq!(snap.gauge_opt(names::SERVER_RSS_BYTES), None);
        // Within half a bucket (under 0.4 %) of the exact nearest rank.
        let near = |q: f64, exact: f64| {
            let got = snap.percentile(names::ECHO_LATENCY_US, q).unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.004,
                "q={q}: {got} vs {exact}"
            );
        };
        near(0.5, 50.0);
        near(0.99, 99.0);
        let summary = snap.histogram_summary(names::ECHO_LATENCY_US).unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.max, 100.0);
        assert_eq!(summary.min, 1.0);
        assert!((summary.mean - 50.5).abs() < 0.01);
    }

    #[test]
    fn labelled_series_are_combined_by_name() {
        let registry = Registry::new();
        metrics::with_local_recorder(&registry, || {
            metrics::counter!(names::ECHOES, "worker" => "0").increment(4);
            metrics::counter!(names::ECHOES, "worker" => "1").increment(6);
            metrics::gauge!(names::CONNECTIONS_OPEN, "worker" => "0").set(2.0);
            metrics::gauge!(names::CONNECTIONS_OPEN, "worker" => "1").set(3.0);
            metrics::histogram!(names::ECHO_LATENCY_US, "worker" => "0").record(10.0);
            metrics::histogram!(names::ECHO_LATENCY_US, "worker" => "1").record(20.0);
        });
        let snap = registry.snapshot();
        assert_eq!(snap.counter(names::ECHOES), 10);
        assert_eq!(snap.gauge(names::CONNECTIONS_OPEN), 5.0);
        let h = snap.histogram(names::ECHO_LATENCY_US).unwrap();
        assert_eq!(h.count(), 2);
        assert_eq!(h.max(), Some(20.0));
    }

    #[test]
    fn handles_update_from_many_threads() {
        let registry = Registry::new();
        let (counter, histogram) = metrics::with_local_recorder(&registry, || {
            (
                metrics::counter!(names::ECHOES),
                metrics::histogram!(names::ECHO_LATENCY_US),
            )
        });
        std::thread::scope(|s| {
            for t in 0..4 {
                let (counter, histogram) = (counter.clone(), histogram.clone());
                s.spawn(move || {
                    for i in 0..1000 {
                        counter.increment(1);
                        histogram.record(f64::from(t * 1000 + i));
                    }
                });
            }
        });
        let snap = registry.snapshot();
        assert_eq!(snap.counter(names::ECHOES), 4000);
        assert_eq!(
            snap.histogram(names::ECHO_LATENCY_US).unwrap().count(),
            4000
        );
        assert_eq!(snap.percentile(names::ECHO_LATENCY_US, 1.0), Some(3999.0));
    }

    #[test]
    fn global_install_is_idempotent() {
        let a = Registry::install();
        let b = Registry::install();
        assert!(std::ptr::eq(a, b));
        metrics::counter!("tern.test.global").increment(1);
        assert_eq!(a.snapshot().counter("tern.test.global"), 1);
    }
}
