//! The frame layer of `Connection`, both roles, driven byte by byte.

mod common;

use common::*;
use tern_core::{
    CloseCode, Config, Connection, Error, Event, Message, ProtocolError, Role, SendError, State,
};

fn server() -> Connection {
    Connection::open(Role::Server, 0)
}

fn client() -> Connection {
    Connection::open(Role::Client, 42)
}

fn cfg() -> Config {
    Config::default()
}

/// Asserts a protocol failure: the error, the close frame in `out`, and
/// the closed state with nothing held.
fn assert_fails(conn: &Connection, fed: &Fed, error: ProtocolError) {
    assert_eq!(
        fed.error,
        Some(Error::Protocol(error.clone())),
        "events {:?}",
        fed.events
    );
    let code = error.close_code().0;
    match conn.role() {
        Role::Server => assert_eq!(fed.out, server_close(code)),
        Role::Client => {
            let sent = frames(&fed.out);
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].b0, 0x88);
            assert!(sent[0].mask.is_some());
            assert_eq!(sent[0].payload, code.to_be_bytes());
        }
    }
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.buffered_bytes(), 0);
}

#[test]
fn size_and_idle_memory() {
    assert!(core::mem::size_of::<Connection>() <= 24);
    let mut s = server();
    assert_eq!(s.buffered_bytes(), 0);

    // A whole message, then a message over three reads, then a fragmented
    // one: once each is delivered, nothing is held.
    let fed = feed(&mut s, &cfg(), &cframe(0x81, b"hello"));
    assert_eq!(fed.events, [text("hello")]);
    assert_eq!(s.buffered_bytes(), 0);

    let f = cframe(0x82, &[7u8; 300]);
    let fed = feed(&mut s, &cfg(), &f[..1]);
    assert!(fed.events.is_empty());
    assert!(s.buffered_bytes() > 0);
    let fed = feed_split(&mut s, &cfg(), &f[1..], &[100]);
    assert_eq!(fed.events, [binary(&[7u8; 300])]);
    assert_eq!(s.buffered_bytes(), 0);

    let mut f = cframe(0x01, b"ab");
    f.extend(cframe(0x80, b"cd"));
    let fed = feed(&mut s, &cfg(), &f);
    assert_eq!(fed.events, [text("abcd")]);
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn whole_frames_are_borrowed_from_the_input() {
    let mut s = server();
    let mut bytes = cframe(0x81, b"zero copy");
    bytes.extend(cframe(0x82, b"\x00\x01"));
    let mut input = tern_core::Input::new(&mut bytes);
    let mut out = Vec::new();
    let first = s.poll_event(&cfg(), &mut input, &mut out).unwrap().unwrap();
    assert!(matches!(
        first,
        Event::Message(tern_core::Message::Text(std::borrow::Cow::Borrowed(
            "zero copy"
        )))
    ));
    let second = s.poll_event(&cfg(), &mut input, &mut out).unwrap().unwrap();
    assert!(matches!(
        second,
        Event::Message(tern_core::Message::Binary(std::borrow::Cow::Borrowed(&[
            0, 1
        ])))
    ));
    assert_eq!(s.poll_event(&cfg(), &mut input, &mut out), Ok(None));
    assert!(out.is_empty());
}

#[test]
fn top_bit_64_bit_length_fails_at_header_time() {
    let mut bad = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&KEY);

    let mut s = server();
    let fed = feed(&mut s, &cfg(), &bad);
    assert_fails(&s, &fed, ProtocolError::InvalidLength);

    // One byte per read: fails on the length's first byte, long before
    // any payload could arrive.
    let mut s = server();
    let fed = feed_split(&mut s, &cfg(), &bad, &(1..bad.len()).collect::<Vec<_>>());
    assert_fails(&s, &fed, ProtocolError::InvalidLength);
}

