//! `tern compare` end to end: tern and the raw-TCP limit started by the
//! tool, a missing peer, and an external server given by URL.

mod common;

use std::time::Duration;

use common::{serve, tern};

const LIMIT: Duration = Duration::from_secs(120);

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&text).expect("the JSON report parses")
}

fn temp_json(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "tern-compare-test-{}-{name}.json",
        std::process::id()
    ))
}

#[test]
fn compares_tern_with_the_raw_limit() {
    let out_file = temp_json("tern-raw");
    let out_arg = out_file.display().to_string();
    let out = tern(
        &[
            "compare",
            "--servers",
            "raw-tcp,tern",
            "--connections",
            "200",
            "--echo-connections",
            "50",
            "--echo-seconds",
            "300ms",
            "--big",
            "2MB",
            "--client-threads",
            "2",
            "--curve",
            "20,60",
            "--json-out",
            &out_arg,
        ],
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("raw-tcp"), "{table}");
    assert!(table.contains("tern as a share of raw-tcp"), "{table}");

    let report = read_json(&out_file);
    let _ = std::fs::remove_file(&out_file);
    assert_eq!(report["ok"], true);
    let servers = report["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for s in servers {
        assert_eq!(s["status"], "ok", "{s}");
        let storm = &s["storm"]["report"];
        assert_eq!(storm["opened"], 200, "{s}");
        assert!(s["storm"]["server_cpu_pct"].as_f64().is_some(), "{s}");
        let echo = s["echo"].as_array().unwrap();
        assert_eq!(echo.len(), 2, "20 B and 512 B by default");
        for e in echo {
            assert_eq!(e["report"]["connections"], 50, "{e}");
            assert!(e["report"]["echoes"].as_u64().unwrap() >= 50, "{e}");
            assert_eq!(e["report"]["mismatches"], 0, "{e}");
        }
        let bulk = s["bulk"].as_array().unwrap();
        assert_eq!(bulk[0]["report"]["size_bytes"], 2_000_000);
        assert_eq!(bulk[0]["report"]["rounds"].as_array().unwrap().len(), 1);
        let curve = s["curve"].as_array().unwrap();
        assert_eq!(curve.len(), 2, "{s}");
        assert_eq!(curve[1]["connections"], 60);
        assert_eq!(curve[1]["echo"]["report"]["connections"], 60, "{s}");
        assert!(curve[1]["echo"]["server_cpu_ns_per_echo"].as_f64().unwrap() > 0.0);
    }
    assert!(table.contains("ns/echo"), "{table}");
    let of_raw = &servers[1]["of_raw"];
    assert_eq!(of_raw["raw"], "raw-tcp");
    assert!(of_raw["connections_per_ms_pct"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_peer_fails_when_required() {
    let empty = std::env::temp_dir().join(format!("tern-compare-no-peers-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let dir = empty.display().to_string();
    let args = [
        "compare",
        "--servers",
        "node-ws",
        "--peers-dir",
        &dir,
        "--connections",
        "10",
    ];
    let out = tern(&args, LIMIT);
    assert!(
        out.status.success(),
        "a missing peer alone is reported, not fatal"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("missing"), "{table}");
    assert!(table.contains("install-peers.sh"), "{table}");

    let mut strict = args.to_vec();
    strict.push("--require-peers");
    let out = tern(&strict, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir(&empty);
}

#[test]
fn measures_an_external_server_without_its_process() {
    let (_server, url) = serve();
    let out_file = temp_json("external");
    let out_arg = out_file.display().to_string();
    let out = tern(
        &[
            "compare",
            "--servers",
            "",
            "--url",
            &url,
            "--connections",
            "40",
            "--echo-connections",
            "10",
            "--echo-seconds",
            "200ms",
            "--sizes",
            "20",
            "--big",
            "64KiB",
            "--json-out",
            &out_arg,
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&out_file);
    let _ = std::fs::remove_file(&out_file);
    let s = &report["servers"][0];
    assert_eq!(s["name"], url.as_str());
    assert_eq!(s["storm"]["report"]["opened"], 40);
    // No process of its own: no CPU share and no memory figure.
    assert!(s["storm"]["server_cpu_pct"].is_null());
    assert!(s["storm"]["bytes_per_connection"].is_null());
}

#[test]
fn refuses_bad_options() {
    let out = tern(&["compare", "--servers", "nginx"], LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown server"));
    let out = tern(&["compare", "--servers", "tern", "--big", "1GB"], LIMIT);
    assert_eq!(out.status.code(), Some(2));
}
