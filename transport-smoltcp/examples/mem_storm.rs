//! The connection storm and echo over the in-memory link.
//!
//! ```text
//! cargo run --release -p tern-transport-smoltcp --example mem_storm -- \
//!     [connections] [--rounds N] [--buffer BYTES] [--per-shard N] [--batch N]
//! ```
//!
//! Opens `connections` (default 10,000) WebSocket connections between a
//! client and a server stack joined in memory, holds them all, echoes one
//! message per connection per round, and prints connections/ms,
//! connections/MB (whole-process resident set) and echoes/ms.

use std::process::ExitCode;

use tern_transport_smoltcp::storm::{self, StormConfig};
use tern_transport_smoltcp::{StackConfig, SOCKETS_PER_SHARD};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut connections = 10_000usize;
    let mut rounds = 1usize;
    let mut buffer = None;
    let mut per_shard = SOCKETS_PER_SHARD;
    let mut batch = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Option<usize> {
            let parsed = args.next().and_then(|v| v.replace('_', "").parse().ok());
            if parsed.is_none() {
                eprintln!("{name} needs a number");
            }
            parsed
        };
        let ok = match arg.as_str() {
            "--rounds" => value("--rounds").map(|v| rounds = v),
            "--buffer" => value("--buffer").map(|v| buffer = Some(v)),
            "--per-shard" => value("--per-shard").map(|v| per_shard = v.max(1)),
            "--batch" => value("--batch").map(|v| batch = Some(v.max(1))),
            n => n.replace('_', "").parse().ok().map(|v| connections = v),
        };
        if ok.is_none() {
            eprintln!("usage: mem_storm [connections] [--rounds N] [--buffer BYTES] [--per-shard N] [--batch N]");
            return ExitCode::FAILURE;
        }
    }

    let mut config = StormConfig::new(connections);
    config.rounds = rounds;
    config.stack = StackConfig::sharded(connections, per_shard);
    if let Some(buffer) = buffer {
        config.stack.rx_buffer = buffer;
        config.stack.tx_buffer = buffer;
    }
    if let Some(batch) = batch {
        config.batch = batch;
    }
    println!(
        "mem_storm: {connections} connections, {} shards per stack, {} B socket buffers, {rounds} echo rounds",
        config.stack.shards, config.stack.rx_buffer
    );
    match storm::run(&config) {
        Ok(report) => {
            println!("{report}");
            if report.complete {
                ExitCode::SUCCESS
            } else {
                eprintln!("mem_storm: the run did not finish within its bounds");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mem_storm: {e}");
            ExitCode::FAILURE
        }
    }
}
