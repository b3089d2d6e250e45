//! The sharded smoltcp stack behind the core's transport seam.
//!
//! # Shards
//!
//! smoltcp walks its whole socket set for every received segment and on
//! every poll, which is fine for hundreds of sockets and unusable for tens
//! of thousands. So one [`SmolTransport`] holds many shards, each a
//! complete smoltcp `Interface` with its own socket set of a few hundred
//! sockets, and steers every received frame to its shard by a symmetric
//! hash of the TCP 4-tuple. An outgoing connection picks its local
//! endpoint first and lands in the shard its 4-tuple hashes to, so the
//! answers find it.
//!
//! A shard is polled only when it has work: a frame steered to it, a read,
//! write, connect or close on one of its sockets, or a timer of its own
//! (kept in one heap of deadlines across shards). Idle shards cost
//! nothing per poll.
//!
//! # Readiness
//!
//! smoltcp does not say which sockets a poll changed, so after polling a
//! shard the transport looks at the registered sockets of that shard only
//! (hundreds, the same order as smoltcp's own walk per segment) and
//! reports those that can be read (bytes, end of stream, reset) or, with
//! writable interest on, written. That is level-triggered reporting, which
//! the seam allows; the cost of a poll grows with the shards that had
//! work, never with the total number of sockets.
//!
//! Dirt is tracked per shard, not per socket. Narrowing it to the sockets a
//! poll touched would take a map from 4-tuple to socket in every shard
//! (tens of bytes more per connection) and would save a walk no longer
//! than the one smoltcp already makes for every segment it receives.
//!
//! # Listening
//!
//! In smoltcp a listening socket becomes the connection when a SYN arrives
//! (RFC 9293 section 3.10.7.2), and a SYN that finds no listener is reset.
//! A server shard therefore keeps a small pool of listening sockets on the
//! port and re-arms it before every opening segment it feeds to the
//! stack, so any number of SYNs arriving together are all taken. A socket
//! that left the listening state joins the accept queue once its handshake
//! is done, as with a kernel's accept queue, so a server's first answer
//! (a `503` at the connection limit, say) can leave at once; one that does
//! not finish within [`StackConfig::close_timeout`] is aborted.
//!
//! # Closing
//!
//! [`Transport::close`] sends a FIN after the queued bytes. The socket
//! stays in its shard until the close handshake is done, and is then
//! removed at once: the transport does not hold the socket through
//! TIME-WAIT (RFC 9293 section 3.10.7.4 asks for 2 MSL, smoltcp uses
//! 10 s). That keeps the memory of a closed connection from lingering; the
//! cost is that a retransmitted FIN arriving after removal is answered
//! with a reset instead of an ACK. A socket whose peer never finishes the
//! close is aborted after [`StackConfig::close_timeout`].

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use slab::Slab;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, AnySocket};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint,
};
use tern_core::transport::{Io, Readiness, Token, Transport};

use crate::config::PORTS;
pub use crate::config::{Addressing, SmolError, StackConfig, StackStats, SOCKETS_PER_SHARD};
use crate::device::ShardDevice;
use crate::link::Link;
use crate::steer::{self, Steer};

/// One stream as the event loop holds it: its shard, its socket, and its
/// registration in the shard.
#[derive(Debug)]
pub struct SmolStream {
    shard: u32,
    reg: u32,
    handle: SocketHandle,
}

/// No registration yet.
const UNREGISTERED: u32 = u32::MAX;

/// A registered stream of a shard.
#[derive(Debug)]
struct Reg {
    handle: SocketHandle,
    key: usize,
    writable: bool,
}

/// One smoltcp interface and its sockets.
struct Shard {
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: ShardDevice,
    regs: Slab<Reg>,
    listeners: Vec<SocketHandle>,
    /// Sockets that left the listening pool and are still in their TCP
    /// handshake, with the time they are given to finish it.
    pending: Vec<(SocketHandle, Duration)>,
    closing: Vec<(SocketHandle, Duration)>,
    /// In the transport's list of shards to poll.
    queued: bool,
    /// The deadline of this shard's entry in the timer heap, if any.
    timer: Option<Duration>,
}

