#!/usr/bin/env bash
# Sets up tunefleet and walks the quickstart: a starter project, its data validated, and
# the plan of its run on the embedded local provider.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
project=build/quickstart
.venv/bin/tunefleet init "$project" --force
.venv/bin/tunefleet data validate "$project/data/train.jsonl"
.venv/bin/tunefleet plan "$project/tunefleet.yaml"
