//! tern on smoltcp over a TAP device, with the kernel's TCP on the other
//! side in the same network namespace: a tern server reached by a kernel
//! client (raw WebSocket handshake, an echo, the close handshake), and a
//! tern client reaching a kernel server.
//!
//! The test makes its own namespace and device with
//! `scripts/tap-netns.sh` and removes them on every path, panics
//! included. It needs root and `/dev/net/tun`; without them it says so
//! and passes without running.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_core::{ClientRequest, CloseCode, ConnId, Context, Ended, EventLoop, Handler, Message};
use tern_transport_smoltcp::storm::{loop_config, EchoServer};
use tern_transport_smoltcp::{tap_client, tap_server, StackConfig, TAP_KERNEL_ADDR, TAP_TERN_ADDR};

const PORT: u16 = 9001;
const DEVICE: &str = "tap0";

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
            .status()
            .expect("sh runs");
        assert!(status.success(), "tap-netns.sh up failed");
        ns
    }

    /// Moves the calling thread into the namespace.
    fn enter(&self) {
        let file = File::open(format!("/run/netns/{}", self.0)).expect("namespace file");
        // SAFETY: a valid namespace descriptor; only this thread moves.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(script())
            .args(["down", &self.0, DEVICE])
            .status();
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the ip tool is missing".into());
    }
    None
}

/// Reads until `buf` holds `want` bytes, or the head ends with a blank line
/// when `want` is `None`.
fn read_some(stream: &mut TcpStream, want: Option<usize>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let done = match want {
            Some(n) => buf.len() >= n,
            None => buf.windows(4).any(|w| w == b"\r\n\r\n"),
        };
        if done {
            return buf;
        }
        let n = stream.read(&mut chunk).expect("read within the timeout");
        assert!(n > 0, "server closed early; got {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A masked client frame (RFC 6455 section 5.2), payload under 126 bytes.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn kernel_client() {
    let addr = SocketAddr::from((TAP_TERN_ADDR.octets(), PORT));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect over TAP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // RFC 6455 section 1.3: the sample key and its accept value.
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: tern\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let head = read_some(&mut stream, None);
    let head = String::from_utf8(head).expect("ascii head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    stream.write_all(&client_frame(0x1, b"hello tap")).unwrap();
    let echo = read_some(&mut stream, Some(2 + 9));
    assert_eq!(&echo[..2], &[0x81, 9]);
    assert_eq!(&echo[2..], b"hello tap");

    // Close 1000, and the server's answer.
    stream.write_all(&client_frame(0x8, &[0x03, 0xe8])).unwrap();
    let close = read_some(&mut stream, Some(4));
    assert_eq!(close, [0x88, 0x02, 0x03, 0xe8]);
    let mut rest = [0u8; 16];
    let n = stream.read(&mut rest).expect("end of stream");
    assert_eq!(
        n, 0,
        "the server closes the TCP stream after the close frame"
    );
}

#[test]
fn kernel_client_echoes_through_tap() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the TAP test: {why}");
        return;
    }
    let ns = Arc::new(Namespace::up(&format!("tern-tap-s{}", std::process::id())));

    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let server = {
        let (ns, stop, ready) = (Arc::clone(&ns), Arc::clone(&stop), Arc::clone(&ready));
        thread::spawn(move || {
            ns.enter();
            let config = StackConfig {
                shards: 2,
                ..StackConfig::default()
            };
            let transport = tap_server(DEVICE, PORT, config).expect("tap server");
            let mut server = EventLoop::new(transport, EchoServer::default(), loop_config(64));
            ready.store(true, Ordering::SeqCst);
            // Bounded: the client finishes in well under a minute.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                server
                    .run_once(Some(Duration::from_millis(10)))
                    .expect("tap poll");
            }
            server.stats()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.load(Ordering::SeqCst) && Instant::now() < deadline && !server.is_finished() {
        thread::sleep(Duration::from_millis(5));
    }

    let client = {
        let ns = Arc::clone(&ns);
        thread::spawn(move || {
            ns.enter();
            kernel_client();
        })
    };
    let client_result = client.join();
    stop.store(true, Ordering::SeqCst);
    let stats = server.join().expect("server thread");
    client_result.expect("kernel client");
    assert_eq!(stats.opened, 1);
    assert_eq!(stats.ended, 1);
}

/// A kernel WebSocket server for one connection: answers the handshake,
/// echoes data frames unmasked, answers a close frame and ends.
fn kernel_server(listener: TcpListener) -> usize {
    // Bounded: a client that never comes fails the test, not hangs it.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection over TAP");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = String::from_utf8(read_some(&mut stream, None)).expect("ascii head");
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a key")
        .trim();
    let accept = tern_core::handshake::accept_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).unwrap();
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .unwrap();

    let mut echoed = 0;
    loop {
        // RFC 6455 section 5.2: short masked client frames only here.
        let header = read_some(&mut stream, Some(6));
        let (opcode, len) = (header[0] & 0x0f, usize::from(header[1] & 0x7f));
        assert!(header[1] & 0x80 != 0 && len < 126, "short masked frame");
        let mut frame = header;
        if frame.len() < 6 + len {
            let more = read_some(&mut stream, Some(6 + len - frame.len()));
            frame.extend_from_slice(&more);
        }
        let mask = [frame[2], frame[3], frame[4], frame[5]];
        let payload: Vec<u8> = frame[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let mut answer = vec![0x80 | opcode, len as u8];
        answer.extend_from_slice(&payload);
        stream.write_all(&answer).unwrap();
        if opcode == 0x8 {
            return echoed;
        }
        echoed += 1;
    }
}

/// Sends its messages one at a time, keeps the echoes, then closes.
#[derive(Debug, Default)]
struct Client {
    to_send: Vec<String>,
    received: Vec<String>,
    ended: Option<u16>,
}

impl Client {
    fn send_next(&mut self, cx: &mut Context<'_>) {
        match self.to_send.pop() {
            Some(text) => cx.send_text(&text).expect("open"),
            None => cx.close(CloseCode::NORMAL, "").expect("open"),
        }
    }
}

impl Handler for Client {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.send_next(cx);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            self.received.push(text.into_owned());
        }
        self.send_next(cx);
    }

    fn on_close(&mut self, _: ConnId, ended: Ended<'_>) {
        self.ended = Some(ended.code().0);
    }
}

