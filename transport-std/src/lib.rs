//! tern over kernel sockets: an edge-triggered [mio] event loop per core.
//!
//! [`MioTransport`] implements the core's [`Transport`] seam with non-blocking
//! TCP sockets registered edge-triggered with epoll (through mio):
//!
//! - accepts until `WouldBlock`, reads until `WouldBlock` into the loop's
//!   one shared buffer, writes directly with vectored writes and leaves the
//!   rest to the core's per-connection queue;
//! - asks for writable readiness only while something is queued;
//! - sets `TCP_NODELAY` on every stream (frames are written whole, so
//!   Nagle's algorithm only adds latency);
//! - binds listeners through socket2 to choose the backlog and, for one
//!   loop per core, `SO_REUSEPORT`, so the kernel spreads new connections
//!   over the loops;
//! - spreads client connections over several local source addresses
//!   (`127.0.0.1`, `127.0.0.2`, ...) when one address would run out of
//!   ephemeral ports.
//!
//! [`Server`] runs one [`EventLoop`] per thread over such listeners, with
//! graceful shutdown: close 1001 to every peer, then a bounded wait for
//! the close handshakes.
//!
//! mio was chosen over hand-written epoll calls because it is the
//! well-kept, minimal readiness layer the Rust ecosystem builds on, and it
//! adds no buffering or allocation per registration.

#![warn(missing_docs)]

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Waker};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tern_core::transport::{Io, Readiness, Token, Transport};
use tern_core::{CloseCode, EventLoop, Handler, LoopConfig};

pub mod attack;

const LISTENER: mio::Token = mio::Token(usize::MAX);
const WAKER: mio::Token = mio::Token(usize::MAX - 1);

/// Default listen backlog; the kernel caps it at `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: i32 = 65_535;

/// Kernel sockets behind the core's transport seam.
#[derive(Debug)]
pub struct MioTransport {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    waker: Arc<Waker>,
    sources: Vec<IpAddr>,
    next_source: usize,
    epoch: Instant,
}

impl MioTransport {
    /// A transport with no listener, for client connections.
    pub fn client() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(MioTransport {
            poll,
            events: Events::with_capacity(1024),
            listener: None,
            waker,
            sources: Vec::new(),
            next_source: 0,
            epoch: Instant::now(),
        })
    }

    /// A transport accepting connections on `listener` (see [`bind`]).
    pub fn server(listener: std::net::TcpListener) -> io::Result<Self> {
        let mut transport = Self::client()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        transport
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        transport.listener = Some(listener);
        Ok(transport)
    }

    /// Spreads outgoing connections round-robin over these local source
    /// addresses (each gives its own range of ephemeral ports). Empty: let
    /// the kernel choose.
    pub fn with_sources(mut self, sources: Vec<IpAddr>) -> Self {
        self.sources = sources;
        self
    }

    /// A handle that wakes this transport's `poll` from another thread; it
    /// then reports [`Token::Waker`].
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The address the listener is bound to, if any.
    pub fn local_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.listener.as_ref().map(|l| l.local_addr())
    }

    fn next_source(&mut self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let source = self.sources[self.next_source % self.sources.len()];
        self.next_source = self.next_source.wrapping_add(1);
        Some(source)
    }
}

