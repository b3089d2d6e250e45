//! The full-screen dashboard of `tern run`, driven for real inside tmux.
//!
//! Skipped, with a message, when `tmux` is not installed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, TERN};

/// A detached tmux session, killed when dropped.
struct Session(String);

impl Session {
    /// Runs `script` in a new detached 160x45 tmux session called `name`.
    fn start(name: String, script: &str) -> Session {
        let started = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "160", "-y", "45"])
            .args(["sh", "-c", script])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux new-session");
        assert!(started.success(), "tmux new-session failed");
        Session(name)
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The connections/ms figures on screen ("12.83 conn/ms", "conn/ms 3.1").
fn conn_per_ms_figures(screen: &str) -> Vec<f64> {
    let words: Vec<&str> = screen.split_whitespace().collect();
    let mut figures = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if !w.starts_with("conn/ms") {
            continue;
        }
        let near = [i.checked_sub(1), Some(i + 1)];
        for j in near.into_iter().flatten() {
            let text: String = words
                .get(j)
                .unwrap_or(&"")
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if let Ok(v) = text.parse::<f64>() {
                figures.push(v);
            }
        }
    }
    figures
}

#[test]
fn dashboard_shows_the_storm_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed, the dashboard test did not run");
        return;
    }
    let name = format!("tern-test-{}", std::process::id());
    let script = format!("{TERN} run --connections 500 --echo-seconds 3; echo EXIT=$?; sleep 30");
    let session = Session::start(name, &script);

    let mut screen = String::new();
    let shown = eventually(Duration::from_secs(20), || {
        screen = session.capture();
        screen.contains("tern run") && conn_per_ms_figures(&screen).iter().any(|&v| v > 0.0)
    });
    assert!(
        shown,
        "no dashboard with a non-zero conn/ms figure:\n{screen}"
    );
    eprintln!("dashboard:\n{screen}");

    let sent = Command::new("tmux")
        .args(["send-keys", "-t", &session.0, "q"])
        .status();
    assert!(sent.unwrap().success());
    let ended = eventually(Duration::from_secs(20), || {
        screen = session.capture();
        screen.contains("EXIT=")
    });
    assert!(ended, "tern run did not exit after q:\n{screen}");
    eprintln!("after q:\n{screen}");
    assert!(
        screen.contains("connections/ms"),
        "no summary table:\n{screen}"
    );
    assert!(
        screen.contains("tern run ws://127.0.0.1:"),
        "no summary table:\n{screen}"
    );
}

/// The figures in the charts' titles ("echoes/ms: 71.5").
fn chart_figures(screen: &str) -> Vec<f64> {
    let mut figures = Vec::new();
    for title in ["connections/ms: ", "echoes/ms: "] {
        for (at, _) in screen.match_indices(title) {
            let text: String = screen[at + title.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
                .filter(|c| *c != ',')
                .collect();
            if let Ok(v) = text.parse::<f64>() {
                figures.push(v);
            }
        }
    }
    figures
}

#[test]
fn compare_dashboard_follows_each_server_then_prints_the_table() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed, the dashboard test did not run");
        return;
    }
    let name = format!("tern-compare-test-{}", std::process::id());
    let script =
        format!("{TERN} compare --tui --short --servers raw-tcp,tern; echo EXIT=$?; sleep 60");
    let session = Session::start(name, &script);

    let mut screen = String::new();
    let shown = eventually(Duration::from_secs(60), || {
        screen = session.capture();
        let server = screen.contains("raw-tcp: ") || screen.contains("tern: ");
        screen.contains("tern compare") && server && chart_figures(&screen).iter().any(|&v| v > 0.0)
    });
    assert!(
        shown,
        "no dashboard naming a server with a non-zero figure:\n{screen}"
    );
    eprintln!("dashboard:\n{screen}");

    let ended = eventually(Duration::from_secs(120), || {
        screen = session.capture();
        screen.contains("EXIT=")
    });
    assert!(ended, "tern compare did not finish:\n{screen}");
    eprintln!("after the run:\n{screen}");
    assert!(screen.contains("EXIT=0"), "the run failed:\n{screen}");
    let rows: Vec<&str> = screen.lines().map(str::trim_end).collect();
    assert!(
        rows.iter()
            .any(|r| r.starts_with("server") && r.contains("conn/ms")),
        "no table header:\n{screen}"
    );
    for server in ["raw-tcp: tern", "tern: tern"] {
        assert!(
            rows.iter()
                .any(|r| r.trim_start().starts_with(server) && r.ends_with("[ok]")),
            "{server} is not listed as ok:\n{screen}"
        );
    }
    // The dashboard is gone: the table is on the normal screen.
    assert!(
        !screen.contains("q quits"),
        "the dashboard stayed:\n{screen}"
    );
}
