#!/usr/bin/env bash
# Every check and test of tern, in the order CI runs them:
#
#   1. install what the checks need (tmux, rustfmt, clippy, cargo-nextest)
#   2. cargo fmt --check          3. cargo clippy -D warnings
#   4. cargo doc -D warnings      5. the no-std build of tern-core
#   6. a short run of every fuzz target (installs cargo-fuzz if missing)
#   7. tern compare --short against the peer servers (installs them)
#   8. the tests: the Python tests of scripts/, doc tests, cargo nextest
#   9. Autobahn|Testsuite against `tern serve --transport tap` in a network
#      namespace (skipped without root or /dev/net/tun)
#  10. Autobahn|Testsuite against `tern serve` on 127.0.0.1:9001
#
# usage: bash scripts/test.sh [STEP...]
#   With no STEP, all run. Steps: install fmt clippy doc nostd fuzz compare
#   tests autobahn-tap autobahn. It can be started from anywhere; it works in
#   the repo root.
#
# Installs are idempotent: each is skipped when the tool is already there.
# Environment:
#   TERN_AUTOBAHN_PORT   loopback port for step 10 (default 9001)
#   TERN_AUTOBAHN_CASES  case patterns for step 10 (default: scripts/autobahn.sh's,
#                        every core section); CI leaves it unset
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

AUTOBAHN_PORT="${TERN_AUTOBAHN_PORT:-9001}"
AUTOBAHN_HOST=127.0.0.1
SERVER_LOG="$ROOT/.autobahn/server.log"
# How long the server may take to listen after it starts.
SERVER_START_TIMEOUT=60

TOTAL_START=$SECONDS
CURRENT_STEP=""
STEP_START=$SECONDS
SERVER_PID=""

# Stop the server started for step 7, if any: TERM, then KILL after 5 s.
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    local pid="$SERVER_PID"
    SERVER_PID=""
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

on_exit() {
    local rc=$?
    stop_server
    if [[ $rc -ne 0 && -n "$CURRENT_STEP" ]]; then
        echo
        echo "test.sh: FAILED in step '$CURRENT_STEP' after $((SECONDS - STEP_START))s (exit status $rc)" >&2
    fi
    exit $rc
}
trap on_exit EXIT

# Run one step: a heading, the step function, its elapsed time. A failing
# command inside the function stops the whole script (set -e).
step() {
    local name="$1"
    shift
    CURRENT_STEP="$name"
    STEP_START=$SECONDS
    echo
    echo "==== $name"
    "$@"
    echo "---- $name: done in $((SECONDS - STEP_START))s"
    CURRENT_STEP=""
}

