//! One WebSocket connection as a sans-IO state machine.
//!
//! A [`Connection`] goes through the opening handshake (RFC 6455 section
//! 4), then reads and writes frames (section 5) until the close handshake
//! (section 7) or a protocol violation ends it.
//!
//! # Memory
//!
//! The connection itself is 24 bytes: its role, state, two close flags, the
//! state of the mask generator, and one optional box. Everything transient
//! lives in that box: a head or frame header cut off at the end of a read,
//! the payload of a frame that is still arriving, the message being
//! reassembled, the UTF-8 state of a text message, the client's expected
//! `Sec-WebSocket-Accept`, and the output queue. The box exists only while
//! one of those is in use, so an idle open connection holds no heap memory.
//!
//! # Zero copy
//!
//! A frame that lies whole in the [`Input`] is unmasked in place and
//! returned as a borrow of the input. Only frames cut by the end of a read
//! and fragmented messages are copied, and they come back owned, so no
//! [`Event`] ever borrows the connection.
//!
//! # Choices the RFC leaves open
//!
//! - While [`State::Closing`] (this end sent its close frame), data frames
//!   and pongs from the peer are still delivered, and pings are reported but
//!   not answered: nothing may follow our close frame on the wire.
//! - Once [`State::Closed`], input is consumed and ignored.
//! - Protocol failures send a close frame with the code of the error and no
//!   reason text.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::hash::Hasher;
use core::mem;

use siphasher::sip::SipHasher24;

use crate::close::{parse_close_payload, CloseCode};
use crate::config::Config;
use crate::error::{Error, HandshakeError, ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::handshake::{
    accept_key, answer_request, check_response, find_head_end, generate_key,
    has_bare_lf_blank_line, write_rejection, write_request, ClientRequest,
};
use crate::mask::apply_mask;
use crate::outqueue::OutQueue;
use crate::utf8::Utf8Stream;

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

    /// Copies a borrowed payload, so the message outlives the input buffer.
    pub fn into_owned(self) -> Message<'static> {
        match self {
            Message::Text(t) => Message::Text(Cow::Owned(t.into_owned())),
            Message::Binary(b) => Message::Binary(Cow::Owned(b.into_owned())),
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

impl Event<'_> {
    /// Copies a borrowed payload, so the event outlives the input buffer.
    pub fn into_owned(self) -> Event<'static> {
        match self {
            Event::Open => Event::Open,
            Event::Message(m) => Event::Message(m.into_owned()),
            Event::Ping(p) => Event::Ping(Cow::Owned(p.into_owned())),
            Event::Pong(p) => Event::Pong(Cow::Owned(p.into_owned())),
            Event::Close { code, reason } => Event::Close {
                code,
                reason: Cow::Owned(reason.into_owned()),
            },
        }
    }
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

    /// Splits the first `n` bytes off the front. `n` is at most `len()`.
    fn take(&mut self, n: usize) -> &'a mut [u8] {
        let (front, rest) = mem::take(&mut self.rest).split_at_mut(n);
        self.rest = rest;
        front
    }

    /// Splits off everything left.
    fn take_all(&mut self) -> &'a mut [u8] {
        mem::take(&mut self.rest)
    }
}

/// Set in [`Connection::flags`] once this end wrote its close frame.
const CLOSE_SENT: u8 = 1;

/// Frames with payloads at least this large are encoded straight into the
/// connection's output queue instead of the caller's `out`.
pub const DIRECT_QUEUE_MIN: usize = 64 * 1024;
/// Set in [`Connection::flags`] once the peer's close frame arrived.
const CLOSE_RECEIVED: u8 = 2;

/// One WebSocket connection, server or client.
#[derive(Debug)]
pub struct Connection {
    /// Everything held only while something is partial or queued.
    transient: Option<Box<Transient>>,
    /// State of the generator of the client's key and frame masks.
    rng: u64,
    role: Role,
    state: State,
    /// [`CLOSE_SENT`] and [`CLOSE_RECEIVED`].
    flags: u8,
}

/// The kind of the data message being received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// A frame whose header is decoded and whose payload is still arriving.
#[derive(Clone, Copy, Debug)]
struct PartialFrame {
    header: FrameHeader,
    /// Payload bytes received so far.
    received: u64,
}

