//! Options and sizes the `tern` binary must refuse before it starts (exit
//! status 2, a message naming the option), and runs whose report must say
//! exactly what happened. Every server here is started by the test, on
//! loopback.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{json, tern};
use tern_core::{CloseCode, Context, Handler, Message};
use tern_transport_std::{Server, ServerConfig};

const LIMIT: Duration = Duration::from_secs(60);

/// Nothing listens on the discard port in the tests; a refusal must come
/// before any connection is tried anyway.
const NOWHERE: &str = "ws://127.0.0.1:9/";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `tern ARGS` and checks it is refused with `message`.
fn assert_refused(args: &[&str], message: &str) {
    let out = tern(args, LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(message), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
}

#[test]
fn sizes_beyond_memory_are_refused() {
    assert_refused(
        &["throughput", NOWHERE, "--size", "10000GB"],
        "tern throughput: --size 10000000000000 needs about 27.3 TiB of memory \
         (the message, its queued copy and its echo), but only",
    );
    assert_refused(
        &["echo", NOWHERE, "-n", "1", "--size", "10000GB"],
        "tern echo: --size 10000000000000 with -n 1 needs about 27.3 TiB of memory",
    );
    assert_refused(
        &["run", "--connections", "1000", "--size", "1GiB", "--no-tui"],
        "tern run: --size 1073741824 on 1000 echoing connections needs about",
    );
}

#[test]
fn huge_connection_counts_do_not_overflow() {
    assert_refused(
        &["connections", NOWHERE, "-n", "18446744073709551615"],
        "18446744073709551615 connections need about 18446744073709551615 open files",
    );
}

#[test]
fn counts_out_of_range_are_refused() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["connections", NOWHERE, "-n", "1", "--in-flight", "0"],
            "'--in-flight <IN_FLIGHT>': must be a whole number of at least 1",
        ),
        (
            &["echo", NOWHERE, "--sources", "0"],
            "'--sources <SOURCES>': must be a whole number from 1 to 254",
        ),
        (
            &["serve", "--port", "0", "--loops", "0"],
            "'--loops <LOOPS>': must be a whole number from 1 to 1024",
        ),
        (
            &["serve", "--port", "0", "--max-connections", "0"],
            "'--max-connections <MAX_CONNECTIONS>': must be a whole number of at least 1",
        ),
        (
            &["run", "--connections", "100", "--echo-connections", "500"],
            "tern run: --echo-connections 500 is more than --connections 100: \
             it must be from 1 to 100",
        ),
        (
            &["run", "--throughput-size", "0"],
            "tern run: --throughput-size must be from 1 B to 1 GiB",
        ),
    ];
    for (args, message) in cases {
        assert_refused(args, message);
    }
}

#[test]
fn durations_out_of_range_are_refused() {
    assert_refused(
        &["echo", NOWHERE, "--duration", "99999999999999h"],
        "'--duration <DURATION>': duration \"99999999999999h\" must be more than 0 and at most 24 h",
    );
    assert_refused(
        &["connections", NOWHERE, "-n", "1", "--timeout", "0"],
        "'--timeout <TIMEOUT>': duration \"0\" must be more than 0 and at most 24 h",
    );
    assert_refused(
        &["run", "--echo-seconds", "25h"],
        "'--echo-seconds <ECHO_SECONDS>': duration \"25h\"",
    );
}

#[test]
fn a_server_pid_that_is_gone_is_refused() {
    // A child that has exited and been reaped: its pid names no process.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let pid = gone.id().to_string();
    assert_refused(
        &["connections", NOWHERE, "-n", "1", "--server-pid", &pid],
        &format!("tern connections: --server-pid {pid}: cannot read /proc/{pid}/status"),
    );
}

#[test]
fn run_raises_the_child_limit_to_fit_the_throughput_size() {
    // Above the child's default limit of 256 MiB.
    let args = [
        "run",
        "--connections",
        "1",
        "--echo-seconds",
        "100ms",
        "--throughput-size",
        "257MiB",
        "--no-tui",
        "--json",
    ];
    let out = tern(&args, Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("starting the server child with --max-message-size 257.0 MiB"),
        "{err}"
    );
    let report = json(&out);
    assert_eq!(report["throughput"]["size_bytes"], 257 << 20);
    assert_eq!(report["throughput"]["rounds"].as_array().unwrap().len(), 1);
}

/// Closes every connection as soon as its handshake completes.
struct Hangup;

impl Handler for Hangup {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = cx.close(CloseCode::GOING_AWAY, "going away");
    }

    fn on_message(&mut self, _cx: &mut Context<'_>, _message: Message<'_>) {}
}

#[test]
fn a_connection_dropped_after_the_handshake_is_reported_as_dropped() {
    let config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    let server = Server::start(config, |_| Hangup).unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let out = tern(&["echo", &url, "-n", "1", "--duration", "200ms"], LIMIT);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}{}", stderr(&out));
    assert!(table.contains("1 of 1"), "{table}");
    assert!(!table.contains("no connection opened"), "{table}");
    assert!(
        table.contains("1 connection dropped: closed with code 1001"),
        "{table}"
    );
    server.shutdown();
    server.join().unwrap();
}
