"""Gemini supervised tuning: the planned TuningJob, what it cannot take, and its cost.

Vertex tunes a hosted Gemini model itself (``tuningJobs.create``, "Tune Gemini models by
using supervised fine-tuning",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-supervised-tuning):
on the chat data converted to its format (:mod:`tunefleet.kit.gemini`), with three knobs,
epochs (``epochCount``), a learning-rate multiplier and the adapter size. Everything else
a spec can say is refused here with the reason, never dropped.
"""

from __future__ import annotations

from typing import Any

from tunefleet.provider import CostEstimate, PlanRequest, Unmet
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_vertex import pricing
from tunefleet_vertex.options import VertexOptions

__all__ = ["ADAPTER_SIZE", "FORMAT", "cost", "epochs", "job_request", "unmet"]

FORMAT = "gemini-v1"
"""The version of the conversion staged objects are named after: a change to the
conversion must change it, so a re-run never reuses a file converted the old way."""
ADAPTER_SIZE = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_TWO",
    4: "ADAPTER_SIZE_FOUR",
    8: "ADAPTER_SIZE_EIGHT",
    16: "ADAPTER_SIZE_SIXTEEN",
    32: "ADAPTER_SIZE_THIRTY_TWO",
}
"""``SupervisedHyperParameters.adapterSize`` of each option value."""
_NOT_SETTABLE = {
    "batch_size": "Gemini tuning chooses its own batch size",
    "learning_rate": "Gemini tuning takes a multiplier of its own learning rate, not an "
    "absolute one: use hyperparameters.learning_rate_multiplier",
    "warmup_ratio": "Gemini tuning does not let you set the learning-rate warm-up",
    "scheduler": "Gemini tuning does not let you choose the learning-rate schedule",
    "max_seq_length": "Gemini tuning trains at the model's own example limit and cannot "
    "truncate examples to another",
    "max_grad_norm": "Gemini tuning does not let you set gradient clipping",
    "seed": "Gemini tuning takes no seed",
    "lora": "Gemini tuning's only adapter setting is its size: use options.adapter_size",
}


def job_request(spec: RunSpec, target: TargetSpec, options: VertexOptions) -> dict[str, Any]:
    """The tuningJobs.create request, with placeholders for the run key and the staged
    datasets' URIs."""
    from tunefleet_vertex._planning import RUN_KEY, uri_placeholder, vertex_labels

    hyper: dict[str, Any] = {}
    hp = spec.hyperparameters
    if hp.epochs is not None:
        hyper["epochCount"] = str(hp.epochs)
    if hp.learning_rate_multiplier is not None:
        hyper["learningRateMultiplier"] = hp.learning_rate_multiplier
    if options.adapter_size is not None:
        hyper["adapterSize"] = ADAPTER_SIZE[options.adapter_size]
    supervised: dict[str, Any] = {"trainingDatasetUri": uri_placeholder("train")}
    if spec.dataset.validation is not None:
        supervised["validationDatasetUri"] = uri_placeholder("validation")
    if hyper:
        supervised["hyperParameters"] = hyper
    job: dict[str, Any] = {
        "baseModel": spec.base_model,
        "tunedModelDisplayName": f"{spec.name}-{RUN_KEY}",
        "supervisedTuningSpec": supervised,
        "labels": vertex_labels(spec, target),
    }
    if spec.description:
        job["description"] = spec.description
    if options.service_account:
        job["serviceAccount"] = options.service_account
    if options.kms_key_name:
        job["encryptionSpec"] = {"kmsKeyName": options.kms_key_name}
    return {"parent": f"projects/{options.project}/locations/{target.region}", "tuningJob": job}


def unmet(spec: RunSpec, target: TargetSpec, options: VertexOptions) -> list[Unmet]:
    """What Gemini tuning cannot do of ``spec``, each with the reason."""
    found: list[Unmet] = []
    if spec.base_model not in pricing.TUNING_MODELS:
        found.append(
            Unmet(
                requirement="base_model",
                reason=f"{spec.base_model!r} is not a Gemini model Vertex tunes ("
                + ", ".join(sorted(pricing.TUNING_MODELS))
                + "); open-weight models train in a custom job (options.mode: custom)",
            )
        )
    if spec.method.type != "supervised":
        found.append(
            Unmet(
                requirement="method.type",
                reason="tunefleet runs Gemini's supervised tuning only; train DPO with "
                "tunefleet's trainer in a custom job (options.mode: custom)",
            )
        )
    if spec.method.adapter not in (None, "lora"):
        found.append(
            Unmet(
                requirement="method.adapter",
                reason="Gemini tuning trains an adapter of the size options.adapter_size "
                f"says; it cannot train {spec.method.adapter!r}",
            )
        )
    hp = spec.hyperparameters
    for field, reason in _NOT_SETTABLE.items():
        if getattr(hp, field) is not None:
            found.append(Unmet(requirement=f"hyperparameters.{field}", reason=reason))
    compute = target.compute
    if compute.instance_type is not None or compute.instance_count > 1 or compute.spot:
        found.append(
            Unmet(
                requirement="compute",
                reason="Gemini tuning runs on machines the service chooses: remove "
                "compute.instance_type, instance_count and spot",
            )
        )
    if spec.placement.require_private_network:
        found.append(
            Unmet(
                requirement="placement.require_private_network",
                reason="a Gemini tuning job runs in Google's tenant project; it cannot run "
                "inside your VPC (use a custom job with options.network)",
            )
        )
    if target.region is not None and target.region not in pricing.TUNING_REGIONS:
        found.append(
            Unmet(
                requirement="region",
                reason=f"Gemini tuning is not offered in {target.region} (it is in "
                + ", ".join(pricing.TUNING_REGIONS)
                + ")",
            )
        )
    if spec.endpoint is not None and spec.endpoint.canary is not None:
        found.append(
            Unmet(
                requirement="endpoint.canary",
                reason="a tuned Gemini model is served alone on the endpoint Vertex made for "
                "it: there is no second version to split traffic with",
            )
        )
    if spec.endpoint is not None and spec.endpoint.instance_type is not None:
        found.append(
            Unmet(
                requirement="endpoint.instance_type",
                reason="a tuned Gemini model is served on the endpoint Vertex creates for "
                "it, on machines the service chooses",
            )
        )
    return found


def epochs(spec: RunSpec, request: PlanRequest) -> int:
    """The epochs the job trains: the spec's, else the service's default."""
    if spec.hyperparameters.epochs:
        return spec.hyperparameters.epochs
    train = request.datasets.get("train")
    return pricing.TUNING_PRICES.default_epochs(train.examples if train and train.examples else 0)


def cost(request: PlanRequest, options: VertexOptions) -> tuple[CostEstimate | None, list[str]]:
    """Training tokens (all epochs) at the model's tuning price, or a note why not."""
    spec = request.spec
    train = request.datasets.get("train")
    if train is None or train.billable_tokens is None or train.examples is None:
        return None, ["the estimate needs the training data's tokens: validate it first"]
    estimate = pricing.TUNING_PRICES.estimate(
        "vertex",
        spec.base_model,
        train.examples,
        train.billable_tokens,
        spec.hyperparameters.epochs,
        options.tuning_price_per_million_tokens,
    )
    found = pricing.TUNING_PRICES.cost(
        estimate, overridden=options.tuning_price_per_million_tokens is not None
    )
    notes = [] if found is not None else [estimate.basis]
    notes.append(
        "token counts are tunefleet's tokenizer's; Vertex bills the tokens Gemini's "
        "tokenizer counts (the tuning job reports them: tuningDataStats)"
    )
    return found, notes
