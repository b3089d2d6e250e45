//! End-to-end runs of the real `tern` binary on loopback.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{alive, eventually, json, serve, tern, wait_output, TERN};
use tern_core::{Context, Handler, Message};
use tern_transport_std::{Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn connections_opens_every_connection() {
    let (server, url) = serve();
    let pid = server.0.id().to_string();
    let out = tern(
        &[
            "connections",
            &url,
            "-n",
            "300",
            "--server-pid",
            &pid,
            "--json",
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let storm = &report["connections"];
    assert_eq!(storm["requested"], 300);
    assert_eq!(storm["opened"], 300);
    assert_eq!(storm["failed"], 0);
    assert!(storm["connections_per_ms"].as_f64().unwrap() > 0.0);
    assert!(storm["server_rss_after_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["ok"], true);
}

#[test]
fn echo_checks_every_echo() {
    let (_server, url) = serve();
    let out = tern(
        &["echo", &url, "-n", "50", "--duration", "1s", "--json"],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo = &json(&out)["echo"];
    assert!(echo["echoes"].as_u64().unwrap() > 0);
    assert_eq!(echo["mismatches"], 0);
    assert_eq!(echo["unanswered"], 0);
    assert!(echo["latency_us"]["p99"].as_u64().is_some());
}

#[test]
fn binary_echo_with_the_table() {
    let (_server, url) = serve();
    let args = [
        "echo",
        &url,
        "-n",
        "5",
        "--duration",
        "300ms",
        "--binary",
        "--size",
        "1KiB",
    ];
    let out = tern(&args, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("1024 B binary"), "{table}");
    assert!(table.contains(" µs, p90 "), "{table}");
    assert!(table.contains("result: ok"), "{table}");
}

#[test]
fn throughput_reports_the_size() {
    let (_server, url) = serve();
    let out = tern(
        &[
            "throughput",
            &url,
            "--size",
            "8MB",
            "--repeat",
            "2",
            "--json",
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = &json(&out)["throughput"];
    assert_eq!(t["size_bytes"], 8_000_000);
    assert_eq!(t["rounds"].as_array().unwrap().len(), 2);
    assert!(t["best_mb_per_s"].as_f64().unwrap() > 0.0);
    assert!(t["median_mb_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_end_to_end_leaves_no_child() {
    let args = [
        "run",
        "--connections",
        "300",
        "--echo-seconds",
        "1",
        "--no-tui",
        "--json",
    ];
    let out = tern(&args, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["connections"]["opened"], 300);
    assert!(report["echo"]["echoes"].as_u64().unwrap() > 0);
    assert_eq!(report["echo"]["mismatches"], 0);
    assert_eq!(report["throughput"]["size_bytes"], 30_000_000);
    assert!(
        report["connections"]["connections_per_mib"].is_number()
            || report["connections"]["server_rss_after_bytes"].is_number()
    );
    let pid = report["server_pid"].as_u64().unwrap() as u32;
    assert!(!alive(pid), "server child {pid} is still running");
}

#[test]
fn too_many_connections_are_refused_before_starting() {
    // A shell lowers the limit (soft and hard, so it cannot be raised
    // back) to make the test the same on every machine; no connection is
    // ever attempted.
    let script = format!("ulimit -n 4096 && exec {TERN} connections ws://127.0.0.1:9/ -n 50000");
    let out = wait_output(
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("50000 connections"), "{err}");
    assert!(
        err.contains("open-file limit (RLIMIT_NOFILE) is 4096"),
        "{err}"
    );
    assert!(err.contains("at most 4032"), "{err}");

    let script = format!("ulimit -n 4096 && exec {TERN} run --connections 50000 --no-tui");
    let out = wait_output(
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("50000 connections"));
}

#[test]
fn bad_urls_are_refused() {
    let out = tern(&["echo", "wss://127.0.0.1:1/", "-n", "1"], LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS"));
    let out = tern(&["throughput", "http://127.0.0.1:1/"], LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let out = tern(
        &["throughput", "ws://127.0.0.1:1/", "--size", "3 parsecs"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn nothing_listening_fails_without_hanging() {
    // Port 9 (discard) on loopback: nothing listens there in the tests.
    let out = tern(
        &["connections", "ws://127.0.0.1:9/", "-n", "20", "--json"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let storm = &json(&out)["connections"];
    assert_eq!(storm["failed"], 20);
    let reasons = storm["failures"].as_object().unwrap();
    assert!(
        reasons.keys().any(|r| r.contains("transport error")),
        "{reasons:?}"
    );
}

#[test]
fn sigint_shuts_serve_down_gracefully() {
    let (mut server, url) = serve();
    // A client with open connections when the signal comes.
    let mut client = Command::new(TERN)
        .args([
            "echo",
            &url,
            "-n",
            "5",
            "--duration",
            "30s",
            "--timeout",
            "10s",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = client.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("echo 0.") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the client never started echoing");

    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(server.0.id() as i32, libc::SIGINT) }, 0);
    let mut status = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            status = server.0.try_wait().unwrap();
            status.is_some()
        }),
        "tern serve did not exit after SIGINT"
    );
    assert_eq!(status.unwrap().code(), Some(0));

    // The client saw its connections closed with 1001 and failed.
    let out = wait_output(client, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let errors = report["echo"]["errors"].as_object().unwrap();
    assert!(errors.keys().any(|e| e.contains("1001")), "{errors:?}");
}

/// Echoes every message with its first byte changed.
struct Corrupting;

impl Handler for Corrupting {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let mut bytes = message.as_bytes().to_vec();
        if let Some(b) = bytes.first_mut() {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        let _ = match message {
            Message::Text(_) => cx.send_text(std::str::from_utf8(&bytes).unwrap()),
            Message::Binary(_) => cx.send_binary(&bytes),
        };
    }
}

/// Accepts connections and never answers a message.
struct Silent;

impl Handler for Silent {
    fn on_message(&mut self, _cx: &mut Context<'_>, _message: Message<'_>) {}
}

fn in_test_server<H: Handler + Send + 'static>(handler: fn() -> H) -> (Server, String) {
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    let server = Server::start(config, move |_| handler()).unwrap();
    let url = format!("ws://{}/", server.local_addr());
    (server, url)
}

#[test]
fn wrong_echoes_fail_the_run() {
    let (server, url) = in_test_server(|| Corrupting);
    let out = tern(
        &["echo", &url, "-n", "3", "--duration", "300ms", "--json"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let echo = &json(&out)["echo"];
    assert!(echo["mismatches"].as_u64().unwrap() > 0);
    assert_eq!(echo["echoes"], 0);
    assert!(!echo["mismatch_examples"].as_array().unwrap().is_empty());

    let out = tern(&["throughput", &url, "--size", "100KB", "--json"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let failures = json(&out)["throughput"]["failures"].to_string();
    assert!(
        failures.contains("differs from the message at byte 0"),
        "{failures}"
    );
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn a_server_that_stops_answering_ends_the_run() {
    let (server, url) = in_test_server(|| Silent);
    let args = [
        "echo",
        &url,
        "-n",
        "4",
        "--duration",
        "200ms",
        "--timeout",
        "1s",
        "--json",
    ];
    let out = tern(&args, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let echo = &json(&out)["echo"];
    assert_eq!(echo["unanswered"], 4);
    assert_eq!(echo["echoes"], 0);

    let out = tern(
        &[
            "throughput",
            &url,
            "--size",
            "1MB",
            "--timeout",
            "1s",
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["throughput"]["failures"]
        .to_string()
        .contains("no echo within"));
    server.shutdown();
    server.join().unwrap();
}