/// smoltcp behind the core's [`Transport`] seam, sharded.
pub struct SmolTransport<L: Link> {
    link: L,
    config: StackConfig,
    shards: Vec<Shard>,
    /// Shards with work, to poll next.
    work: Vec<u32>,
    timers: BinaryHeap<Reverse<(Duration, u32)>>,
    listen_port: Option<u16>,
    accepted: VecDeque<SmolStream>,
    /// Spare frame buffers, lent to the shard being polled.
    pool: Vec<Vec<u8>>,
    sources: Vec<Ipv4Addr>,
    next_port: u64,
    live: usize,
    stats: StackStats,
}

impl<L: Link> fmt::Debug for SmolTransport<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolTransport")
            .field("shards", &self.shards.len())
            .field("listen_port", &self.listen_port)
            .field("live", &self.live)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<L: Link> SmolTransport<L> {
    /// A stack on `link` with `addressing`, sized by `config`.
    pub fn new(link: L, addressing: &Addressing, config: StackConfig) -> Result<Self, SmolError> {
        if config.shards == 0 || config.shards > u32::MAX as usize / 2 {
            return Err(SmolError::BadConfig("shards must be between 1 and 2^31"));
        }
        if config.rx_buffer == 0 || config.tx_buffer == 0 {
            return Err(SmolError::BadConfig("socket buffers must not be empty"));
        }
        if addressing.prefix > 32 {
            return Err(SmolError::BadConfig("an IPv4 prefix is at most 32 bits"));
        }
        // RFC 791 section 3.2: every IPv4 host takes 68-byte datagrams.
        if link.mtu() < 68 {
            return Err(SmolError::BadConfig("the link's MTU is under 68 bytes"));
        }
        let medium = link.medium();
        if medium == Medium::Ethernet && !EthernetAddress(addressing.mac).is_unicast() {
            return Err(SmolError::BadConfig("the Ethernet address must be unicast"));
        }
        let mut caps = DeviceCapabilities::default();
        caps.medium = medium;
        caps.max_transmission_unit = match medium {
            Medium::Ethernet => link.mtu() + 14,
            _ => link.mtu(),
        };
        if !link.checksums() {
            caps.checksum = ChecksumCapabilities::ignored();
        }
        let hardware = match medium {
            Medium::Ethernet => HardwareAddress::Ethernet(EthernetAddress(addressing.mac)),
            _ => HardwareAddress::Ip,
        };
        let now = to_instant(link.now());
        let cidr = IpCidr::new(IpAddress::Ipv4(addressing.addr), addressing.prefix);

        let mut shards = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let mut dev = ShardDevice {
                rx: VecDeque::new(),
                tx: Vec::new(),
                caps: caps.clone(),
                pool: RefCell::new(Vec::new()),
            };
            let mut iface_config = Config::new(hardware);
            iface_config.random_seed = 0x7e27_0000 ^ index as u64;
            let mut iface = Interface::new(iface_config, &mut dev, now);
            iface.update_ip_addrs(|addrs| {
                // One address per interface fits the default capacity.
                let _ = addrs.push(cidr);
            });
            iface.set_any_ip(!addressing.sources.is_empty());
            shards.push(Shard {
                iface,
                sockets: SocketSet::new(Vec::<SocketStorage>::with_capacity(config.shard_capacity)),
                dev,
                regs: Slab::with_capacity(config.shard_capacity),
                listeners: Vec::new(),
                pending: Vec::new(),
                closing: Vec::new(),
                queued: false,
                timer: None,
            });
        }
        let sources = if addressing.sources.is_empty() {
            vec![addressing.addr]
        } else {
            addressing.sources.clone()
        };
        Ok(SmolTransport {
            link,
            config,
            shards,
            work: Vec::new(),
            timers: BinaryHeap::new(),
            listen_port: None,
            accepted: VecDeque::new(),
            pool: Vec::new(),
            sources,
            next_port: 0,
            live: 0,
            stats: StackStats::default(),
        })
    }

    /// Starts listening on `port` in every shard.
    pub fn listen(&mut self, port: u16) -> Result<(), SmolError> {
        if port == 0 {
            return Err(SmolError::Unaddressable);
        }
        self.listen_port = Some(port);
        let now = self.link.now();
        for index in 0..self.shards.len() {
            self.rearm(index, now);
        }
        Ok(())
    }

    /// The link under the stack.
    pub fn link(&self) -> &L {
        &self.link
    }

    /// The link under the stack, mutably (to send a raw frame, or move a
    /// simulated clock).
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// Counters since the stack started.
    pub fn stats(&self) -> StackStats {
        self.stats
    }

    /// The configuration the stack was made with.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// TCP sockets held right now, connections and closing ones (not the
    /// listening pool).
    pub fn sockets(&self) -> usize {
        self.live
    }

    /// Sockets held by each shard (listening pool included): how evenly
    /// the 4-tuple hash spreads them. Walks the shards; for tests and
    /// diagnostics.
    pub fn shard_loads(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.sockets.iter().count())
            .collect()
    }

    /// Whether any shard has work or frames wait on the way out.
    pub fn has_work(&self) -> bool {
        !self.work.is_empty()
    }

    fn new_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; self.config.rx_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0; self.config.tx_buffer]);
        let mut socket = tcp::Socket::new(rx, tx);
        socket.set_nagle_enabled(self.config.nagle);
        socket.set_ack_delay(self.config.ack_delay.map(to_smol_duration));
        socket
    }

    fn mark(&mut self, shard: usize) {
        let s = &mut self.shards[shard];
        if !s.queued {
            s.queued = true;
            self.work.push(shard as u32);
        }
    }

    /// Keeps the shard's pool of listening sockets full; sockets that left
    /// the listening state wait in the shard until their handshake is done.
    fn rearm(&mut self, index: usize, now: Duration) {
        let Some(port) = self.listen_port else {
            return;
        };
        let pool = self.config.listen_pool.max(1);
        let deadline = now + self.config.close_timeout;
        let s = &mut self.shards[index];
        let mut i = 0;
        while i < s.listeners.len() {
            let handle = s.listeners[i];
            let state = s.sockets.get::<tcp::Socket>(handle).state();
            if state == tcp::State::Listen {
                i += 1;
                continue;
            }
            s.listeners.swap_remove(i);
            if state == tcp::State::Closed {
                // Reset during the handshake: never a connection.
                s.sockets.remove(handle);
                continue;
            }
            s.pending.push((handle, deadline));
        }
        while self.shards[index].listeners.len() < pool {
            let mut socket = self.new_socket();
            if socket
                .listen(IpListenEndpoint { addr: None, port })
                .is_err()
            {
                return;
            }
            let handle = self.shards[index].sockets.add(socket);
            self.shards[index].listeners.push(handle);
            self.stats.listeners_armed += 1;
        }
    }

    /// Hands the shard's sockets whose handshake is done to the accept
    /// queue, as a kernel's accept queue holds only established
    /// connections (so the first bytes the server writes can leave at
    /// once). A handshake not done within the close timeout is aborted.
    fn promote(&mut self, index: usize, now: Duration) {
        let s = &mut self.shards[index];
        let mut i = 0;
        while i < s.pending.len() {
            let (handle, deadline) = s.pending[i];
            let socket = s.sockets.get_mut::<tcp::Socket>(handle);
            match socket.state() {
                tcp::State::SynReceived if now < deadline => {
                    i += 1;
                    continue;
                }
                tcp::State::SynReceived => {
                    socket.abort();
                    self.stats.handshake_aborts += 1;
                    let _ = s
                        .iface
                        .poll_egress(to_instant(now), &mut s.dev, &mut s.sockets);
                    s.sockets.remove(handle);
                }
                tcp::State::Closed => {
                    s.sockets.remove(handle);
                }
                _ => {
                    self.live += 1;
                    self.accepted.push_back(SmolStream {
                        shard: index as u32,
                        reg: UNREGISTERED,
                        handle,
                    });
                }
            }
            s.pending.swap_remove(i);
        }
    }

    /// Moves received frames from the link to their shards.
    fn steer_incoming(&mut self) -> Result<(), SmolError> {
        let medium = self.link.medium();
        let n = self.shards.len() as u64;
        while let Some(frame) = self.link.recv()? {
            self.stats.frames_in += 1;
            match steer::classify(&frame, medium) {
                Steer::Flow { hash, .. } => {
                    let shard = (hash % n) as usize;
                    self.shards[shard].dev.rx.push_back(frame);
                    self.mark(shard);
                }
                Steer::First => {
                    self.shards[0].dev.rx.push_back(frame);
                    self.mark(0);
                }
                Steer::All => {
                    for shard in 0..self.shards.len() {
                        self.shards[shard].dev.rx.push_back(frame.clone());
                        self.mark(shard);
                    }
                }
            }
        }
        Ok(())
    }

    /// Polls one shard: feeds its frames (re-arming the listeners before
    /// each opening segment), sends what the sockets have, reaps finished
    /// closes, reports readiness and schedules its next timer.
    fn poll_shard(
        &mut self,
        index: usize,
        now: Duration,
        events: &mut Vec<Readiness>,
    ) -> Result<(), SmolError> {
        self.stats.shard_polls += 1;
        let instant = to_instant(now);
        let medium = self.link.medium();
        *self.shards[index].dev.pool.get_mut() = std::mem::take(&mut self.pool);
        while let Some(front) = self.shards[index].dev.rx.front() {
            if let Steer::Flow { opening: true, .. } = steer::classify(front, medium) {
                self.rearm(index, now);
            }
            let s = &mut self.shards[index];
            s.iface
                .poll_ingress_single(instant, &mut s.dev, &mut s.sockets);
        }
        let s = &mut self.shards[index];
        s.iface.poll_maintenance(instant);
        while s.iface.poll_egress(instant, &mut s.dev, &mut s.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged
        {}
        self.rearm(index, now);
        self.promote(index, now);
        self.reap(index, now);

        let s = &mut self.shards[index];
        for (_, reg) in &s.regs {
            let socket = s.sockets.get::<tcp::Socket>(reg.handle);
            let hangup = peer_done(socket.state());
            let readable = socket.can_recv() || hangup;
            let writable = reg.writable && (socket.can_send() || send_done(socket.state()));
            if readable || writable {
                events.push(Readiness {
                    token: Token::Stream(reg.key),
                    readable,
                    writable,
                    hangup,
                });
            }
        }

        self.pool = std::mem::take(s.dev.pool.get_mut());
        for frame in s.dev.tx.drain(..) {
            self.stats.frames_out += 1;
            self.link.send(frame)?;
        }

        // The next timer: smoltcp's (retransmission, window probes) or the
        // earliest close timeout.
        let s = &mut self.shards[index];
        let smol_at = s.iface.poll_at(instant, &s.sockets).map(|at| {
            let micros = at.total_micros().max(0) as u64;
            Duration::from_micros(micros)
        });
        let close_at = s.closing.iter().chain(&s.pending).map(|&(_, at)| at).min();
        let at = match (smol_at, close_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = at {
            if s.timer.is_none_or(|t| at < t) {
                s.timer = Some(at);
                self.timers.push(Reverse((at, index as u32)));
            }
        }
        Ok(())
    }

    /// Removes closing sockets whose close is done, and aborts those past
    /// their close timeout.
    fn reap(&mut self, index: usize, now: Duration) {
        let s = &mut self.shards[index];
        let mut i = 0;
        while i < s.closing.len() {
            let (handle, deadline) = s.closing[i];
            let socket = s.sockets.get_mut::<tcp::Socket>(handle);
            let done = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
            if !done && now < deadline {
                i += 1;
                continue;
            }
            if !done {
                // Sends a reset; the frame goes out with the next egress.
                socket.abort();
                self.stats.close_aborts += 1;
                let _ = s
                    .iface
                    .poll_egress(to_instant(now), &mut s.dev, &mut s.sockets);
            }
            s.sockets.remove(handle);
            s.closing.swap_remove(i);
            self.live -= 1;
        }
    }

    /// Picks a local endpoint for a connection to `remote` and the shard
    /// its 4-tuple hashes to. Endpoints are handed out in turn; once the
    /// turn has wrapped, one still held by a socket to the same remote is
    /// skipped (a check of that shard's sockets).
    fn next_local(&mut self, remote: IpEndpoint) -> Result<(IpEndpoint, usize), SmolError> {
        let span = u64::from(PORTS.1 - PORTS.0) + 1;
        let total = span * self.sources.len() as u64;
        if self.live as u64 >= total {
            return Err(SmolError::PortsExhausted);
        }
        let IpAddress::Ipv4(remote_addr) = remote.addr;
        // Bounded: fewer than `total` endpoints are in use, and a turn
        // this long finds a free one unless nearly all are taken.
        for _ in 0..total.min(1 << 16) {
            let wrapped = self.next_port >= total;
            let n = self.next_port % total;
            self.next_port = self.next_port.wrapping_add(1);
            let addr = self.sources[(n / span) as usize];
            let port = PORTS.0 + (n % span) as u16;
            let hash = steer::flow_hash(
                (u32::from(addr), port),
                (u32::from(remote_addr), remote.port),
            );
            let index = (hash % self.shards.len() as u64) as usize;
            let local = IpEndpoint::new(IpAddress::Ipv4(addr), port);
            if wrapped && self.endpoint_in_use(index, local, remote) {
                continue;
            }
            return Ok((local, index));
        }
        Err(SmolError::PortsExhausted)
    }

    fn endpoint_in_use(&self, index: usize, local: IpEndpoint, remote: IpEndpoint) -> bool {
        self.shards[index].sockets.iter().any(|(_, socket)| {
            tcp::Socket::downcast(socket).is_some_and(|tcp| {
                tcp.local_endpoint() == Some(local) && tcp.remote_endpoint() == Some(remote)
            })
        })
    }

    fn socket(&mut self, stream: &SmolStream) -> &mut tcp::Socket<'static> {
        self.shards[stream.shard as usize]
            .sockets
            .get_mut::<tcp::Socket>(stream.handle)
    }
}