/// What a client checks the server's answer against.
#[derive(Debug)]
struct ClientExpect {
    accept: [u8; 28],
    /// The offered subprotocols, comma-separated.
    protocols: String,
}

/// The connection's transient state, boxed and dropped whenever it is idle.
#[derive(Debug, Default)]
struct Transient {
    /// Handshake: the head received so far, when it spans reads.
    head: Vec<u8>,
    /// How many bytes of `head` were searched for its end already.
    head_scanned: usize,
    /// Client handshake: what the response must carry.
    expect: Option<ClientExpect>,
    /// The start of a frame header cut off at the end of a read.
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    /// The frame whose payload is arriving.
    frame: Option<PartialFrame>,
    /// The payload of a control frame that spans reads.
    control: Vec<u8>,
    /// The data message being received, when it is fragmented or spans
    /// reads.
    message: Vec<u8>,
    message_kind: Option<Kind>,
    utf8: Utf8Stream,
    /// Output the transport has not taken yet.
    queue: OutQueue,
}

impl Transient {
    /// Whether nothing is held, so the box can go.
    fn is_idle(&self) -> bool {
        self.head.capacity() == 0
            && self.expect.is_none()
            && self.header_len == 0
            && self.frame.is_none()
            && self.control.capacity() == 0
            && self.message.capacity() == 0
            && self.message_kind.is_none()
            && self.utf8.is_clear()
            && self.queue.is_unallocated()
    }

    /// Drops all input state and keeps only the output queue.
    fn clear_input(&mut self) {
        let queue = mem::take(&mut self.queue);
        *self = Transient {
            queue,
            ..Transient::default()
        };
    }

    /// Heap bytes held, the box included.
    fn heap_bytes(&self) -> usize {
        mem::size_of::<Transient>()
            + self.head.capacity()
            + self.expect.as_ref().map_or(0, |e| e.protocols.capacity())
            + self.control.capacity()
            + self.message.capacity()
            + self.queue.heap_bytes()
    }
}

impl Connection {
    fn new(role: Role, state: State, seed: u64) -> Self {
        Connection {
            transient: None,
            rng: seed,
            role,
            state,
            flags: 0,
        }
    }

    /// A server connection waiting for the client's opening request.
    pub fn server() -> Self {
        Connection::new(Role::Server, State::Handshake, 0)
    }

    /// A client connection: appends the opening request to `out`. `seed`
    /// is the secret behind the handshake key and every frame mask: give it
    /// 64 bits from the operating system's random source, fresh for each
    /// connection (never a counter or a constant: the masks are exactly as
    /// unpredictable as the seed).
    pub fn client(request: &ClientRequest<'_>, seed: u64, out: &mut Vec<u8>) -> Self {
        let mut conn = Connection::new(Role::Client, State::Handshake, seed);

        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&next_random(&mut conn.rng).to_le_bytes());
        random[8..].copy_from_slice(&next_random(&mut conn.rng).to_le_bytes());
        let key = generate_key(random);
        write_request(request, &key, out);

