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
//! handle plus a [`Connection`] (a few words), a serial number and two
//! bytes of flags and idle count (40 bytes with a mio stream). Reads go
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
//! peer has not read yet) lingers for at most the same time. Both use the
//! same timeout, so deadlines come due in the order they were set: they sit
//! in a FIFO queue, and the entries of handshakes that completed are
//! dropped from its front as soon as they are stale, so a storm of
//! connections leaves no deadline memory behind once it is over.
//!
//! # Idle connections
//!
//! Open connections carry no deadline of their own. Instead the loop
//! sweeps all of them once every quarter of [`LoopConfig::idle_timeout`]
//! and counts, in one byte per connection, the sweeps since the peer last
//! showed life (bytes arrived, or queued output drained). After three
//! silent sweeps the loop sends a ping; after five it sends close 1001 and
//! drops the connection, reported as [`Ended::IdleTimeout`]. So a silent
//! peer is pinged after between one half and three quarters of the idle
//! timeout, and dropped after between one and one and a quarter times it;
//! a pong in between keeps it open. A connection that sent its close frame
//! and hears nothing back is dropped on the same schedule.
//!
//! # Backpressure
//!
//! Output the transport does not take waits in the connection's queue.
//! [`Context::queued_len`] tells the application how much that is, and
//! [`Handler::on_drain`] when it has drained. Two rules bound it:
//!
//! - a send while the queue (with this callback's output) holds
//!   [`LoopConfig::max_queued`] bytes or more is refused with
//!   [`SendError::QueueFull`], or closes the connection with 1008, as
//!   [`LoopConfig::on_queue_full`] chooses;
//! - the loop stops reading from a connection while its queue holds more
//!   than `max_queued - read_buffer_size` bytes, and resumes once it falls
//!   below, so the automatic answers to what one read brings (pongs, the
//!   close reply) fit in the room left.
//!
//! A peer that never reads therefore holds at most `max_queued` bytes plus
//! one message (the send that crossed the mark) of the server's memory, and
//! the idle sweep drops it, since it shows no life.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use slab::Slab;

use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::{Connection, Event, Input, Message, Role, State};
use crate::error::{Error, HandshakeError, SendError};
use crate::handshake::ClientRequest;
use crate::transport::{Io, Readiness, Token, Transport};

/// Identifies a connection inside one event loop. Keys are reused after a
/// connection ends.
pub type ConnId = usize;

/// What a send does when the connection's queue is at
/// [`LoopConfig::max_queued`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnQueueFull {
    /// The send fails with [`SendError::QueueFull`]; the connection stays
    /// open and the application may retry after [`Handler::on_drain`].
    Reject,
    /// The send fails with [`SendError::QueueFull`] and the connection is
    /// closed with 1008 (policy violation) and dropped, reported as
    /// [`Ended::QueueFull`].
    Close,
}

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
    /// Silence after which an open connection is closed with 1001; it is
    /// pinged halfway there. `None` keeps silent connections forever.
    pub idle_timeout: Option<Duration>,
    /// High-water mark of a connection's output queue, in bytes.
    pub max_queued: usize,
    /// What a send does at the high-water mark.
    pub on_queue_full: OnQueueFull,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            protocol: Config::DEFAULT,
            handshake_timeout: Duration::from_secs(10),
            max_connections: usize::MAX,
            read_buffer_size: 64 * 1024,
            idle_timeout: Some(Duration::from_secs(60)),
            max_queued: 1 << 20,
            on_queue_full: OnQueueFull::Reject,
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
    /// The peer stayed silent past [`LoopConfig::idle_timeout`] (no pong to
    /// the automatic ping, or no answer to this end's close frame); close
    /// 1001 was sent if the connection was still open.
    IdleTimeout,
    /// A send found the queue at [`LoopConfig::max_queued`] under
    /// [`OnQueueFull::Close`]; close 1008 was sent.
    QueueFull,
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
            Ended::QueueFull => CloseCode::POLICY,
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
            Ended::IdleTimeout => f.write_str("peer silent past the idle timeout"),
            Ended::QueueFull => f.write_str("closed: output queue full"),
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

    /// The connection's output queue, which had bytes the transport could
    /// not take, is empty again: a good moment to send what was held back.
    fn on_drain(&mut self, cx: &mut Context<'_>) {
        let _ = cx;
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
    limit: QueueLimit,
    /// Set when a send closed the connection under [`OnQueueFull::Close`].
    overflowed: &'a mut bool,
}

