#!/usr/bin/env bash
# Side-by-side mesh benchmark: `yard bench mesh` (two peered endpoints, native clients) and
# bench/nats (the same workloads through nats-server with async-nats), interleaved, ROUNDS times.
# Installs nats-server from Debian when missing. Prints every run and a summary of medians.
# Usage: scripts/bench-mesh.sh [ROUNDS]   (results also in target/bench-mesh.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}

if ! command -v nats-server >/dev/null; then
  echo "== installing nats-server (Debian package)"
  apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
fi
echo "== building"
cargo build --release --locked --bin yard
cargo build --release --manifest-path bench/nats/Cargo.toml
yard=target/release/yard
nats=bench/nats/target/release/natsbench

port=14222
nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
npid=$!
trap 'kill $npid 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

out=target/bench-mesh.txt
: > "$out"
run() { # system, then the workload's arguments
  local sys=$1; shift
  local line
  if [ "$sys" = yard ]; then
    line=$(YARD_LOG=error "$yard" bench mesh --workload "$@")
  else
    line=$("$nats" "$@" --server "127.0.0.1:$port" --pid "$npid")
  fi
  echo "system=$sys $line" | tee -a "$out"
}
for r in $(seq "$rounds"); do
  echo "== round $r of $rounds"
  for sys in yard nats; do
    run $sys throughput --size 16 --messages 2000000
    run $sys throughput --size 1024 --messages 500000
    run $sys throughput --size 16 --subscribers 4 --messages 1000000
    run $sys latency --size 16 --rate 20000 --latency-messages 100000
    run $sys request --size 16 --requests 20000
  done
done
# Memory once per system on a fresh server (it only grows).
run yard memory --idle 500 --subscriptions 10000
kill $npid; wait $npid 2>/dev/null || true
nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
npid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
run nats memory --idle 500 --subscriptions 10000

echo "== summary: median (min-max) of $rounds runs"
python3 - "$out" <<'PY'
import sys, statistics as st, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split())
    w = kv["workload"]
    if w == "throughput":
        key = f"throughput {kv['size']} B x{kv['subscribers']} (deliveries/s)"
        rows[(key, kv["system"])].append(float(kv["value"]))
    elif w in ("latency", "request"):
        for q in ("p50_us", "p99_us"):
            rows[(f"{w} {q} (µs)", kv["system"])].append(float(kv[q]))
    else:
        for q in ("per_peer_bytes", "per_subscription_bytes"):
            rows[(f"memory {q}", kv["system"])].append(float(kv[q]))
keys = sorted({k for k, _ in rows})
print(f"| workload | yard | nats-server | yard / nats |\n|---|---|---|---|")
fmt = lambda v: f"{st.median(v):,.1f} ({min(v):,.1f}–{max(v):,.1f})" if len(v) > 1 else f"{v[0]:,.1f}"
for k in keys:
    y, n = rows.get((k, "yard"), []), rows.get((k, "nats"), [])
    ratio = st.median(y) / st.median(n) if y and n else float("nan")
    print(f"| {k} | {fmt(y)} | {fmt(n)} | {ratio:.2f} |")
PY