        conn.transient().expect = Some(ClientExpect {
            accept: accept_key(&key),
            protocols: request.protocols.join(","),
        });
        conn
    }

    /// A connection whose opening handshake was done elsewhere (for example
    /// by an HTTP server that handed the upgraded stream over): it starts
    /// [`State::Open`]. `seed` seeds the client's frame masks and is unused
    /// by a server.
    pub fn open(role: Role, seed: u64) -> Self {
        Connection::new(role, State::Open, seed)
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
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
        let result = match self.state {
            State::Handshake => self.poll_handshake(config, input, out),
            State::Open | State::Closing => match self.poll_frames(config, input, out) {
                Ok(event) => Ok(event),
                Err(e) => Err(self.fail(e, out)),
            },
            State::Closed => {
                input.take_all();
                Ok(None)
            }
        };
        self.settle();
        result
    }

    /// Appends a text message as one frame.
    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_sendable()?;
        self.write_frame(OpCode::Text, text.as_bytes(), out);
        Ok(())
    }

    /// Appends a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_sendable()?;
        self.write_frame(OpCode::Binary, data, out);
        Ok(())
    }

    /// Appends a message of either kind as one frame.
    pub fn send(&mut self, message: &Message<'_>, out: &mut Vec<u8>) -> Result<(), SendError> {
        match message {
            Message::Text(t) => self.send_text(t, out),
            Message::Binary(b) => self.send_binary(b, out),
        }
    }

    /// Sends a message handed over by value as one frame. A large message
    /// that owns its buffer (as a message joined from several reads does)
    /// is queued in that very buffer, masked in place for a client, and
    /// never copied; anything else is sent as by [`Connection::send`].
    /// This is what an echo should use.
    pub fn send_message(
        &mut self,
        message: Message<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let (opcode, mut payload) = match message {
            Message::Text(Cow::Owned(text)) if text.len() >= DIRECT_QUEUE_MIN => {
                (OpCode::Text, text.into_bytes())
            }
            Message::Binary(Cow::Owned(data)) if data.len() >= DIRECT_QUEUE_MIN => {
                (OpCode::Binary, data)
            }
            other => return self.send(&other, out),
        };
        self.check_sendable()?;

        let header = self.frame_header(opcode, payload.len());
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        // Order on the wire: what `out` holds, the header, the payload.
        self.queue(out);
        out.clear();
        let queue = &mut self.transient().queue;
        queue.push(header.encode().as_bytes());
        queue.push_owned(payload);
        Ok(())
    }

    /// Appends a ping (at most 125 bytes).
    pub fn send_ping(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.check_sendable()?;
        if data.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        self.write_frame(OpCode::Ping, data, out);
        Ok(())
    }

    /// Appends a close frame and moves to [`State::Closing`]. `reason` is at
    /// most 123 bytes.
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.check_sendable()?;
        // Section 7.4.1: 1005, 1006 and 1015 are for reporting only.
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(SendError::ControlTooLong);
        }

        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.write_frame(OpCode::Close, &payload[..2 + reason.len()], out);
        self.flags |= CLOSE_SENT;
        self.state = State::Closing;
        Ok(())
    }

    /// Server side: refuses the handshake (for instance `ServerBusy` or
    /// `TimedOut`), appending the HTTP error response to `out`.
    ///
    /// Does nothing once the handshake is over. On a client still in its
    /// handshake nothing is written (there is no one to answer); the
    /// connection closes all the same.
    pub fn reject(&mut self, error: &HandshakeError, out: &mut Vec<u8>) {
        if self.state != State::Handshake {
            return;
        }
        if self.role == Role::Server {
            write_rejection(error, out);
        }
        self.close_input();
    }

    /// The transport reported the end of the stream. Returns the close code
    /// to report to the application: `None` if the close handshake had
    /// already completed, [`CloseCode::ABNORMAL`] otherwise.
    pub fn handle_eof(&mut self) -> Option<CloseCode> {
        let completed = self.flags & (CLOSE_SENT | CLOSE_RECEIVED) == CLOSE_SENT | CLOSE_RECEIVED;
        self.close_input();
        if completed {
            None
        } else {
            Some(CloseCode::ABNORMAL)
        }
    }

    /// The next queued bytes to transmit (the queue may hold more behind
    /// them: once [`Connection::advance_queued`] has taken all of these,
    /// the next part follows). Empty when nothing is queued.
    pub fn queued(&self) -> &[u8] {
        match &self.transient {
            Some(t) => t.queue.front(),
            None => &[],
        }
    }

    /// All queued bytes, in every part of the queue.
    pub fn queued_len(&self) -> usize {
        self.transient.as_ref().map_or(0, |t| t.queue.len())
    }

    /// Keeps bytes the transport did not accept, behind any already queued.
    pub fn queue(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.transient().queue.push(bytes);
    }

    /// Drops the first `n` queued bytes once the transport took them; frees
    /// the queue's memory when it empties.
    pub fn advance_queued(&mut self, n: usize) {
        let Some(t) = &mut self.transient else {
            return;
        };
        t.queue.advance(n);
        self.settle();
    }

    /// Heap bytes this connection holds right now (partial input, message
    /// being reassembled, output queue). Zero for an idle open connection.
    pub fn buffered_bytes(&self) -> usize {
        self.transient.as_ref().map_or(0, |t| t.heap_bytes())
    }
}

