#!/usr/bin/env bash
# The Python SDK beside zeekpy (events published to the same yard node, counted by an SDK
# subscriber) and nats.py (request round trips to nats-server), in one run; then pipelined
# store puts. Installs nats-server (Debian) when missing; uses .venv-sdk (made as scripts/test.sh
# makes it) plus zeekpy and nats-py, pinned here. Usage: scripts/bench-sdk.sh [EVENTS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000}
requests=${2:-5000}
command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }
cargo build --release --locked --bin yard
py=.venv-sdk/bin/python
if [ ! -x "$py" ]; then
  python3 -m venv .venv-sdk
  "$py" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt
fi
"$py" -m pip install --quiet --disable-pip-version-check zeekpy==0.3.1 nats-py==2.16.0
"$py" -m pip install --quiet --disable-pip-version-check -e python
home=$(mktemp -d)
trap 'kill $ypid $npid 2>/dev/null || true; rm -rf "$home"' EXIT
export YARD_HOME=$home YARD_LOG=error
target/release/yard token list >/dev/null
token=$(cat "$home/credentials")
target/release/yard node --listen 127.0.0.1:19931 --master bench >/dev/null 2>&1 &
ypid=$!
nats-server -a 127.0.0.1 -p 14931 >/dev/null 2>&1 &
npid=$!
for p in 19931 14931; do
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
"$py" python/bench/sdk_bench.py --yard ws://127.0.0.1:19931 --token "$token" \
  --nats nats://127.0.0.1:14931 --events "$events" --requests "$requests"
