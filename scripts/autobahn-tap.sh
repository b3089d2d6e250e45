#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzing client against tern over TAP: the tern
# echo server on tern's smoltcp stack (`tern serve --transport tap`), and the
# suite as a kernel client, both inside the network namespace tern-tap.
#
# usage: scripts/autobahn-tap.sh [--cases '1.*,...'] [--timeout SECONDS]
#
# Steps: scripts/tap-netns.sh up; scripts/install-autobahn.sh (a no-op once
# installed); `tern serve --transport tap` inside the namespace; then
# scripts/autobahn.sh against ws://10.77.0.2:9001, inside the namespace. Every
# case must be OK; INFORMATIONAL is allowed and listed. The server is stopped
# and the namespace removed (scripts/tap-netns.sh down) on every way out.
#
# Without root or without /dev/net/tun it prints "skipped" and exits 0.
# Environment: TERN, a tern binary to use (default: target/release/tern,
# built when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NS=tern-tap
DEV=tap0
PORT=9001
URL="ws://10.77.0.2:$PORT"
# Sections 1 to 10 (the suite has no section 8).
CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*'
TIMEOUT=1800
TERN="${TERN:-$ROOT/target/release/tern}"
LOG="${AUTOBAHN_DIR:-$ROOT/.autobahn}/tern-serve-tap.log"
# How long the server may take to print its listening line, and to stop.
LISTEN_WAIT=10
STOP_WAIT=5

say() { echo "autobahn-tap: $*"; }
die() {
    echo "autobahn-tap: error: $*" >&2
    exit 2
}
skip() {
    say "skipped: $*"
    exit 0
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --cases) CASES="${2:?--cases needs a value}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
    *) die "unknown argument: $1" ;;
    esac
done

[[ "$(id -u)" -eq 0 ]] || skip "needs root (network namespace and TAP device)"
[[ -c /dev/net/tun ]] || skip "/dev/net/tun is missing"
command -v ip >/dev/null || skip "the ip tool (iproute2) is not installed"

if [[ ! -x "$TERN" ]]; then
    say "building the tern binary"
    (cd "$ROOT" && cargo build --release -p tern-bench)
fi
"$ROOT/scripts/install-autobahn.sh"

SERVER=""
# shellcheck disable=SC2317 # runs through the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$SERVER" ]] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        for _ in $(seq $((STOP_WAIT * 10))); do
            kill -0 "$SERVER" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER" 2>/dev/null; then
            say "the server did not stop within ${STOP_WAIT}s of SIGTERM; killing it"
            kill -KILL "$SERVER" 2>/dev/null || true
        fi
        wait "$SERVER" 2>/dev/null || true
    fi
    "$ROOT/scripts/tap-netns.sh" down "$NS" "$DEV" >/dev/null 2>&1 ||
        echo "autobahn-tap: warning: could not remove namespace $NS" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/scripts/tap-netns.sh" up "$NS" "$DEV"
mkdir -p "$(dirname "$LOG")"
# `ip netns exec` execs the command, so $! is the server's own pid.
ip netns exec "$NS" "$TERN" serve --transport tap --tap "$DEV" --port "$PORT" >"$LOG" 2>&1 &
SERVER=$!

for _ in $(seq $((LISTEN_WAIT * 10))); do
    grep -q "^tern serve: listening on $URL" "$LOG" && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; die "the server exited before listening"; }
    sleep 0.1
done
grep -q "^tern serve: listening on $URL" "$LOG" ||
    { cat "$LOG" >&2; die "no listening line from the server within ${LISTEN_WAIT}s"; }
say "server $SERVER listening on $URL inside namespace $NS (log: ${LOG#"$ROOT"/})"

start=$SECONDS
set +e
ip netns exec "$NS" "$ROOT/scripts/autobahn.sh" --url "$URL" --cases "$CASES" \
    --agent tern-tap --timeout "$TIMEOUT"
status=$?
set -e
say "suite finished in $((SECONDS - start))s with status $status"
kill -0 "$SERVER" 2>/dev/null || { say "the server died during the run:"; tail -n 20 "$LOG" >&2; exit 1; }
exit "$status"
