//! A small event loop that drives many connections over any [`Transport`].
//!
//! The loop owns the per-connection state in a slab, one read buffer and one
//! output buffer shared by every connection, and a heap of deadlines. An
//! application implements [`Handler`] and is called for each connection's
//! opening, messages and end; it answers through a [`Context`].
//!
//! # Memory at rest
//!
//! An idle open connection costs its slab entry: the transport's stream
//! handle plus a [`Connection`] (a few words) and a serial number. Reads go
//! into the shared buffer; output is written straight to the transport and
//! only what it did not take is kept, inside the connection, until the
//! stream is writable again.
//!
//! # Deadlines
//!
//! Every connection must finish its opening handshake within
//! [`LoopConfig::handshake_timeout`] of being accepted or connected: the
//! deadline is absolute, so a peer that trickles bytes cannot extend it. A
//! connection that is closed but still has queued output (a close frame the
//! peer has not read yet) lingers for at most the same time.

use alloc::collections::BinaryHeap;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;
use core::time::Duration;

use slab::Slab;

use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::{Connection, Event, Input, Message, State};
use crate::error::{Error, HandshakeError, SendError};
use crate::handshake::ClientRequest;
use crate::transport::{Io, Readiness, Token, Transport};

/// Identifies a connection inside one event loop. Keys are reused after a
/// connection ends.
pub type ConnId = usize;

/// Options of an [`EventLoop`].
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Limits and options of the protocol engine.
    pub protocol: Config,
    /// Time from accept (or connect) to the end of the opening handshake.
    pub handshake_timeout: Duration,
    /// Most connections at once; a server refuses more with `503`.
    pub max_connections: usize,
    /// Size of the read buffer shared by all connections of the loop.
    pub read_buffer_size: usize,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            protocol: Config::DEFAULT,
            handshake_timeout: Duration::from_secs(10),
            max_connections: usize::MAX,
            read_buffer_size: 64 * 1024,
        }
    }
}

/// Why a connection ended, as reported to [`Handler::on_close`].
pub enum Ended<'a> {
    /// The close handshake completed; the code is the peer's (or
    /// [`CloseCode::NO_STATUS`] for an empty close frame).
    Closed(CloseCode),
    /// The stream ended without a close handshake (reported as 1006).
    Abnormal,
    /// The peer broke the protocol or the handshake was refused; the answer
    /// (a close code or an HTTP status) was sent.
    Failed(&'a Error),
    /// The handshake did not complete before its deadline.
    TimedOut,
    /// The server was at [`LoopConfig::max_connections`] and refused the
    /// connection with `503`.
    Refused,
    /// The transport failed for this stream (reset, refused, broken pipe).
    Transport(&'a dyn fmt::Display),
}

impl fmt::Debug for Ended<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ended({self})")
    }
}

impl Ended<'_> {
    /// The close code that describes this end to an application, in the
    /// terms of RFC 6455 section 7.1.5.
    pub fn code(&self) -> CloseCode {
        match self {
            Ended::Closed(code) => *code,
            Ended::Failed(Error::Protocol(e)) => e.close_code(),
            _ => CloseCode::ABNORMAL,
        }
    }
}

impl fmt::Display for Ended<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Closed(code) => write!(f, "closed with code {code}"),
            Ended::Abnormal => f.write_str("stream ended without a close frame"),
            Ended::Failed(e) => write!(f, "{e}"),
            Ended::TimedOut => f.write_str("handshake timed out"),
            Ended::Refused => f.write_str("refused: server at its connection limit"),
            Ended::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// The application side of an event loop.
pub trait Handler {
    /// The opening handshake of `cx.id()` completed.
    fn on_open(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
    }

    /// A complete message arrived.
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>);

    /// A pong arrived.
    fn on_pong(&mut self, cx: &mut Context<'_>, payload: &[u8]) {
        let _ = (cx, payload);
    }

    /// The connection ended and its key is free again. Called once for
    /// every connection, opened or not.
    fn on_close(&mut self, id: ConnId, ended: Ended<'_>) {
        let _ = (id, ended);
    }
}

/// What a [`Handler`] callback may do with its connection.
#[derive(Debug)]
pub struct Context<'a> {
    id: ConnId,
    conn: &'a mut Connection,
    out: &'a mut Vec<u8>,
}

impl Context<'_> {
    /// The connection's key in its loop.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Sends a message as one frame.
    pub fn send(&mut self, message: &Message<'_>) -> Result<(), SendError> {
        self.conn.send(message, self.out)
    }

    /// Sends a text message as one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.conn.send_text(text, self.out)
    }

    /// Sends a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.conn.send_binary(data, self.out)
    }

    /// Sends a ping.
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.conn.send_ping(data, self.out)
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.conn.close(code, reason, self.out)
    }

    /// Bytes waiting for the transport to accept them.
    pub fn queued_len(&self) -> usize {
        self.conn.queued().len()
    }
}

