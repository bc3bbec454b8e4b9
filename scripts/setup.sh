#!/usr/bin/env bash
# Creates .venv (if missing) and installs tunefleet and its first-party providers.
#   --train  also the trainer's stack (torch, transformers, peft, TRL): tunefleet-trainer[train]
#   --dev    the trainer's stack and the test and lint tools (what CI needs)
# Safe to run again: it only brings the venv up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
# torch is installed first, pinned: an unpinned torch (or a range admitting a newer
# release) pulls the newest CUDA build, several GB. Set TORCH_SPEC for another build.
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# pip >= 25.1 reads PEP 735 dependency groups (--group) from the root pyproject.toml.
"${pip[@]}" --upgrade "pip>=25.1"
# The trainer's distribution is named with core: core depends on it (the trainer's
# contract), and pip takes the local copy named in the same command. Then every provider
# under providers/, so a new one is installed without being named here; with --dev, each
# with its `test` extra (what its own tests need).
providers() {
    for dir in providers/*/; do
        printf '%s\n' "-e" "${dir%/}$1"
    done
}
case "${1:-}" in
    "") mapfile -t packages < <(providers "") ; packages=(-e deploy/trainer -e core "${packages[@]}") ;;
    --train) mapfile -t packages < <(providers "") ; packages=(-e "deploy/trainer[train]" -e core "${packages[@]}") ;;
    --dev) mapfile -t packages < <(providers "[test]") ; packages=(-e "deploy/trainer[train]" -e core "${packages[@]}" --group dev) ;;
    *) echo "usage: scripts/setup.sh [--train|--dev]" >&2; exit 2 ;;
esac
if [ "${1:-}" = "--dev" ] || [ "${1:-}" = "--train" ]; then
    "${pip[@]}" "$torch_spec"
fi
"${pip[@]}" "${packages[@]}"
# The HyperPod provider's tests run against a real Slurm, sshd, etcd and kube-apiserver
# (built once per machine, outside the clone); without them those tests skip, saying so.
if [ "${1:-}" = "--dev" ]; then
    bash scripts/test-servers.sh \
        || echo "setup: scripts/test-servers.sh failed; the HyperPod tests that need its servers will skip" >&2
fi
# The Azure provider's tests run against Azurite, the real Azure Blob server (an npm
# package), kept outside the clone so a fresh clone reuses it.
if [ "${1:-}" = "--dev" ]; then
    azurite_home="${TUNEFLEET_AZURITE_HOME:-$HOME/.cache/tunefleet-azurite}"
    if [ ! -f "$azurite_home/node_modules/azurite/dist/src/blob/main.js" ] && command -v npm >/dev/null; then
        mkdir -p "$azurite_home"
        npm install --silent --no-audit --no-fund --prefix "$azurite_home" azurite@3.35.0 >/dev/null
    fi
fi
