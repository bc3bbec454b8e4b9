"""What `tunefleet run` costs when it only reattaches to a finished run with a big dataset.

    .venv/bin/python benchmarks/reattach.py [--gigabytes 1.0] [--repeat 3]

It writes a chat dataset of the given size (unique examples, about 2.5 KB each, under
.bench/), installs tunefleet's fake provider into a throwaway site directory, runs the spec
to the end once, then times `tunefleet run SPEC --json` again, which finds the finished run
and reattaches: with the validation cache as it is after the first run, and once with the
cache emptied (what every reattach cost before the cache). The goal (issue 18): under 3 s
in all for 1 GB. Results also in .bench/reattach.json. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tunefleet.testing import write_entry_point

WORDS = [
    "model",
    "data",
    "train",
    "token",
    "loss",
    "learning",
    "rate",
    "batch",
    "epoch",
    "adapter",
    "layer",
    "weight",
    "gradient",
    "cloud",
    "region",
    "network",
    "key",
    "storage",
    "endpoint",
    "deploy",
    "evaluate",
    "answer",
    "question",
    "policy",
    "Paris",
    "Berlin",
    "Tokyo",
    "Lagos",
    "Lima",
    "château",
    "straße",
    "naïve",
    "café",
    "übung",
    "東京",
    "データ",
    "モデル",
]


def make_dataset(path: Path, size: int) -> None:
    """Unique chat examples up to ``size`` bytes (deterministic, so a rerun reuses it)."""
    if path.exists() and path.stat().st_size >= size:
        return
    rng = random.Random(18)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        index = 0
        while written < size:
            question = " ".join(rng.choices(WORDS, k=rng.randint(20, 120)))
            answer = " ".join(rng.choices(WORDS, k=rng.randint(80, 400)))
            line = json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "You answer questions about training."},
                        {"role": "user", "content": f"Question {index}: {question}?"},
                        {"role": "assistant", "content": answer},
                    ]
                },
                ensure_ascii=False,
            )
            out.write(line + "\n")
            written += len(line.encode()) + 1
            index += 1


def _run(spec: Path, env: dict[str, str], cwd: Path) -> tuple[float, dict[str, object]]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tunefleet", "run", str(spec), "--json"],
        env=env, cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tunefleet run failed ({done.returncode}): {done.stderr[-800:]}")
    return took, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench = Path(".bench").resolve()
    bench.mkdir(exist_ok=True)
    dataset = bench / f"reattach-{args.gigabytes:g}g.jsonl"
    make_dataset(dataset, int(args.gigabytes * 1e9))
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        site = work / "site"
        write_entry_point(site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
        cache = work / "cache"
        env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "TUNEFLEET_STATE": f"sqlite:///{work / 'journal.db'}",
            "TUNEFLEET_CACHE_DIR": str(cache),
            "TUNEFLEET_POLL_INTERVAL": "0.02",
        }
        # As installed, modules load from cached bytecode (the first run writes it).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        spec = work / "spec.yaml"
        spec.write_text(
            json.dumps(
                {
                    "name": "reattach",
                    "base_model": "gpt-4o-mini-2024-07-18",
                    "dataset": str(dataset),
                    "targets": [
                        {
                            "name": "t",
                            "provider": "fake",
                            "options": {"root": str(work / "provider"), "steps": 3},
                        }
                    ],
                }
            )
        )
        first, summary = _run(spec, env, work)
        print(f"first run (validates, stages, trains): {first:.1f} s; run {summary['id']}")
        warm = []
        for _ in range(args.repeat):
            took, again = _run(spec, env, work)
            assert again["id"] == summary["id"], "a reattach, not a new run"
            warm.append(took)
        shutil.rmtree(cache / "validation", ignore_errors=True)
        cold, again = _run(spec, env, work)
        assert again["id"] == summary["id"]
    size = dataset.stat().st_size
    result = {
        "dataset_bytes": size,
        "first_run_s": round(first, 2),
        "reattach_s_median": round(statistics.median(warm), 2),
        "reattach_s": [round(t, 2) for t in warm],
        "reattach_without_cache_s": round(cold, 2),
    }
    print("| dataset | reattach (cached) | reattach with the cache emptied |")
    print("|---|---|---|")
    print(
        f"| {size / 1e9:.2f} GB | {result['reattach_s_median']:.2f} s (median of "
        f"{args.repeat}) | {cold:.1f} s |"
    )
    (bench / "reattach.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