/// Counters of one loop since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Streams accepted from the listener.
    pub accepted: u64,
    /// Accepted streams refused at the connection limit.
    pub refused: u64,
    /// Failed accept calls (for instance out of file descriptors).
    pub accept_errors: u64,
    /// Handshakes completed.
    pub opened: u64,
    /// Connections ended, for any reason.
    pub ended: u64,
}

struct Slot<S> {
    stream: S,
    conn: Connection,
    serial: u32,
    writable: bool,
}

/// Drives connections over a [`Transport`] and calls a [`Handler`].
pub struct EventLoop<T: Transport, H> {
    transport: T,
    handler: H,
    config: LoopConfig,
    slots: Slab<Slot<T::Stream>>,
    read_buf: Vec<u8>,
    out: Vec<u8>,
    events: Vec<Readiness>,
    deadlines: BinaryHeap<Reverse<(Duration, usize, u32)>>,
    next_serial: u32,
    accepting: bool,
    stats: LoopStats,
}

impl<T: Transport, H> fmt::Debug for EventLoop<T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("connections", &self.slots.len())
            .field("accepting", &self.accepting)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The output buffer keeps at most this much capacity between uses, so one
/// large message does not pin its size for the life of the loop.
const OUT_KEEP_CAPACITY: usize = 1 << 20;

impl<T: Transport, H: Handler> EventLoop<T, H> {
    /// A loop over `transport` calling `handler`.
    pub fn new(transport: T, handler: H, config: LoopConfig) -> Self {
        EventLoop {
            read_buf: vec![0; config.read_buffer_size.max(1)],
            transport,
            handler,
            config,
            slots: Slab::new(),
            out: Vec::new(),
            events: Vec::with_capacity(1024),
            deadlines: BinaryHeap::new(),
            next_serial: 0,
            accepting: true,
            stats: LoopStats::default(),
        }
    }

    /// The application handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The application handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Connections alive right now, in any state.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no connection is alive.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Counters since the loop started.
    pub fn stats(&self) -> LoopStats {
        self.stats
    }

    /// Stops taking new connections from the listener; waiting ones stay
    /// in the transport's backlog.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Opens a client connection to `addr` and sends the opening request as
    /// soon as the stream is connected. `seed` seeds the key and masks.
    pub fn connect(
        &mut self,
        addr: &T::Addr,
        request: &ClientRequest<'_>,
        seed: u64,
    ) -> Result<ConnId, T::Error> {
        let mut stream = self.transport.connect(addr)?;
        let mut request_bytes = Vec::new();
        let mut conn = Connection::client(request, seed, &mut request_bytes);
        conn.queue(&request_bytes);

        let serial = self.next_serial();
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.transport.register(&mut stream, key, true) {
            self.transport.close(stream);
            return Err(e);
        }
        entry.insert(Slot {
            stream,
            conn,
            serial,
            writable: true,
        });
        self.push_deadline(key, serial);
        Ok(key)
    }

