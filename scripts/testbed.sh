#!/usr/bin/env bash
# A multi-host test bed on one machine: each host is a network namespace with its own address,
# joined to the others by a veth pair into a bridge that lives in a namespace of its own (so the
# machine's own network is never touched, and a capture on the bridge sees every byte between
# hosts). Needs root (ip netns).
#
#   scripts/testbed.sh up PREFIX HOST=ADDR...   make the switch and the hosts (ADDR in 10.x/24)
#   scripts/testbed.sh cut PREFIX HOST          take a host's link down (a host cut off)
#   scripts/testbed.sh mend PREFIX HOST         bring it back
#   scripts/testbed.sh down PREFIX              remove every namespace and link of PREFIX
#
# Namespaces are PREFIX-sw (the bridge) and PREFIX-HOST; each host's interface is eth0 with
# ADDR/24, and lo is up. Names are short (interface names are 15 bytes at most): keep PREFIX
# to 6 characters and HOST to 6.
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
prefix=$2
shift 2
sw="$prefix-sw"

# The switch-side end of a host's veth pair.
port() { echo "${prefix}${1}"; }

case "$cmd" in
up)
  [ $# -ge 1 ] || usage
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for spec in "$@"; do
    host=${spec%%=*}
    addr=${spec#*=}
    ns="$prefix-$host"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Made inside the host's namespace, then its peer moved into the switch's.
    ip -n "$ns" link add eth0 type veth peer name "$(port "$host")"
    ip -n "$ns" link set "$(port "$host")" netns "$sw"
    ip -n "$sw" link set "$(port "$host")" master br0
    ip -n "$sw" link set "$(port "$host")" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  ;;
cut)
  [ $# -eq 1 ] || usage
  ip -n "$sw" link set "$(port "$1")" down
  ;;
mend)
  [ $# -eq 1 ] || usage
  ip -n "$sw" link set "$(port "$1")" up
  ;;
down)
  # Every process left in the namespaces first, then the namespaces (their links go with them).
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}-" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
  ;;
*)
  usage
  ;;
esac
