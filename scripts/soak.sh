#!/usr/bin/env bash
# The soak test: about ten minutes of verified echo clients, churn and
# hostile clients against one tern server on loopback, then checks that
# every connection was freed and memory went back to its baseline.
#
#   scripts/soak.sh              # 600 s
#   SOAK_SECONDS=60 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECONDS="${SOAK_SECONDS:-600}"
# The outer timeout bounds the run even if something hangs.
timeout $((SOAK_SECONDS + 300)) cargo test --release -p tern-transport-std \
    --test faults_soak -- --ignored --nocapture
