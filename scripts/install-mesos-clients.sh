#!/usr/bin/env bash
# Installs the real Mesos clients the compatibility tests run, unmodified, into a venv:
#   pymesos 0.3.15 (douban) and avmesos-cli 1.0.0 (AVENTER's mesos-cli), from PyPI.
# pymesos depends on http-parser 0.9.0, whose C extension no longer builds on Python >= 3.11.
# That package also ships a pure-Python parser, which it falls back to when the extension is
# missing: so pymesos is installed without dependencies, its other dependencies come from
# tests/compat/requirements.txt, and only the Python modules of the http-parser sdist are put
# in place (no C build).
set -euo pipefail
venv=${1:?usage: install-mesos-clients.sh VENV}
py="$venv/bin/python"
pip() { "$py" -m pip --quiet --disable-pip-version-check "$@"; }

pip install --no-deps pymesos==0.3.15 avmesos-cli==1.0.0

site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$site/http_parser/pyparser.py" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  pip download --no-deps --no-binary :all: http-parser==0.9.0 -d "$work"
  tar -xzf "$work"/http-parser-0.9.0.tar.gz -C "$work"
  mkdir -p "$site/http_parser"
  cp "$work"/http-parser-0.9.0/http_parser/*.py "$site/http_parser/"
fi
"$py" -c 'import pymesos, http_parser.http, avmesos.cli' \
  || { echo "the Mesos clients did not install" >&2; exit 1; }