#[test]
fn frame_and_message_limits_are_checked_before_the_payload() {
    let config = Config {
        max_frame_size: 100,
        max_message_size: 250,
        ..Config::default()
    };

    // A 101-byte frame fails with only its header read.
    let mut s = server();
    let f = cframe(0x82, &[0; 101]);
    let fed = feed(&mut s, &config, &f[..8]);
    assert_fails(
        &s,
        &fed,
        ProtocolError::FrameTooLarge {
            size: 101,
            limit: 100,
        },
    );
    assert_eq!(close_code(fed.error.as_ref().unwrap()), CloseCode::TOO_BIG);

    // Three 100-byte fragments: the third header pushes the joined length
    // to 300 and fails before its payload is read.
    let mut s = server();
    let mut bytes = cframe(0x02, &[1; 100]);
    bytes.extend(cframe(0x00, &[2; 100]));
    bytes.extend(&cframe(0x80, &[3; 100])[..8]);
    let fed = feed(&mut s, &config, &bytes);
    assert_fails(
        &s,
        &fed,
        ProtocolError::MessageTooLarge {
            size: 300,
            limit: 250,
        },
    );

    // Exactly at the limits is fine.
    let mut s = server();
    let mut bytes = cframe(0x02, &[1; 100]);
    bytes.extend(cframe(0x00, &[2; 100]));
    bytes.extend(cframe(0x80, &[3; 50]));
    let fed = feed(&mut s, &config, &bytes);
    assert_eq!(fed.error, None);
    let mut want = vec![1u8; 100];
    want.extend([2; 100]);
    want.extend([3; 50]);
    assert_eq!(fed.events, [binary(&want)]);
}

#[test]
fn reserved_bits_and_opcodes_fail_with_1002() {
    for b0 in [0xC1u8, 0xA1, 0x91] {
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(b0, b"x"));
        assert_fails(&s, &fed, ProtocolError::ReservedBits);
    }
    for op in (3u8..=7).chain(0xB..=0xF) {
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(0x80 | op, b""));
        assert_fails(&s, &fed, ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn text_one_byte_per_frame_with_split_code_points() {
    let message = "h\u{e9}\u{20ac}\u{1F600}!";
    let bytes = message.as_bytes();
    let mut wire = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i == bytes.len() - 1;
        let b0 = u8::from(last) << 7 | u8::from(first);
        wire.extend(cframe(b0, &[*b]));
    }

    // All frames in one read.
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [text(message)]);

    // And one byte per read.
    let mut s = server();
    let fed = feed_split(&mut s, &cfg(), &wire, &(1..wire.len()).collect::<Vec<_>>());
    assert_eq!(fed.error, None);
    assert_eq!(fed.events, [text(message)]);
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn f4_then_90_fails_1007_before_the_message_ends() {
    // Across fragments: the second fragment is not final.
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x01, &[0xF4]));
    assert_eq!(fed.error, None);
    let fed = feed(&mut s, &cfg(), &cframe(0x00, &[0x90]));
    assert_fails(&s, &fed, ProtocolError::InvalidUtf8);
    assert_eq!(fed.out, server_close(1007));

    // Inside one frame whose payload is still arriving.
    let mut s = server();
    let f = cframe(0x81, &[b'a', 0xF4, 0x90, 0x80, 0x80, b'b']);
    let header_len = 6;
    let fed = feed(&mut s, &cfg(), &f[..header_len + 2]);
    assert_eq!(fed.error, None);
    let fed = feed(&mut s, &cfg(), &f[header_len + 2..header_len + 3]);
    assert_fails(&s, &fed, ProtocolError::InvalidUtf8);

    // Surrogate and overlong forms, inside a fragment.
    for bad in [&[0xED, 0xA0, 0x80][..], &[0xC0, 0x80]] {
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(0x01, bad));
        assert_fails(&s, &fed, ProtocolError::InvalidUtf8);
    }
}

