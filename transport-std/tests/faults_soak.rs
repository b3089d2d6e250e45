//! The soak test: rounds of verified echo clients, connect/close churn and
//! every hostile scenario of the attack module against one server, for
//! `SOAK_SECONDS` (default 600). Afterwards no connection is left, every
//! accepted one was ended, the bytes live on the heap (counted by a
//! wrapper around the system allocator) are back to their level after the
//! first round, and so, within 2 MiB, is resident memory (measured after
//! `malloc_trim`).
//!
//! Ignored by default (it is long); run it with `scripts/soak.sh`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_core::{Config, Context, EventLoop, Handler, LoopConfig, LoopStats, Message};
use tern_transport_std::attack::{self, AttackLimits, Scenario};
use tern_transport_std::{bind, MioTransport};

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_kib() -> usize {
    LIVE.load(Ordering::Relaxed) / 1024
}

struct Echo;

impl Handler for Echo {
    fn on_message(&mut self, cx: &mut Context<'_>, message: Message<'_>) {
        let _ = cx.send(&message);
    }
}

/// Resident set size of this process, in KiB, after asking the allocator
/// to hand free pages back to the system: glibc keeps freed memory of a
/// busy moment (hundreds of full queues) resident otherwise, which says
/// nothing about what is still in use.
fn trimmed_rss_kib() -> u64 {
    // SAFETY: malloc_trim only releases free memory; it has no
    // preconditions.
    unsafe { libc::malloc_trim(0) };
    rss_kib()
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![b0, 0x80 | 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One echo client: handshake, `count` verified echoes, clean close.
fn echo_client(addr: SocketAddr, count: usize, seed: u8) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    for i in 0..count {
        let payload = vec![seed.wrapping_add(i as u8); 200 + i % 4000];
        s.write_all(&masked(0x82, &payload)).unwrap();
        let mut h = [0u8; 4];
        s.read_exact(&mut h).unwrap();
        assert_eq!((h[0], h[1]), (0x82, 126));
        let mut body = vec![0; usize::from(u16::from_be_bytes([h[2], h[3]]))];
        s.read_exact(&mut body).unwrap();
        assert_eq!(body, payload);
    }
    let mut close = masked(0x88, &1000u16.to_be_bytes());
    // A short close frame uses the 7-bit length.
    close.splice(1..4, [0x82]);
    s.write_all(&close).unwrap();
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [0x88, 0x02, 0x03, 0xe8]);
}

#[test]
#[ignore = "runs for minutes; use scripts/soak.sh"]
fn soak_with_churn_and_hostile_clients() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let config = LoopConfig {
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Some(Duration::from_secs(4)),
        max_queued: 256 * 1024,
        max_connections: 2_000,
        protocol: Config {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            ..Config::DEFAULT
        },
        ..LoopConfig::default()
    };
    let listener = bind("127.0.0.1:0".parse().unwrap(), 4096, false).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut event_loop = EventLoop::new(MioTransport::server(listener).unwrap(), Echo, config);
    let state = Arc::new(Mutex::new((0usize, LoopStats::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let (shared, flag) = (Arc::clone(&state), Arc::clone(&stop));
    let server = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            event_loop
                .run_once(Some(Duration::from_millis(20)))
                .unwrap();
            *shared.lock().unwrap() = (event_loop.len(), event_loop.stats());
        }
    });
    let wait_empty = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (alive, stats) = *state.lock().unwrap();
            if alive == 0 && stats.ended == stats.accepted {
                return stats;
            }
            assert!(Instant::now() < deadline, "{alive} connections left");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    let limits = AttackLimits {
        connections: 100,
        duration: Duration::from_secs(8),
        oversize: (1 << 20) + 1,
    };
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut baseline = None;
    let mut live_baseline = 0;
    let mut peak = 0;
    let mut rounds = 0;
    while rounds == 0 || Instant::now() < end {
        // One thread runs the echo clients one after another, beside the
        // attacks: few threads keep the allocator's per-thread arenas, and
        // so resident memory, from drifting for reasons other than tern.
        let clients = std::thread::spawn(move || {
            for i in 0..20 {
                echo_client(addr, 200, i);
            }
        });
        for scenario in [
            Scenario::Slowloris,
            Scenario::NeverRead,
            Scenario::OversizeFrame,
            Scenario::InvalidUtf8,
            Scenario::Churn,
        ] {
            let report = attack::run(scenario, addr, &limits);
            peak = peak.max(rss_kib());
            assert!(report.connections > 0, "{report:?}");
        }
        clients.join().unwrap();
        let stats = wait_empty();
        rounds += 1;
        let rss = trimmed_rss_kib();
        peak = peak.max(rss);
        if baseline.is_none() {
            baseline = Some(rss);
            live_baseline = live_kib();
        }
        eprintln!(
            "round {rounds}: rss {rss} KiB, heap {} KiB, {stats:?}",
            live_kib()
        );
    }

    let stats = wait_empty();
    let rss = trimmed_rss_kib();
    let live = live_kib();
    let baseline = baseline.unwrap();
    eprintln!("soak: {rounds} rounds, baseline {baseline} KiB, peak {peak} KiB, end {rss} KiB");
    eprintln!("soak: heap live {live_baseline} KiB after round 1, {live} KiB at the end");
    eprintln!("soak: {stats:?}");
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
    // Capacities the loop keeps (slab, event list, output buffer) were
    // reached in the first round already; a leak would grow every round.
    assert!(
        live <= live_baseline + 256,
        "heap {live} KiB, {live_baseline} KiB after round 1"
    );
    // The allocator may keep some freed pages; growth past a few MiB over
    // the first round's level would be a leak.
    assert!(
        rss <= baseline + 8 * 1024,
        "rss {rss} KiB, baseline {baseline} KiB"
    );
}
