//! Drives the dashboard with synthetic metrics: a connection storm, then
//! echoes, for a bounded time. `cargo run -p tern-monitor --example demo
//! [-- --no-tui] [-- --panic]`; `--panic` panics a worker mid-run to show the
//! terminal being restored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_monitor::{names, Mode, Monitor, MonitorOptions, Registry, Status};

const CONNECTIONS: u64 = 10_000;
const STORM: Duration = Duration::from_secs(3);
const ECHO: Duration = Duration::from_secs(5);

fn work(status: &Status, stop: &AtomicBool, panic_midway: bool) {
    let opened = metrics::counter!(names::CONNECTIONS_OPENED);
    let open = metrics::gauge!(names::CONNECTIONS_OPEN);
    let echoes = metrics::counter!(names::ECHOES);
    let bytes = metrics::counter!(names::BYTES_ECHOED);
    let latency = metrics::histogram!(names::ECHO_LATENCY_US);
    let rss = metrics::gauge!(names::SERVER_RSS_BYTES);
    let cpu = metrics::gauge!(names::SERVER_CPU_PERCENT);
    let baseline = 8.0 * 1048576.0;
    metrics::gauge!(names::SERVER_BASELINE_RSS_BYTES).set(baseline);

    let start = Instant::now();
    let mut n = 0;
    while n < CONNECTIONS && !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() / STORM.as_secs_f64() * CONNECTIONS as f64) as u64;
        while n < due.min(CONNECTIONS) {
            n += 1;
            opened.increment(1);
            open.increment(1.0);
        }
        rss.set(baseline + n as f64 * 3000.0);
        cpu.set(40.0 + (n % 7) as f64);
        status.set_phase(format!("connection storm {n}/{CONNECTIONS}"));
        std::thread::sleep(Duration::from_millis(5));
    }

    let start = Instant::now();
    let mut i: u64 = 0;
    while start.elapsed() < ECHO && !stop.load(Ordering::Relaxed) {
        if panic_midway && start.elapsed() > ECHO / 2 {
            panic!("demo worker panicked on purpose");
        }
        for _ in 0..50 {
            i += 1;
            echoes.increment(1);
            bytes.increment(125);
            latency.record(80.0 + (i % 97) as f64 + if i % 1000 == 0 { 900.0 } else { 0.0 });
        }
        cpu.set(90.0 + (i % 9) as f64);
        let e = start.elapsed().as_secs_f64();
        status.set_phase(format!("echo {e:.1} s/{} s", ECHO.as_secs()));
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn main() {
    let no_tui = std::env::args().any(|a| a == "--no-tui");
    let panic_midway = std::env::args().any(|a| a == "--panic");
    let registry = Registry::install();
    let status = Status::new();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));

    let worker = {
        let (status, stop, done) = (status.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            work(&status, &stop, panic_midway);
            done.store(true, Ordering::SeqCst);
        })
    };

    let options = MonitorOptions {
        title: "tern monitor demo".into(),
        mode: Mode::detect(no_tui),
        ..MonitorOptions::default()
    };
    let mut monitor = Monitor::new(registry, status, options);
    let finished = || done.load(Ordering::SeqCst) || worker.is_finished();
    let summary = match monitor.run(&stop, &finished) {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("dashboard failed: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", summary.table());
    println!("{}", summary.to_json());
}
