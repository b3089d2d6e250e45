#!/usr/bin/env bash
# Runs every cargo-fuzz target of tern-core for a short, bounded time.
#
#   scripts/fuzz-smoke.sh            # 30 s per target
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh server_connection
#
# cargo-fuzz needs nightly compiler features. On a stable toolchain,
# RUSTC_BOOTSTRAP=1 (the compiler's documented bootstrap switch) unlocks
# them; this script sets it. New inputs found go to a scratch directory,
# so the seed corpus in core/fuzz/corpus stays as committed; crashes land
# in core/fuzz/artifacts/<target>/ and fail the script.
set -euo pipefail

cd "$(dirname "$0")/../core/fuzz"
seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(server_handshake client_handshake frame_decoder close_payload server_connection)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "== $target: ${seconds}s"
    # The outer timeout is a backstop in case a run hangs past its budget.
    if ! timeout $((seconds + 120)) cargo fuzz run "$target" "$scratch/$target" \
        "corpus/$target" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        2>"$scratch/$target.log"; then
        echo "!! $target failed; see below and core/fuzz/artifacts/$target/"
        tail -40 "$scratch/$target.log"
        status=1
        continue
    fi
    grep -E '^#[0-9]+' "$scratch/$target.log" | tail -1 || true
    grep -E '^Done' "$scratch/$target.log" || true
done
exit $status
