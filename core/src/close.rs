//! Close codes and close frame payloads (RFC 6455 sections 5.5.1 and 7.4).

use core::fmt;

use crate::error::ProtocolError;

/// A close status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported to the application when a close frame had no code.
    /// Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported to the application when the stream ended without a
    /// close frame. Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (bad UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const EXTENSION_REQUIRED: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1015: reported when the TLS handshake failed. Never sent on the wire.
    pub const TLS_FAILED: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Allowed: 1000-1003, 1007-1014 (defined or reserved for the IANA
    /// registry's protocol codes), and 3000-4999 (registered and private
    /// codes). Everything else, including 1004, 1005, 1006 and 1015, fails
    /// the connection.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// Decodes a close frame payload into its code and UTF-8 reason.
///
/// An empty payload yields [`CloseCode::NO_STATUS`] with an empty reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<(CloseCode, &str), ProtocolError> {
    match payload {
        [] => Ok((CloseCode::NO_STATUS, "")),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_forbidden_on_the_wire_fail() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let payload = code.to_be_bytes();
            assert_eq!(
                parse_close_payload(&payload),
                Err(ProtocolError::InvalidCloseCode(code)),
                "code {code}"
            );
        }
    }

    #[test]
    fn codes_allowed_on_the_wire_parse() {
        for code in [1000u16, 1011, 3000, 4000, 4999] {
            let mut payload = alloc::vec::Vec::from(code.to_be_bytes());
            payload.extend_from_slice(b"bye");
            assert_eq!(parse_close_payload(&payload), Ok((CloseCode(code), "bye")));
        }
    }

    #[test]
    fn empty_and_short_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok((CloseCode::NO_STATUS, "")));
        assert_eq!(parse_close_payload(&[3]), Err(ProtocolError::CloseTooShort));
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
    }
}
