#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds yard, runs the Rust unit, property and
# multi-process tests, then installs the pinned real third-party clients (zeekpy, ...) into
# .venv (pymesos and avmesos-cli through scripts/install-mesos-clients.sh, and the Debian
# package prometheus when missing) and runs the compatibility tests
# against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --workspace --locked --quiet

echo "== building (release)"
cargo build --release --locked --bin yard

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --no-fail-fast
else
  cargo test --release --locked --workspace --no-fail-fast
fi

echo "== compatibility tests with real clients"
# Prometheus (Debian package) scrapes the center in tests/compat/test_prometheus.py.
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "prometheus is missing: install the Debian package (apt-get install prometheus) or run as root" >&2
    exit 1
  fi
fi
venv=.venv
req=tests/compat/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/.requirements"; then
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  # pymesos and avmesos-cli (their install needs care: see the script).
  bash scripts/install-mesos-clients.sh "$venv"
  cp "$req" "$venv/.requirements"
fi
YARD_BIN="$PWD/target/release/yard" TZ=UTC "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/compat