/// The opening handshake.
impl Connection {
    fn poll_handshake<'a>(
        &mut self,
        config: &Config,
        input: &mut Input<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'a>>, Error> {
        let buffered = self.transient.as_ref().map_or(0, |t| t.head.len());
        if buffered == 0 {
            return self.handshake_from_input(config, input, out);
        }

        // Part of the head came in earlier reads: append at most up to the
        // limit, and resume the search where the last one stopped.
        let t = self.transient();
        let room = config.max_head_size.saturating_sub(buffered);
        let take = input.len().min(room);
        t.head.extend_from_slice(&input.rest[..take]);

        let end = find_head_end(&t.head, t.head_scanned);
        let searched = end.unwrap_or(t.head.len());
        if has_bare_lf_blank_line(&t.head[..searched], t.head_scanned) {
            return Err(self.refuse_bare_lf(out));
        }
        let Some(end) = end else {
            t.head_scanned = t.head.len();
            input.take(take);
            if !input.is_empty() {
                return Err(self.refuse_head(config, out));
            }
            return Ok(None);
        };

        // Bytes past the head's end are frames: leave them in the input.
        input.take(end.saturating_sub(buffered));
        t.head.truncate(end);
        let head = mem::take(&mut t.head);
        t.head_scanned = 0;
        self.finish_handshake(&head, config, out)?;
        Ok(Some(Event::Open))
    }

    /// The handshake with no head bytes buffered: a whole head in the input
    /// is parsed in place; a partial one is copied into the connection.
    fn handshake_from_input<'a>(
        &mut self,
        config: &Config,
        input: &mut Input<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'a>>, Error> {
        let window = input.len().min(config.max_head_size);
        let end = find_head_end(&input.rest[..window], 0);
        // A bare-LF blank line before the end (or anywhere, without one)
        // is refused the same way however the head was cut into reads.
        if has_bare_lf_blank_line(&input.rest[..end.unwrap_or(window)], 0) {
            return Err(self.refuse_bare_lf(out));
        }
        if let Some(end) = end {
            let head = input.take(end);
            self.finish_handshake(head, config, out)?;
            return Ok(Some(Event::Open));
        }
        if input.len() > config.max_head_size {
            return Err(self.refuse_head(config, out));
        }
        if input.is_empty() {
            return Ok(None);
        }
        let t = self.transient();
        t.head.extend_from_slice(input.take_all());
        t.head_scanned = t.head.len();
        Ok(None)
    }

    /// Checks a complete head: the server answers it, the client checks
    /// the server's answer.
    fn finish_handshake(
        &mut self,
        head: &[u8],
        config: &Config,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let result = match self.role {
            Role::Server => answer_request(head, config, out),
            Role::Client => match self.transient.as_mut().and_then(|t| t.expect.take()) {
                Some(expect) => check_response(head, &expect.accept, &expect.protocols, config),
                // Connection::client always sets it; without it no answer
                // can be verified.
                None => Err(HandshakeError::BadAccept),
            },
        };

        match result {
            Ok(()) => {
                self.state = State::Open;
                if let Some(t) = &mut self.transient {
                    t.head = Vec::new();
                    t.head_scanned = 0;
                }
                Ok(())
            }
            Err(e) => {
                // The server's refusal is already in `out`.
                self.close_input();
                Err(Error::Handshake(e))
            }
        }
    }

    /// The head grew past the limit without ending: refuse with 431.
    /// Refuses a head whose lines end in a bare `\n`.
    fn refuse_bare_lf(&mut self, out: &mut Vec<u8>) -> Error {
        let error = HandshakeError::Malformed("head lines must end in CRLF");
        if self.role == Role::Server {
            write_rejection(&error, out);
        }
        self.close_input();
        Error::Handshake(error)
    }

    fn refuse_head(&mut self, config: &Config, out: &mut Vec<u8>) -> Error {
        let error = HandshakeError::HeadTooLarge {
            limit: config.max_head_size,
        };
        if self.role == Role::Server {
            write_rejection(&error, out);
        }
        self.close_input();
        Error::Handshake(error)
    }
}

