//! WebSocket over Unix domain sockets: a third transport for tern-core.
//!
//! `UnixTransport` implements [`Transport`] with non-blocking
//! `std::os::unix::net` sockets and a `poll(2)` loop. `poll` is level
//! triggered, but the loop expects edge-triggered reports and sometimes
//! leaves a ready stream or listener alone on purpose (reading paused
//! under backpressure, accepting stopped or failed). So after reporting a
//! stream readable the transport stops watching it for input until the
//! loop calls `read` on it again, and the same for the listener and
//! `accept`; otherwise `poll` would return at once, forever. The example runs the echo application
//! as a server on a socket path under a fresh temporary directory and a
//! client on the main thread that sends text and a 200 KB binary message,
//! checks the echoes and closes with 1000.
//!
//! Known shortcomings, written where they matter below:
//! - `connect` is the blocking `connect(2)` of std; on a Unix socket it
//!   completes at once unless the listener's backlog is full, when it waits
//!   for the server to accept.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tern_core::{
    ClientRequest, CloseCode, ConnId, Context, Ended, EventLoop, Handler, Io, LoopConfig,
    LoopStats, Message, Readiness, SendError, Token, Transport,
};

/// A failure of the Unix socket transport.
#[derive(Debug)]
pub enum UnixError {
    /// The listening socket could not be bound to its path.
    Bind(PathBuf, io::Error),
    /// No server accepted a connection at this path.
    Connect(PathBuf, io::Error),
    /// `poll(2)` failed: fatal to the loop.
    Poll(io::Error),
    /// Accepting from the listener failed.
    Accept(io::Error),
    /// A read, write or option call on one stream failed.
    Stream(io::Error),
}

impl fmt::Display for UnixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixError::Bind(path, e) => write!(f, "cannot listen on {}: {e}", path.display()),
            UnixError::Connect(path, e) => write!(f, "cannot connect to {}: {e}", path.display()),
            UnixError::Poll(e) => write!(f, "poll failed: {e}"),
            UnixError::Accept(e) => write!(f, "accept failed: {e}"),
            UnixError::Stream(e) => write!(f, "stream i/o failed: {e}"),
        }
    }
}

impl std::error::Error for UnixError {}

/// Wakes a [`UnixTransport`]'s `poll` from another thread.
#[derive(Debug)]
pub struct Waker(UnixStream);

impl Waker {
    /// Makes the transport's next (or current) `poll` report `Token::Waker`.
    pub fn wake(&self) -> io::Result<()> {
        match (&self.0).write(&[1]) {
            // A full socket means a wake-up is already pending.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other.map(drop),
        }
    }
}

/// What the transport knows of one registered stream.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: usize,
    writable: bool,
    /// Input is watched: off from a readable report until the next `read`.
    readable: bool,
}

/// Unix domain stream sockets behind `poll(2)`.
#[derive(Debug)]
pub struct UnixTransport {
    listener: Option<UnixListener>,
    /// Whether the listener is watched: off from a report until `accept`.
    listener_armed: bool,
    wake_rx: UnixStream,
    /// Per file descriptor of a registered stream: its key and interest.
    slots: Vec<Option<Slot>>,
    /// Scratch for `poll`: descriptors and the token each one reports as.
    fds: Vec<libc::pollfd>,
    tokens: Vec<Token>,
    start: Instant,
}

impl UnixTransport {
    /// A transport without a listener (for clients), and its waker.
    pub fn new() -> Result<(Self, Waker), UnixError> {
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(UnixError::Stream)?;
        wake_tx.set_nonblocking(true).map_err(UnixError::Stream)?;
        wake_rx.set_nonblocking(true).map_err(UnixError::Stream)?;
        let transport = UnixTransport {
            listener: None,
            listener_armed: true,
            wake_rx,
            slots: Vec::new(),
            fds: Vec::new(),
            tokens: Vec::new(),
            start: Instant::now(),
        };
        Ok((transport, Waker(wake_tx)))
    }

