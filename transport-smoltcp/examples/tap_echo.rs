//! A WebSocket echo server on smoltcp over the TAP device of
//! `scripts/tap-netns.sh`, for the experiment in `docs/tap.md`.
//!
//! ```text
//! sudo scripts/tap-netns.sh up
//! sudo ip netns exec tern-tap \
//!     target/release/examples/tap_echo [device] [port] [seconds]
//! ```
//!
//! Defaults: `tap0`, port 9001, runs 600 seconds (bounded), serving at
//! 10.77.0.2. Prints a line for every connection that opens or ends.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tern_core::{ConnId, Context, Ended, EventLoop, Handler, LoopConfig, Message};
use tern_transport_smoltcp::{tap_server, StackConfig, TAP_DEVICE, TAP_TERN_ADDR};

/// Echoes every message and says what happens.
#[derive(Debug, Default)]
struct LoudEcho;

impl Handler for LoudEcho {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        println!("connection {} open", cx.id());
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        // A failed send means the connection is closing.
        let _ = cx.send(&message);
    }

    fn on_close(&mut self, id: ConnId, ended: Ended<'_>) {
        println!("connection {id} ended: {ended}");
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let device = args.next().unwrap_or_else(|| TAP_DEVICE.to_string());
    let port = args.next().and_then(|p| p.parse().ok()).unwrap_or(9001u16);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(600u64);

    let config = StackConfig {
        shards: 4,
        rx_buffer: 16 * 1024,
        tx_buffer: 16 * 1024,
        ..StackConfig::default()
    };
    let transport = match tap_server(&device, port, config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tap_echo: {e} (run inside the namespace, as root)");
            return ExitCode::FAILURE;
        }
    };
    println!("tap_echo: serving ws://{TAP_TERN_ADDR}:{port}/ on {device} for {seconds} s");
    let mut server = EventLoop::new(transport, LoudEcho, LoopConfig::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if let Err(e) = server.run_once(Some(Duration::from_millis(100))) {
            eprintln!("tap_echo: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("tap_echo: done; {:?}", server.stats());
    ExitCode::SUCCESS
}
