//! Errors of the protocol engine, one enum per layer.
//!
//! - [`HandshakeError`]: the opening handshake was refused; each variant
//!   knows the HTTP status a server answers with.
//! - [`ProtocolError`]: the peer broke RFC 6455 after the handshake; each
//!   variant knows the close code it implies.
//! - [`SendError`]: the application asked for something the connection
//!   cannot do in its state (misuse of the API, never the peer's fault).

use core::fmt;

use crate::close::CloseCode;

/// Why a call to [`Connection::poll_event`](crate::Connection::poll_event)
/// failed. The answer to the peer (an HTTP error response or a close frame)
/// has already been appended to `out`; the connection is closed and the
/// transport should flush `out` and then drop the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The opening handshake was refused.
    Handshake(HandshakeError),
    /// The peer broke the framing rules.
    Protocol(ProtocolError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Handshake(e) => write!(f, "handshake refused: {e}"),
            Error::Protocol(e) => write!(f, "protocol violation: {e}"),
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

/// A refused opening handshake.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The head grew past `Config::max_head_size` before its blank line.
    HeadTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The head has more header lines than `Config::max_headers`.
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The head is not valid HTTP/1.1 syntax.
    Malformed(&'static str),
    /// The request method is not `GET` (RFC 6455 section 4.2.1).
    MethodNotGet,
    /// The request or response is not HTTP/1.1 or later.
    HttpVersion,
    /// The request has no `Host` header.
    MissingHost,
    /// `Upgrade` does not list the `websocket` token.
    MissingUpgrade,
    /// `Connection` does not list the `Upgrade` token.
    MissingConnectionUpgrade,
    /// The request has no `Sec-WebSocket-Key`.
    MissingKey,
    /// The request has more than one `Sec-WebSocket-Key`.
    DuplicateKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes.
    InvalidKey,
    /// `Sec-WebSocket-Version` is missing or not 13; answered with `426`
    /// and `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// The server answered with a status other than 101 (client role).
    UnexpectedStatus(u16),
    /// `Sec-WebSocket-Accept` is missing or does not match the key sent
    /// (client role).
    BadAccept,
    /// The server selected a subprotocol the client did not offer (client
    /// role).
    UnexpectedProtocol,
    /// The server is at its connection limit; answered with `503`.
    ServerBusy,
    /// The peer closed the stream before the handshake completed.
    Incomplete,
    /// The handshake did not complete before its deadline.
    TimedOut,
}

impl HandshakeError {
    /// The HTTP status a server answers this refusal with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::ServerBusy => 503,
            HandshakeError::TimedOut => 408,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge { limit } => {
                write!(f, "http head larger than the {limit}-byte limit")
            }
            HandshakeError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} header lines")
            }
            HandshakeError::Malformed(what) => write!(f, "malformed http head: {what}"),
            HandshakeError::MethodNotGet => f.write_str("request method is not GET"),
            HandshakeError::HttpVersion => f.write_str("http version is not 1.1"),
            HandshakeError::MissingHost => f.write_str("request has no Host header"),
            HandshakeError::MissingUpgrade => f.write_str("Upgrade header does not name websocket"),
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("Connection header does not name Upgrade")
            }
            HandshakeError::MissingKey => f.write_str("request has no Sec-WebSocket-Key"),
            HandshakeError::DuplicateKey => {
                f.write_str("request has more than one Sec-WebSocket-Key")
            }
            HandshakeError::InvalidKey => {
                f.write_str("Sec-WebSocket-Key is not base64 of 16 bytes")
            }
            HandshakeError::UnsupportedVersion => {
                f.write_str("Sec-WebSocket-Version is missing or not 13")
            }
            HandshakeError::UnexpectedStatus(s) => {
                write!(f, "server answered status {s} instead of 101")
            }
            HandshakeError::BadAccept => {
                f.write_str("Sec-WebSocket-Accept is missing or does not match the key")
            }
            HandshakeError::UnexpectedProtocol => {
                f.write_str("server selected a subprotocol that was not offered")
            }
            HandshakeError::ServerBusy => f.write_str("server is at its connection limit"),
            HandshakeError::Incomplete => {
                f.write_str("stream ended before the handshake completed")
            }
            HandshakeError::TimedOut => f.write_str("handshake did not complete in time"),
        }
    }
}

