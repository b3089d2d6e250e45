//! `tern serve`: the tern echo server on kernel sockets.
//!
//! Text comes back as text and binary as binary, each message as one
//! frame. SIGINT or SIGTERM shuts the server down gracefully: every loop
//! stops accepting, sends close 1001 to each peer and waits (at most the
//! server's grace time) for the close handshakes; the process then exits 0.
//! A second SIGINT during that wait ends the process at once with status 1.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tern_core::{CloseCode, Context, Handler, Message, SendError};
use tern_transport_std::{Server, ServerConfig};

/// The most event loops `--loops` takes.
pub const MAX_LOOPS: u64 = 1024;

/// What `tern serve` was asked for.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Host name or address to listen on.
    pub host: String,
    /// Port; 0 lets the kernel choose (the line printed names it).
    pub port: u16,
    /// Event loops (threads) sharing the port, from 1 to [`MAX_LOOPS`].
    pub loops: usize,
    /// Largest message (and frame) accepted, in bytes.
    pub max_message_size: u64,
    /// Most connections, at least 1; `None` for no limit. Each loop
    /// admits `ceil(max / loops)`, so with several loops the total may
    /// reach `loops * ceil(max / loops)`.
    pub max_connections: Option<u64>,
}

/// Sends every message back as it came.
#[derive(Debug, Default)]
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        match cx.send_message(message) {
            Ok(()) => {}
            // A peer that does not read its echoes is not worth buffering
            // for without bound.
            Err(SendError::QueueFull) => {
                let _ = cx.close(CloseCode::POLICY, "echo queue full");
            }
            // Closing or closed: the message arrived after this end sent
            // its close frame, and needs no answer.
            Err(_) => {}
        }
    }
}

/// Connections each of `loops` loops admits for a limit of `max` in all:
/// `ceil(max / loops)`.
fn per_loop_limit(max: u64, loops: usize) -> u64 {
    max.div_ceil(loops as u64)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolved to no address"))
}

/// Runs the echo server until SIGINT or SIGTERM.
pub fn serve(options: &ServeOptions) -> Result<(), String> {
    let loops = options.loops;
    if loops == 0 || loops as u64 > MAX_LOOPS {
        return Err(format!("--loops {loops} is not from 1 to {MAX_LOOPS}"));
    }
    if options.max_connections == Some(0) {
        return Err("--max-connections must be at least 1".to_string());
    }
    let addr = resolve(&options.host, options.port)?;
    let mut config = ServerConfig::new(addr);
    config.loops = loops;
    config.loop_config.protocol.max_message_size = options.max_message_size;
    config.loop_config.protocol.max_frame_size = options.max_message_size;
    let per_loop = options
        .max_connections
        .map(|max| per_loop_limit(max, loops));
    if let Some(per_loop) = per_loop {
        // Each loop keeps its own count, and the kernel hashes each new
        // connection to one loop's listener: a total shared exactly would
        // need a counter shared by the loops.
        config.loop_config.max_connections = usize::try_from(per_loop).unwrap_or(usize::MAX);
    }

    // Registered before the server starts, so a signal that arrives while
    // it binds is not lost. The conditional exit comes first: it only
    // fires when the flag is already set, that is on a second signal.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }

    let server =
        Server::start(config, |_| Echo).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = server.local_addr();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "tern serve: listening on ws://{bound}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);
    if let (Some(max), Some(per_loop)) = (options.max_connections, per_loop) {
        eprintln!(
            "tern serve: --max-connections {max}: each of the {loops} loop(s) admits {per_loop}"
        );
    }
    if let Ok(limit) = crate::limits::open_files_limit(0) {
        eprintln!(
            "tern serve: {loops} loop(s); open-file limit {limit} (room for about {} connections)",
            limit.saturating_sub(crate::limits::FD_MARGIN)
        );
    }

    // A loop that died of a transport error ends the whole server: the
    // others are shut down and the error is reported by `join`.
    while !stop.load(Ordering::SeqCst) && server.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("tern serve: shutting down (close 1001 to every peer)");
    server.shutdown();
    server
        .join()
        .map_err(|e| format!("event loop failed: {e}"))?;
    eprintln!("tern serve: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_loop_share_rounds_up() {
        assert_eq!(per_loop_limit(1, 1), 1);
        assert_eq!(per_loop_limit(3, 2), 2);
        assert_eq!(per_loop_limit(4, 2), 2);
        assert_eq!(per_loop_limit(1, 4), 1);
        assert_eq!(per_loop_limit(u64::MAX, 1), u64::MAX);
    }
}