#[test]
fn incomplete_code_point_fails_at_message_end() {
    let mut s = server();
    let mut wire = cframe(0x01, b"ok\xE2\x82");
    wire.extend(cframe(0x80, b""));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_fails(&s, &fed, ProtocolError::InvalidUtf8);

    // The same in a one-frame message.
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x81, b"ok\xE2\x82"));
    assert_fails(&s, &fed, ProtocolError::InvalidUtf8);
}

#[test]
fn control_frame_rules() {
    // 126 bytes is too long for a control frame.
    for b0 in [0x88u8, 0x89, 0x8A] {
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(b0, &[0; 126]));
        assert_fails(&s, &fed, ProtocolError::ControlTooLong(126));
    }

    // A fragmented ping.
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x09, b""));
    assert_fails(&s, &fed, ProtocolError::FragmentedControl);

    // A 125-byte ping gets an identical 125-byte pong.
    let payload: Vec<u8> = (0..125u8).collect();
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x89, &payload));
    assert_eq!(fed.events, [Event::Ping(payload.clone().into())]);
    let mut want = vec![0x8A, 0x7D];
    want.extend(&payload);
    assert_eq!(fed.out, want);

    // The same ping over two reads.
    let mut s = server();
    let f = cframe(0x89, &payload);
    let fed = feed_split(&mut s, &cfg(), &f, &[70]);
    assert_eq!(fed.events, [Event::Ping(payload.clone().into())]);
    assert_eq!(fed.out, want);

    // A client answers with a masked pong.
    let mut c = client();
    let fed = feed(&mut c, &cfg(), &sframe(0x89, &payload));
    let sent = frames(&fed.out);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].b0, &sent[0].payload), (0x8A, &payload));
    assert!(sent[0].mask.is_some());

    // Pongs are reported.
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x8A, b"p"));
    assert_eq!(fed.events, [Event::Pong(b"p".to_vec().into())]);
    assert!(fed.out.is_empty());
}

#[test]
fn close_codes_forbidden_on_the_wire_fail_with_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(0x88, &code.to_be_bytes()));
        assert_fails(&s, &fed, ProtocolError::InvalidCloseCode(code));
    }
}

#[test]
fn valid_close_codes_are_echoed() {
    for code in [1000u16, 1011, 3000, 4000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend(b"done");
        let mut s = server();
        let fed = feed(&mut s, &cfg(), &cframe(0x88, &payload));
        assert_eq!(
            fed.events,
            [Event::Close {
                code: CloseCode(code),
                reason: "done".to_owned().into()
            }]
        );
        assert_eq!(fed.out, server_close(code));
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.handle_eof(), None);
    }
}

#[test]
fn empty_short_and_bad_close_payloads() {
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x88, b""));
    assert_eq!(
        fed.events,
        [Event::Close {
            code: CloseCode::NO_STATUS,
            reason: String::new().into()
        }]
    );
    assert_eq!(fed.out, [0x88, 0x00]);

    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x88, &[0x03]));
    assert_fails(&s, &fed, ProtocolError::CloseTooShort);

    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x88, &[0x03, 0xE8, 0xC0, 0x80]));
    assert_fails(&s, &fed, ProtocolError::InvalidUtf8);
}

#[test]
fn close_cut_by_a_read_is_reported_owned() {
    let mut s = server();
    let f = cframe(0x88, b"\x0b\xb8going");
    let fed = feed_split(&mut s, &cfg(), &f, &[7]);
    assert_eq!(
        fed.events,
        [Event::Close {
            code: CloseCode(3000),
            reason: "going".to_owned().into()
        }]
    );
    assert_eq!(fed.out, server_close(3000));
}

