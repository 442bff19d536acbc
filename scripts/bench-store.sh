#!/usr/bin/env bash
# Stores side by side with redis-server on this machine, interleaved rounds, medians.
#   scripts/bench-store.sh [ROUNDS]     (default 5)
# Installs redis-server and redis-tools (redis-benchmark) from Debian if missing. Figures:
#   yard:  `yard bench store` (one WebSocket client, 256 operations in flight)
#   redis: `redis-benchmark -c 1 -P 256` (one client, 256 pipelined) and its default
#          (50 clients, no pipelining)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server and redis-tools (Debian packages)..." >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release --locked --bin yard >/dev/null
yard=target/release/yard
port=16399
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
out=$(mktemp)
for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  "$yard" bench store --ops 200000 --json 2>/dev/null | sed 's/^/yard /' >>"$out"
  redis-benchmark -p "$port" -c 1 -P 256 -n 1000000 -t set,get --csv -q 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 {print "redis " $1 " (1 client, 256 pipelined) " $2}' >>"$out"
  redis-benchmark -p "$port" -n 200000 -t set,get --csv -q 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 {print "redis " $1 " (50 clients, no pipelining) " $2}' >>"$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, rest = line.split(" ", 1)
    if who == "yard":
        j = json.loads(rest)
        rows["yard " + j["figure"]].append(j["ops_per_sec"])
    else:
        name, rate = rest.rsplit(" ", 1)
        rows["redis " + name].append(float(rate))
print(f"{'figure':<52} {'median':>10} {'min':>10} {'max':>10}  (ops/s)")
for k, v in rows.items():
    print(f"{k:<52} {statistics.median(v):>10.0f} {min(v):>10.0f} {max(v):>10.0f}")
PY
rm -f "$out"
