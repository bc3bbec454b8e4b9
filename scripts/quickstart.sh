#!/usr/bin/env bash
# The quickstart, end to end on this machine: set up tunefleet with its trainer, validate
# the example's data, train the model (progress and falling loss as it goes), score it on
# the golden set, serve it behind a local OpenAI-compatible endpoint once it passes the
# evaluation gate, ask it a question, and take the endpoint down.
# Everything it writes stays in build/quickstart/ (journal, staged data, model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --train
example=examples/quickstart
state=build/quickstart
rm -rf "$state"
mkdir -p "$state"
export TUNEFLEET_STATE="sqlite:///$PWD/$state/journal.db"
export TUNEFLEET_LOCAL_WORKDIR="$PWD/$state/local"
tunefleet=.venv/bin/tunefleet
$tunefleet data validate "$example/data/train.jsonl"
$tunefleet run "$example/tunefleet.yaml"
$tunefleet models show parcelwise-support
$tunefleet deploy parcelwise-support
system="You are the support assistant for Parcelwise, a shipping and returns app for online shops. Answer in one or two short sentences."
question="How do I print a shipping label?"
echo "Q: $question"
echo "A: $($tunefleet invoke parcelwise-support --system "$system" "$question")"
$tunefleet undeploy parcelwise-support
$tunefleet report parcelwise-support -o "$state/report.html"
