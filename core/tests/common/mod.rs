//! Helpers shared by the connection tests: feeding bytes, building and
//! reading frames by hand (independently of the crate's codec), and an
//! in-memory client/server pair stepped by hand.

#![allow(dead_code)]

use tern_core::{CloseCode, Config, Connection, Error, Event, Input, Message, Role};

/// The mask key the tests' hand-built client frames use.
pub const KEY: [u8; 4] = [0xA1, 0x5B, 0x03, 0xF7];

/// What one read produced.
#[derive(Debug, Default)]
pub struct Fed {
    pub events: Vec<Event<'static>>,
    pub out: Vec<u8>,
    pub error: Option<Error>,
}

/// Hands `bytes` to `conn` as one read and polls until the input is used
/// up or an error ends it.
pub fn feed(conn: &mut Connection, config: &Config, bytes: &[u8]) -> Fed {
    let mut buf = bytes.to_vec();
    let mut input = Input::new(&mut buf);
    let mut fed = Fed::default();
    // Each event consumes at least one byte, so this is bounded.
    for _ in 0..=bytes.len() + 1 {
        match conn.poll_event(config, &mut input, &mut fed.out) {
            Ok(Some(event)) => fed.events.push(event.into_owned()),
            Ok(None) => {
                assert!(input.is_empty(), "Ok(None) with input left");
                return fed;
            }
            Err(e) => {
                fed.error = Some(e);
                return fed;
            }
        }
    }
    panic!("poll_event did not finish the input");
}

/// Hands `bytes` to `conn` split into reads at `cuts`, and joins what all
/// the reads produced.
pub fn feed_split(conn: &mut Connection, config: &Config, bytes: &[u8], cuts: &[usize]) -> Fed {
    let mut all = Fed::default();
    let mut start = 0;
    for &end in cuts.iter().chain(core::iter::once(&bytes.len())) {
        let fed = feed(conn, config, &bytes[start..end]);
        all.events.extend(fed.events);
        all.out.extend(fed.out);
        if fed.error.is_some() {
            all.error = fed.error;
            return all;
        }
        start = end;
    }
    all
}

/// Builds one frame from its first byte and payload, masked with `mask`.
pub fn frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        v.push(m | len as u8);
    } else if len <= 0xFFFF {
        v.push(m | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

/// A frame as a client sends it (masked with [`KEY`]).
pub fn cframe(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame(b0, payload, Some(KEY))
}

/// A frame as a server sends it (unmasked).
pub fn sframe(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame(b0, payload, None)
}

/// One frame read back from output bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wire {
    pub b0: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

/// Splits output bytes into frames, unmasking payloads. Panics on bytes
/// that are not whole frames: the output of the engine must always be.
pub fn frames(mut bytes: &[u8]) -> Vec<Wire> {
    let mut list = Vec::new();
    while !bytes.is_empty() {
        let b0 = bytes[0];
        let masked = bytes[1] & 0x80 != 0;
        let (len, mut pos) = match bytes[1] & 0x7F {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = masked.then(|| {
            let k = [bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]];
            pos += 4;
            k
        });
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(k) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        list.push(Wire { b0, mask, payload });
        bytes = &bytes[pos + len..];
    }
    list
}

/// The exact bytes of an unmasked close frame carrying only `code`.
pub fn server_close(code: u16) -> Vec<u8> {
    let [hi, lo] = code.to_be_bytes();
    vec![0x88, 0x02, hi, lo]
}

/// The close code of a protocol error, for assertions.
pub fn close_code(e: &Error) -> CloseCode {
    match e {
        Error::Protocol(p) => p.close_code(),
        Error::Handshake(h) => panic!("handshake error {h:?}"),
    }
}

/// A text message event, owned.
pub fn text(s: &str) -> Event<'static> {
    Event::Message(Message::Text(s.to_owned().into()))
}

/// A binary message event, owned.
pub fn binary(b: &[u8]) -> Event<'static> {
    Event::Message(Message::Binary(b.to_vec().into()))
}

/// Everything `conn` has to send, in wire order: its queue (where large
/// frames are encoded), then `out`.
pub fn take_output(conn: &mut Connection, out: &mut Vec<u8>) -> Vec<u8> {
    let mut bytes = Vec::new();
    while !conn.queued().is_empty() {
        bytes.extend_from_slice(conn.queued());
        conn.advance_queued(conn.queued().len());
    }
    bytes.append(out);
    bytes
}

/// An in-memory client/server pair with one output buffer per side,
/// stepped by hand: nothing moves until [`Pair::deliver_to_server`] or
/// [`Pair::deliver_to_client`] delivers it.
pub struct Pair {
    pub config: Config,
    pub client: Connection,
    pub server: Connection,
    pub client_out: Vec<u8>,
    pub server_out: Vec<u8>,
}

impl Pair {
    /// A pair whose handshake is considered done.
    pub fn open(seed: u64) -> Pair {
        Pair {
            config: Config::default(),
            client: Connection::open(Role::Client, seed),
            server: Connection::open(Role::Server, 0),
            client_out: Vec::new(),
            server_out: Vec::new(),
        }
    }

    /// Moves everything the client wrote into the server's input.
    pub fn deliver_to_server(&mut self) -> Fed {
        let bytes = take_output(&mut self.client, &mut self.client_out);
        let fed = feed(&mut self.server, &self.config, &bytes);
        self.server_out.extend_from_slice(&fed.out);
        fed
    }

    /// Moves everything the server wrote into the client's input.
    pub fn deliver_to_client(&mut self) -> Fed {
        let bytes = take_output(&mut self.server, &mut self.server_out);
        let fed = feed(&mut self.client, &self.config, &bytes);
        self.client_out.extend_from_slice(&fed.out);
        fed
    }
}