    /// A transport listening on `path`, which must not exist yet.
    pub fn bind(path: &Path) -> Result<(Self, Waker), UnixError> {
        let bind_err = |e| UnixError::Bind(path.to_owned(), e);
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let (mut transport, waker) = Self::new()?;
        transport.listener = Some(listener);
        Ok((transport, waker))
    }

    fn watch(&mut self, fd: RawFd, events: libc::c_short, token: Token) {
        let revents = 0;
        self.fds.push(libc::pollfd {
            fd,
            events,
            revents,
        });
        self.tokens.push(token);
    }

    /// Empties the waker socket so that `poll` stops reporting it.
    fn drain_waker(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Milliseconds for `poll(2)`, rounded up so that a deadline is not missed
/// by a loop of zero-timeout polls; `-1` waits without limit.
fn poll_millis(timeout: Option<Duration>) -> libc::c_int {
    let Some(timeout) = timeout else { return -1 };
    let millis = timeout.as_micros().div_ceil(1000);
    millis.min(libc::c_int::MAX as u128) as libc::c_int
}

impl Transport for UnixTransport {
    type Stream = UnixStream;
    type Addr = Path;
    type Error = UnixError;

    fn poll(
        &mut self,
        events: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> Result<(), UnixError> {
        self.fds.clear();
        self.tokens.clear();
        if let (Some(listener), true) = (&self.listener, self.listener_armed) {
            let fd = listener.as_raw_fd();
            self.watch(fd, libc::POLLIN, Token::Listener);
        }
        self.watch(self.wake_rx.as_raw_fd(), libc::POLLIN, Token::Waker);
        for fd in 0..self.slots.len() {
            let Some(slot) = self.slots[fd] else {
                continue;
            };
            let read = if slot.readable { libc::POLLIN } else { 0 };
            let write = if slot.writable { libc::POLLOUT } else { 0 };
            // Left out entirely: poll(2) reports a hangup even for no events.
            if read | write != 0 {
                self.watch(fd as RawFd, read | write, Token::Stream(slot.key));
            }
        }

        let nfds = self.fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a live, exclusively borrowed array of `nfds`
        // pollfd structs; poll(2) writes only their `revents` fields.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), nfds, poll_millis(timeout)) };
        if n < 0 {
            let e = io::Error::last_os_error();
            // A signal cut the wait short: report nothing, the loop polls again.
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(UnixError::Poll(e));
        }

        for i in 0..self.fds.len() {
            let revents = self.fds[i].revents;
            if revents == 0 {
                continue;
            }
            let token = self.tokens[i];
            // The peer closed, the socket failed, or (a bug) the fd is stale:
            // `read` tells which, so report it readable with `hangup`.
            let hangup = revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
            let wants_write = self.fds[i].events & libc::POLLOUT != 0;
            let readable = revents & libc::POLLIN != 0 || hangup;
            match token {
                Token::Waker => self.drain_waker(),
                Token::Listener => self.listener_armed = false,
                Token::Stream(_) if readable => {
                    let fd = self.fds[i].fd as usize;
                    if let Some(slot) = &mut self.slots[fd] {
                        slot.readable = false;
                    }
                }
                Token::Stream(_) => {}
            }
            events.push(Readiness {
                token,
                readable,
                writable: revents & libc::POLLOUT != 0 || (hangup && wants_write),
                hangup,
            });
        }
        Ok(())
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn accept(&mut self) -> Result<Option<UnixStream>, UnixError> {
        let Some(listener) = &self.listener else {
            return Ok(None);
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true).map_err(UnixError::Accept)?;
                    return Ok(Some(stream));
                }
                // Drained: watch the listener again. After an `Err` it stays
                // unwatched; the loop retries `accept` on its own timer.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_armed = true;
                    return Ok(None);
                }
                // The client gave up before we took it, or a signal came: next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnixError::Accept(e)),
            }
        }
    }

