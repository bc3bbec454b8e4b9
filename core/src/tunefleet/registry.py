"""The model registry: every trained model, by name and version, and the evaluation gate.

A target whose job succeeds is registered as the next version of the run's name (the
spec's ``name``), stage ``candidate``, with what it was trained from: the provider's
artifact, the base model, method and hyperparameters, the datasets' sha256s, the spec's
hash and its newest evaluation. Versions move through ``candidate``, ``staging``,
``production`` and ``archived``; each move is audited with who made it and why, and
promoting one version to production archives the one before it. A model reference is
``NAME:VERSION`` (``NAME`` alone: its newest version).

The gate (:func:`check_deployable`): a model whose spec has an evaluation with
``block_deploy_on_failure`` is deployed only when its newest evaluation passed. ``--force``
overrides, and only with a reason, recorded in the audit log with the actor.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from tunefleet.errors import DeployBlockedError, RunNotFoundError, UsageError
from tunefleet.evaluation.scoring import ThresholdMiss
from tunefleet.state.audit import canonical_json
from tunefleet.state.journal import Journal
from tunefleet.state.models import Evaluation, ModelVersion, Run, RunTarget

__all__ = [
    "SERVABLE",
    "check_deployable",
    "gate_reasons",
    "model_ref",
    "parse_model_ref",
    "register",
    "resolve",
]

SERVABLE = ("merged_model", "adapter", "hosted_model")
"""Artifact kinds an endpoint can serve, in the order one is picked."""
_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,63})(?::(?:v)?(?P<version>[0-9]{1,9}))?$")


def model_ref(version: ModelVersion) -> str:
    """``NAME:VERSION``, how people and commands name a registered version."""
    return f"{version.name}:{version.version}"


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """(name, version or None) of ``NAME[:VERSION]``; UsageError when it is not one."""
    match = _REF.fullmatch(text)
    if match is None:
        raise UsageError(
            f"{text!r} is not a model reference: NAME or NAME:VERSION (`tunefleet models`)"
        )
    version = match.group("version")
    return match.group("name"), int(version) if version is not None else None


def resolve(journal: Journal, text: str) -> ModelVersion:
    """The registered version ``text`` names; RunNotFoundError when there is none."""
    name, number = parse_model_ref(text)
    found = journal.model_version(name=name, version=number)
    if found is None:
        what = f"version {number} of model {name!r}" if number else f"model {name!r}"
        raise RunNotFoundError(f"no {what} in the registry (see `tunefleet models`)")
    return found


def register(journal: Journal, run: Run, row: RunTarget) -> ModelVersion:
    """The registered version of ``row``'s model, registered now if it is not yet.

    The target must have succeeded and recorded a servable artifact."""
    existing = journal.model_version(target_id=row.id)
    if existing is not None:
        return existing
    artifacts = journal.artifacts(row.id)
    servable = next(
        (a for kind in SERVABLE for a in artifacts if a.kind == kind),
        None,
    )
    if servable is None:
        raise UsageError(f"target {row.name} of run {run.id} recorded no model to register")
    spec = run.spec
    method = spec.get("method") or {}
    training = {
        "method": method.get("type", "supervised"),
        "adapter": method.get("adapter"),
        "beta": method.get("beta"),
        "hyperparameters": spec.get("hyperparameters") or {},
        "epochs": (row.plan or {}).get("epochs"),
    }
    datasets = {
        role: {"sha256": info.get("sha256"), "examples": info.get("examples")}
        for role, info in run.datasets.items()
        if role in ("train", "validation", "golden_set")
    }
    version, _ = journal.register_model(
        row.id,
        name=run.name,
        artifact={"kind": servable.kind, "uri": servable.uri},
        base_model=str(spec.get("base_model", "")),
        training=training,
        datasets=datasets,
        spec_sha256=hashlib.sha256(canonical_json(spec).encode()).hexdigest(),
    )
    return version


def misses(journal: Journal, version: ModelVersion) -> list[str]:
    """One line per threshold the version's newest evaluation missed."""
    if version.evaluation_id is None:
        return []
    return _misses(journal.evaluation(version.evaluation_id))


def _misses(evaluation: Evaluation) -> list[str]:
    return [
        ThresholdMiss.model_validate(miss).describe()
        for miss in evaluation.result.get("failures", [])
    ]


def _blocks(section: Mapping[str, Any] | None) -> bool:
    return bool(section) and bool((section or {}).get("block_deploy_on_failure", True))


def gate_reasons(journal: Journal, run: Run, version: ModelVersion) -> list[str]:
    """Why the gate refuses ``version``; empty when it may be deployed.

    Two evaluations decide: the newest (a stricter re-scoring with `tunefleet eval` blocks
    from then on), and the newest under the run's own rules on the run's own golden set (so
    re-scoring with looser thresholds, another golden set or the block turned off never
    clears a miss: that takes `--force` with a reason)."""
    own = run.spec.get("evaluation") if isinstance(run.spec, dict) else None
    newest = journal.evaluation(version.evaluation_id) if version.evaluation_id else None
    if newest is None:
        if not _blocks(own):
            return []
        return [
            "it has no evaluation (the run's evaluation did not finish: `tunefleet resume "
            f"{run.id}` retries it, `tunefleet eval {run.id}` runs it again)"
        ]
    reasons: list[str] = []
    if not newest.passed and (_blocks(newest.settings.get("evaluation")) or _blocks(own)):
        reasons += _misses(newest) or ["its newest evaluation failed"]
    if _blocks(own):
        golden = (run.datasets.get("golden_set") or {}).get("sha256")
        under_own_rules = [
            e
            for e in journal.evaluations(version.run_target_id)
            if e.settings.get("evaluation") == own and e.golden_sha256 == golden
        ]
        if not under_own_rules:
            reasons.append("it was never evaluated under its run's own evaluation section")
        elif under_own_rules[-1].id != newest.id and not under_own_rules[-1].passed:
            reasons += [
                f"under its run's own rules: {line}" for line in _misses(under_own_rules[-1])
            ] or ["its evaluation under its run's own rules failed"]
    return reasons


def check_deployable(
    journal: Journal,
    run: Run,
    version: ModelVersion,
    *,
    force: bool = False,
    reason: str | None = None,
    action: str = "deploy.forced",
) -> list[str]:
    """Raise DeployBlockedError when the gate refuses ``version`` (:func:`gate_reasons`);
    return the lines it would have refused it for (empty when it passes) so a forced deploy
    can record them.

    ``force`` lets a model that failed the gate through, with ``reason`` (required)
    recorded in the audit log as ``action`` with the actor."""
    reasons = gate_reasons(journal, run, version)
    if not reasons:
        return []
    if not force:
        journal.record(
            action.replace(".forced", ".refused"),
            run.id,
            version.target,
            model=version.name,
            version=version.version,
            failures=reasons,
        )
        raise DeployBlockedError(
            f"model {model_ref(version)}",
            reasons,
            hint="`--force --reason TEXT` deploys it anyway, recorded in the audit log",
        )
    if not reason or not reason.strip():
        raise UsageError("--force needs --reason TEXT: why this model is deployed anyway")
    journal.record(
        action,
        run.id,
        version.target,
        model=version.name,
        version=version.version,
        failures=reasons,
        reason=reason.strip(),
    )
    return reasons
