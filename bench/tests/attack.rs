//! `tern attack` end to end: every scenario against a `tern serve` child,
//! and the refusal of targets that are not loopback.

mod common;

use std::time::Duration;

use common::{alive, json, serve, tern};

const LIMIT: Duration = Duration::from_secs(120);

/// How many hostile connections of `scenario` ended with `outcome`.
fn count(scenario: &serde_json::Value, outcome: &str) -> u64 {
    scenario["attack"]["outcomes"][outcome]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_scenario_runs_and_no_echo_is_lost() {
    let (server, url) = serve();
    let args = [
        "attack",
        &url,
        "--scenario",
        "all",
        "--attackers",
        "20",
        "--echo-connections",
        "20",
        "--seconds",
        "1",
        "--json",
    ];
    let out = tern(&args, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["connections"]["opened"], 20);

    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
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
    for s in scenarios {
        for phase in ["baseline", "under_attack"] {
            let e = &s[phase];
            assert!(e["echoes"].as_u64().unwrap() > 0, "{phase}: {s:#}");
            assert_eq!(e["mismatches"], 0, "{phase}: {s:#}");
            assert_eq!(e["unanswered"], 0, "{phase}: {s:#}");
            assert!(e["errors"].as_object().unwrap().is_empty(), "{s:#}");
        }
        assert_eq!(s["server_alive"], true);
        assert!(s["echo_rate_ratio"].as_f64().unwrap() > 0.0);
        assert_eq!(s["attack"]["connections"], 20, "{s:#}");
    }

    // tern serve's handshake deadline is 10 s: within a 1 s attack every
    // slowloris connection is still waiting, or answered 408 on a machine
    // slow enough for the attack to outlast it.
    let slow = &scenarios[0];
    assert_eq!(count(slow, "still open") + count(slow, "http 408"), 20);
    // A never-reading client is never closed cleanly within 1 s: its
    // writes stall, or the server resets it after giving up on it.
    let never = &scenarios[1];
    assert_eq!(count(never, "stalled") + count(never, "reset"), 20);
    assert_eq!(count(&scenarios[2], "close 1009"), 20);
    assert_eq!(count(&scenarios[3], "close 1007"), 20);
    assert_eq!(count(&scenarios[4], "completed"), 20);

    assert!(alive(server.0.id()), "tern serve died");
}

#[test]
fn the_table_compares_the_phases() {
    let (_server, url) = serve();
    let args = [
        "attack",
        &url,
        "--scenario",
        "invalid-utf8",
        "--attackers",
        "5",
        "--echo-connections",
        "5",
        "--seconds",
        "300ms",
    ];
    let out = tern(&args, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("invalid-utf8  baseline"), "{stdout}");
    assert!(stdout.contains("under attack"), "{stdout}");
    assert!(stdout.contains("5 close 1007"), "{stdout}");
    assert!(stdout.ends_with("result: ok\n"), "{stdout}");
}

#[test]
fn a_dead_server_fails_the_run() {
    // A port just freed: nothing accepts there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let args = ["attack", &url, "--seconds", "200ms", "--timeout", "2s"];
    let out = tern(&args, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("result: FAILED"), "{stdout}");
}

#[test]
fn only_loopback_targets_are_attacked() {
    for url in [
        "ws://192.0.2.1:9001",
        "ws://[2001:db8::1]:9001",
        "ws://example.com:9001",
    ] {
        let out = tern(&["attack", url, "--seconds", "1"], LIMIT);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("only aimed at loopback"), "{url}: {stderr}");
        assert!(out.stdout.is_empty(), "{url}");
    }
}

#[test]
fn too_many_connections_are_refused() {
    let (_server, url) = serve();
    let args = [
        "attack",
        &url,
        "--attackers",
        "10000000",
        "--echo-connections",
        "10000000",
    ];
    let out = tern(&args, LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open files"), "{stderr}");
}
