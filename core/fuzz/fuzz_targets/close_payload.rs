//! The close payload parser against a plain restatement of RFC 6455
//! sections 5.5.1 and 7.4 (and the IANA registry of close codes): same verdict on every payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::close::{parse_close_payload, CloseCode};
use tern_core::ProtocolError;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_close_payload(data);
    match data {
        [] => assert_eq!(parsed, Ok((CloseCode::NO_STATUS, ""))),
        [_] => assert_eq!(parsed, Err(ProtocolError::CloseTooShort)),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // Section 7.4: 1000-1003, 1007-1011 and 3000-4999 may be sent,
            // and 1012-1014, registered with IANA since; 1004-1006, 1015
            // and everything else may not.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                assert_eq!(parsed, Err(ProtocolError::InvalidCloseCode(code)));
                return;
            }
            match std::str::from_utf8(reason) {
                Ok(text) => assert_eq!(parsed, Ok((CloseCode(code), text))),
                Err(_) => assert_eq!(parsed, Err(ProtocolError::InvalidUtf8)),
            }
        }
    }
});