/// The high-water mark and what to do at it, copied into each context.
#[derive(Clone, Copy, Debug)]
struct QueueLimit {
    max_queued: usize,
    on_full: OnQueueFull,
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
        self.check_room()?;
        self.conn.send(message, self.out)
    }

    /// Sends a message handed over by value: a large message that owns
    /// its buffer is sent from that buffer without a copy (see
    /// [`Connection::send_message`]). This is what an echo should use. A
    /// refused message is dropped: to keep it (and send it from
    /// [`Handler::on_drain`]), check [`Context::has_room`] first.
    pub fn send_message(&mut self, message: Message<'_>) -> Result<(), SendError> {
        self.check_room()?;
        self.conn.send_message(message, self.out)
    }

    /// Sends a text message as one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.check_room()?;
        self.conn.send_text(text, self.out)
    }

    /// Sends a binary message as one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check_room()?;
        self.conn.send_binary(data, self.out)
    }

    /// Sends a ping.
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check_room()?;
        self.conn.send_ping(data, self.out)
    }

    /// Starts the close handshake.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.conn.close(code, reason, self.out)
    }

    /// Bytes waiting for the transport to accept them: the connection's
    /// queue plus what this callback sent so far.
    pub fn queued_len(&self) -> usize {
        self.conn.queued_len() + self.out.len()
    }

    /// Whether a data send now would be accepted: the queue is below
    /// [`LoopConfig::max_queued`]. Check it before [`Context::send_message`]
    /// when a refused message must be kept, since that call consumes it.
    pub fn has_room(&self) -> bool {
        self.queued_len() < self.limit.max_queued
    }

    /// Refuses a data send or ping at the high-water mark, closing the
    /// connection first under [`OnQueueFull::Close`]. Sends on a connection
    /// that is not open keep their own error.
    fn check_room(&mut self) -> Result<(), SendError> {
        if self.queued_len() < self.limit.max_queued || self.conn.state() != State::Open {
            return Ok(());
        }
        if self.limit.on_full == OnQueueFull::Close {
            // The close frame goes behind the queue; the peer is not
            // reading it, so input stops here and the loop drops the
            // connection once the frame is flushed or the linger expires.
            let _ = self
                .conn
                .close(CloseCode::POLICY, "output queue full", self.out);
            self.conn.handle_eof();
            *self.overflowed = true;
        }
        Err(SendError::QueueFull)
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
    /// Idle sweeps since the peer last showed life.
    idle: u8,
}

/// Silent sweeps after which an open connection is pinged.
const PING_SWEEPS: u8 = 3;
/// Silent sweeps after which a connection is dropped.
const DROP_SWEEPS: u8 = 5;
/// Sweeps per idle timeout.
const SWEEPS_PER_TIMEOUT: u32 = 4;