    fn connect(&mut self, addr: &Path) -> Result<UnixStream, UnixError> {
        let connect_err = |e| UnixError::Connect(addr.to_owned(), e);
        // Blocking connect: immediate on a Unix socket unless the backlog is
        // full. The stream is then writable at once, which the loop expects.
        let stream = UnixStream::connect(addr).map_err(connect_err)?;
        stream.set_nonblocking(true).map_err(connect_err)?;
        Ok(stream)
    }

    fn register(
        &mut self,
        stream: &mut UnixStream,
        key: usize,
        writable: bool,
    ) -> Result<(), UnixError> {
        let fd = stream.as_raw_fd() as usize;
        if self.slots.len() <= fd {
            self.slots.resize(fd + 1, None);
        }
        let readable = true;
        self.slots[fd] = Some(Slot {
            key,
            writable,
            readable,
        });
        Ok(())
    }

    fn set_writable(
        &mut self,
        stream: &mut UnixStream,
        _key: usize,
        writable: bool,
    ) -> Result<(), UnixError> {
        if let Some(Some(slot)) = self.slots.get_mut(stream.as_raw_fd() as usize) {
            slot.writable = writable;
        }
        Ok(())
    }

    fn read(&mut self, stream: &mut UnixStream, buf: &mut [u8]) -> Result<Io, UnixError> {
        // The loop reads again: watch for input again.
        if let Some(Some(slot)) = self.slots.get_mut(stream.as_raw_fd() as usize) {
            slot.readable = true;
        }
        loop {
            return match stream.read(buf) {
                Ok(0) => Ok(Io::Closed),
                Ok(n) => Ok(Io::Done(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(UnixError::Stream(e)),
            };
        }
    }

    fn write(&mut self, stream: &mut UnixStream, bufs: &[&[u8]]) -> Result<Io, UnixError> {
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        // Nothing to write is not "would block": report zero bytes moved.
        if slices.iter().all(|s| s.is_empty()) {
            return Ok(Io::Done(0));
        }
        loop {
            return match stream.write_vectored(&slices) {
                Ok(0) => Err(UnixError::Stream(io::ErrorKind::WriteZero.into())),
                Ok(n) => Ok(Io::Done(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Rust's runtime ignores SIGPIPE, so a closed peer is EPIPE here.
                Err(e) => Err(UnixError::Stream(e)),
            };
        }
    }

    fn shutdown_write(&mut self, stream: &mut UnixStream) -> bool {
        stream.shutdown(Shutdown::Write).is_ok()
    }

    fn close(&mut self, stream: UnixStream) {
        if let Some(slot) = self.slots.get_mut(stream.as_raw_fd() as usize) {
            *slot = None;
        }
        // Dropping closes the fd; bytes written already stay readable by the peer.
        drop(stream);
    }
}

/// The echo application: every message goes back as it came, in order.
///
/// A send at the loop's high-water mark is refused and `send_message`
/// consumes its message, so a message that arrives while the queue is at
/// the mark waits here until [`Handler::on_drain`]. The loop stops reading
/// while the queue is that full, so this backlog holds at most what one
/// read completed. Shortcoming: if one callback's own output reaches the
/// mark and the transport then takes all of it at once, no drain follows,
/// and held messages wait for the next message to arrive.
#[derive(Debug)]
pub struct Echo {
    max_queued: usize,
    held: std::collections::HashMap<ConnId, std::collections::VecDeque<Message<'static>>>,
}

impl Echo {
    /// An echo for a loop whose queue mark is `max_queued`.
    pub fn new(max_queued: usize) -> Echo {
        Echo {
            max_queued,
            held: Default::default(),
        }
    }

    /// Sends held messages of `cx` while the queue has room.
    fn send_held(&mut self, cx: &mut Context<'_>) {
        let Some(held) = self.held.get_mut(&cx.id()) else {
            return;
        };
        while cx.queued_len() < self.max_queued {
            let Some(message) = held.pop_front() else {
                break;
            };
            if let Err(e) = cx.send_message(message) {
                // Not open any more (closing): nothing is owed to the peer.
                let _ = e;
                break;
            }
        }
        if held.is_empty() {
            self.held.remove(&cx.id());
        }
    }
}

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let waiting = self.held.contains_key(&cx.id());
        if !waiting && cx.queued_len() < self.max_queued {
            // Below the mark the send is taken; an error means the
            // connection is closing, when an echo is no longer owed.
            let _ = cx.send_message(message);
            return;
        }
        let held = self.held.entry(cx.id()).or_default();
        held.push_back(message.into_owned());
        self.send_held(cx);
    }

    fn on_drain(&mut self, cx: &mut Context<'_>) {
        self.send_held(cx);
    }

    fn on_close(&mut self, id: ConnId, _ended: Ended<'_>) {
        self.held.remove(&id);
    }
}

/// An echo server running on its own thread.
#[derive(Debug)]
pub struct Server {
    waker: Waker,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<Result<LoopStats, UnixError>>,
}

impl Server {
    /// Binds `path` and serves the echo application until [`Server::stop`].
    pub fn start(path: &Path) -> Result<Server, UnixError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (transport, waker) = UnixTransport::bind(path)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let config = LoopConfig::default();
            let echo = Echo::new(config.max_queued);
            let mut server = EventLoop::new(transport, echo, config);
            while !flag.load(Ordering::Acquire) {
                server.run_once(None)?;
            }
            // Graceful shutdown, bounded by the linger deadline of the loop.
            server.close_all(CloseCode::GOING_AWAY, "server stopping");
            let deadline = server.transport().now() + Duration::from_secs(5);
            while !server.is_empty() && server.transport().now() < deadline {
                server.run_once(Some(Duration::from_millis(50)))?;
            }
            Ok(server.stats())
        });
        Ok(Server {
            waker,
            stop,
            thread,
        })
    }

    /// Stops the server and returns its counters.
    pub fn stop(self) -> Result<LoopStats, UnixError> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake().map_err(UnixError::Stream)?;
        self.thread.join().expect("server thread panicked")
    }
}