#[test]
fn tern_client_reaches_a_kernel_server_through_tap() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping the TAP test: {why}");
        return;
    }
    let ns = Arc::new(Namespace::up(&format!("tern-tap-c{}", std::process::id())));

    // The listener exists before the client starts, so no SYN is refused.
    let (listening_tx, listening_rx) = std::sync::mpsc::channel();
    let server = {
        let ns = Arc::clone(&ns);
        thread::spawn(move || {
            ns.enter();
            let listener = TcpListener::bind((TAP_KERNEL_ADDR, 9002)).expect("kernel listener");
            listening_tx.send(()).unwrap();
            kernel_server(listener)
        })
    };
    listening_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("kernel listener up");

    let client = {
        let ns = Arc::clone(&ns);
        thread::spawn(move || {
            ns.enter();
            let config = StackConfig {
                shards: 3,
                ..StackConfig::default()
            };
            let transport = tap_client(DEVICE, config).expect("tap client");
            let handler = Client {
                to_send: vec!["three".into(), "two".into(), "one".into()],
                ..Client::default()
            };
            let mut client = EventLoop::new(transport, handler, loop_config(4));
            let request = ClientRequest {
                host: "kernel",
                path: "/",
                protocols: &[],
            };
            let addr = SocketAddr::from((TAP_KERNEL_ADDR.octets(), 9002));
            client.connect(&addr, &request, 42).expect("connect starts");
            // Bounded in time: the exchange takes milliseconds.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !client.is_empty() && Instant::now() < deadline {
                client
                    .run_once(Some(Duration::from_millis(10)))
                    .expect("tap poll");
            }
            std::mem::take(client.handler_mut())
        })
    };
    let client = client.join().expect("client thread");
    let echoed = server.join().expect("kernel server");
    assert_eq!(client.received, ["one", "two", "three"]);
    assert_eq!(client.ended, Some(1000));
    assert_eq!(echoed, 3);
}