/// Drives connections over a [`Transport`] and calls a [`Handler`].
pub struct EventLoop<T: Transport, H> {
    transport: T,
    handler: H,
    config: LoopConfig,
    slots: Slab<Slot<T::Stream>>,
    read_buf: Vec<u8>,
    out: Vec<u8>,
    events: Vec<Readiness>,
    deadlines: VecDeque<(Duration, usize, u32)>,
    /// When the idle sweep runs next, if there is an idle timeout.
    next_sweep: Option<Duration>,
    /// Set by a [`Context`] whose send closed its connection.
    overflowed: bool,
    next_serial: u32,
    accepting: bool,
    /// When to try the listener again after a failed accept.
    accept_retry: Option<Duration>,
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

/// How long after a failed accept (out of file descriptors, most often)
/// the loop tries the listener again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

impl<T: Transport, H: Handler> EventLoop<T, H> {
    /// A loop over `transport` calling `handler`.
    pub fn new(transport: T, handler: H, config: LoopConfig) -> Self {
        let next_sweep = config
            .idle_timeout
            .map(|idle| transport.now() + sweep_period(idle));
        EventLoop {
            next_sweep,
            overflowed: false,
            read_buf: vec![0; config.read_buffer_size.max(1)],
            transport,
            handler,
            config,
            slots: Slab::new(),
            out: Vec::new(),
            events: Vec::with_capacity(1024),
            deadlines: VecDeque::new(),
            next_serial: 0,
            accepting: true,
            accept_retry: None,
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

    /// Bytes of loop state per connection at rest (its slot in the slab;
    /// the slab's own vacant/occupied tag fits in the slot's unused bit
    /// patterns), not counting what the connection holds on the heap while
    /// something is partial or queued.
    pub fn bytes_per_connection() -> usize {
        core::mem::size_of::<Slot<T::Stream>>()
    }

    /// Deadlines still queued: handshakes under way and closed connections
    /// lingering to flush (stale entries may remain behind a waiting one
    /// until it resolves).
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
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
            idle: 0,
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
            limit: QueueLimit::of(&self.config),
            overflowed: &mut self.overflowed,
        };
        let result = f(&mut self.handler, &mut cx);
        self.flush(id);
        self.end_if_overflowed(id);
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

        if self
            .accept_retry
            .is_some_and(|at| at <= self.transport.now())
        {
            self.accept_all();
        }
        self.expire_deadlines();
        self.sweep_idle();
        Ok(())
    }

