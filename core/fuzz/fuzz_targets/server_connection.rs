//! A whole server connection through `Connection::poll_event`: arbitrary
//! bytes, delivered once in one read and once cut into arbitrary reads,
//! must produce the same events, the same output and the same error.
//!
//! Input layout: byte 0 holds flags (bit 0: prefix a valid opening request
//! so frames are reached at once; bit 1: tight limits), byte 1 the number
//! of cuts (mod 16), then two bytes per cut (a big-endian offset into the
//! rest), then the bytes the peer sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::{Config, Connection, Error, Event, Input, State};

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    events: Vec<Event<'static>>,
    out: Vec<u8>,
    error: Option<Error>,
    state: Option<State>,
}

/// Feeds `reads` one after another to a fresh server connection.
fn run(config: &Config, reads: &[&[u8]]) -> Outcome {
    let mut conn = Connection::server();
    let mut outcome = Outcome::default();
    'reads: for read in reads {
        let mut buf = read.to_vec();
        let mut input = Input::new(&mut buf);
        // Each event consumes at least one byte, so this is bounded.
        for _ in 0..=read.len() + 1 {
            match conn.poll_event(config, &mut input, &mut outcome.out) {
                Ok(Some(event)) => outcome.events.push(event.into_owned()),
                Ok(None) => {
                    assert!(input.is_empty(), "Ok(None) with input left");
                    continue 'reads;
                }
                Err(e) => {
                    assert_eq!(conn.state(), State::Closed);
                    outcome.error = Some(e);
                    break 'reads;
                }
            }
        }
        panic!("poll_event did not finish a read of {} bytes", read.len());
    }
    outcome.state = Some(conn.state());
    outcome
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&cuts, rest)) = rest.split_first() else {
        return;
    };
    let cuts = usize::from(cuts % 16);
    let Some(cut_bytes) = rest.get(..cuts * 2) else {
        return;
    };
    let mut bytes = Vec::new();
    if flags & 1 != 0 {
        bytes.extend_from_slice(REQUEST);
    }
    bytes.extend_from_slice(&rest[cuts * 2..]);

    let config = if flags & 2 != 0 {
        Config {
            max_head_size: 300,
            max_headers: 8,
            max_frame_size: 200,
            max_message_size: 500,
            ..Config::DEFAULT
        }
    } else {
        Config::DEFAULT
    };

    let mut offsets: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (bytes.len() + 1))
        .collect();
    offsets.sort_unstable();
    let mut reads = Vec::new();
    let mut start = 0;
    for end in offsets.into_iter().chain([bytes.len()]) {
        reads.push(&bytes[start..end]);
        start = end;
    }

    let whole = run(&config, &[&bytes]);
    let split = run(&config, &reads);
    assert_eq!(
        whole,
        split,
        "cut into {:?}",
        reads.iter().map(|r| r.len()).collect::<Vec<_>>()
    );
});