/// Reading frames.
impl Connection {
    /// Reads frames until one yields an event or the input is used up.
    /// Iterates, never recurses: each pass consumes at least one byte or
    /// returns.
    fn poll_frames<'a>(
        &mut self,
        config: &Config,
        input: &mut Input<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        loop {
            if input.is_empty() {
                return Ok(None);
            }

            if self.transient.as_ref().is_some_and(|t| t.frame.is_some()) {
                if let Some(event) = self.continue_frame(input, out)? {
                    return Ok(Some(event));
                }
                continue;
            }

            let Some(header) = self.read_header(input)? else {
                return Ok(None);
            };
            self.check_header(&header, config)?;

            // The whole payload is here (this also bounds the length by
            // usize): unmask it in place and handle it without copying.
            if input.len() as u64 >= header.len {
                let payload = input.take(header.len as usize);
                if let Some(key) = header.mask {
                    apply_mask(payload, key, 0);
                }
                if let Some(event) = self.whole_frame(header, payload, out)? {
                    return Ok(Some(event));
                }
                continue;
            }

            // The payload continues in later reads.
            let t = self.transient();
            t.frame = Some(PartialFrame {
                header,
                received: 0,
            });
            match header.opcode {
                OpCode::Text => t.message_kind = Some(Kind::Text),
                OpCode::Binary => t.message_kind = Some(Kind::Binary),
                _ => {}
            }
        }
    }

    /// Decodes the next frame header, completing one cut off by an earlier
    /// read. `Ok(None)` when the input ends inside the header; its bytes
    /// are kept.
    fn read_header(&mut self, input: &mut Input<'_>) -> Result<Option<FrameHeader>, ProtocolError> {
        let role = self.role;
        let buffered = self.transient.as_ref().map_or(0, |t| t.header_len as usize);

        if buffered == 0 {
            if let Some((header, n)) = FrameHeader::decode(input.rest, role)? {
                input.take(n);
                return Ok(Some(header));
            }
            // A prefix of a header is shorter than the longest header.
            let n = input.len().min(MAX_HEADER_LEN);
            let t = self.transient();
            t.header[..n].copy_from_slice(input.take(n));
            t.header_len = n as u8;
            return Ok(None);
        }

        let t = self.transient();
        let take = (MAX_HEADER_LEN - buffered).min(input.len());
        let mut bytes = t.header;
        bytes[buffered..buffered + take].copy_from_slice(&input.rest[..take]);

        match FrameHeader::decode(&bytes[..buffered + take], role)? {
            Some((header, n)) => {
                input.take(n - buffered);
                t.header_len = 0;
                Ok(Some(header))
            }
            None => {
                input.take(take);
                t.header = bytes;
                t.header_len = (buffered + take) as u8;
                Ok(None)
            }
        }
    }

    /// The rules that depend on the connection: message sequencing
    /// (section 5.4) and the size limits, checked before any payload is
    /// read or allocated.
    fn check_header(&self, header: &FrameHeader, config: &Config) -> Result<(), ProtocolError> {
        let open = self
            .transient
            .as_ref()
            .and_then(|t| t.message_kind.map(|_| t.message.len()));
        match (header.opcode, open) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::UnfinishedMessage)
            }
            (op, _) if op.is_control() => return Ok(()),
            _ => {}
        }

        if header.len > config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                size: header.len,
                limit: config.max_frame_size,
            });
        }
        let joined = (open.unwrap_or(0) as u64).saturating_add(header.len);
        if joined > config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: joined,
                limit: config.max_message_size,
            });
        }
        Ok(())
    }

    /// Handles a frame whose unmasked payload lies whole in the input.
    fn whole_frame<'a>(
        &mut self,
        header: FrameHeader,
        payload: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        let message_open = self
            .transient
            .as_ref()
            .is_some_and(|t| t.message_kind.is_some());
        match header.opcode {
            OpCode::Ping => {
                self.answer_ping(payload, out);
                Ok(Some(Event::Ping(Cow::Borrowed(payload))))
            }
            OpCode::Pong => Ok(Some(Event::Pong(Cow::Borrowed(payload)))),
            OpCode::Close => {
                let (code, reason) = parse_close_payload(payload)?;
                self.peer_closed(code, out);
                Ok(Some(Event::Close {
                    code,
                    reason: Cow::Borrowed(reason),
                }))
            }

            // A one-frame message: no copy at all.
            OpCode::Text if header.fin && !message_open => {
                let text =
                    simdutf8::basic::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Event::Message(Message::Text(Cow::Borrowed(text)))))
            }
            OpCode::Binary if header.fin && !message_open => Ok(Some(Event::Message(
                Message::Binary(Cow::Borrowed(payload)),
            ))),

            // The first fragment of a message.
            OpCode::Text | OpCode::Binary => {
                let kind = if header.opcode == OpCode::Text {
                    Kind::Text
                } else {
                    Kind::Binary
                };
                self.transient().message_kind = Some(kind);
                self.append_data(payload)?;
                Ok(None)
            }

            OpCode::Continuation => {
                self.append_data(payload)?;
                if !header.fin {
                    return Ok(None);
                }
                self.finish_message().map(Some)
            }
        }
    }

    /// Feeds the input into the frame whose payload is arriving.
    fn continue_frame(
        &mut self,
        input: &mut Input<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Event<'static>>, ProtocolError> {
        let t = self.transient();
        let Some(frame) = &mut t.frame else {
            return Ok(None);
        };

        let remaining = frame.header.len - frame.received;
        let n = remaining.min(input.len() as u64) as usize;
        let chunk = input.take(n);
        if let Some(key) = frame.header.mask {
            apply_mask(chunk, key, (frame.received % 4) as usize);
        }
        frame.received += n as u64;
        let header = frame.header;
        let done = frame.received == header.len;

        if header.opcode.is_control() {
            t.control.extend_from_slice(chunk);
        } else {
            if t.message_kind == Some(Kind::Text) {
                // Fail fast, before the rest of the frame arrives.
                t.utf8.feed(chunk)?;
            }
            t.message.extend_from_slice(chunk);
        }
        if !done {
            return Ok(None);
        }
        t.frame = None;

        if header.opcode.is_control() {
            let payload = mem::take(&mut t.control);
            return self.owned_control(header.opcode, payload, out).map(Some);
        }
        if !header.fin {
            return Ok(None);
        }
        self.finish_message().map(Some)
    }

    /// Handles a control frame whose payload spanned reads.
    fn owned_control(
        &mut self,
        opcode: OpCode,
        payload: Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Event<'static>, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                self.answer_ping(&payload, out);
                Ok(Event::Ping(Cow::Owned(payload)))
            }
            OpCode::Pong => Ok(Event::Pong(Cow::Owned(payload))),
            _ => {
                let (code, reason) = parse_close_payload(&payload)?;
                let reason = String::from(reason);
                self.peer_closed(code, out);
                Ok(Event::Close {
                    code,
                    reason: Cow::Owned(reason),
                })
            }
        }
    }

    /// Appends payload bytes to the open message, validating text.
    fn append_data(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let t = self.transient();
        if t.message_kind == Some(Kind::Text) {
            t.utf8.feed(bytes)?;
        }
        // The buffer grows as bytes arrive (never reserved from the
        // announced length, which a peer could inflate). A large message
        // lands in fresh memory every time, and its page faults are a
        // quarter of a 100 MB echo's server time: buffers are not reused
        // across messages yet.
        t.message.extend_from_slice(bytes);
        Ok(())
    }

    /// Hands out the completed message, leaving no buffer behind.
    fn finish_message(&mut self) -> Result<Event<'static>, ProtocolError> {
        let t = self.transient();
        let kind = t.message_kind.take();
        let bytes = mem::take(&mut t.message);
        if kind != Some(Kind::Text) {
            return Ok(Event::Message(Message::Binary(Cow::Owned(bytes))));
        }

        t.utf8.finish()?;
        debug_assert!(core::str::from_utf8(&bytes).is_ok());
        // SAFETY: every byte of the message went through `t.utf8.feed` in
        // order (append_data and continue_frame are the only writers of
        // `message` for text), each piece was accepted, and `finish`
        // confirmed no code point is left incomplete, so the whole buffer
        // is valid UTF-8. This skips a second pass over large messages.
        let text = unsafe { String::from_utf8_unchecked(bytes) };
        Ok(Event::Message(Message::Text(Cow::Owned(text))))
    }

    /// Section 5.5.2: a ping is answered with a pong carrying the same
    /// payload. Not once this end sent its close frame (section 5.5.1).
    fn answer_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Open {
            self.write_frame(OpCode::Pong, payload, out);
        }
    }

    /// Section 5.5.1: the peer's close frame ends the connection; unless
    /// this end already sent one, echo the code (an empty close gets an
    /// empty close).
    fn peer_closed(&mut self, code: CloseCode, out: &mut Vec<u8>) {
        if self.state == State::Open {
            let echo = code.0.to_be_bytes();
            let payload: &[u8] = if code == CloseCode::NO_STATUS {
                &[]
            } else {
                &echo
            };
            self.write_frame(OpCode::Close, payload, out);
            self.flags |= CLOSE_SENT;
        }
        self.flags |= CLOSE_RECEIVED;
        self.close_input();
    }

    /// A protocol violation: send its close code unless a close frame went
    /// out already, and close.
    fn fail(&mut self, error: ProtocolError, out: &mut Vec<u8>) -> Error {
        if self.flags & CLOSE_SENT == 0 {
            let code = error.close_code().0.to_be_bytes();
            self.write_frame(OpCode::Close, &code, out);
            self.flags |= CLOSE_SENT;
        }
        self.close_input();
        Error::Protocol(error)
    }
}

