//! A sans-IO engine for the WebSocket protocol (RFC 6455).
//!
//! `tern-core` owns no socket, no thread and no clock. Bytes and time go in;
//! bytes to transmit and protocol events come out. The same engine serves
//! both roles:
//!
//! - a **server** connection parses the client's opening request, answers
//!   `101 Switching Protocols` (or an HTTP error naming the problem), then
//!   speaks frames;
//! - a **client** connection writes the opening request, checks the
//!   server's answer, then speaks masked frames.
//!
//! # The contract
//!
//! - **Input**: the caller reads bytes from its transport into a buffer it
//!   owns (one per event loop is enough) and hands them to
//!   [`Connection::poll_event`] wrapped in an [`Input`]. The connection
//!   unmasks payloads in place and returns [`Event`]s that borrow from that
//!   buffer where they can. Bytes of an incomplete frame or head are copied
//!   into the connection, which allocates only while something is partial.
//! - **Output**: everything the connection wants to transmit (the handshake
//!   answer, frames, automatic pongs and close replies) is appended to an
//!   `out: &mut Vec<u8>` the caller owns. Whatever the transport did not
//!   accept is handed back with [`Connection::queue`] and drained with
//!   [`Connection::queued`] / [`Connection::advance_queued`].
//! - **Time**: the engine needs none. Deadlines (handshake, idle) are kept by
//!   the [`runtime`], which reads the clock through its [`Transport`].
//! - **Errors**: a peer that breaks the protocol gets the close code or HTTP
//!   status the RFC asks for, written to `out`, and the call returns an
//!   [`Error`] that names the problem.
//!
//! The [`runtime`] module drives many connections over any [`Transport`]
//! (kernel sockets, a userspace TCP/IP stack, an in-memory pipe) and calls an
//! application [`Handler`], so that one application runs on every transport.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod close;
pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod runtime;
pub mod transport;
mod utf8;

pub use close::CloseCode;
pub use config::Config;
pub use connection::{Connection, Event, Input, Message, Role, State};
pub use error::{Error, HandshakeError, ProtocolError, SendError};
pub use handshake::ClientRequest;
pub use runtime::{ConnId, Context, Ended, EventLoop, Handler, LoopConfig, LoopStats, OnQueueFull};
pub use transport::{Io, Readiness, Token, Transport};