/// One client connection's view: its state and the echoes it got.
#[derive(Debug, Default)]
pub struct ClientConn {
    /// The opening handshake completed.
    pub opened: bool,
    /// Messages received, in order.
    pub received: Vec<Message<'static>>,
    /// How the connection ended, once it did.
    pub ended: Option<String>,
}

/// A client handler that records what each connection receives.
#[derive(Debug, Default)]
pub struct Recorder {
    /// One entry per connection id.
    pub conns: std::collections::HashMap<ConnId, ClientConn>,
}

impl Handler for Recorder {
    fn on_open(&mut self, cx: &mut Context<'_>) {
        self.conns.entry(cx.id()).or_default().opened = true;
    }

    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let conn = self.conns.entry(cx.id()).or_default();
        conn.received.push(message.into_owned());
    }

    fn on_close(&mut self, id: ConnId, ended: Ended<'_>) {
        let text = match ended {
            Ended::Closed(code) => format!("closed {}", code.0),
            other => format!("{other:?}"),
        };
        self.conns.entry(id).or_default().ended = Some(text);
    }
}

/// Runs `clients` connections to `path` on one client loop: each sends
/// `messages`, waits for the echoes, then closes with 1000. Returns each
/// connection's echoes, or what went wrong. Gives up after `limit`.
pub fn run_clients(
    path: &Path,
    clients: usize,
    messages: &[Message<'_>],
    limit: Duration,
) -> Result<Vec<Vec<Message<'static>>>, String> {
    let (transport, _waker) = UnixTransport::new().map_err(|e| e.to_string())?;
    // Room to queue several large messages back to back: with the default
    // 1 MiB mark, a send while more than that waits is refused with
    // `QueueFull`.
    let config = LoopConfig {
        max_queued: 64 << 20,
        ..LoopConfig::default()
    };
    let mut client = EventLoop::new(transport, Recorder::default(), config);
    let deadline = client.transport().now() + limit;
    let request = ClientRequest {
        host: "localhost",
        path: "/",
        protocols: &[],
    };
    let mut ids = Vec::new();
    for seed in 0..clients as u64 {
        ids.push(
            client
                .connect(path, &request, seed)
                .map_err(|e| e.to_string())?,
        );
    }

    // Wait for every handshake, then send everything.
    let all_open = |c: &EventLoop<UnixTransport, Recorder>| {
        ids.iter()
            .all(|id| c.handler().conns.get(id).is_some_and(|c| c.opened))
    };
    step_until(&mut client, deadline, all_open, "handshakes", true)?;
    for &id in &ids {
        for message in messages {
            send(&mut client, id, message, deadline)?;
        }
    }

    let all_echoed = |c: &EventLoop<UnixTransport, Recorder>| {
        let done = |id| c.handler().conns.get(id).map_or(0, |c| c.received.len());
        ids.iter().all(|id| done(id) >= messages.len())
    };
    step_until(&mut client, deadline, all_echoed, "echoes", true)?;

    // Close with 1000 and wait for the server's reply to end each one.
    for &id in &ids {
        client.with_connection(id, |_, cx| cx.close(CloseCode::NORMAL, "done"));
    }
    step_until(&mut client, deadline, |c| c.is_empty(), "closes", false)?;

    let mut echoes = Vec::new();
    for id in ids {
        let conn = client.handler_mut().conns.remove(&id).unwrap_or_default();
        if conn.ended.as_deref() != Some("closed 1000") {
            return Err(format!("connection {id} ended as {:?}", conn.ended));
        }
        echoes.push(conn.received);
    }
    Ok(echoes)
}

