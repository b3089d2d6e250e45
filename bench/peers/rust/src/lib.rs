//! What the peer echo servers share: the command line and the limits.
//!
//! Each binary is started by `tern compare` as `NAME PORT [THREADS]`,
//! listens on `127.0.0.1:PORT`, prints one `listening on ws://...` line on
//! stdout and echoes every text and binary message until it is killed.

use std::net::SocketAddr;

/// Largest message and frame the peers accept: room for the 100 MB test.
pub const MAX_MESSAGE: usize = 256 << 20;

/// The parsed command line.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Worker threads of the runtime; 1 runs everything on one thread.
    pub threads: usize,
}

/// Reads `PORT [THREADS]` from the arguments, or exits with status 2.
pub fn options(name: &str) -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: {name} PORT [THREADS]");
        std::process::exit(2)
    };
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        usage()
    };
    let threads = match args.get(1) {
        None => 1,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&t| t > 0)
            .unwrap_or_else(|| usage()),
    };
    Options {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        threads,
    }
}

/// Backlog of the listening socket, as tern's server asks for: a storm
/// of connections must not overflow the accept queue (the kernel caps it
/// at `net.core.somaxconn`).
pub const BACKLOG: u32 = 65_535;

/// A listener on `addr` with the [`BACKLOG`]; needs a tokio runtime.
pub fn listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A tokio runtime with `threads` workers (a current-thread one for 1).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .build()
}
