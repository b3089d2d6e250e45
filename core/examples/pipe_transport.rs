//! A third transport, written only against tern-core's public API: byte
//! pipes inside one process, with a simulated clock.
//!
//! Two [`PipeTransport`]s, one per side, share a [`Network`]: the server
//! side owns a listener backlog, the client side connects into it. Each
//! pipe has a capacity per direction, so writes can be partial and
//! writable interest matters, as with real sockets. When nothing is ready
//! and the caller asked to wait, the simulated clock jumps forward by the
//! timeout instead of sleeping, which makes deadline behaviour testable
//! without waiting.
//!
//! Run it with `cargo run -p tern-core --example pipe_transport`: it runs
//! the echo application over the pipes and prints what came back.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use tern_core::transport::{Io, Readiness, Token, Transport};
use tern_core::{ClientRequest, Context, Ended, EventLoop, Handler, LoopConfig, Message};

/// One direction of a pipe.
#[derive(Debug, Default)]
struct Direction {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// A connected pair of directions: `up` carries client to server.
#[derive(Debug, Default)]
struct Pipe {
    up: Direction,
    down: Direction,
}

/// Everything both sides share.
#[derive(Debug)]
pub struct Network {
    pipes: Vec<Pipe>,
    backlog: VecDeque<usize>,
    now: Duration,
    capacity: usize,
}

impl Network {
    /// A network whose pipes hold at most `capacity` bytes per direction.
    pub fn new(capacity: usize) -> Rc<RefCell<Network>> {
        Rc::new(RefCell::new(Network {
            pipes: Vec::new(),
            backlog: VecDeque::new(),
            now: Duration::ZERO,
            capacity,
        }))
    }

    /// Advances the simulated clock.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }
}

/// Which end of the pipes a transport is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// Accepts from the backlog; reads `up`, writes `down`.
    Server,
    /// Connects into the backlog; reads `down`, writes `up`.
    Client,
}

/// One end of a pipe, as the event loop holds it.
#[derive(Debug)]
pub struct PipeEnd {
    pipe: usize,
    key: Option<usize>,
}

/// The error type: pipes fail only when the peer went away mid-write.
#[derive(Debug)]
pub struct PipeError(&'static str);

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The transport of one side.
#[derive(Debug)]
pub struct PipeTransport {
    net: Rc<RefCell<Network>>,
    side: Side,
    /// Registered streams: key to (pipe, writable interest).
    registered: BTreeMap<usize, (usize, bool)>,
}

impl PipeTransport {
    /// The transport of `side` on `net`.
    pub fn new(net: &Rc<RefCell<Network>>, side: Side) -> Self {
        PipeTransport {
            net: Rc::clone(net),
            side,
            registered: BTreeMap::new(),
        }
    }

    fn split(side: Side, pipe: &mut Pipe) -> (&mut Direction, &mut Direction) {
        match side {
            Side::Server => (&mut pipe.up, &mut pipe.down),
            Side::Client => (&mut pipe.down, &mut pipe.up),
        }
    }
}

impl Transport for PipeTransport {
    type Stream = PipeEnd;
    type Addr = ();
    type Error = PipeError;

    fn poll(
        &mut self,
        events: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> Result<(), PipeError> {
        let mut net = self.net.borrow_mut();
        let capacity = net.capacity;
        if self.side == Side::Server && !net.backlog.is_empty() {
            events.push(Readiness {
                token: Token::Listener,
                readable: true,
                writable: false,
                hangup: false,
            });
        }
        // Level-triggered: every ready stream is reported on every poll,
        // which the seam allows (it only repeats work).
        for (&key, &(pipe, writable)) in &self.registered {
            let (incoming, outgoing) = Self::split(self.side, &mut net.pipes[pipe]);
            let readable = !incoming.bytes.is_empty() || incoming.closed;
            let writable = writable && (outgoing.bytes.len() < capacity || outgoing.closed);
            if readable || writable {
                events.push(Readiness {
                    token: Token::Stream(key),
                    readable,
                    writable,
                    hangup: incoming.closed,
                });
            }
        }
        if events.is_empty() {
            if let Some(wait) = timeout {
                net.advance(wait);
            }
        }
        Ok(())
    }

    fn now(&self) -> Duration {
        self.net.borrow().now
    }

    fn accept(&mut self) -> Result<Option<PipeEnd>, PipeError> {
        if self.side != Side::Server {
            return Ok(None);
        }
        let pipe = self.net.borrow_mut().backlog.pop_front();
        Ok(pipe.map(|pipe| PipeEnd { pipe, key: None }))
    }

    fn connect(&mut self, _: &()) -> Result<PipeEnd, PipeError> {
        let mut net = self.net.borrow_mut();
        net.pipes.push(Pipe::default());
        let pipe = net.pipes.len() - 1;
        net.backlog.push_back(pipe);
        Ok(PipeEnd { pipe, key: None })
    }

    fn register(
        &mut self,
        stream: &mut PipeEnd,
        key: usize,
        writable: bool,
    ) -> Result<(), PipeError> {
        stream.key = Some(key);
        self.registered.insert(key, (stream.pipe, writable));
        Ok(())
    }

    fn set_writable(
        &mut self,
        stream: &mut PipeEnd,
        key: usize,
        writable: bool,
    ) -> Result<(), PipeError> {
        self.registered.insert(key, (stream.pipe, writable));
        Ok(())
    }

    fn read(&mut self, stream: &mut PipeEnd, buf: &mut [u8]) -> Result<Io, PipeError> {
        let mut net = self.net.borrow_mut();
        let (incoming, _) = Self::split(self.side, &mut net.pipes[stream.pipe]);
        if incoming.bytes.is_empty() {
            return Ok(if incoming.closed {
                Io::Closed
            } else {
                Io::WouldBlock
            });
        }
        let n = buf.len().min(incoming.bytes.len());
        for (slot, byte) in buf.iter_mut().zip(incoming.bytes.drain(..n)) {
            *slot = byte;
        }
        Ok(Io::Done(n))
    }

    fn write(&mut self, stream: &mut PipeEnd, bufs: &[&[u8]]) -> Result<Io, PipeError> {
        let mut net = self.net.borrow_mut();
        let capacity = net.capacity;
        let (incoming, outgoing) = Self::split(self.side, &mut net.pipes[stream.pipe]);
        if incoming.closed && outgoing.closed {
            return Err(PipeError("pipe closed by the peer"));
        }
        let room = capacity.saturating_sub(outgoing.bytes.len());
        let mut written = 0;
        for buf in bufs {
            let take = buf.len().min(room - written);
            outgoing.bytes.extend(&buf[..take]);
            written += take;
        }
        Ok(if written == 0 {
            Io::WouldBlock
        } else {
            Io::Done(written)
        })
    }

    fn close(&mut self, stream: PipeEnd) {
        if let Some(key) = stream.key {
            self.registered.remove(&key);
        }
        let mut net = self.net.borrow_mut();
        let (incoming, outgoing) = Self::split(self.side, &mut net.pipes[stream.pipe]);
        outgoing.closed = true;
        incoming.closed = true;
    }
}

/// The echo application: every message goes back as it came.
#[derive(Debug, Default)]
pub struct Echo {
    /// Connections that ended, with the close code they ended with.
    pub ended: Vec<(usize, u16)>,
}

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        // A send fails when the peer is closing (nothing to answer) or when
        // it has not read the last megabyte of echoes (`QueueFull`): this
        // small example then drops the echo; the Unix-socket example keeps
        // it and sends it from `on_drain`.
        let _ = cx.send_message(message);
    }

    fn on_close(&mut self, id: usize, ended: Ended<'_>) {
        self.ended.push((id, ended.code().0));
    }
}

