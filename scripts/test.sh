#!/usr/bin/env bash
# Sets up the development environment and runs everything CI checks: lint, types, tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -k spec -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Layering: core, the trainer and the providers import only what ARCHITECTURE.md allows.
.venv/bin/python scripts/layering.py
.venv/bin/python -m pytest "$@"
