"""Identities that make re-runs reattach instead of launching again.

* The run **identity** is the sha256 of the canonical spec *without* its targets (and
  without what does not change the training job: description, evaluation, endpoint),
  with dataset locations replaced by their content hashes. Moving a file changes nothing;
  editing one byte of it makes a new run. Adding a target to a spec adds it to the same run.
* The **run key** of a target is the sha256 of the identity, the target's own canonical
  spec and its attempt number, cut to 32 hex characters (128 bits) so it fits every
  provider's labels (SageMaker job names, OpenAI metadata). Providers label jobs with it
  and ``find`` looks it up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from tunefleet.spec import RunSpec, TargetSpec
from tunefleet.state.audit import canonical_json

__all__ = ["config_hash", "identity", "run_id", "run_key"]

_NOT_PART_OF_THE_JOB = {"targets", "description", "evaluation", "endpoint"}


def identity(spec: RunSpec, dataset_hashes: Mapping[str, str]) -> str:
    """sha256 of what the training job depends on: the spec minus its targets, and the
    content hash of each dataset (by role)."""
    body = spec.model_dump(mode="json", exclude=_NOT_PART_OF_THE_JOB)
    body["dataset"] = dict(sorted(dataset_hashes.items()))
    if spec.evaluation is not None:
        # Jobs of trainer-image providers answer the golden set (its hash is among the
        # datasets): how many questions, and how long an answer, change what they do.
        body["golden_answers"] = {
            "max_examples": spec.evaluation.max_examples,
            "max_tokens": spec.evaluation.max_tokens,
        }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def run_id(name: str, run_identity: str) -> str:
    """A run's id: the spec's name and the first 8 hex digits of its identity."""
    return f"{name}-{run_identity[:8]}"


def config_hash(target: TargetSpec) -> str:
    """sha256 of a target's canonical spec (provider, region, compute, options)."""
    return hashlib.sha256(canonical_json(target.model_dump(mode="json")).encode()).hexdigest()


def run_key(run_identity: str, target_config: str, attempt: int) -> str:
    """The key a target's job is labelled with: 32 hex digits."""
    text = f"{run_identity}:{target_config}:{attempt}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