    /// Runs `f` with the context of connection `id` (to send from outside a
    /// callback), then transmits what it produced. `None` if `id` is not
    /// alive.
    pub fn with_connection<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut H, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(id)?;
        let mut cx = Context {
            id,
            conn: &mut slot.conn,
            out: &mut self.out,
        };
        let result = f(&mut self.handler, &mut cx);
        self.flush(id);
        self.end_if_closed(id);
        Some(result)
    }

    /// Starts the close handshake with `code` on every open connection and
    /// drops those still in their opening handshake; used for graceful
    /// shutdown (1001). Keep calling [`EventLoop::run_once`] until
    /// [`EventLoop::is_empty`] or a deadline of your choice.
    pub fn close_all(&mut self, code: CloseCode, reason: &str) {
        self.stop_accepting();
        let keys: Vec<usize> = self.slots.iter().map(|(key, _)| key).collect();
        for key in keys {
            let slot = &mut self.slots[key];
            match slot.conn.state() {
                State::Open => {
                    // Only possible errors are for a closed or closing
                    // connection, which needs nothing more.
                    let _ = slot.conn.close(code, reason, &mut self.out);
                    self.flush(key);
                }
                State::Handshake => self.end(key, Ended::Abnormal),
                State::Closing | State::Closed => {}
            }
        }
    }

    /// Waits for readiness at most `timeout` (shortened to the next
    /// deadline), then handles every event: accepts, reads, writes and
    /// expired deadlines. An error is the transport's, fatal to the loop.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> Result<(), T::Error> {
        let timeout = self.timeout_until_deadline(timeout);
        let mut events = core::mem::take(&mut self.events);
        events.clear();
        let polled = self.transport.poll(&mut events, timeout);
        if let Err(e) = polled {
            self.events = events;
            return Err(e);
        }

        for readiness in &events {
            match readiness.token {
                Token::Listener => self.accept_all(),
                Token::Stream(key) => {
                    if readiness.writable {
                        self.on_writable(key);
                    }
                    if readiness.readable {
                        self.on_readable(key, readiness.hangup);
                    }
                }
                Token::Waker => {}
            }
        }
        self.events = events;

        self.expire_deadlines();
        Ok(())
    }

    fn next_serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1) & !LINGER_BIT;
        self.next_serial
    }

    fn push_deadline(&mut self, key: usize, serial: u32) {
        let at = self.transport.now() + self.config.handshake_timeout;
        self.deadlines.push(Reverse((at, key, serial)));
    }

    fn timeout_until_deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(Reverse((at, _, _))) = self.deadlines.peek() else {
            return timeout;
        };
        let until = at.saturating_sub(self.transport.now());
        Some(timeout.map_or(until, |t| t.min(until)))
    }

    fn expire_deadlines(&mut self) {
        let now = self.transport.now();
        while let Some(Reverse((at, key, serial))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();

            // The key may have been reused by a newer connection, or the
            // handshake may be long done: only the same, still waiting
            // connection (or one lingering to flush its close) expires.
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if slot.serial != serial {
                continue;
            }
            match slot.conn.state() {
                State::Handshake => {
                    slot.conn.reject(&HandshakeError::TimedOut, &mut self.out);
                    self.flush(key);
                    self.end(key, Ended::TimedOut);
                }
                State::Closed => self.end(key, Ended::Abnormal),
                State::Open | State::Closing => {}
            }
        }
    }

    fn accept_all(&mut self) {
        while self.accepting {
            let stream = match self.transport.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(_) => {
                    // Most often out of file descriptors. The waiting
                    // connection stays in the backlog; the next readiness
                    // of the listener tries again.
                    self.stats.accept_errors += 1;
                    return;
                }
            };
            self.stats.accepted += 1;
            self.admit(stream);
        }
    }

    fn admit(&mut self, mut stream: T::Stream) {
        let mut conn = Connection::server();
        if self.slots.len() >= self.config.max_connections {
            self.stats.refused += 1;
            self.stats.ended += 1;
            conn.reject(&HandshakeError::ServerBusy, &mut self.out);
            // Best effort: the stream is new, so its send buffer is empty
            // and takes a short response whole.
            let _ = self.transport.write(&mut stream, &[&self.out]);
            self.out.clear();
            self.transport.close(stream);
            return;
        }

        let serial = self.next_serial();
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        if self.transport.register(&mut stream, key, false).is_err() {
            self.transport.close(stream);
            self.stats.accept_errors += 1;
            return;
        }
        entry.insert(Slot {
            stream,
            conn,
            serial,
            writable: false,
        });
        self.push_deadline(key, serial);
    }

    /// Reads connection `key` until a read leaves its buffer unfilled
    /// (everything waiting was taken: a syscall that would only say "would
    /// block" is saved) or, after a `hangup`, until the end of the stream.
    fn on_readable(&mut self, key: usize, hangup: bool) {
        loop {
            let Some(slot) = self.slots.get_mut(key) else {
                return;
            };
            if slot.conn.state() == State::Closed {
                // Lingering to flush: input is no longer of interest.
                return;
            }
            let read = self.transport.read(&mut slot.stream, &mut self.read_buf);
            match read {
                Ok(Io::Done(n)) => {
                    let drained = n < self.read_buf.len() && !hangup;
                    if !self.handle_input(key, n) || drained {
                        return;
                    }
                }
                Ok(Io::WouldBlock) => return,
                Ok(Io::Closed) => {
                    let ended = match slot.conn.handle_eof() {
                        None => Ended::Closed(CloseCode::NORMAL),
                        Some(_) => Ended::Abnormal,
                    };
                    self.end(key, ended);
                    return;
                }
                Err(e) => {
                    self.end(key, Ended::Transport(&e));
                    return;
                }
            }
        }
    }

    /// Feeds `n` freshly read bytes to connection `key`. Returns whether
    /// the connection is still alive.
    fn handle_input(&mut self, key: usize, n: usize) -> bool {
        let Self {
            slots,
            handler,
            config,
            read_buf,
            out,
            stats,
            ..
        } = self;
        let slot = &mut slots[key];
        let mut input = Input::new(&mut read_buf[..n]);

        let mut ended = None;
        loop {
            let event = match slot.conn.poll_event(&config.protocol, &mut input, out) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => {
                    ended = Some(Err(e));
                    break;
                }
            };
            let mut cx = Context {
                id: key,
                conn: &mut slot.conn,
                out,
            };
            match event {
                Event::Open => {
                    stats.opened += 1;
                    handler.on_open(&mut cx);
                }
                Event::Message(message) => handler.on_message(&mut cx, message),
                Event::Ping(_) => {}
                Event::Pong(payload) => handler.on_pong(&mut cx, &payload),
                Event::Close { code, .. } => {
                    ended = Some(Ok(code));
                    break;
                }
            }
        }

        self.flush(key);
        match ended {
            None => {
                self.end_if_closed(key);
                self.slots.contains(key)
            }
            Some(Ok(code)) => {
                self.linger_or_end(key, Ended::Closed(code));
                false
            }
            Some(Err(e)) => {
                self.linger_or_end(key, Ended::Failed(&e));
                false
            }
        }
    }

    fn on_writable(&mut self, key: usize) {
        if !self.write_queued(key) {
            return;
        }
        let slot = &mut self.slots[key];
        if slot.writable {
            slot.writable = false;
            if let Err(e) = self.transport.set_writable(&mut slot.stream, key, false) {
                self.end(key, Ended::Transport(&e));
                return;
            }
        }
        if slot.conn.state() == State::Closed {
            self.end(key, Ended::Closed(CloseCode::NORMAL));
        }
    }

    /// Writes connection `key`'s queue until it is empty or the transport
    /// takes no more. Returns whether the queue is empty; `false` also when
    /// the connection ended on a transport error.
    fn write_queued(&mut self, key: usize) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        while !slot.conn.queued().is_empty() {
            match self
                .transport
                .write(&mut slot.stream, &[slot.conn.queued()])
            {
                Ok(Io::Done(n)) => slot.conn.advance_queued(n),
                Ok(Io::WouldBlock | Io::Closed) => return false,
                Err(e) => {
                    self.end(key, Ended::Transport(&e));
                    return false;
                }
            }
        }
        true
    }

    /// Transmits what connection `key` produced: the shared output buffer
    /// straight to the transport when nothing is queued before it (into
    /// the connection's queue otherwise, and for whatever the transport did
    /// not take), then the queue itself, which large frames are encoded
    /// into directly. Writable interest is on while anything stays queued.
    fn flush(&mut self, key: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            self.clear_out();
            return;
        };
        if !self.out.is_empty() {
            let mut written = 0;
            if slot.conn.queued().is_empty() {
                match self.transport.write(&mut slot.stream, &[&self.out]) {
                    Ok(Io::Done(n)) => written = n,
                    Ok(Io::WouldBlock | Io::Closed) => {}
                    Err(e) => {
                        self.clear_out();
                        self.end(key, Ended::Transport(&e));
                        return;
                    }
                }
            }
            slot.conn.queue(&self.out[written..]);
            self.clear_out();
        }

        // While writable interest is on, the queue is drained when the
        // stream is writable; otherwise it holds a fresh large frame (or
        // the rest of `out`), worth one direct attempt now.
        let slot = &mut self.slots[key];
        if slot.writable || slot.conn.queued().is_empty() {
            return;
        }
        if self.write_queued(key) {
            return;
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.writable = true;
        if let Err(e) = self.transport.set_writable(&mut slot.stream, key, true) {
            self.end(key, Ended::Transport(&e));
        }
    }

    fn clear_out(&mut self) {
        self.out.clear();
        if self.out.capacity() > OUT_KEEP_CAPACITY {
            self.out = Vec::new();
        }
    }

    /// Ends a connection whose state reached `Closed` through this end's
    /// own close handshake, once its output is flushed.
    fn end_if_closed(&mut self, key: usize) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        if slot.conn.state() == State::Closed {
            self.linger_or_end(key, Ended::Closed(CloseCode::NORMAL));
        }
    }

    /// A connection that is done: dropped at once when its output is
    /// flushed; otherwise it lingers until the queue drains or its
    /// deadline passes. `ended` is reported now either way.
    fn linger_or_end(&mut self, key: usize, ended: Ended<'_>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.conn.queued().is_empty() {
            self.end(key, ended);
            return;
        }
        // Report the end now; the slot stays only to flush the answer, and
        // the marked serial keeps the end from being reported twice.
        self.handler.on_close(key, ended);
        let serial = self.next_serial() | LINGER_BIT;
        self.slots[key].serial = serial;
        self.push_deadline(key, serial);
    }

    /// Drops connection `key`, releases its stream and reports `ended`
    /// (unless it was already reported when the connection began to
    /// linger).
    fn end(&mut self, key: usize, ended: Ended<'_>) {
        if !self.slots.contains(key) {
            return;
        }
        let slot = self.slots.remove(key);
        self.transport.close(slot.stream);
        self.stats.ended += 1;
        if slot.serial & LINGER_BIT == 0 {
            self.handler.on_close(key, ended);
        }
    }
}

/// Set in a slot's serial once its end was reported while it lingers to
/// flush its last output.
const LINGER_BIT: u32 = 1 << 31;
