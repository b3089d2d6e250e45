#!/usr/bin/env bash
# Installs the peer echo servers that `tern compare` measures tern against,
# under bench/peers/:
#
#   node-ws            bench/peers/node/node_modules (npm ci, version pinned
#                      in package.json and package-lock.json)
#   websocketpp        bench/peers/websocketpp/build/echo (g++ -O2 against
#                      Debian's libwebsocketpp-dev and libasio-dev)
#   tokio-tungstenite  bench/peers/rust/target/release/tungstenite-echo
#   fastwebsockets     bench/peers/rust/target/release/fastwebsockets-echo
#                      (cargo build --release --locked)
#
# Safe to run again: what is built and up to date is skipped. A peer that
# cannot be installed is reported as missing; with --strict (for CI) the
# script then exits 1.
#
# usage: scripts/install-peers.sh [--strict]

set -u

strict=0
for arg in "$@"; do
    case "$arg" in
        --strict) strict=1 ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-peers: unknown option $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/bench/peers"
missing=()

say() { echo "install-peers: $*"; }
miss() {
    say "MISSING $1: $2"
    missing+=("$1")
}

# True when $1 exists and is newer than every later argument.
newer_than() {
    local target=$1
    shift
    [ -e "$target" ] || return 1
    local f
    for f in "$@"; do
        [ "$f" -nt "$target" ] && return 1
    done
    return 0
}

# Debian packages, installed when absent (needs root and the apt lists).
apt_packages() {
    local absent=()
    local p
    for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || absent+=("$p")
    done
    [ ${#absent[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || return 1
    [ "$(id -u)" -eq 0 ] || return 1
    say "apt-get install ${absent[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${absent[@]}" >/dev/null; then
        # The package lists may be missing or stale on a fresh machine.
        apt-get update -q >/dev/null || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${absent[@]}" >/dev/null || return 1
    fi
}

install_node() {
    local dir="$peers/node"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        miss node-ws "node and npm are not on PATH"
        return
    fi
    local want have
    want=$(node -p "require('$dir/package.json').dependencies.ws" 2>/dev/null)
    have=$(node -p "require('$dir/node_modules/ws/package.json').version" 2>/dev/null)
    if [ -n "$want" ] && [ "$want" = "$have" ]; then
        say "node-ws: ws $have is up to date"
        return
    fi
    say "node-ws: npm ci (ws $want)"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
        miss node-ws "npm ci failed"
        return
    fi
    have=$(node -p "require('$dir/node_modules/ws/package.json').version" 2>/dev/null)
    [ "$want" = "$have" ] || miss node-ws "npm installed ws '$have', expected '$want'"
}

install_websocketpp() {
    local dir="$peers/websocketpp"
    if ! apt_packages libwebsocketpp-dev libasio-dev; then
        miss websocketpp "cannot install libwebsocketpp-dev and libasio-dev (needs root and apt)"
        return
    fi
    if ! command -v g++ >/dev/null; then
        miss websocketpp "g++ is not on PATH"
        return
    fi
    if newer_than "$dir/build/echo" "$dir/echo.cpp" /usr/include/websocketpp/version.hpp; then
        say "websocketpp: build/echo is up to date"
        return
    fi
    say "websocketpp: g++ -O2 echo.cpp"
    mkdir -p "$dir/build"
    if ! g++ -O2 -std=c++17 -o "$dir/build/echo.tmp" "$dir/echo.cpp" -pthread; then
        miss websocketpp "echo.cpp did not compile"
        return
    fi
    mv "$dir/build/echo.tmp" "$dir/build/echo"
}

install_rust() {
    local dir="$peers/rust"
    if ! command -v cargo >/dev/null; then
        miss tokio-tungstenite "cargo is not on PATH"
        miss fastwebsockets "cargo is not on PATH"
        return
    fi
    local sources=("$dir/Cargo.toml" "$dir/Cargo.lock" "$dir"/src/*.rs "$dir"/src/bin/*.rs)
    local bins=(tungstenite-echo fastwebsockets-echo)
    local fresh=1 b
    for b in "${bins[@]}"; do
        newer_than "$dir/target/release/$b" "${sources[@]}" || fresh=0
    done
    if [ $fresh -eq 1 ]; then
        say "rust peers: ${bins[*]} are up to date"
        return
    fi
    say "rust peers: cargo build --release --locked"
    if ! (cd "$dir" && cargo build --release --locked --quiet); then
        miss tokio-tungstenite "cargo build failed"
        miss fastwebsockets "cargo build failed"
        return
    fi
    for b in "${bins[@]}"; do
        # cargo leaves an up-to-date binary untouched; mark it as checked.
        [ -x "$dir/target/release/$b" ] && touch "$dir/target/release/$b"
    done
}

install_node
install_websocketpp
install_rust

if [ ${#missing[@]} -eq 0 ]; then
    say "all peers installed"
    exit 0
fi
say "missing: ${missing[*]}"
[ $strict -eq 1 ] && exit 1
exit 0