#[test]
fn close_initiated_by_this_end() {
    let mut p = Pair::open(7);
    p.server
        .close(CloseCode::NORMAL, "bye", &mut p.server_out)
        .unwrap();
    assert_eq!(p.server_out, [0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']);
    assert_eq!(p.server.state(), State::Closing);
    assert_eq!(
        p.server.send_text("late", &mut Vec::new()),
        Err(SendError::Closing)
    );

    // The client echoes; the server's handshake completes without a reply.
    let fed = p.deliver_to_client();
    assert_eq!(
        fed.events,
        [Event::Close {
            code: CloseCode::NORMAL,
            reason: "bye".to_owned().into()
        }]
    );
    assert_eq!(p.client.state(), State::Closed);
    let fed = p.deliver_to_server();
    assert_eq!(
        fed.events,
        [Event::Close {
            code: CloseCode::NORMAL,
            reason: String::new().into()
        }]
    );
    assert!(fed.out.is_empty());
    assert_eq!(p.server.state(), State::Closed);
    assert_eq!(p.server.handle_eof(), None);
    assert_eq!(p.client.handle_eof(), None);
    assert_eq!(
        p.server.send_text("x", &mut Vec::new()),
        Err(SendError::Closed)
    );
}

#[test]
fn while_closing_data_is_delivered_and_pings_are_not_answered() {
    let mut s = server();
    s.close(CloseCode::GOING_AWAY, "", &mut Vec::new()).unwrap();
    let mut wire = cframe(0x81, b"still here");
    wire.extend(cframe(0x89, b"?"));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(
        fed.events,
        [text("still here"), Event::Ping(b"?".to_vec().into())]
    );
    assert!(fed.out.is_empty());

    // A protocol error while closing sends no second close frame.
    let fed = feed(&mut s, &cfg(), &cframe(0x80, b""));
    assert_eq!(
        fed.error,
        Some(Error::Protocol(ProtocolError::UnexpectedContinuation))
    );
    assert!(fed.out.is_empty());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn close_codes_that_may_not_be_sent() {
    for code in [1005u16, 1006, 1015, 0, 5000] {
        let mut s = server();
        assert_eq!(
            s.close(CloseCode(code), "", &mut Vec::new()),
            Err(SendError::InvalidCloseCode(code))
        );
        assert_eq!(s.state(), State::Open);
    }
    let mut s = server();
    let long = "x".repeat(124);
    assert_eq!(
        s.close(CloseCode::NORMAL, &long, &mut Vec::new()),
        Err(SendError::ControlTooLong)
    );
    let mut out = Vec::new();
    s.close(CloseCode::NORMAL, &long[..123], &mut out).unwrap();
    assert_eq!(out.len(), 2 + 125);
}

#[test]
fn masking_rules_per_role() {
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &sframe(0x81, b"hi"));
    assert_fails(&s, &fed, ProtocolError::UnmaskedFrame);

    let mut c = client();
    let fed = feed(&mut c, &cfg(), &cframe(0x81, b"hi"));
    assert_fails(&c, &fed, ProtocolError::MaskedFrame);

    // The client reads unmasked frames.
    let mut c = client();
    let fed = feed(&mut c, &cfg(), &sframe(0x81, b"hi"));
    assert_eq!(fed.events, [text("hi")]);
}

#[test]
fn fragmentation_rules() {
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &cframe(0x80, b"orphan"));
    assert_fails(&s, &fed, ProtocolError::UnexpectedContinuation);

    let mut s = server();
    let mut wire = cframe(0x01, b"open");
    wire.extend(cframe(0x81, b"new"));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_fails(&s, &fed, ProtocolError::UnfinishedMessage);

    let mut s = server();
    let mut wire = cframe(0x02, b"open");
    wire.extend(cframe(0x02, b"new"));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_fails(&s, &fed, ProtocolError::UnfinishedMessage);

    // Fragmented binary stays binary, empty fragments included.
    let mut s = server();
    let mut wire = cframe(0x02, &[0xFF, 0x00]);
    wire.extend(cframe(0x00, b""));
    wire.extend(cframe(0x80, &[0xFE]));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(fed.events, [binary(&[0xFF, 0x00, 0xFE])]);
}

#[test]
fn ping_in_the_middle_of_a_fragmented_message() {
    let tail = vec![b'z'; 200];
    let mut wire = cframe(0x01, b"hel");
    wire.extend(cframe(0x89, b"p!"));
    wire.extend(cframe(0x80, &tail));

    let mut want = b"hel".to_vec();
    want.extend(&tail);
    let want = String::from_utf8(want).unwrap();

    for cuts in [vec![], vec![9], vec![9, 17, 30], (1..wire.len()).collect()] {
        let mut s = server();
        let fed = feed_split(&mut s, &cfg(), &wire, &cuts);
        assert_eq!(fed.error, None);
        assert_eq!(
            fed.events,
            [Event::Ping(b"p!".to_vec().into()), text(&want)]
        );
        assert_eq!(fed.out, [0x8A, 0x02, b'p', b'!'], "cuts {cuts:?}");
        assert_eq!(s.buffered_bytes(), 0);
    }
}

#[test]
fn frames_split_at_every_boundary_decode_identically() {
    let mut wire = Vec::new();
    wire.extend(cframe(0x81, b"short"));
    wire.extend(cframe(0x82, &[9u8; 300]));
    wire.extend(cframe(0x89, b""));
    wire.extend(cframe(0x02, &[5u8; 70_000]));
    wire.extend(cframe(0x80, b"end"));

    let mut s = server();
    let whole = feed(&mut s, &cfg(), &wire);
    assert_eq!(whole.error, None);
    assert_eq!(whole.events.len(), 4);

    // Every cut in the first three frames and around the big one's header
    // and its end: headers and payloads split everywhere.
    let big_start = 11 + 308 + 6;
    let cuts = (1..big_start + 20).chain(wire.len() - 30..wire.len());
    for cut in cuts {
        let mut s = server();
        let fed = feed_split(&mut s, &cfg(), &wire, &[cut]);
        assert_eq!(fed.error, None, "cut {cut}");
        assert_eq!(fed.events, whole.events, "cut {cut}");
        assert_eq!(fed.out, whole.out, "cut {cut}");
    }
}

#[test]
fn every_length_form_read_in_pieces() {
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let f = cframe(0x82, &payload);
        for cuts in [vec![], vec![1], vec![3, 9], vec![f.len() / 2, f.len() - 1]] {
            let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c > 0 && c < f.len()).collect();
            let mut s = server();
            let fed = feed_split(&mut s, &cfg(), &f, &cuts);
            assert_eq!(fed.events, [binary(&payload)], "len {len} cuts {cuts:?}");
        }
    }
}

