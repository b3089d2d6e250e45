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

/// What `tern serve` was asked for.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Host name or address to listen on.
    pub host: String,
    /// Port; 0 lets the kernel choose (the line printed names it).
    pub port: u16,
    /// Event loops (threads) sharing the port.
    pub loops: usize,
    /// Largest message (and frame) accepted, in bytes.
    pub max_message_size: u64,
    /// Most connections in all loops together; `None` for no limit.
    pub max_connections: Option<u64>,
}

/// Sends every message back as it came.
#[derive(Debug, Default)]
struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        match cx.send(&message) {
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

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} resolved to no address"))
}

/// Runs the echo server until SIGINT or SIGTERM.
pub fn serve(options: &ServeOptions) -> Result<(), String> {
    let addr = resolve(&options.host, options.port)?;
    let loops = options.loops.max(1);
    let mut config = ServerConfig::new(addr);
    config.loops = loops;
    config.loop_config.protocol.max_message_size = options.max_message_size;
    config.loop_config.protocol.max_frame_size = options.max_message_size;
    if let Some(max) = options.max_connections {
        // Each loop keeps its own count; the kernel spreads connections
        // over the loops about evenly.
        config.loop_config.max_connections = max.div_ceil(loops as u64).max(1) as usize;
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
    if let Ok(limit) = crate::limits::open_files_limit(0) {
        eprintln!(
            "tern serve: {loops} loop(s); open-file limit {limit} (room for about {} connections)",
            limit.saturating_sub(crate::limits::FD_MARGIN)
        );
    }

    while !stop.load(Ordering::SeqCst) {
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