/// A client that sends its messages one at a time and keeps the echoes.
#[derive(Debug, Default)]
pub struct Client {
    /// Messages still to send.
    pub to_send: VecDeque<String>,
    /// Echoes received, in order.
    pub received: Vec<String>,
    /// Whether the connection ended.
    pub closed: bool,
}

impl Client {
    fn send_next(&mut self, cx: &mut Context<'_>) {
        match self.to_send.pop_front() {
            Some(text) => cx.send_text(&text).expect("connection is open"),
            None => cx
                .close(tern_core::CloseCode::NORMAL, "done")
                .expect("connection is open"),
        }
    }
}

impl Handler for Client {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.send_next(cx);
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        if let Message::Text(text) = message {
            self.received.push(text.into_owned());
        }
        self.send_next(cx);
    }

    fn on_close(&mut self, _: usize, _: Ended<'_>) {
        self.closed = true;
    }
}

/// Runs a client through an echo server over pipes of `capacity` bytes,
/// stepping both loops by hand, and returns the client's echoes.
pub fn echo_over_pipes(messages: &[&str], capacity: usize) -> Vec<String> {
    let net = Network::new(capacity);
    let config = LoopConfig::default();
    let mut server = EventLoop::new(
        PipeTransport::new(&net, Side::Server),
        Echo::default(),
        config.clone(),
    );
    let mut client = EventLoop::new(
        PipeTransport::new(&net, Side::Client),
        Client::default(),
        config,
    );
    client.handler_mut().to_send = messages.iter().map(|m| m.to_string()).collect();
    let request = ClientRequest {
        host: "pipe",
        path: "/",
        protocols: &[],
    };
    client
        .connect(&(), &request, 0x5eed)
        .expect("pipes always connect");

    // Bounded: each step moves bytes, and the exchange needs a few steps
    // per message.
    for _ in 0..10_000 {
        if client.handler().closed && server.is_empty() {
            break;
        }
        client
            .run_once(Some(Duration::ZERO))
            .expect("pipes never fail to poll");
        server
            .run_once(Some(Duration::ZERO))
            .expect("pipes never fail to poll");
    }
    core::mem::take(&mut client.handler_mut().received)
}

#[allow(dead_code)]
fn main() {
    let echoes = echo_over_pipes(&["hello", "over", "pipes"], 64 * 1024);
    println!("echoed over in-process pipes: {echoes:?}");
}
