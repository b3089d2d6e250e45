//! `tern serve --transport tap` end to end: the real binary serving on a
//! TAP device inside a network namespace of the test's own, a kernel
//! client in that namespace (handshake, one echo), then SIGINT with the
//! client still connected: close 1001 reaches it and the server exits 0.
//!
//! The namespace and device are made with `scripts/tap-netns.sh` and
//! removed on every path, panics included. Needs root and
//! `/dev/net/tun`; without them the test says so and passes without
//! running.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, first_line, Reaped, TERN};

const DEVICE: &str = "tap0";
const PORT: &str = "9001";
const LIMIT: Duration = Duration::from_secs(20);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/tap-netns.sh")
}

/// The namespace, removed when dropped.
struct Namespace(String);

impl Namespace {
    fn up(name: &str) -> Namespace {
        let ns = Namespace(name.to_string());
        let status = Command::new("sh")
            .arg(script())
            .args(["up", name, DEVICE])
            .stdout(Stdio::null())
            .status()
            .expect("sh runs");
        assert!(status.success(), "tap-netns.sh up failed");
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(script())
            .args(["down", &self.0, DEVICE])
            .stdout(Stdio::null())
            .status();
    }
}

fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the ip tool is missing");
    }
    None
}

/// Reads until the bytes read hold `end`, at most 64 KiB.
fn read_until(stream: &mut impl Read, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(end.len()).any(|w| w == end) && got.len() < 1 << 16 {
        let n = stream.read(&mut buf).expect("read from the server");
        assert!(n > 0, "the server closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A masked client frame with a payload under 126 bytes.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[test]
fn serve_over_tap_echoes_and_shuts_down_on_sigint() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipping the TAP test: {reason}");
        return;
    }
    let ns = Namespace::up(&format!("tern-bt-{}", std::process::id()));
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, TERN, "serve", "--transport", "tap"])
        .args(["--tap", DEVICE, "--port", PORT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tern serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = first_line(stdout, LIMIT).expect("tern serve printed no line");
    assert_eq!(line.trim(), "tern serve: listening on ws://10.77.0.2:9001");
    let server = Reaped(child);

    // The client runs on a thread moved into the namespace.
    let ns_file = File::open(format!("/run/netns/{}", ns.0)).expect("namespace file");
    let client = std::thread::spawn(move || {
        // SAFETY: a valid namespace descriptor; only this thread moves.
        let rc = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let addr = "10.77.0.2:9001".parse().unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: tern\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        let head = read_until(&mut s, b"\r\n\r\n");
        assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
        s.write_all(&frame(1, b"over tap")).unwrap();
        let echo = read_until(&mut s, b"over tap");
        assert_eq!(echo, b"\x81\x08over tap");
        s
    });
    let mut stream = client.join().expect("client thread");

    // SIGINT with the client connected: close 1001 comes to it.
    let pid = server.0.id() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the pid is our child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let close = read_until(&mut stream, b"\x03\xe9");
    assert_eq!(&close[..4], b"\x88\x16\x03\xe9", "{close:?}");
    stream.write_all(&frame(8, b"\x03\xe9")).unwrap();

    let mut server = server;
    let exited = eventually(LIMIT, || matches!(server.0.try_wait(), Ok(Some(_))));
    assert!(exited, "tern serve did not exit within {LIMIT:?} of SIGINT");
    let status = server.0.wait().expect("wait for tern serve");
    let mut stderr = String::new();
    let mut pipe = server.0.stderr.take().expect("piped stderr");
    pipe.read_to_string(&mut stderr).expect("read stderr");
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("tern serve: stopped"), "{stderr}");
}
