//! Limits and options shared by every connection of an event loop.

/// Chooses a subprotocol from the ones a client offered in
/// `Sec-WebSocket-Protocol`, in the client's order; returns the index of the
/// chosen one, or `None` to answer without a subprotocol.
pub type SelectProtocol = fn(offered: &[&str]) -> Option<usize>;

/// Limits and options of the protocol engine.
///
/// One `Config` is shared by all connections of an event loop and passed to
/// [`Connection::poll_event`](crate::Connection::poll_event) by reference, so
/// connections themselves carry none of it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest accepted HTTP head (request or response line plus headers),
    /// in bytes. A larger head is refused with `431`.
    pub max_head_size: usize,
    /// Most header lines accepted in an HTTP head. More are refused with `431`.
    pub max_headers: usize,
    /// Largest accepted frame payload, in bytes. A larger frame fails the
    /// connection with close code 1009 as soon as its header is read.
    pub max_frame_size: u64,
    /// Largest accepted message (all fragments together), in bytes. Checked
    /// on the joined length before anything is allocated; fails with 1009.
    pub max_message_size: u64,
    /// Subprotocol selection hook for servers. `None` never selects one.
    pub select_protocol: Option<SelectProtocol>,
}

impl Config {
    /// The defaults: 8 KiB heads with at most 64 headers, and frames and
    /// messages of up to 128 MiB.
    pub const DEFAULT: Config = Config {
        max_head_size: 8 * 1024,
        max_headers: 64,
        max_frame_size: 128 << 20,
        max_message_size: 128 << 20,
        select_protocol: None,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