/// Binds a listening socket on `addr` with `backlog`, `SO_REUSEADDR`, and
/// `SO_REUSEPORT` when `reuse_port` (one listener per event loop on the
/// same port).
pub fn bind(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Readable always; writable too while output is queued.
fn interest(writable: bool) -> Interest {
    if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

/// Retries a socket call interrupted by a signal.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl Transport for MioTransport {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    type Error = io::Error;

    fn poll(&mut self, events: &mut Vec<Readiness>, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        events.extend(self.events.iter().map(|event| {
            let token = match event.token() {
                LISTENER => Token::Listener,
                WAKER => Token::Waker,
                mio::Token(key) => Token::Stream(key),
            };
            // Errors and hang-ups surface through the next read.
            Readiness {
                token,
                readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                writable: event.is_writable() || event.is_write_closed(),
                hangup: event.is_read_closed() || event.is_error(),
            }
        }));
        Ok(())
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn accept(&mut self) -> io::Result<Option<TcpStream>> {
        let Some(listener) = &self.listener else {
            return Ok(None);
        };
        match retry(|| listener.accept()) {
            Ok((stream, _)) => {
                stream.set_nodelay(true)?;
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn connect(&mut self, addr: &SocketAddr) -> io::Result<TcpStream> {
        let source = self.next_source();
        let socket = Socket::new(
            Domain::for_address(*addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
        }
        match socket.connect(&SockAddr::from(*addr)) {
            Ok(()) => {}
            // A non-blocking connect reports EINPROGRESS while the TCP
            // handshake is under way; writability tells when it is done.
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    fn register(&mut self, stream: &mut TcpStream, key: usize, writable: bool) -> io::Result<()> {
        self.poll
            .registry()
            .register(stream, mio::Token(key), interest(writable))
    }

    fn set_writable(
        &mut self,
        stream: &mut TcpStream,
        key: usize,
        writable: bool,
    ) -> io::Result<()> {
        self.poll
            .registry()
            .reregister(stream, mio::Token(key), interest(writable))
    }

    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Io> {
        match retry(|| stream.read(buf)) {
            Ok(0) => Ok(Io::Closed),
            Ok(n) => Ok(Io::Done(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock),
            Err(e) => Err(e),
        }
    }

    fn write(&mut self, stream: &mut TcpStream, bufs: &[&[u8]]) -> io::Result<Io> {
        let result = match bufs {
            [one] => retry(|| stream.write(one)),
            _ => {
                let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
                retry(|| stream.write_vectored(&slices))
            }
        };
        match result {
            Ok(0) => Ok(Io::WouldBlock),
            Ok(n) => Ok(Io::Done(n)),
            // A connect still in progress reports not-connected on write.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Io::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(Io::WouldBlock),
            Err(e) => Err(e),
        }
    }

    fn shutdown_write(&mut self, stream: &mut TcpStream) -> bool {
        // Fails only on a stream that is already gone, which the next
        // read reports.
        let _ = stream.shutdown(Shutdown::Write);
        true
    }

    fn close(&mut self, stream: TcpStream) {
        // Closing the descriptor removes it from epoll; a FIN first, so
        // bytes already written reach the peer before the close.
        let _ = stream.shutdown(Shutdown::Write);
        drop(stream);
    }
}

/// Options of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Event loops (threads); each has its own listener on the same port
    /// through `SO_REUSEPORT`.
    pub loops: usize,
    /// Listen backlog of each listener.
    pub backlog: i32,
    /// Options of each event loop.
    pub loop_config: LoopConfig,
    /// How long shutdown waits for close handshakes before dropping the
    /// remaining connections.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// One loop on `addr` with the default backlog and loop options.
    pub fn new(addr: SocketAddr) -> Self {
        ServerConfig {
            addr,
            loops: 1,
            backlog: DEFAULT_BACKLOG,
            loop_config: LoopConfig::default(),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A running server: one event loop per thread.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds every loop's listener and starts the loops. `make_handler`
    /// builds each loop's handler from its index.
    pub fn start<H, F>(config: ServerConfig, make_handler: F) -> io::Result<Server>
    where
        H: Handler + Send + 'static,
        F: Fn(usize) -> H,
    {
        let loops = config.loops.max(1);
        let reuse_port = loops > 1;
        let first = bind(config.addr, config.backlog, reuse_port)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..loops {
            listeners.push(bind(addr, config.backlog, reuse_port)?);
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let transport = MioTransport::server(listener)?;
            wakers.push(transport.waker());
            let event_loop =
                EventLoop::new(transport, make_handler(index), config.loop_config.clone());
            let stop = Arc::clone(&stop);
            let grace = config.shutdown_grace;
            let thread = std::thread::Builder::new()
                .name(format!("tern-loop-{index}"))
                .spawn(move || run_until_stopped(event_loop, &stop, grace))?;
            threads.push(thread);
        }
        Ok(Server {
            addr,
            stop,
            wakers,
            threads,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A flag that, once set and followed by [`Server::wake`], shuts the
    /// server down gracefully. Safe to set from a signal handler thread.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Wakes every loop so it notices the stop flag.
    pub fn wake(&self) {
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }

    /// Starts graceful shutdown: every loop stops accepting, sends close
    /// 1001 to every peer, and waits for the close handshakes at most the
    /// configured grace time.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether every loop is still running: a loop ends only after
    /// shutdown or on a fatal error of its transport.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|thread| !thread.is_finished())
    }

    /// Waits for every loop to end; returns the first loop's error, if
    /// any.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            let outcome = thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("event loop thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Runs one loop until `stop` is set, then shuts it down gracefully.
pub fn run_until_stopped<H: Handler>(
    mut event_loop: EventLoop<MioTransport, H>,
    stop: &AtomicBool,
    grace: Duration,
) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        event_loop.run_once(Some(Duration::from_millis(500)))?;
    }
    event_loop.close_all(CloseCode::GOING_AWAY, "server shutting down");
    let deadline = Instant::now() + grace;
    while !event_loop.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        event_loop.run_once(Some(left))?;
    }
    Ok(())
}
