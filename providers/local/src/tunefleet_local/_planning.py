"""Planning a local target: the requests a run sends and what this machine cannot honour.

The plan holds two kinds of request, looked up later by phase and operation (never by
their ``purpose``)::

    stage   local CopyDataset   per local dataset: the copy into datasets/<sha256>.jsonl
    submit  local RunTrainer    the trainer config, less the paths submit decides

Planning has no side effects: it creates no directory and starts nothing.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from tunefleet.kit.trainer import epochs, trainer_config, trainer_unmet
from tunefleet.provider import NativeRequest, Plan, PlanRequest, Unmet
from tunefleet.spec import RunSpec, TargetSpec, is_local
from tunefleet_local import pricing
from tunefleet_local.options import LocalOptions, resolve_workdir

__all__ = ["COPY_DATASET", "ENTRY_POINT", "RUN_TRAINER", "TRAIN_EXTRA", "plan"]

COPY_DATASET = "CopyDataset"
RUN_TRAINER = "RunTrainer"
ENTRY_POINT = "python -m tunefleet_trainer"
STAGED = frozenset({"train", "validation", "golden_set"})
"""Datasets a local job reads: the golden set too, since the job answers it."""
TRAIN_EXTRA = ("torch", "transformers", "peft", "trl", "datasets")
"""What the trainer imports; planning checks they are installed without importing them."""


def _missing_train_extra() -> list[str]:
    return [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]


def _has_cuda_device() -> bool:
    # A device node or the driver's tool, not torch.cuda: planning must not import torch.
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def _machine_unmet(spec: RunSpec, options: LocalOptions) -> list[Unmet]:
    """What this machine lacks for ``spec``: the training libraries, a GPU for QLoRA."""
    unmet: list[Unmet] = []
    missing = _missing_train_extra()
    if missing:
        unmet.append(
            Unmet(
                requirement="targets[].provider",
                reason=f"training here needs the train extra ({', '.join(missing)} missing): "
                "pip install 'tunefleet[train]' (with torch==2.13.0 pinned where a CPU "
                "build is wanted)",
            )
        )
    adapter = spec.method.adapter or "lora"
    if adapter == "qlora" and (options.device in {"cpu", "mps"} or not _has_cuda_device()):
        unmet.append(
            Unmet(
                requirement="method.adapter",
                reason="qlora trains a 4-bit model and needs a CUDA GPU and bitsandbytes; "
                "this machine has no CUDA GPU (use adapter lora)",
            )
        )
    return unmet


def _unhonoured(target: TargetSpec) -> list[Unmet]:
    """The target's compute settings this machine cannot honour (the rest of compute is
    checked against the capabilities by core)."""
    compute = target.compute
    unmet = []
    if compute.max_runtime_hours is not None:
        unmet.append(
            Unmet(
                requirement="compute.max_runtime_hours",
                reason="the local provider does not stop a job after a time limit; remove "
                "it for this target or cancel the run yourself",
            )
        )
    if compute.volume_size_gb is not None:
        unmet.append(
            Unmet(
                requirement="compute.volume_size_gb",
                reason="the local provider trains on this machine's own disk, whose size "
                "it cannot choose",
            )
        )
    return unmet


def _base_model(spec: RunSpec) -> str:
    """The spec's base model, as a directory when it names one next to the spec (the
    runner's working directory is the job's, so a relative path would not resolve)."""
    if spec.base_model.startswith("scratch:"):
        return spec.base_model
    local = spec.resolve_location(spec.base_model)
    return local if Path(local).is_dir() else spec.base_model


def plan(provider: str, request: PlanRequest) -> Plan:
    """The plan of ``request``'s target: its requests, cost 0, and every unmet requirement."""
    spec, options = request.spec, request.options
    if not isinstance(options, LocalOptions):
        raise TypeError(f"expected LocalOptions, got {type(options).__name__}")
    config = trainer_config(
        spec,
        base_model=_base_model(spec),
        device=options.device,
        merge=options.merge,
        logging_steps=options.logging_steps,
        save_steps=options.save_steps,
    )
    copies = [
        NativeRequest(
            phase="stage",
            service="local",
            operation=COPY_DATASET,
            body={"role": role, "sha256": facts.sha256},
            purpose=f"copy the {role} dataset into the work directory",
        )
        for role, facts in request.datasets.items()
        if role in STAGED and is_local(facts.location)
    ]
    run = NativeRequest(
        service="local",
        operation=RUN_TRAINER,
        body={"entry_point": ENTRY_POINT, "config": config},
        purpose="train on this machine",
    )
    notes = []
    if spec.endpoint is not None and (
        spec.endpoint.instance_type is not None or spec.endpoint.instance_count > 1
    ):
        notes.append(
            "endpoint.instance_type and instance_count do not apply here: one model server "
            "on this machine serves the endpoint"
        )
    if spec.placement.tags:
        notes.append("tags are recorded in the journal; local files carry none")
    return Plan(
        target=request.target.key,
        provider=provider,
        region=None,
        # The work directory resolved now, so every later call acts where this plan says.
        options={
            **options.model_dump(mode="json"),
            "workdir": str(resolve_workdir(options.workdir, Path(spec.resolve_location(".")))),
        },
        epochs=epochs(spec)[0],
        requests=[*copies, run],
        cost=pricing.plan_cost(),
        unmet=_machine_unmet(spec, options) + _unhonoured(request.target) + trainer_unmet(spec),
        notes=notes,
        # The trainer answers the golden set right after training, in the same job.
        predictions="job",
    )