/// Sends `message` on connection `id`; while its queue is full, runs the
/// loop until the queue drains and tries again.
fn send(
    client: &mut EventLoop<UnixTransport, Recorder>,
    id: ConnId,
    message: &Message<'_>,
    deadline: Duration,
) -> Result<(), String> {
    loop {
        let sent = client.with_connection(id, |_, cx| cx.send(message));
        match sent.ok_or("connection ended before sending")? {
            Err(SendError::QueueFull) => {}
            other => return other.map_err(|e| e.to_string()),
        }
        let drained = |c: &mut EventLoop<UnixTransport, Recorder>| {
            c.with_connection(id, |_, cx| cx.queued_len() == 0)
        };
        while drained(client) == Some(false) {
            if client.transport().now() >= deadline {
                return Err("timed out waiting for the queue to drain".into());
            }
            client
                .run_once(Some(Duration::from_millis(50)))
                .map_err(|e| e.to_string())?;
        }
    }
}

/// Runs the client loop until `done` holds or `deadline` passes; with
/// `no_end`, a connection that ends is an error too.
fn step_until(
    client: &mut EventLoop<UnixTransport, Recorder>,
    deadline: Duration,
    done: impl Fn(&EventLoop<UnixTransport, Recorder>) -> bool,
    what: &str,
    no_end: bool,
) -> Result<(), String> {
    while !done(client) {
        if client.transport().now() >= deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        client
            .run_once(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let ended = client
            .handler()
            .conns
            .values()
            .find_map(|c| c.ended.as_ref());
        if let (true, Some(ended)) = (no_end, ended) {
            return Err(format!("a connection ended early: {ended}"));
        }
    }
    Ok(())
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tern-uds-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// The messages the example sends: two texts and a 200 KB binary.
pub fn sample_messages() -> Vec<Message<'static>> {
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    vec![
        Message::Text("hello over a unix socket".into()),
        Message::Binary(big.into()),
        Message::Text("bye".into()),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = temp_dir("example")?;
    let path = dir.join("echo.sock");
    let server = Server::start(&path)?;

    let messages = sample_messages();
    let result = run_clients(&path, 1, &messages, Duration::from_secs(30));
    let stats = server.stop()?;
    std::fs::remove_dir_all(&dir)?;

    let echoes = result?;
    if echoes[0] != messages {
        return Err("the echoes differ from what was sent".into());
    }
    println!("{} messages echoed over {}", messages.len(), path.display());
    println!(
        "server: {} accepted, {} opened",
        stats.accepted, stats.opened
    );
    Ok(())
}
