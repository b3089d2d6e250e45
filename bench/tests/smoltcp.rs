//! End-to-end runs of the real `tern` binary over `--transport
//! smoltcp-mem` (both stacks in the process, nothing on the network), and
//! the refusals of what that transport and `--transport tap` do not do.

mod common;

use std::time::Duration;

use common::{json, tern};

const LIMIT: Duration = Duration::from_secs(120);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_over_the_in_memory_link() {
    let args = [
        "run",
        "--transport",
        "smoltcp-mem",
        "--connections",
        "2000",
        "--echo-seconds",
        "1",
        "--no-tui",
        "--json",
    ];
    let out = tern(&args, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    let storm = &report["connections"];
    assert_eq!(storm["opened"], 2000);
    assert_eq!(storm["failed"], 0);
    assert!(storm["rss_scope"]
        .as_str()
        .unwrap()
        .contains("whole tern process"));
    let echo = &report["echo"];
    assert_eq!(echo["connections"], 2000);
    assert!(echo["echoes"].as_u64().unwrap() > 0, "{echo}");
    assert_eq!(echo["mismatches"], 0);
    assert_eq!(echo["unanswered"], 0);
    // No server child, and no phase 3 over this transport.
    assert!(report.get("server_pid").is_none());
    assert!(report.get("throughput").is_none());
}

#[test]
fn connections_need_no_url() {
    let args = [
        "connections",
        "--transport",
        "smoltcp-mem",
        "-n",
        "300",
        "--json",
    ];
    let out = tern(&args, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let storm = &json(&out)["connections"];
    assert_eq!(storm["opened"], 300);
    assert!(storm["server_rss_after_bytes"].is_number());
}

#[test]
fn binary_echo_with_the_table() {
    let args = [
        "echo",
        "ws://ignored.invalid/",
        "--transport",
        "smoltcp-mem",
        "-n",
        "40",
        "--duration",
        "300ms",
        "--size",
        "3KiB",
        "--binary",
    ];
    let out = tern(&args, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("40 connections, 3072 B binary"), "{table}");
    assert!(table.contains("process RSS"), "{table}");
    assert!(table.contains("mismatches       0"), "{table}");
    assert!(table.contains("result: ok"), "{table}");
}

#[test]
fn what_the_transports_do_not_do_is_refused() {
    let refused: [&[&str]; 6] = [
        &["echo", "--transport", "smoltcp-mem", "--sources", "2"],
        &["serve", "--transport", "smoltcp-mem"],
        &["serve", "--transport", "tap", "--loops", "2"],
        &["throughput", "--transport", "smoltcp-mem"],
        &["run", "--transport", "tap", "--no-tui"],
        &[
            "connections",
            "--transport",
            "smoltcp-mem",
            "-n",
            "5",
            "--server-pid",
            "1",
        ],
    ];
    for args in refused {
        let out = tern(args, LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("tern "),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_default_transport_still_needs_a_url() {
    let out = tern(&["connections", "-n", "5"], LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<URL>"), "{}", stderr(&out));
}
