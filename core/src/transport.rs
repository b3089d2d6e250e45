//! The seam between the protocol engine and whatever moves bytes.
//!
//! A [`Transport`] is a readiness-based byte-stream backend: kernel sockets
//! through an epoll-style poller, a userspace TCP/IP stack, an in-memory
//! pipe. The [`runtime`](crate::runtime) drives connections over any of them.
//!
//! # Rules a transport keeps
//!
//! - **Edge-triggered readiness.** [`Transport::poll`] reports a stream as
//!   readable or writable once per change (new bytes, room to write, the
//!   end of the stream). The runtime then writes until [`Io::WouldBlock`],
//!   and reads until a read does not fill its buffer (all that was waiting
//!   is taken; bytes that arrive later are a new change) or, when
//!   [`Readiness::hangup`] is set, until the end. The loop may leave a
//!   ready stream unread on purpose (a server connection whose output queue
//!   is above its mark) and the listener unaccepted (after
//!   `stop_accepting`, or for a moment after an accept error): a
//!   level-triggered backend must then stop reporting it until the loop
//!   reads (or accepts) again, or `poll` returns at once and the loop
//!   spins.
//! - **Partial writes.** [`Transport::write`] takes what it can and says how
//!   much; the runtime keeps the rest and asks for writable interest.
//! - **Writable interest only while needed.** [`Transport::set_writable`]
//!   is switched on when bytes are queued and off when the queue drains.
//! - **End of stream** is [`Io::Closed`] from `read`; a reset or other
//!   failure of one stream is an `Err` from `read` or `write`, and the
//!   runtime then drops that stream with [`Transport::close`]. An `Err` from
//!   `poll` is fatal to the whole loop.
//! - **Time** comes from [`Transport::now`], a monotonic clock of the
//!   transport's choosing (a simulated one in tests).

use core::fmt;
use core::time::Duration;

use alloc::vec::Vec;

/// What a readiness event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// The listener has connections waiting: call [`Transport::accept`]
    /// until it returns `None`.
    Listener,
    /// The stream registered under this key.
    Stream(usize),
    /// The transport was woken from outside (for instance to shut down).
    Waker,
}

/// One readiness event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// What became ready.
    pub token: Token,
    /// Bytes (or the end of the stream, or an error) can be read.
    pub readable: bool,
    /// Bytes can be written.
    pub writable: bool,
    /// The peer ended the stream or it failed. Without this flag the loop
    /// takes a read that did not fill its buffer as "nothing more waits"
    /// and stops reading until the next report; with it, the loop reads
    /// on until it sees the end (or the error). A transport that cannot
    /// tell sets it whenever `readable` is set.
    pub hangup: bool,
}

/// The outcome of a read or write that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// This many bytes were moved (never zero).
    Done(usize),
    /// Nothing can be moved until the next readiness event.
    WouldBlock,
    /// The peer ended the stream (reads only).
    Closed,
}

/// A readiness-based byte-stream backend.
pub trait Transport {
    /// One connected stream: a socket, a socket handle, a pipe end.
    type Stream;
    /// Where [`Transport::connect`] connects to.
    type Addr: ?Sized;
    /// A failure of the transport or of one stream.
    type Error: fmt::Debug + fmt::Display;

    /// Waits until something is ready or `timeout` passes (`None`: no
    /// limit), and appends the readiness events to `events`.
    fn poll(
        &mut self,
        events: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> Result<(), Self::Error>;

    /// The transport's monotonic clock.
    fn now(&self) -> Duration;

    /// Takes one waiting connection from the listener, or `None` when none
    /// is waiting. Transports without a listener always return `None`.
    fn accept(&mut self) -> Result<Option<Self::Stream>, Self::Error>;

    /// Starts connecting to `addr`. The stream reports writable once the
    /// connection is established (or readable with an error if it failed).
    fn connect(&mut self, addr: &Self::Addr) -> Result<Self::Stream, Self::Error>;

    /// Starts reporting readiness of `stream` under `Token::Stream(key)`,
    /// readable and, if `writable`, writable too.
    fn register(
        &mut self,
        stream: &mut Self::Stream,
        key: usize,
        writable: bool,
    ) -> Result<(), Self::Error>;

    /// Switches writable interest of a registered stream on or off.
    fn set_writable(
        &mut self,
        stream: &mut Self::Stream,
        key: usize,
        writable: bool,
    ) -> Result<(), Self::Error>;

    /// Reads into `buf`.
    fn read(&mut self, stream: &mut Self::Stream, buf: &mut [u8]) -> Result<Io, Self::Error>;

    /// Writes from `bufs`, in order, as much as the transport takes now.
    fn write(&mut self, stream: &mut Self::Stream, bufs: &[&[u8]]) -> Result<Io, Self::Error>;

    /// Ends the sending direction (a FIN after the bytes already written)
    /// but keeps the stream readable, and returns `true`. The loop does this
    /// after failing a connection, then reads and drops input until the
    /// peer ends the stream, so that a peer still sending reads the close
    /// frame instead of a reset. A transport that cannot half-close returns
    /// `false` (the default), and the loop closes the stream at once.
    fn shutdown_write(&mut self, stream: &mut Self::Stream) -> bool {
        let _ = stream;
        false
    }

    /// Stops reporting and releases the stream. The transport closes it
    /// gracefully where it can (a FIN after the queued bytes).
    fn close(&mut self, stream: Self::Stream);
}
