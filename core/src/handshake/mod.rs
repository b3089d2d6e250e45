//! The opening handshake (RFC 6455 section 4) for both roles.
//!
//! SKELETON: signatures fixed, bodies to be written.

use alloc::vec::Vec;

use crate::config::Config;
use crate::error::HandshakeError;

/// The GUID appended to the client's key before hashing (section 1.3).
pub const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a client puts in its opening request.
#[derive(Clone, Copy, Debug)]
pub struct ClientRequest<'a> {
    /// Value of the `Host` header, e.g. `127.0.0.1:9001`.
    pub host: &'a str,
    /// Request target, e.g. `/` or `/chat?room=1`.
    pub path: &'a str,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in preference order.
    pub protocols: &'a [&'a str],
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64 of the SHA-1 of
/// the key followed by [`GUID`].
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let _ = key;
    todo!()
}

/// Finds the end of an HTTP head: the index just past the first `\r\n\r\n`.
///
/// `scanned` is how many leading bytes of `buf` an earlier call already
/// searched without success; the search resumes just before it, so feeding
/// a head one byte at a time stays linear.
pub fn find_head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let _ = (buf, scanned);
    todo!()
}

/// Server side: validates a complete request head (everything up to and
/// including its blank line) and appends the `101 Switching Protocols`
/// answer to `out`. On refusal, appends the HTTP error response instead
/// (see [`write_rejection`]) and returns why.
pub fn answer_request(
    head: &[u8],
    config: &Config,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let _ = (head, config, out);
    todo!()
}

/// Appends the HTTP error response for a refused request: the status of
/// [`HandshakeError::status`], `Connection: close`, a `text/plain` body
/// naming the problem, and `Sec-WebSocket-Version: 13` with a 426.
pub fn write_rejection(error: &HandshakeError, out: &mut Vec<u8>) {
    let _ = (error, out);
    todo!()
}

/// Builds a `Sec-WebSocket-Key` from 16 random bytes.
pub fn generate_key(random: [u8; 16]) -> [u8; 24] {
    let _ = random;
    todo!()
}

/// Client side: appends the opening request for `request` with `key`.
pub fn write_request(request: &ClientRequest<'_>, key: &[u8; 24], out: &mut Vec<u8>) {
    let _ = (request, key, out);
    todo!()
}

/// Client side: validates a complete response head against the accept
/// value expected for the key sent and the subprotocols offered
/// (comma-separated, empty if none).
pub fn check_response(
    head: &[u8],
    expected_accept: &[u8; 28],
    offered_protocols: &str,
    config: &Config,
) -> Result<(), HandshakeError> {
    let _ = (head, expected_accept, offered_protocols, config);
    todo!()
}
