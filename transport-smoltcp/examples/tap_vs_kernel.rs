//! Echo round trips from a kernel TCP client to tern over TAP (smoltcp)
//! and to tern over kernel sockets (mio) on the namespace's loopback.
//!
//! ```text
//! sudo scripts/tap-netns.sh up
//! sudo ip netns exec tern-tap target/release/examples/tap_vs_kernel [round_trips]
//! ```
//!
//! One connection per server, one 32-byte message at a time (default
//! 20,000 round trips each): this measures the latency of a round trip,
//! not throughput. Every wait is bounded by a socket timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tern_core::transport::Transport;
use tern_core::{EventLoop, LoopConfig};
use tern_transport_smoltcp::storm::EchoServer;
use tern_transport_smoltcp::{tap_server, StackConfig, TAP_DEVICE, TAP_TERN_ADDR};
use tern_transport_std::{bind, MioTransport};

const TAP_PORT: u16 = 9001;
const KERNEL_PORT: u16 = 9101;

/// Runs an echo loop over `transport` until `stop` (at most 10 minutes).
fn serve<T: Transport>(transport: T, stop: &AtomicBool) -> Result<(), String> {
    let mut server = EventLoop::new(transport, EchoServer::default(), LoopConfig::default());
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        server
            .run_once(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A kernel client: handshake, then `n` echo round trips. Returns the time
/// the round trips took.
fn round_trips(addr: SocketAddr, n: usize) -> io::Result<Duration> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: tern\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other("handshake refused"));
    }

    // RFC 6455 section 5.2: a masked binary frame of 32 bytes.
    let mask = [7u8, 11, 13, 17];
    let payload = [0x5au8; 32];
    let mut frame = vec![0x82, 0x80 | 32];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut echo = [0u8; 34];
    let start = Instant::now();
    for _ in 0..n {
        s.write_all(&frame)?;
        s.read_exact(&mut echo)?;
        if echo[..2] != [0x82, 32] || echo[2..] != payload {
            return Err(io::Error::other("echo differs"));
        }
    }
    Ok(start.elapsed())
}

fn main() -> ExitCode {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let stop = Arc::new(AtomicBool::new(false));

    let tap = match tap_server(TAP_DEVICE, TAP_PORT, StackConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tap_vs_kernel: {e} (run inside the namespace, as root)");
            return ExitCode::FAILURE;
        }
    };
    let kernel_addr = SocketAddr::from(([127, 0, 0, 1], KERNEL_PORT));
    let kernel = match bind(kernel_addr, 128, false).and_then(MioTransport::server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tap_vs_kernel: kernel listener: {e}");
            return ExitCode::FAILURE;
        }
    };
    let servers = [
        thread::spawn({
            let stop = Arc::clone(&stop);
            move || serve(tap, &stop)
        }),
        thread::spawn({
            let stop = Arc::clone(&stop);
            move || serve(kernel, &stop)
        }),
    ];

    let tap_addr = SocketAddr::from((TAP_TERN_ADDR.octets(), TAP_PORT));
    let mut ok = true;
    for (name, addr) in [
        ("smoltcp over TAP", tap_addr),
        ("kernel loopback", kernel_addr),
    ] {
        match round_trips(addr, n) {
            Ok(took) => println!(
                "{name:18} {n} round trips in {:.1} ms: {:.1} echoes/ms, {:.1} us each",
                took.as_secs_f64() * 1e3,
                n as f64 / (took.as_secs_f64() * 1e3),
                took.as_secs_f64() * 1e6 / n as f64
            ),
            Err(e) => {
                eprintln!("{name}: {e}");
                ok = false;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for server in servers {
        if let Ok(Err(e)) = server.join() {
            eprintln!("server: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
