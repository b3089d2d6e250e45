//! The client's check of the server's answer on arbitrary bytes: no
//! panic, and a selected subprotocol is always one that was offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::handshake::{accept_key, check_response_protocol};
use tern_core::Config;

/// The key the answers in the seed corpus were made for.
const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let accept = accept_key(KEY);
    let offers = ["", "chat", "chat,superchat", "a,b,c"];
    let offered = offers[data.first().map_or(0, |b| *b as usize % offers.len())];
    let head = data.get(1..).unwrap_or_default();

    for config in [
        Config::DEFAULT,
        Config {
            max_head_size: 200,
            max_headers: 3,
            ..Config::DEFAULT
        },
    ] {
        match check_response_protocol(head, &accept, offered, &config) {
            Ok(Some(protocol)) => {
                assert!(offered.split(',').any(|p| p == protocol), "{protocol:?}");
            }
            Ok(None) => {}
            Err(e) => {
                // Every refusal names a status and a message.
                assert!((400..600).contains(&e.status()));
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
