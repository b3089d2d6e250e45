#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzing client against an already running server
# and check its report.
#
# usage: scripts/autobahn.sh [--url ws://127.0.0.1:9001] [--cases '1.*,2.*,...']
#                            [--agent tern] [--timeout SECONDS]
#
# The caller starts the server. This script checks that something listens at
# the URL, writes a fuzzingclient spec to .autobahn/spec.json, runs wstest
# (installed by scripts/install-autobahn.sh) with a time bound, and checks
# .autobahn/reports/index.json with scripts/autobahn/check_report.py: every case
# must be OK; INFORMATIONAL is allowed and listed. Exit status is non-zero on
# any failed case, on a missing report, or when the run is cut by the timeout.
#
# Only loopback servers are accepted (127.0.0.0/8, localhost, ::1), and
# 10.77.0.2 (tern over TAP) when run inside the tern-tap namespace: this
# project aims its test tools at nothing else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AB_DIR="${AUTOBAHN_DIR:-$ROOT/.autobahn}"
WSTEST="$AB_DIR/wstest"
SPEC="$AB_DIR/spec.json"
REPORTS="$AB_DIR/reports"
LOG="$AB_DIR/fuzzingclient.log"
CHECKER="$ROOT/scripts/autobahn/check_report.py"

URL="ws://127.0.0.1:9001"
# The suite's core sections. It has no section 8, so "8.*" would match
# nothing (and the checker fails on a pattern that matches nothing). Sections
# 12 and 13 (permessage-deflate) are not in the default: tern negotiates no
# extension.
CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*'
AGENT="tern"
TIMEOUT=1200

say() { echo "autobahn: $*"; }
die() {
    echo "autobahn: error: $*" >&2
    exit 2
}

usage() {
    sed -n '5,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --url) URL="${2:?--url needs a value}"; shift 2 ;;
    --cases) CASES="${2:?--cases needs a value}"; shift 2 ;;
    --agent) AGENT="${2:?--agent needs a value}"; shift 2 ;;
    --timeout) TIMEOUT="${2:?--timeout needs a value}"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "autobahn: unknown argument: $1" >&2; usage ;;
    esac
done

[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, got '$TIMEOUT'"
[[ "$AGENT" =~ ^[A-Za-z0-9._-]+$ ]] || die "--agent may hold only letters, digits, '.', '_' and '-'"

# Split ws://host:port/path into host and port; IPv6 hosts come in brackets.
if [[ "$URL" =~ ^ws://\[([0-9A-Fa-f:]+)\](:([0-9]+))?(/.*)?$ ]]; then
    HOST="${BASH_REMATCH[1]}"
    PORT="${BASH_REMATCH[3]:-80}"
elif [[ "$URL" =~ ^ws://([A-Za-z0-9.-]+)(:([0-9]+))?(/.*)?$ ]]; then
    HOST="${BASH_REMATCH[1]}"
    PORT="${BASH_REMATCH[3]:-80}"
else
    die "cannot parse --url '$URL' (expected ws://HOST:PORT[/PATH]; wss is not supported)"
fi

case "$HOST" in
127.* | localhost | ::1) ;;
10.77.0.2)
    # tern's address on the TAP device of scripts/tap-netns.sh. Accepted only
    # when this script runs inside that namespace, which has no route out.
    netns="$(ip netns identify "$$" 2>/dev/null || true)"
    [[ "$netns" == tern-tap ]] ||
        die "refusing 10.77.0.2 outside the tern-tap namespace: run under 'ip netns exec tern-tap'"
    ;;
*) die "refusing non-loopback host '$HOST': point --url at 127.0.0.0/8, localhost or ::1" ;;
esac

[[ -x "$WSTEST" ]] || die "wstest not installed at $WSTEST: run scripts/install-autobahn.sh first"

# Something must listen before the suite starts: otherwise wstest reports
# every case as failed, which hides the real cause.
# shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$PORT" 2>/dev/null; then
    die "nothing listens at $HOST:$PORT: start the server first (e.g. target/release/tern serve --port $PORT --host $HOST)"
fi

# The spec, written by python3 to get JSON quoting right.
mkdir -p "$AB_DIR"
python3 - "$SPEC" "$REPORTS" "$AGENT" "$URL" "$CASES" <<'EOF'
import json, sys
spec_path, outdir, agent, url, cases = sys.argv[1:]
patterns = [c.strip() for c in cases.split(",") if c.strip()]
if not patterns:
    sys.exit("autobahn: error: --cases holds no case pattern")
spec = {
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": patterns,
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
with open(spec_path, "w", encoding="utf-8") as f:
    json.dump(spec, f, indent=2)
EOF

# A report left from an earlier run must never pass for this one.
rm -rf "$REPORTS"
mkdir -p "$REPORTS"

say "running cases $CASES against $URL (agent $AGENT, at most ${TIMEOUT}s; log: ${LOG#"$ROOT"/})"
start=$SECONDS
set +e
(cd "$AB_DIR" && timeout --kill-after=10 "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$SPEC") >"$LOG" 2>&1
status=$?
set -e
say "wstest finished in $((SECONDS - start))s with status $status"

if [[ $status -eq 124 || $status -eq 137 ]]; then
    tail -n 5 "$LOG" >&2
    echo "autobahn: error: wstest did not finish within ${TIMEOUT}s" >&2
    exit 1
fi
if [[ $status -ne 0 ]]; then
    tail -n 20 "$LOG" >&2
    echo "autobahn: error: wstest failed (status $status); see $LOG" >&2
    exit 1
fi

python3 "$CHECKER" "$REPORTS/index.json" --agent "$AGENT" --cases "$CASES"