#[test]
fn ten_thousand_tiny_frames_in_one_input() {
    let mut wire = Vec::new();
    for i in 0..10_000u32 {
        wire.extend(cframe(0x82, &i.to_be_bytes()));
    }
    let mut s = server();
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(fed.error, None);
    assert_eq!(fed.events.len(), 10_000);
    for (i, event) in fed.events.iter().enumerate() {
        assert_eq!(*event, binary(&(i as u32).to_be_bytes()));
    }
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn server_frames_have_exact_bytes_for_each_length_form() {
    let cases: [(usize, &[u8]); 5] = [
        (0, &[0x82, 0x00]),
        (125, &[0x82, 0x7D]),
        (126, &[0x82, 0x7E, 0x00, 0x7E]),
        (65_535, &[0x82, 0x7E, 0xFF, 0xFF]),
        (65_536, &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    for (len, header) in cases {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let mut s = server();
        s.send_binary(&payload, &mut out).unwrap();
        // Large frames are encoded into the queue instead of `out`.
        out.extend_from_slice(s.queued());
        let mut want = header.to_vec();
        want.extend(&payload);
        assert_eq!(out, want, "len {len}");
    }
    let mut out = Vec::new();
    server().send_text("hi", &mut out).unwrap();
    assert_eq!(out, [0x81, 0x02, b'h', b'i']);
    let mut out = Vec::new();
    server().send_ping(b"p", &mut out).unwrap();
    assert_eq!(out, [0x89, 0x01, b'p']);
}

#[test]
fn large_frames_go_to_the_queue_behind_earlier_output() {
    let mut s = server();
    let mut out = Vec::new();
    s.send_text("first", &mut out).unwrap();
    let big = vec![7u8; tern_core::connection::DIRECT_QUEUE_MIN];
    s.send_binary(&big, &mut out).unwrap();
    s.send_text("last", &mut out).unwrap();

    // `out` moved into the queue ahead of the large frame; later small
    // frames go to `out` again, to be written after the queue.
    assert_eq!(out, [0x81, 0x04, b'l', b'a', b's', b't']);
    let queued = s.queued();
    assert_eq!(&queued[..7], [0x81, 0x05, b'f', b'i', b'r', b's', b't']);
    assert_eq!(&queued[7..17], [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(queued.len(), 17 + big.len());
    assert!(queued[17..].iter().all(|&b| b == 7));
}

#[test]
fn client_frames_have_exact_bytes_for_each_length_form() {
    let cases: [(usize, &[u8]); 5] = [
        (0, &[0x82, 0x80]),
        (125, &[0x82, 0xFD]),
        (126, &[0x82, 0xFE, 0x00, 0x7E]),
        (65_535, &[0x82, 0xFE, 0xFF, 0xFF]),
        (65_536, &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    let mut keys = Vec::new();
    let mut c = client();
    for (len, header) in cases {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        c.send_binary(&payload, &mut out).unwrap();
        out.extend_from_slice(c.queued());
        c.advance_queued(c.queued().len());

        // The header, then the key this frame drew, then the payload
        // masked with it.
        assert_eq!(&out[..header.len()], header, "len {len}");
        let key: [u8; 4] = out[header.len()..header.len() + 4].try_into().unwrap();
        let mut want = header.to_vec();
        want.extend(key);
        want.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        assert_eq!(out, want, "len {len}");
        keys.push(key);
    }
    // A fresh key per frame.
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5);

    // Two clients with different seeds draw different keys.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    Connection::open(Role::Client, 1)
        .send_text("x", &mut a)
        .unwrap();
    Connection::open(Role::Client, 2)
        .send_text("x", &mut b)
        .unwrap();
    assert_ne!(a[2..6], b[2..6]);
}

#[test]
fn pair_exchanges_messages_both_ways() {
    let mut p = Pair::open(99);
    let big = "\u{1F600}".repeat(40_000);
    p.client.send_text("ping me", &mut p.client_out).unwrap();
    p.client.send_binary(&[1, 2, 3], &mut p.client_out).unwrap();
    p.client.send_text(&big, &mut p.client_out).unwrap();
    p.client
        .send_ping(b"are you there", &mut p.client_out)
        .unwrap();
    let fed = p.deliver_to_server();
    assert_eq!(
        fed.events,
        [
            text("ping me"),
            binary(&[1, 2, 3]),
            text(&big),
            Event::Ping(b"are you there".to_vec().into())
        ]
    );

    p.server.send_text("pong you", &mut p.server_out).unwrap();
    let fed = p.deliver_to_client();
    assert_eq!(
        fed.events,
        [
            Event::Pong(b"are you there".to_vec().into()),
            text("pong you")
        ]
    );
    assert_eq!(p.client.buffered_bytes(), 0);
    assert_eq!(p.server.buffered_bytes(), 0);
}

#[test]
fn send_state_and_size_errors() {
    let mut s = Connection::server();
    assert_eq!(s.send_text("x", &mut Vec::new()), Err(SendError::NotOpen));
    assert_eq!(s.send_ping(b"", &mut Vec::new()), Err(SendError::NotOpen));
    assert_eq!(
        s.close(CloseCode::NORMAL, "", &mut Vec::new()),
        Err(SendError::NotOpen)
    );

    let mut s = server();
    assert_eq!(
        s.send_ping(&[0; 126], &mut Vec::new()),
        Err(SendError::ControlTooLong)
    );
    let mut out = Vec::new();
    s.send_ping(&[0; 125], &mut out).unwrap();
    assert_eq!(out.len(), 127);
}

#[test]
fn eof_reports_abnormal_unless_the_close_handshake_completed() {
    let mut s = server();
    assert_eq!(s.handle_eof(), Some(CloseCode::ABNORMAL));
    assert_eq!(s.state(), State::Closed);

    // EOF in the middle of a frame drops what was held.
    let mut s = server();
    feed(&mut s, &cfg(), &cframe(0x81, b"partial")[..5]);
    assert!(s.buffered_bytes() > 0);
    assert_eq!(s.handle_eof(), Some(CloseCode::ABNORMAL));
    assert_eq!(s.buffered_bytes(), 0);

    // After a protocol error this end's close was never answered.
    let mut s = server();
    feed(&mut s, &cfg(), &sframe(0x81, b"unmasked"));
    assert_eq!(s.handle_eof(), Some(CloseCode::ABNORMAL));
}

#[test]
fn input_after_close_is_ignored() {
    let mut s = server();
    let mut wire = cframe(0x88, b"");
    wire.extend(cframe(0x81, b"after"));
    let fed = feed(&mut s, &cfg(), &wire);
    assert_eq!(fed.events.len(), 1);
    assert_eq!(fed.error, None);
    assert_eq!(fed.out, [0x88, 0x00]);
}

#[test]
fn output_queue_keeps_order_and_frees_memory() {
    let mut s = server();
    assert!(s.queued().is_empty());
    s.queue(b"hello ");
    s.queue(b"world");
    assert_eq!(s.queued(), b"hello world");
    assert!(s.buffered_bytes() > 0);

    s.advance_queued(6);
    assert_eq!(s.queued(), b"world");
    s.queue(b"!");
    assert_eq!(s.queued(), b"world!");
    s.advance_queued(100);
    assert!(s.queued().is_empty());
    assert_eq!(s.buffered_bytes(), 0);

    // Many small sends and partial drains stay ordered.
    let mut expected = Vec::new();
    let mut sent = Vec::new();
    for i in 0..2_000u32 {
        let chunk = i.to_le_bytes();
        s.queue(&chunk);
        expected.extend(chunk);
        let n = (i as usize % 7).min(s.queued().len());
        sent.extend_from_slice(&s.queued()[..n]);
        s.advance_queued(n);
    }
    sent.extend_from_slice(s.queued());
    let left = s.queued().len();
    s.advance_queued(left);
    assert_eq!(sent, expected);
    assert_eq!(s.buffered_bytes(), 0);

    // The queue survives a protocol failure: it still has to be sent.
    s.queue(b"pending");
    feed(&mut s, &cfg(), &sframe(0x81, b"x"));
    assert_eq!(s.queued(), b"pending");
}

/// A small deterministic generator for the randomised tests below.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn random_valid_streams_split_randomly_match_one_shot() {
    let mut rng = Lcg(0xC0FFEE);
    for round in 0..200 {
        // A stream of messages, some fragmented, with pings in between.
        let mut wire = Vec::new();
        for _ in 0..1 + rng.next() % 6 {
            let fragments = 1 + rng.next() % 4;
            let text = rng.next() % 2 == 0;
            for i in 0..fragments {
                let len = rng.next() % 300;
                let payload: Vec<u8> = if text {
                    "a\u{e9}\u{20ac}\u{1F600}"
                        .bytes()
                        .cycle()
                        .take(len)
                        .collect()
                } else {
                    (0..len).map(|_| rng.next() as u8).collect()
                };
                let op = match (i, text) {
                    (0, true) => 0x1,
                    (0, false) => 0x2,
                    _ => 0x0,
                };
                let fin = if i + 1 == fragments { 0x80 } else { 0 };
                wire.extend(cframe(fin | op, &payload));
                if rng.next() % 3 == 0 {
                    wire.extend(cframe(0x89, &[round as u8; 3]));
                }
            }
        }

        let mut s = server();
        let whole = feed(&mut s, &cfg(), &wire);
        // Text fragments cut code points anywhere; only the joined message
        // has to be valid, and this one may not be: then both runs must
        // fail the same way.
        let mut cuts: Vec<usize> = (0..rng.next() % 12)
            .map(|_| 1 + rng.next() % (wire.len() - 1))
            .collect();
        cuts.sort();
        cuts.dedup();
        let mut s = server();
        let split = feed_split(&mut s, &cfg(), &wire, &cuts);
        assert_eq!(split.events, whole.events, "round {round} cuts {cuts:?}");
        assert_eq!(split.out, whole.out, "round {round} cuts {cuts:?}");
        assert_eq!(split.error, whole.error, "round {round} cuts {cuts:?}");
    }
}

#[test]
fn random_garbage_never_panics_or_stalls() {
    let mut rng = Lcg(7);
    for _ in 0..2_000 {
        let len = rng.next() % 64;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias towards plausible headers so the deeper paths run too.
        if let Some(b) = bytes.get_mut(0) {
            *b &= 0x8F;
        }
        if let Some(b) = bytes.get_mut(1) {
            *b = 0x80 | (*b % 20);
        }
        for role in [Role::Server, Role::Client] {
            let mut c = Connection::open(role, 1);
            let cut = if bytes.is_empty() {
                0
            } else {
                rng.next() % bytes.len()
            };
            let cuts: Vec<usize> = [cut].into_iter().filter(|&c| c > 0).collect();
            let fed = feed_split(&mut c, &cfg(), &bytes, &cuts);
            if fed.error.is_some() {
                assert_eq!(c.state(), State::Closed);
                assert_eq!(c.buffered_bytes(), 0);
            }
        }
    }
}

#[test]
fn owned_large_messages_are_queued_without_a_copy() {
    use std::borrow::Cow;
    use tern_core::connection::DIRECT_QUEUE_MIN;

    let mut s = server();
    let mut out = Vec::new();
    s.send_text("before", &mut out).unwrap();
    let payload = vec![3u8; DIRECT_QUEUE_MIN];
    let address = payload.as_ptr();
    s.send_message(Message::Binary(Cow::Owned(payload)), &mut out)
        .unwrap();
    assert!(out.is_empty());

    // Wire order: the earlier frame, the header, then the very buffer that
    // was handed over.
    let mut parts = Vec::new();
    while !s.queued().is_empty() {
        parts.push((s.queued().as_ptr(), s.queued().to_vec()));
        s.advance_queued(s.queued().len());
    }
    assert_eq!(parts.len(), 2);
    let mut head = vec![0x81, 0x06];
    head.extend_from_slice(b"before");
    head.extend_from_slice(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(parts[0].1, head);
    assert_eq!(parts[1].0, address);
    assert!(parts[1].1.iter().all(|&b| b == 3));
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn owned_messages_from_a_client_are_masked_in_place() {
    use std::borrow::Cow;
    use tern_core::connection::DIRECT_QUEUE_MIN;

    let mut pair = Pair::open(11);
    let text = "é".repeat(DIRECT_QUEUE_MIN);
    pair.client
        .send_message(
            Message::Text(Cow::Owned(text.clone())),
            &mut pair.client_out,
        )
        .unwrap();
    // A small borrowed message is sent as by `send`.
    pair.client
        .send_message(
            Message::Binary(Cow::Borrowed(b"tiny")),
            &mut pair.client_out,
        )
        .unwrap();
    let fed = pair.deliver_to_server();
    assert_eq!(fed.error, None);
    assert_eq!(
        fed.events,
        vec![common::text(&text), common::binary(b"tiny")]
    );
}
