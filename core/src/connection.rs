//! One WebSocket connection as a sans-IO state machine.
//!
//! SKELETON: signatures fixed, bodies to be written.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::close::CloseCode;
use crate::config::Config;
use crate::error::{Error, HandshakeError, SendError};
use crate::handshake::ClientRequest;

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts the opening request; never masks, requires masked input.
    Server,
    /// Sends the opening request; always masks, requires unmasked input.
    Client,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The opening handshake is under way.
    Handshake,
    /// Frames flow both ways.
    Open,
    /// This end sent a close frame and waits for the peer's.
    Closing,
    /// Nothing more will be sent or accepted; flush `out` and drop the
    /// stream.
    Closed,
}

/// A complete data message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated as UTF-8.
    Text(Cow<'a, str>),
    /// A binary message.
    Binary(Cow<'a, [u8]>),
}

impl Message<'_> {
    /// The message's payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// What [`Connection::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The opening handshake completed; frames may flow.
    Open,
    /// A complete message arrived.
    Message(Message<'a>),
    /// A ping arrived; its pong is already in `out`.
    Ping(Cow<'a, [u8]>),
    /// A pong arrived.
    Pong(Cow<'a, [u8]>),
    /// The peer's close frame arrived. If this end had not sent a close
    /// frame, the echo of the code is already in `out`. The connection is
    /// now [`State::Closed`]. An empty close reports
    /// [`CloseCode::NO_STATUS`].
    Close {
        /// The peer's code.
        code: CloseCode,
        /// The peer's reason.
        reason: Cow<'a, str>,
    },
}

/// Bytes read from the transport, consumed from the front by
/// [`Connection::poll_event`]. Payloads are unmasked in place, which is why
/// the buffer is mutable.
#[derive(Debug)]
pub struct Input<'a> {
    rest: &'a mut [u8],
}

impl<'a> Input<'a> {
    /// Wraps freshly read bytes.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Input { rest: bytes }
    }

    /// How many bytes are not consumed yet.
    pub fn len(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// One WebSocket connection, server or client.
#[derive(Debug)]
pub struct Connection {
    _todo: (),
}

impl Connection {
    /// A server connection waiting for the client's opening request.
    pub fn server() -> Self {
        todo!()
    }

    /// A client connection: appends the opening request to `out`. `seed`
    /// seeds the generator of the key and of every frame mask; give it 64
    /// bits from the operating system's random source.
    pub fn client(request: &ClientRequest<'_>, seed: u64, out: &mut Vec<u8>) -> Self {
        let _ = (request, seed, out);
        todo!()
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        todo!()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        todo!()
    }

    /// Consumes bytes from `input` until one event is complete, and returns
    /// it; `Ok(None)` once `input` is used up, with any incomplete head or
    /// frame kept inside the connection for the next read. Answers the peer
    /// needs (handshake response, pong, close reply) are appended to `out`.
    pub fn poll_event<'a>(
        &mut self,
        config: &Config,
        input: &mut Input<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'a>>, Error> {
        let _ = (config, input, out);
        todo!()
    }

    /// Appends a text message as one frame.
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        let _ = (text, out);
        todo!()
    }

    /// Appends a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        let _ = (data, out);
        todo!()
    }

    /// Appends a message of either kind as one frame.
    pub fn send(&mut self, message: &Message<'_>, out: &mut Vec<u8>) -> Result<(), SendError> {
        match message {
            Message::Text(t) => self.send_text(t, out),
            Message::Binary(b) => self.send_binary(b, out),
        }
    }

    /// Appends a ping (at most 125 bytes).
    pub fn send_ping(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        let _ = (data, out);
        todo!()
    }

    /// Appends a close frame and moves to [`State::Closing`]. `reason` is at
    /// most 123 bytes.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let _ = (code, reason, out);
        todo!()
    }

    /// Server side: refuses the handshake (for instance `ServerBusy` or
    /// `TimedOut`), appending the HTTP error response to `out`.
    pub fn reject(&mut self, error: &HandshakeError, out: &mut Vec<u8>) {
        let _ = (error, out);
        todo!()
    }

    /// The transport reported the end of the stream. Returns the close code
    /// to report to the application: `None` if the close handshake had
    /// already completed, [`CloseCode::ABNORMAL`] otherwise.
    pub fn handle_eof(&mut self) -> Option<CloseCode> {
        todo!()
    }

    /// Bytes handed back with [`Connection::queue`] and not yet transmitted.
    pub fn queued(&self) -> &[u8] {
        todo!()
    }

    /// Keeps bytes the transport did not accept, behind any already queued.
    pub fn queue(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }

    /// Drops the first `n` queued bytes once the transport took them; frees
    /// the queue's memory when it empties.
    pub fn advance_queued(&mut self, n: usize) {
        let _ = n;
        todo!()
    }

    /// Heap bytes this connection holds right now (partial input, message
    /// being reassembled, output queue). Zero for an idle open connection.
    pub fn buffered_bytes(&self) -> usize {
        todo!()
    }
}