    fn next_serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1) & !(LINGER_BIT | DRAIN_BIT);
        self.next_serial
    }

    fn push_deadline(&mut self, key: usize, serial: u32) {
        let at = self.transport.now() + self.config.handshake_timeout;
        self.deadlines.push_back((at, key, serial));
    }

    fn timeout_until_deadline(&self, timeout: Option<Duration>) -> Option<Duration> {
        let deadline = self.deadlines.front().map(|&(at, _, _)| at);
        // The sweep matters only while there are connections to sweep.
        let sweep = self.next_sweep.filter(|_| !self.slots.is_empty());
        let next = [deadline, sweep, self.accept_retry]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            return timeout;
        };
        let until = next.saturating_sub(self.transport.now());
        Some(timeout.map_or(until, |t| t.min(until)))
    }

    /// Counts one silent sweep on every open or closing connection, pings
    /// those silent for [`PING_SWEEPS`] and drops those silent for
    /// [`DROP_SWEEPS`]. Runs once per quarter of the idle timeout.
    fn sweep_idle(&mut self) {
        let (Some(idle), Some(at)) = (self.config.idle_timeout, self.next_sweep) else {
            return;
        };
        let now = self.transport.now();
        if now < at {
            return;
        }
        self.next_sweep = Some(now + sweep_period(idle));

        // Walking the keys by index needs no allocation; vacant keys are
        // skipped.
        for key in 0..self.slots.capacity() {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let state = slot.conn.state();
            if slot.serial & LINGER_BIT != 0 || !matches!(state, State::Open | State::Closing) {
                continue;
            }
            slot.idle = slot.idle.saturating_add(1);
            if slot.idle >= DROP_SWEEPS {
                if state == State::Open {
                    // Only fails on a connection that is not open.
                    let _ = slot
                        .conn
                        .close(CloseCode::GOING_AWAY, "idle timeout", &mut self.out);
                }
                slot.conn.handle_eof();
                self.flush(key);
                self.linger_or_end(key, Ended::IdleTimeout);
            } else if slot.idle == PING_SWEEPS && state == State::Open {
                let _ = slot.conn.send_ping(b"", &mut self.out);
                self.flush(key);
            }
        }
    }

    fn expire_deadlines(&mut self) {
        let now = self.transport.now();
        while let Some(&(at, key, serial)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();

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

    /// Drops deadlines at the front of the queue whose connection is gone
    /// or no longer waits (its handshake completed), and gives back memory
    /// the queue no longer needs.
    fn prune_deadlines(&mut self) {
        while let Some(&(_, key, serial)) = self.deadlines.front() {
            let waiting = self.slots.get(key).is_some_and(|slot| {
                slot.serial == serial
                    && matches!(slot.conn.state(), State::Handshake | State::Closed)
            });
            if waiting {
                break;
            }
            self.deadlines.pop_front();
        }
        if self.deadlines.capacity() > 64 && self.deadlines.len() < self.deadlines.capacity() / 4 {
            self.deadlines.shrink_to(self.deadlines.len() * 2);
        }
    }

    fn accept_all(&mut self) {
        self.accept_retry = None;
        while self.accepting {
            let stream = match self.transport.accept() {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(_) => {
                    // Most often out of file descriptors. The waiting
                    // connection stays in the backlog, and an edge-triggered
                    // listener reports nothing new until another one
                    // arrives: retry on a timer instead.
                    self.stats.accept_errors += 1;
                    self.accept_retry = Some(self.transport.now() + ACCEPT_RETRY);
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
            idle: 0,
        });
        self.push_deadline(key, serial);
    }

    /// Reads connection `key` until a read leaves its buffer unfilled
    /// (everything waiting was taken: a syscall that would only say "would
    /// block" is saved) or, after a `hangup`, until the end of the stream.
    /// Reading pauses while the output queue is above its mark.
    fn on_readable(&mut self, key: usize, hangup: bool) {
        self.read_input(key, hangup, self.pause_at());
    }

    /// [`EventLoop::on_readable`] with the queue length above which reading
    /// pauses.
    fn read_input(&mut self, key: usize, hangup: bool, pause_at: usize) {
        loop {
            let Some(slot) = self.slots.get_mut(key) else {
                return;
            };
            if slot.conn.state() == State::Closed {
                // Lingering to flush: input is no longer of interest, but
                // a failed connection drains it (see `DRAIN_BIT`).
                if slot.serial & DRAIN_BIT != 0 {
                    self.discard_input(key);
                }
                return;
            }
            // Only servers pause: a client that stopped reading while its
            // own large sends wait could deadlock with a server that
            // stopped reading while its echoes wait.
            if slot.conn.role() == Role::Server && slot.conn.queued_len() > pause_at {
                // Backpressure: the input stays in the transport until the
                // queue drains (see `on_writable`).
                return;
            }
            let read = self.transport.read(&mut slot.stream, &mut self.read_buf);
            match read {
                Ok(Io::Done(n)) => {
                    slot.idle = 0;
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
            overflowed,
            ..
        } = self;
        let limit = QueueLimit::of(config);
        let slot = &mut slots[key];
        let mut input = Input::new(&mut read_buf[..n]);

        let mut ended = None;
        let mut opened = false;
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
                limit,
                overflowed,
            };
            match event {
                Event::Open => {
                    stats.opened += 1;
                    opened = true;
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

        if opened {
            self.prune_deadlines();
        }

        // A peer that sent its close (or broke the protocol) and then reset
        // the stream is reported for what it sent, not for the failed
        // answer.
        let flushed = self.try_flush(key);
        if let Err(e) = flushed {
            match &ended {
                None => self.end(key, Ended::Transport(&e)),
                Some(Ok(code)) => self.end(key, Ended::Closed(*code)),
                Some(Err(error)) => self.end(key, Ended::Failed(error)),
            }
            self.overflowed = false;
            return false;
        }
        if self.end_if_overflowed(key) {
            return false;
        }
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
        let pause_at = self.pause_at();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let before = slot.conn.queued_len();
        while !slot.conn.queued().is_empty() {
            match self
                .transport
                .write(&mut slot.stream, &[slot.conn.queued()])
            {
                Ok(Io::Done(n)) => {
                    // The peer took bytes that had waited: it is alive.
                    slot.conn.advance_queued(n);
                    slot.idle = 0;
                }
                Ok(Io::WouldBlock | Io::Closed) => break,
                Err(e) => {
                    self.end_on_write_error(key, e);
                    return;
                }
            }
        }
        let after = slot.conn.queued_len();
        if after > 0 {
            if before > pause_at && after <= pause_at {
                self.on_readable(key, true);
            }
            return;
        }

        if slot.writable {
            slot.writable = false;
            if let Err(e) = self.transport.set_writable(&mut slot.stream, key, false) {
                self.end(key, Ended::Transport(&e));
                return;
            }
        }
        match slot.conn.state() {
            // A failed connection's answer is out: shut the sending side
            // and drain until the peer ends the stream.
            State::Closed if slot.serial & DRAIN_BIT != 0 => {
                if !self.transport.shutdown_write(&mut slot.stream) {
                    self.end(key, Ended::Abnormal);
                }
            }
            State::Closed => self.end(key, Ended::Closed(CloseCode::NORMAL)),
            State::Open if before > 0 => self.drained(key, before > pause_at),
            _ if before > pause_at => self.on_readable(key, true),
            State::Handshake | State::Open | State::Closing => {}
        }
    }

    /// Tells the handler that connection `key`'s queue drained, sends what
    /// it answers, and resumes reading if reading had paused.
    fn drained(&mut self, key: usize, was_paused: bool) {
        let slot = &mut self.slots[key];
        let mut cx = Context {
            id: key,
            conn: &mut slot.conn,
            out: &mut self.out,
            limit: QueueLimit::of(&self.config),
            overflowed: &mut self.overflowed,
        };
        self.handler.on_drain(&mut cx);
        self.flush(key);
        if self.end_if_overflowed(key) {
            return;
        }
        self.end_if_closed(key);
        if was_paused {
            self.on_readable(key, true);
        }
    }

    /// Queue length above which a server connection's reading pauses:
    /// room is left for the automatic answers to one full read.
    fn pause_at(&self) -> usize {
        self.config
            .max_queued
            .saturating_sub(self.config.read_buffer_size)
    }

    /// Drops connection `key` if a send in the last callback closed it at
    /// the high-water mark. Returns whether it did.
    fn end_if_overflowed(&mut self, key: usize) -> bool {
        if !core::mem::take(&mut self.overflowed) {
            return false;
        }
        self.linger_or_end(key, Ended::QueueFull);
        true
    }

    /// Transmits the shared output buffer for connection `key`: straight to
    /// the transport when nothing is queued before it, into the
    /// connection's queue otherwise (and for whatever the transport did not
    /// take), with writable interest on while anything is queued.
    fn flush(&mut self, key: usize) {
        if let Err(e) = self.try_flush(key) {
            self.end_on_write_error(key, e);
        }
    }

    /// A write to connection `key` failed. A peer that refused a message
    /// (too big, say) sends its close frame and drops the stream while
    /// this end is still writing: read what it sent first, so the end is
    /// reported as its close code rather than as a broken pipe.
    fn end_on_write_error(&mut self, key: usize, error: T::Error) {
        let framing = self
            .slots
            .get(key)
            .is_some_and(|slot| matches!(slot.conn.state(), State::Open | State::Closing));
        if framing {
            // Whatever is queued will never be sent: read past the mark.
            self.read_input(key, true, usize::MAX);
        }
        self.end(key, Ended::Transport(&error));
    }

    /// [`EventLoop::flush`] leaving the connection alive on a transport
    /// error, for a caller that reports the end itself.
    fn try_flush(&mut self, key: usize) -> Result<(), T::Error> {
        let result = self.write_out(key);
        self.clear_out();
        result
    }

    fn write_out(&mut self, key: usize) -> Result<(), T::Error> {
        let Some(slot) = self.slots.get_mut(key) else {
            return Ok(());
        };

        let mut stream_full = false;
        if !self.out.is_empty() {
            let mut written = 0;
            if slot.conn.queued().is_empty() {
                match self.transport.write(&mut slot.stream, &[&self.out])? {
                    Io::Done(n) => written = n,
                    Io::WouldBlock | Io::Closed => {}
                }
                stream_full = written < self.out.len();
            }
            slot.conn.queue(&self.out[written..]);
        }
        if slot.writable || slot.conn.queued().is_empty() {
            return Ok(());
        }

        // Writable interest is off, so nothing else will write the queue:
        // it holds a large frame encoded there directly (or the rest of
        // `out`). One attempt now unless the stream just said it is full.
        while !stream_full && !slot.conn.queued().is_empty() {
            match self
                .transport
                .write(&mut slot.stream, &[slot.conn.queued()])?
            {
                Io::Done(n) => slot.conn.advance_queued(n),
                Io::WouldBlock | Io::Closed => stream_full = true,
            }
        }
        if !slot.conn.queued().is_empty() {
            slot.writable = true;
            self.transport.set_writable(&mut slot.stream, key, true)?;
        }
        Ok(())
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
        let drain = matches!(ended, Ended::Failed(Error::Protocol(_)));
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.conn.queued().is_empty() && !drain {
            self.end(key, ended);
            return;
        }
        if slot.serial & LINGER_BIT != 0 {
            // Already lingering, its end reported.
            return;
        }
        // Report the end now; the slot stays only to flush the answer (and,
        // after a failure, to drain), and the marked serial keeps the end
        // from being reported twice.
        self.handler.on_close(key, ended);
        let mut serial = self.next_serial() | LINGER_BIT;
        if drain {
            serial |= DRAIN_BIT;
        }
        let slot = &mut self.slots[key];
        slot.serial = serial;
        if drain
            && slot.conn.queued().is_empty()
            && !self.transport.shutdown_write(&mut slot.stream)
        {
            self.end(key, Ended::Abnormal);
            return;
        }
        self.push_deadline(key, serial);
    }

    /// Reads and drops the input of a failed connection until the peer ends
    /// the stream; a bounded amount per readiness report, so a peer that
    /// keeps sending cannot hold the loop (new bytes are a new report).
    fn discard_input(&mut self, key: usize) {
        for _ in 0..DRAIN_READS {
            let Some(slot) = self.slots.get_mut(key) else {
                return;
            };
            match self.transport.read(&mut slot.stream, &mut self.read_buf) {
                Ok(Io::Done(_)) => {}
                Ok(Io::WouldBlock) => return,
                Ok(Io::Closed) | Err(_) => {
                    self.end(key, Ended::Abnormal);
                    return;
                }
            }
        }
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

/// Set in a slot's serial while a failed connection drains: its answer (a
/// close frame naming the failure) is sent and its sending side shut, and
/// its input is read and dropped until the peer ends the stream or the
/// linger deadline passes. Closing at once would make the kernel answer
/// the unread input with a reset, which can destroy the close frame before
/// the peer reads it.
const DRAIN_BIT: u32 = 1 << 30;

/// Reads a draining connection gets per readiness report.
const DRAIN_READS: usize = 16;

/// Time between two idle sweeps.
fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / SWEEPS_PER_TIMEOUT).max(Duration::from_millis(1))
}

impl QueueLimit {
    fn of(config: &LoopConfig) -> Self {
        QueueLimit {
            max_queued: config.max_queued,
            on_full: config.on_queue_full,
        }
    }
}
