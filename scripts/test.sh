#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds yard, installs the Debian packages the tests
# use when missing (openssl, prometheus, chromium, tcpdump), runs the Rust unit, property and
# multi-process tests, then installs the pinned real third-party clients (zeekpy, ...) into
# .venv (pymesos and avmesos-cli through scripts/install-mesos-clients.sh) and runs the
# compatibility tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps --workspace --locked --quiet

echo "== building (release)"
cargo build --release --locked --bin yard

echo "== Debian packages the tests use"
# OpenSSL's client tries TLS 1.2 and 1.3 against the gateway
# (crates/yard/tests/tls.rs); Prometheus scrapes the center (tests/compat/test_prometheus.py);
# Chromium shows the dashboard to Playwright (tests/compat/test_dashboard.py), which never
# downloads a browser of its own.
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# The multi-host test bed (crates/yard/tests/multihost.rs): namespaces, a capture on its bridge,
# and curl reading a center's metrics inside a namespace.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# systemd-analyze checks the units `yard install` writes (crates/yard/tests/install.rs).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (apt-get install them, or run as root)" >&2
    exit 1
  fi
fi

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --no-fail-fast
else
  cargo test --release --locked --workspace --no-fail-fast
fi

echo "== compatibility tests with real clients"
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

echo "== Python SDK (python/): lints, types, the wheel, tests against the real binary"
sdk=.venv-sdk
sreq=python/requirements-test.txt
if [ ! -x "$sdk/bin/python" ] || ! cmp -s "$sreq" "$sdk/.requirements"; then
  python3 -m venv --clear "$sdk"
  "$sdk/bin/python" -m pip install --quiet --disable-pip-version-check -r "$sreq"
  cp "$sreq" "$sdk/.requirements"
fi
(cd python && "../$sdk/bin/ruff" check . && "../$sdk/bin/ruff" format --check . \
  && "../$sdk/bin/mypy" src examples)
rm -rf target/sdk-dist
"$sdk/bin/python" -m build --wheel --no-isolation --outdir target/sdk-dist python >/dev/null
wheel=$(ls target/sdk-dist/switchyard_sdk-*.whl)
# The tests import the installed wheel, not the source tree.
"$sdk/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
YARD_BIN="$PWD/target/release/yard" SWITCHYARD_WHEEL="$PWD/$wheel" \
  "$sdk/bin/python" -m pytest -q -p no:cacheprovider python/tests
# The API reference, from the docstrings of the installed package.
mkdir -p target/sdk-docs
(cd target/sdk-docs && "../../$sdk/bin/python" -m pydoc -w switchyard switchyard.sync switchyard.values \
  switchyard.errors switchyard.stores switchyard.center switchyard.testing >/dev/null)
