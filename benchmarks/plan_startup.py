"""What `tunefleet plan` of a one-target spec costs, against importing that target's SDK.

    .venv/bin/python benchmarks/plan_startup.py [--repeat N]

For each provider it writes a one-target spec (12 examples, every required option, nothing
a plan would refuse) and times, interleaved and in fresh interpreters, `tunefleet plan
SPEC --json` and `python -c "import SDK"` for the SDK that provider's calls use (plain
`python -c pass` for local, which plans without one). The goal (issue 18): each plan costs
at most that SDK's import + 0.3 s. HyperPod is left out: its plan reads the cluster.
Medians decide; the best run of each is shown beside them. Results also in
.bench/plan_startup.json. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_ticks, percent, steal_share

BUDGET_SECONDS = 0.3
"""What a plan may cost beyond its SDK's import."""

TARGETS: dict[str, tuple[str, str, str]] = {
    # provider: (base model, options as YAML lines, SDK module its calls import)
    "local": ("HuggingFaceTB/SmolLM2-135M", "", ""),
    "openai": ("gpt-4o-mini-2024-07-18", "", "openai"),
    "sagemaker": (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "    region: us-east-1\n    options:\n"
        "      role_arn: arn:aws:iam::123456789012:role/tunefleet\n"
        "      bucket: tunefleet-bench\n"
        "      training_image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1\n",
        "boto3",
    ),
    "azureml": (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "    region: eastus\n    options:\n"
        "      subscription_id: 00000000-0000-0000-0000-000000000000\n"
        "      resource_group: rg\n      workspace: bench-ws\n"
        "      training_image: benchacr.azurecr.io/tunefleet-trainer:1\n",
        "azure.ai.ml",
    ),
    "vertex": (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "    region: us-central1\n    options:\n"
        "      project: bench-project\n      bucket: bench-bucket\n"
        "      training_image: us-central1-docker.pkg.dev/bench-project/tunefleet/trainer:1\n",
        "google.cloud.aiplatform_v1",
    ),
}


def _write_specs(folder: Path) -> dict[str, Path]:
    example = {
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ]
    }
    (folder / "train.jsonl").write_text("\n".join(json.dumps(example) for _ in range(12)) + "\n")
    specs = {}
    for provider, (model, options, _) in TARGETS.items():
        spec = folder / f"{provider}.yaml"
        spec.write_text(
            f"name: bench\nbase_model: {model}\ndataset:\n  train: train.jsonl\n"
            f"targets:\n  - name: t\n    provider: {provider}\n{options}"
        )
        specs[provider] = spec
    return specs


def _seconds(command: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    # As installed, Python reads modules from cached bytecode; without it every run compiles
    # tunefleet's modules from source first, which no user pays. The warm-up writes it.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    plans: dict[str, list[float]] = {p: [] for p in TARGETS}
    imports: dict[str, list[float]] = {p: [] for p in TARGETS}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        specs = _write_specs(folder)
        for provider in TARGETS:  # warm-up: bytecode written, files in the page cache
            _seconds([sys.executable, "-m", "tunefleet", "plan", str(specs[provider])], folder)
        began = cpu_ticks()
        for _ in range(args.repeat):  # interleaved, so that load on the machine hits all alike
            for provider, (_, _, sdk) in TARGETS.items():
                plan = [sys.executable, "-m", "tunefleet", "plan", str(specs[provider]), "--json"]
                plans[provider].append(_seconds(plan, folder))
                code = f"import {sdk}" if sdk else "pass"
                imports[provider].append(_seconds([sys.executable, "-c", code], folder))
        steal = steal_share(began, cpu_ticks())
    rows = []
    print(
        "| target | SDK | SDK import s | plan s | budget s (SDK + 0.3) | within |"
        " best of each: plan s, budget s |"
    )
    print("|---|---|---|---|---|---|---|")
    for provider, (_, _, sdk) in TARGETS.items():
        plan_s = statistics.median(plans[provider])
        import_s = statistics.median(imports[provider])
        budget = import_s + BUDGET_SECONDS
        # The verdict is on medians; the best runs are shown beside them because load on
        # a shared machine only ever adds time (timeit's reasoning), so they show the cost
        # with the least interference.
        best_plan, best_budget = min(plans[provider]), min(imports[provider]) + BUDGET_SECONDS
        rows.append(
            {"target": provider, "sdk": sdk or None, "sdk_import_s": round(import_s, 3),
             "plan_s": round(plan_s, 3), "budget_s": round(budget, 3),
             "within": plan_s <= budget, "best_plan_s": round(best_plan, 3),
             "best_budget_s": round(best_budget, 3)}
        )  # fmt: skip
        print(
            f"| {provider} | {sdk or '(none: bare interpreter)'} | {import_s:.2f} | "
            f"{plan_s:.2f} | {budget:.2f} | {'yes' if plan_s <= budget else 'NO'} | "
            f"{best_plan:.2f}, {best_budget:.2f} |"
        )
    print(f"CPU steal during the timed rounds: {percent(steal)} (see benchmarks/_machine.py)")
    out = Path(".bench") / "plan_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"repeat": args.repeat, "cpu_steal": steal, "results": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