/// Writing frames and housekeeping.
impl Connection {
    fn check_sendable(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Handshake => Err(SendError::NotOpen),
            State::Closing => Err(SendError::Closing),
            State::Closed => Err(SendError::Closed),
        }
    }

    /// Appends one final frame. Section 5.3: a client masks every frame
    /// with a fresh key, a server never masks.
    fn write_frame(&mut self, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
        let header = self.frame_header(opcode, payload.len());
        let mask = header.mask;

        // A large frame skips `out`: copied there, most of it would be
        // copied again into the queue once the transport took its fill,
        // so it goes straight into the queue, behind what `out` already
        // holds (which moves there first to keep the order).
        let target = if payload.len() >= DIRECT_QUEUE_MIN {
            self.queue(out);
            out.clear();
            self.transient().queue.open_segment()
        } else {
            out
        };
        target.reserve(MAX_HEADER_LEN + payload.len());
        target.extend_from_slice(header.encode().as_bytes());
        let start = target.len();
        target.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut target[start..], key, 0);
        }
    }

    /// The header of a final frame of `len` bytes, with a fresh mask key
    /// for a client.
    fn frame_header(&mut self, opcode: OpCode, len: usize) -> FrameHeader {
        let mask = match self.role {
            Role::Client => Some((next_random(&mut self.rng) as u32).to_le_bytes()),
            Role::Server => None,
        };
        FrameHeader {
            fin: true,
            opcode,
            mask,
            len: len as u64,
        }
    }

    /// The transient state, created if absent.
    fn transient(&mut self) -> &mut Transient {
        self.transient.get_or_insert_with(Box::default)
    }

    /// Moves to [`State::Closed`] and drops all input state; queued output
    /// stays until sent.
    fn close_input(&mut self) {
        self.state = State::Closed;
        if let Some(t) = &mut self.transient {
            t.clear_input();
        }
        self.settle();
    }

    /// Frees the transient state once nothing is held in it.
    fn settle(&mut self) {
        if self.transient.as_ref().is_some_and(|t| t.is_idle()) {
            self.transient = None;
        }
    }
}

/// The next unpredictable 64 bits for a client's key and frame masks.
///
/// Section 10.3 asks that masks cannot be predicted by whoever chooses the
/// payload, so a plain generator whose state can be read back from its
/// output (as the handshake key reveals two outputs in clear) will not do.
/// The state is a secret seeded from the operating system; each step keys
/// SipHash-2-4 with it and derives two values: the output, and the next
/// state. Both are outputs of a keyed pseudo-random function, so the
/// outputs seen on the wire tell nothing about the state or about the next
/// masks short of a search over all 2^64 states.
fn next_random(state: &mut u64) -> u64 {
    let derive = |label: u8| {
        let mut hasher = SipHasher24::new_with_keys(*state, MASK_DOMAIN);
        hasher.write_u8(label);
        hasher.finish()
    };
    let output = derive(0);
    *state = derive(1);
    output
}

/// Second SipHash key of [`next_random`]: a constant that separates this use
/// of the seed from any other.
const MASK_DOMAIN: u64 = 0x7465_726e_6d61_736b;

// The memory budget of a connection, enforced at compile time.
const _: () = assert!(mem::size_of::<Connection>() <= 24);
