//! What a stack is made with and what it reports: sizes and policies,
//! addressing, errors and counters.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Sizes and policies of a stack.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Number of shards (smoltcp interfaces). Aim for a few hundred
    /// sockets per shard; see [`StackConfig::for_connections`].
    pub shards: usize,
    /// Receive buffer of every TCP socket, in bytes. Also the largest
    /// receive window the socket offers.
    pub rx_buffer: usize,
    /// Send buffer of every TCP socket, in bytes.
    pub tx_buffer: usize,
    /// Listening sockets kept armed per shard on a server.
    pub listen_pool: usize,
    /// How long a closing socket may wait for its peer to finish the close
    /// handshake before it is aborted.
    pub close_timeout: Duration,
    /// Nagle's algorithm (RFC 9293 section 3.7.4). Off by default, as
    /// frames are written whole.
    pub nagle: bool,
    /// Delayed acknowledgements (RFC 9293 section 3.8.6.3); `None` sends
    /// every acknowledgement at once.
    pub ack_delay: Option<Duration>,
    /// Sockets each shard reserves room for up front; beyond that its
    /// socket set (432 bytes a slot) grows by doubling, copying every
    /// slot and leaving up to half of them empty. 0: grow on demand.
    pub shard_capacity: usize,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            shards: 16,
            rx_buffer: 1024,
            tx_buffer: 1024,
            listen_pool: 4,
            close_timeout: Duration::from_secs(10),
            nagle: false,
            ack_delay: None,
            shard_capacity: 0,
        }
    }
}

/// Sockets per shard that [`StackConfig::for_connections`] aims for.
pub const SOCKETS_PER_SHARD: usize = 256;

impl StackConfig {
    /// The default configuration with enough shards for `connections`
    /// sockets at about [`SOCKETS_PER_SHARD`] each.
    pub fn for_connections(connections: usize) -> Self {
        Self::sharded(connections, SOCKETS_PER_SHARD)
    }

    /// The default configuration with enough shards for `connections`
    /// sockets at about `per_shard` each, and room reserved for them.
    pub fn sharded(connections: usize, per_shard: usize) -> Self {
        let defaults = StackConfig::default();
        let shards = connections.div_ceil(per_shard.max(1)).max(1);
        let mean = connections.div_ceil(shards);
        // The hash spreads sockets binomially around the mean: five
        // standard deviations above it keeps nearly every shard within
        // its first allocation.
        let capacity = mean + 5 * mean.isqrt() + defaults.listen_pool;
        StackConfig {
            shards,
            shard_capacity: capacity,
            ..defaults
        }
    }
}

/// A failure of the stack or of one stream.
#[derive(Debug)]
pub enum SmolError {
    /// The link (the TAP device) failed.
    Link(io::Error),
    /// The peer reset the connection, or it timed out.
    Reset,
    /// The connection was refused or never established.
    NotConnected,
    /// The stream can no longer send: this end or the peer closed it.
    Closed,
    /// The address cannot be reached over this stack (not IPv4, port 0).
    Unaddressable,
    /// No local endpoint is left for a new connection.
    PortsExhausted,
    /// The configuration cannot work (no shards, empty buffers).
    BadConfig(&'static str),
}

impl fmt::Display for SmolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmolError::Link(e) => write!(f, "link failed: {e}"),
            SmolError::Reset => f.write_str("connection reset"),
            SmolError::NotConnected => f.write_str("connection refused or not established"),
            SmolError::Closed => f.write_str("stream closed for sending"),
            SmolError::Unaddressable => f.write_str("address not reachable over this stack"),
            SmolError::PortsExhausted => f.write_str("no local port left for a connection"),
            SmolError::BadConfig(why) => write!(f, "bad stack configuration: {why}"),
        }
    }
}

impl std::error::Error for SmolError {}

impl From<io::Error> for SmolError {
    fn from(e: io::Error) -> Self {
        SmolError::Link(e)
    }
}

/// How the stack addresses itself.
#[derive(Clone, Debug)]
pub struct Addressing {
    /// The stack's own address and prefix.
    pub addr: Ipv4Addr,
    /// The prefix length of `addr`'s network.
    pub prefix: u8,
    /// The Ethernet address, on an Ethernet link.
    pub mac: [u8; 6],
    /// Extra local addresses outgoing connections are spread over, each
    /// giving its own range of ports (the stack accepts packets to any
    /// address when this is not empty). Empty: `addr` only.
    pub sources: Vec<Ipv4Addr>,
}

/// First and last local port of outgoing connections.
pub(crate) const PORTS: (u16, u16) = (1024, 65535);

/// Counters of a stack since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Frames received from the link.
    pub frames_in: u64,
    /// Frames sent to the link.
    pub frames_out: u64,
    /// Shard polls.
    pub shard_polls: u64,
    /// Listening sockets armed.
    pub listeners_armed: u64,
    /// Accepted sockets aborted for not finishing their TCP handshake
    /// within the close timeout.
    pub handshake_aborts: u64,
    /// Closing sockets aborted after the close timeout.
    pub close_aborts: u64,
}
