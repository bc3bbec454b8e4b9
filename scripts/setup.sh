#!/usr/bin/env bash
# Creates .venv (if missing) and installs tunefleet, its first-party providers and, with
# --dev, the test and lint tools. Safe to run again: it only brings the venv up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# pip >= 25.1 reads PEP 735 dependency groups (--group) from the root pyproject.toml.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
packages=(-e core -e providers/local)
if [ "${1:-}" = "--dev" ]; then
    packages+=(--group dev)
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${packages[@]}"