/// A violation of the framing rules of RFC 6455 by the peer.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client sent a frame without a mask (section 5.1).
    UnmaskedFrame,
    /// A server sent a masked frame (section 5.1).
    MaskedFrame,
    /// A reserved bit (RSV1-3) is set without a negotiated extension.
    ReservedBits,
    /// The opcode is one of the reserved values.
    ReservedOpcode(u8),
    /// A 64-bit payload length has its most significant bit set.
    InvalidLength,
    /// A payload length is not in its shortest form (section 5.2), e.g.
    /// 5 written in the 16-bit form.
    NonMinimalLength(u64),
    /// A control frame carries more than 125 bytes.
    ControlTooLong(u64),
    /// A control frame has FIN clear.
    FragmentedControl,
    /// A continuation frame arrived with no message open.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a message was still open.
    UnfinishedMessage,
    /// A frame's payload is larger than `Config::max_frame_size`.
    FrameTooLarge {
        /// Announced payload length.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A message is larger than `Config::max_message_size`.
    MessageTooLarge {
        /// Length of the message with this frame joined.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A text message or close reason is not valid UTF-8.
    InvalidUtf8,
    /// A close frame's payload is one byte long.
    CloseTooShort,
    /// A close frame carries a code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// A data frame arrived after the peer's close frame.
    FrameAfterClose,
}

impl ProtocolError {
    /// The close code this violation is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::ReservedBits => f.write_str("reserved bits set without an extension"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::InvalidLength => {
                f.write_str("64-bit payload length has its top bit set")
            }
            ProtocolError::NonMinimalLength(n) => {
                write!(f, "length {n} not written in its shortest form")
            }
            ProtocolError::ControlTooLong(n) => {
                write!(f, "control frame of {n} bytes (limit 125)")
            }
            ProtocolError::FragmentedControl => f.write_str("control frame is fragmented"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame with no message open")
            }
            ProtocolError::UnfinishedMessage => {
                f.write_str("new data frame while a fragmented message is open")
            }
            ProtocolError::FrameTooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the {limit}-byte limit")
            }
            ProtocolError::MessageTooLarge { size, limit } => {
                write!(f, "message of {size} bytes exceeds the {limit}-byte limit")
            }
            ProtocolError::InvalidUtf8 => f.write_str("text is not valid utf-8"),
            ProtocolError::CloseTooShort => f.write_str("close payload of one byte"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "close code {c} is not allowed"),
            ProtocolError::FrameAfterClose => f.write_str("frame after the close frame"),
        }
    }
}

/// The application asked for something the connection cannot do now.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The opening handshake has not completed yet.
    NotOpen,
    /// A close frame was already sent; no data may follow it.
    Closing,
    /// The connection is closed.
    Closed,
    /// A ping, pong or close payload is longer than 125 bytes.
    ControlTooLong,
    /// The close code may not be sent (1005, 1006, 1015 or out of range).
    InvalidCloseCode(u16),
    /// The connection's outgoing queue is past its high-water mark.
    QueueFull,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotOpen => f.write_str("the opening handshake has not completed"),
            SendError::Closing => f.write_str("a close frame was already sent"),
            SendError::Closed => f.write_str("the connection is closed"),
            SendError::ControlTooLong => f.write_str("control payload longer than 125 bytes"),
            SendError::InvalidCloseCode(c) => write!(f, "close code {c} may not be sent"),
            SendError::QueueFull => f.write_str("outgoing queue is full"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
#[cfg(feature = "std")]
impl std::error::Error for HandshakeError {}
#[cfg(feature = "std")]
impl std::error::Error for ProtocolError {}
#[cfg(feature = "std")]
impl std::error::Error for SendError {}
