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
//!   `out: &mut Vec<u8>` the caller owns, which holds output of this one
//!   connection. Whatever the transport did not accept is handed back with
//!   [`Connection::queue`] and drained with [`Connection::queued`] /
//!   [`Connection::advance_queued`]. Frames of
//!   [`DIRECT_QUEUE_MIN`](connection::DIRECT_QUEUE_MIN) bytes or more are
//!   encoded straight into that queue (what `out` held moves there first,
//!   to keep the order), which saves copying them twice. So after each
//!   call: if the queue is empty, write `out`; otherwise move `out` behind
//!   the queue with [`Connection::queue`] and write the queue.
//! - **Time**: the engine needs none. Deadlines (handshake, idle) are kept by
//!   the [`runtime`], which reads the clock through its [`Transport`].
//! - **Errors**: a peer that breaks the protocol gets the close code or HTTP
//!   status the RFC asks for, written to `out`, and the call returns an
//!   [`Error`] that names the problem.
//!
//! # A client and a server in a few lines
//!
//! Two connections talk through plain byte vectors: whatever one appends to
//! its `out` is the other's input.
//!
//! ```
//! use tern_core::{ClientRequest, Config, Connection, Event, Input, Message};
//!
//! let config = Config::default();
//! let request = ClientRequest { host: "example.test", path: "/", protocols: &[] };
//! let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
//! let mut client = Connection::client(&request, 42, &mut to_server);
//! let mut server = Connection::server();
//!
//! // The server reads the request and answers 101.
//! let mut input = Input::new(&mut to_server);
//! assert_eq!(server.poll_event(&config, &mut input, &mut to_client), Ok(Some(Event::Open)));
//! assert_eq!(server.poll_event(&config, &mut input, &mut to_client), Ok(None));
//!
//! // The client reads the 101, then sends a masked text frame.
//! let mut input = Input::new(&mut to_client);
//! let mut to_server = Vec::new();
//! assert_eq!(client.poll_event(&config, &mut input, &mut to_server), Ok(Some(Event::Open)));
//! client.send_text("hello", &mut to_server).unwrap();
//!
//! // The server unmasks it in place and sees the message.
//! let mut to_client = Vec::new();
//! let mut input = Input::new(&mut to_server);
//! let event = server.poll_event(&config, &mut input, &mut to_client).unwrap();
//! assert_eq!(event, Some(Event::Message(Message::Text("hello".into()))));
//! ```
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
mod outqueue;
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