/// The peer sent its FIN, or the connection is gone: a read will not block.
fn peer_done(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    )
}

/// Sending is over: a write fails rather than blocks.
fn send_done(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::FinWait1
            | tcp::State::FinWait2
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::LastAck
            | tcp::State::Closed
    )
}

fn to_instant(d: Duration) -> Instant {
    Instant::from_micros(d.as_micros().min(i64::MAX as u128) as i64)
}

fn to_smol_duration(d: Duration) -> smoltcp::time::Duration {
    smoltcp::time::Duration::from_micros(d.as_micros().min(u64::MAX as u128) as u64)
}

impl<L: Link> Transport for SmolTransport<L> {
    type Stream = SmolStream;
    type Addr = SocketAddr;
    type Error = SmolError;

    fn poll(
        &mut self,
        events: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> Result<(), SmolError> {
        for round in 0..2 {
            self.steer_incoming()?;
            let now = self.link.now();
            while let Some(&Reverse((at, shard))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let s = &mut self.shards[shard as usize];
                if s.timer == Some(at) {
                    s.timer = None;
                    self.mark(shard as usize);
                }
            }

            let work = std::mem::take(&mut self.work);
            for &shard in &work {
                self.shards[shard as usize].queued = false;
            }
            for &shard in &work {
                self.poll_shard(shard as usize, now, events)?;
            }
            self.work = work;
            self.work.clear();

            if !self.accepted.is_empty() {
                events.push(Readiness {
                    token: Token::Listener,
                    readable: true,
                    writable: false,
                    hangup: false,
                });
            }
            if round == 1 || !events.is_empty() || timeout == Some(Duration::ZERO) {
                return Ok(());
            }

            // Nothing ready: wait for a frame, the caller's timeout or the
            // next shard timer, whichever is first, then look once more.
            let until_timer = self
                .timers
                .peek()
                .map(|&Reverse((at, _))| at.saturating_sub(now));
            let wait = match (timeout, until_timer) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.link.wait(wait)?;
        }
        Ok(())
    }

    fn now(&self) -> Duration {
        self.link.now()
    }

    fn accept(&mut self) -> Result<Option<SmolStream>, SmolError> {
        Ok(self.accepted.pop_front())
    }

    fn connect(&mut self, addr: &SocketAddr) -> Result<SmolStream, SmolError> {
        let IpAddr::V4(remote) = addr.ip() else {
            return Err(SmolError::Unaddressable);
        };
        if addr.port() == 0 {
            return Err(SmolError::Unaddressable);
        }
        let remote = IpEndpoint::new(IpAddress::Ipv4(remote), addr.port());
        let (local, index) = self.next_local(remote)?;
        let mut socket = self.new_socket();
        let s = &mut self.shards[index];
        if socket.connect(s.iface.context(), remote, local).is_err() {
            return Err(SmolError::Unaddressable);
        }
        let handle = s.sockets.add(socket);
        self.live += 1;
        self.mark(index);
        Ok(SmolStream {
            shard: index as u32,
            reg: UNREGISTERED,
            handle,
        })
    }

    fn register(
        &mut self,
        stream: &mut SmolStream,
        key: usize,
        writable: bool,
    ) -> Result<(), SmolError> {
        let index = stream.shard as usize;
        let reg = Reg {
            handle: stream.handle,
            key,
            writable,
        };
        let s = &mut self.shards[index];
        if stream.reg == UNREGISTERED {
            stream.reg = s.regs.insert(reg) as u32;
        } else {
            s.regs[stream.reg as usize] = reg;
        }
        // Report what is already there (the request that came with the
        // handshake) on the next poll.
        self.mark(index);
        Ok(())
    }

    fn set_writable(
        &mut self,
        stream: &mut SmolStream,
        _key: usize,
        writable: bool,
    ) -> Result<(), SmolError> {
        let index = stream.shard as usize;
        if let Some(reg) = self.shards[index].regs.get_mut(stream.reg as usize) {
            reg.writable = writable;
        }
        if writable {
            self.mark(index);
        }
        Ok(())
    }

    fn read(&mut self, stream: &mut SmolStream, buf: &mut [u8]) -> Result<Io, SmolError> {
        let index = stream.shard as usize;
        let socket = self.socket(stream);
        if socket.can_recv() {
            let n = socket.recv_slice(buf).map_err(|_| SmolError::Reset)?;
            if n == 0 {
                return Ok(Io::WouldBlock);
            }
            // The window opened: the shard may owe the peer an update.
            self.mark(index);
            return Ok(Io::Done(n));
        }
        match socket.state() {
            tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait => Ok(Io::Closed),
            tcp::State::Closed => Err(SmolError::Reset),
            _ => Ok(Io::WouldBlock),
        }
    }

    fn write(&mut self, stream: &mut SmolStream, bufs: &[&[u8]]) -> Result<Io, SmolError> {
        let index = stream.shard as usize;
        let socket = self.socket(stream);
        if !socket.may_send() {
            return match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => Ok(Io::WouldBlock),
                tcp::State::Closed => Err(SmolError::NotConnected),
                _ => Err(SmolError::Closed),
            };
        }
        let mut written = 0;
        for buf in bufs {
            if buf.is_empty() {
                continue;
            }
            let n = socket.send_slice(buf).map_err(|_| SmolError::Closed)?;
            written += n;
            if n < buf.len() {
                break;
            }
        }
        if written == 0 {
            return Ok(Io::WouldBlock);
        }
        self.mark(index);
        Ok(Io::Done(written))
    }

    fn shutdown_write(&mut self, stream: &mut SmolStream) -> bool {
        // smoltcp's close is a half-close: a FIN after the queued bytes,
        // while the socket still receives.
        let index = stream.shard as usize;
        let s = &mut self.shards[index];
        s.sockets.get_mut::<tcp::Socket>(stream.handle).close();
        self.mark(index);
        true
    }

    fn close(&mut self, stream: SmolStream) {
        let index = stream.shard as usize;
        let deadline = self.link.now() + self.config.close_timeout;
        let s = &mut self.shards[index];
        if stream.reg != UNREGISTERED {
            s.regs.try_remove(stream.reg as usize);
        }
        let socket = s.sockets.get_mut::<tcp::Socket>(stream.handle);
        socket.close();
        if socket.state() == tcp::State::Closed {
            // Reset, refused, or closed before the SYN left: nothing to
            // finish.
            s.sockets.remove(stream.handle);
            self.live -= 1;
            return;
        }
        s.closing.push((stream.handle, deadline));
        self.mark(index);
    }
}
