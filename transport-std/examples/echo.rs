//! An echo server on kernel sockets: `cargo run --release -p
//! tern-transport-std --example echo -- 127.0.0.1:9001 [loops]`.
//!
//! Every text or binary message is sent back as it came. Ctrl-C ends the
//! process (the `tern serve` subcommand of the bench adds graceful
//! shutdown on signals).

use std::net::SocketAddr;

use tern_core::{Context, Handler, Message};
use tern_transport_std::{Server, ServerConfig};

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        // A send fails only when the connection is closing: nothing to do.
        let _ = cx.send_message(message);
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad listen address: {e}")))?;
    let loops = args.next().map_or(Ok(1), |n| n.parse()).unwrap_or(1);

    let mut config = ServerConfig::new(addr);
    config.loops = loops;
    let server = Server::start(config, |_| Echo)?;
    println!("echo server listening on ws://{}", server.local_addr());
    server.join()
}
