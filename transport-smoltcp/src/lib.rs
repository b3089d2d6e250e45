//! tern over smoltcp: a userspace TCP/IP stack behind the core's
//! transport seam, on a TAP device or on an in-memory link.
//!
//! [`SmolTransport`] implements [`tern_core::transport::Transport`] over
//! [smoltcp], sharded so that it stays cheap at a million sockets (see the
//! [`stack`] module for how and why). Under it sits a [`Link`]:
//!
//! - [`MemPort`]: two stacks, client and server, in one process, joined by
//!   frame queues. No privilege, no file descriptor per connection, so the
//!   number of connections is bounded by memory alone. Both stacks and
//!   both event loops run on one thread, stepped in turn: the queues need
//!   no lock, a run is deterministic, and a 2-core machine is not split
//!   between two busy threads that mostly wait on each other.
//! - [`TapLink`]: a Linux TAP device, Ethernet frames to and from the
//!   kernel, for a kernel peer in the same network namespace (see
//!   `scripts/tap-netns.sh` and `docs/tap.md`).
//!
//! # Known shortcomings
//!
//! - IPv4 only, and IP fragments are not steered by flow (they go to the
//!   first shard).
//! - Closed sockets are freed at TIME-WAIT instead of held for it (see
//!   [`stack`]); a FIN retransmitted after that is answered with a reset.
//! - Per connection, both ends together cost `4 × buffer + about 1.4 KB`,
//!   most of it smoltcp's socket (432 bytes a side) and buffers it
//!   allocates up front; see `docs/smoltcp-results.md`.
//! - Readiness is tracked per shard, not per socket: a polled shard's
//!   registered sockets are all looked at (see [`stack`]).
//! - A [`MemPort`] pair lives on one thread (it shares its queues through
//!   an `Rc`); a TAP stack can move to a thread of its own.
//! - The TAP device is opened here with `TUNSETIFF` rather than through
//!   smoltcp's `TunTapInterface`, which panics on a device error; one
//!   process attaches to a device at a time.
//!
//! The constructors below give the addressing the project uses:
//! [`mem_pair`] for the in-memory link, [`tap_server`] and [`tap_client`]
//! for TAP. [`storm`] runs the connection storm and echo benchmark over
//! the in-memory link.

mod config;
mod device;
pub mod link;
pub mod stack;
mod steer;
pub mod storm;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub use config::{Addressing, SmolError, StackConfig, StackStats, SOCKETS_PER_SHARD};
pub use link::{Link, MemPort, Side, TapLink};
pub use stack::{SmolStream, SmolTransport};

/// The server's address on the in-memory link.
pub const MEM_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The client stack's own address on the in-memory link.
pub const MEM_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Local addresses client connections are spread over on the in-memory
/// link (10.1.0.0 and up), each with 64,512 ports: two million endpoints.
pub const MEM_CLIENT_SOURCES: u8 = 32;
/// IP MTU of the in-memory link.
pub const MEM_MTU: usize = 1500;

/// Name of the TAP device `scripts/tap-netns.sh` creates.
pub const TAP_DEVICE: &str = "tap0";
/// The kernel's address on the TAP device.
pub const TAP_KERNEL_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// tern's address on the TAP device.
pub const TAP_TERN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// tern's Ethernet address on the TAP device (locally administered).
pub const TAP_TERN_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x77, 0x00, 0x02];
/// IP MTU used on the TAP device.
pub const TAP_MTU: usize = 1500;

/// A client and a server stack joined by an in-memory link, `(client,
/// server)`, with the server listening on `port` of [`MEM_SERVER_ADDR`].
/// Connect the client to [`mem_server`]`(port)`.
pub fn mem_pair(
    client: StackConfig,
    server: StackConfig,
    port: u16,
) -> Result<(SmolTransport<MemPort>, SmolTransport<MemPort>), SmolError> {
    let (client_port, server_port) = MemPort::pair(MEM_MTU);
    let client_addressing = Addressing {
        addr: MEM_CLIENT_ADDR,
        prefix: 8,
        mac: [0; 6],
        sources: (0..MEM_CLIENT_SOURCES)
            .map(|i| Ipv4Addr::new(10, 1, 0, i))
            .collect(),
    };
    let server_addressing = Addressing {
        addr: MEM_SERVER_ADDR,
        prefix: 8,
        mac: [0; 6],
        sources: Vec::new(),
    };
    let client = SmolTransport::new(client_port, &client_addressing, client)?;
    let mut server = SmolTransport::new(server_port, &server_addressing, server)?;
    server.listen(port)?;
    Ok((client, server))
}

/// The address of the in-memory server listening on `port`.
pub fn mem_server(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(MEM_SERVER_ADDR, port))
}

fn tap_addressing() -> Addressing {
    Addressing {
        addr: TAP_TERN_ADDR,
        prefix: 24,
        mac: TAP_TERN_MAC,
        sources: Vec::new(),
    }
}

/// A server stack on the TAP device `device` (normally [`TAP_DEVICE`]),
/// at [`TAP_TERN_ADDR`], listening on `port`.
pub fn tap_server(
    device: &str,
    port: u16,
    config: StackConfig,
) -> Result<SmolTransport<TapLink>, SmolError> {
    let link = TapLink::open(device, TAP_MTU)?;
    let mut server = SmolTransport::new(link, &tap_addressing(), config)?;
    server.listen(port)?;
    Ok(server)
}

/// A client stack on the TAP device `device`, at [`TAP_TERN_ADDR`], for
/// connections to a kernel server (at [`TAP_KERNEL_ADDR`]).
pub fn tap_client(device: &str, config: StackConfig) -> Result<SmolTransport<TapLink>, SmolError> {
    let link = TapLink::open(device, TAP_MTU)?;
    SmolTransport::new(link, &tap_addressing(), config)
}