install_tools() {
    command -v python3 >/dev/null || {
        echo "python3 is needed (the Autobahn report checker and its tests)" >&2
        return 1
    }

    # tmux drives the dashboard's end-to-end test.
    local missing=()
    command -v tmux >/dev/null || missing+=(tmux)
    if [[ ${#missing[@]} -gt 0 ]]; then
        if [[ "$(id -u)" -ne 0 ]]; then
            echo "missing apt packages: ${missing[*]} (install them, or run as root)" >&2
            return 1
        fi
        echo "installing apt packages: ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=300 update -q
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
            --no-install-recommends "${missing[@]}"
    else
        echo "apt packages present: tmux"
    fi

    local component
    for component in rustfmt clippy; do
        local probe=fmt
        [[ $component == clippy ]] && probe=clippy
        if cargo "$probe" --version >/dev/null 2>&1; then
            echo "$component present: $(cargo "$probe" --version)"
        else
            echo "adding rustup component $component"
            rustup component add "$component"
        fi
    done

    if cargo nextest --version >/dev/null 2>&1; then
        echo "cargo-nextest present: $(cargo nextest --version | head -n 1)"
    else
        echo "installing cargo-nextest"
        cargo install cargo-nextest --locked
    fi
}

fmt_check() { cargo fmt --all -- --check; }

clippy_check() { cargo clippy --workspace --all-targets -- -D warnings; }

doc_check() { RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps; }

no_std_build() { cargo build -p tern-core --no-default-features; }

# nextest runs last so that its summary closes the step.
run_tests() {
    python3 -m unittest discover -s scripts/autobahn -p 'test_*.py'
    # nextest does not run doc tests.
    cargo test --workspace --doc
    cargo nextest run --workspace --no-fail-fast
}

# Each fuzz target for a short smoke period (longer runs: scripts/fuzz-smoke.sh).
fuzz_smoke() { FUZZ_SECONDS="${TERN_FUZZ_SECONDS:-20}" scripts/fuzz-smoke.sh; }

# The side-by-side comparison in its short mode: every peer must install.
compare_short() {
    scripts/install-peers.sh --strict
    cargo build --release -p tern-bench
    target/release/tern compare --short
}

# The conformance run against `tern serve --transport tap` inside its own
# network namespace (skipped, with a message, without root or /dev/net/tun).
autobahn_tap() {
    scripts/install-autobahn.sh
    cargo build --release -p tern-bench
    scripts/autobahn-tap.sh
}

# True when something accepts TCP connections at $1:$2.
port_listens() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

autobahn() {
    scripts/install-autobahn.sh
    cargo build --release -p tern-bench

    if port_listens "$AUTOBAHN_HOST" "$AUTOBAHN_PORT"; then
        echo "port $AUTOBAHN_HOST:$AUTOBAHN_PORT is already in use: stop what listens there" \
            "or set TERN_AUTOBAHN_PORT" >&2
        return 1
    fi

    mkdir -p "$(dirname "$SERVER_LOG")"
    echo "starting target/release/tern serve --port $AUTOBAHN_PORT --host $AUTOBAHN_HOST" \
        "(log: ${SERVER_LOG#"$ROOT"/})"
    target/release/tern serve --port "$AUTOBAHN_PORT" --host "$AUTOBAHN_HOST" \
        </dev/null >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!

    local waited=0
    until port_listens "$AUTOBAHN_HOST" "$AUTOBAHN_PORT"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "tern serve exited before listening; its log:" >&2
            tail -n 20 "$SERVER_LOG" >&2
            return 1
        fi
        if [[ $waited -ge $((SERVER_START_TIMEOUT * 10)) ]]; then
            echo "tern serve did not listen on $AUTOBAHN_HOST:$AUTOBAHN_PORT within ${SERVER_START_TIMEOUT}s" >&2
            tail -n 20 "$SERVER_LOG" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done

    local rc=0
    local cases=()
    [[ -z "${TERN_AUTOBAHN_CASES:-}" ]] || cases=(--cases "$TERN_AUTOBAHN_CASES")
    scripts/autobahn.sh --url "ws://$AUTOBAHN_HOST:$AUTOBAHN_PORT" "${cases[@]}" || rc=$?

    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "tern serve died during the Autobahn run; its log:" >&2
        tail -n 20 "$SERVER_LOG" >&2
        return 1
    fi
    stop_server
    return "$rc"
}

# Steps by name, in order; `bash scripts/test.sh clippy tests` runs only those.
# The test runners' summaries come last, so that they close the output.
STEPS=(install fmt clippy doc nostd fuzz compare tests autobahn-tap autobahn)
declare -A TITLE=(
    [install]="install tools" [fmt]="cargo fmt --check" [clippy]="cargo clippy"
    [doc]="cargo doc" [nostd]="no-std build of tern-core" [fuzz]="fuzz smoke"
    [compare]="tern compare --short" [tests]="tests"
    [autobahn-tap]="Autobahn|Testsuite over TAP" [autobahn]="Autobahn|Testsuite"
)
declare -A BODY=(
    [install]=install_tools [fmt]=fmt_check [clippy]=clippy_check [doc]=doc_check
    [nostd]=no_std_build [fuzz]=fuzz_smoke [compare]=compare_short [tests]=run_tests
    [autobahn-tap]=autobahn_tap [autobahn]=autobahn
)

selected=("$@")
if [[ ${#selected[@]} -eq 0 ]]; then
    selected=("${STEPS[@]}")
fi
for name in "${selected[@]}"; do
    [[ -n "${BODY[$name]:-}" ]] || {
        echo "test.sh: unknown step '$name' (steps: ${STEPS[*]})" >&2
        exit 2
    }
done

n=0
for name in "${selected[@]}"; do
    n=$((n + 1))
    step "$n/${#selected[@]} ${TITLE[$name]}" "${BODY[$name]}"
done

echo
echo "test.sh: all ${#selected[@]} steps passed in $((SECONDS - TOTAL_START))s"
