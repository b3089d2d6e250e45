#!/bin/sh
# Creates (up) or removes (down) a network namespace holding one TAP device
# for tern's smoltcp transport. Idempotent: running `up` twice, or `down`
# on nothing, is not an error.
#
#   scripts/tap-netns.sh up|down|status [namespace] [device]
#
# Defaults: namespace tern-tap, device tap0. Inside the namespace the kernel
# side of the device is 10.77.0.1/24 and tern (over smoltcp) takes 10.77.0.2.
# Nothing routes out of the namespace: it has no other interface than its
# own loopback and the TAP device, so traffic stays inside it.
#
# Needs root (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN for the device).
set -eu

action=${1:-}
ns=${2:-tern-tap}
dev=${3:-tap0}
kernel_addr=10.77.0.1/24

usage() {
    echo "usage: $0 up|down|status [namespace] [device]" >&2
    exit 2
}

has_ns() {
    ip netns list | awk '{print $1}' | grep -qx "$ns"
}

in_ns() {
    ip netns exec "$ns" "$@"
}

case "$action" in
up)
    has_ns || ip netns add "$ns"
    in_ns ip link set lo up
    if ! in_ns ip link show "$dev" >/dev/null 2>&1; then
        in_ns ip tuntap add dev "$dev" mode tap
    fi
    # IPv6 would only add router solicitations the IPv4-only stack ignores.
    in_ns sysctl -q -w "net.ipv6.conf.$dev.disable_ipv6=1" >/dev/null 2>&1 || true
    if ! in_ns ip -4 addr show dev "$dev" | grep -q "inet $kernel_addr"; then
        in_ns ip addr add "$kernel_addr" dev "$dev"
    fi
    in_ns ip link set "$dev" up
    echo "namespace $ns: $dev at $kernel_addr (kernel); tern takes 10.77.0.2"
    ;;
down)
    if has_ns; then
        in_ns ip link del "$dev" >/dev/null 2>&1 || true
        ip netns del "$ns"
    fi
    echo "namespace $ns: removed"
    ;;
status)
    if has_ns; then
        in_ns ip -brief addr show
    else
        echo "namespace $ns: absent"
        exit 1
    fi
    ;;
*)
    usage
    ;;
esac
