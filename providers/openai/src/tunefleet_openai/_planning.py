"""Planning: the neutral spec turned into the requests the API will get, the parts of it the
API cannot honour (each with the reason), and the token-priced estimate. No network.

The plan shows each request with placeholders for what only exists later (the uploaded
files' ids, the run key, an endpoint's name); :func:`fill` and
:func:`tunefleet_openai._serving.deploy` put the real values in when sending, so what is
created is exactly what was planned.
"""

from __future__ import annotations

from typing import Any

from tunefleet.kit import labels
from tunefleet.provider import (
    NativeRequest,
    Plan,
    PlanRequest,
    TrainingEstimate,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_openai import pricing
from tunefleet_openai._client import PROVIDER
from tunefleet_openai._serving import deploy_request
from tunefleet_openai._staging import MIME_TYPE, PURPOSE, filename_for
from tunefleet_openai.options import OpenAIOptions

__all__ = [
    "CREATE_JOB",
    "estimate",
    "file_placeholder",
    "fill",
    "job_request",
    "plan",
    "refusals",
    "too_many_tags",
]

CREATE_JOB = "createFineTuningJob"
"""The planned request ``submit`` sends, by the operation id OpenAI's API reference uses."""
MAX_METADATA_KEYS = 16
_LABELS = (labels.RUN, labels.TARGET, labels.RUN_KEY)
"""The metadata keys tunefleet itself puts on a job (:func:`tunefleet.kit.labels.run_labels`)."""

# The API's bounds (FineTuneSupervisedHyperparameters, FineTuneDPOHyperparameters).
MAX_EPOCHS = 50
MAX_BATCH_SIZE = 256
MAX_BETA = 2.0

_NOT_SETTABLE = {
    "warmup_ratio": "OpenAI does not let you set the learning-rate warm-up",
    "scheduler": "OpenAI does not let you choose the learning-rate schedule",
    "max_grad_norm": "OpenAI does not let you set gradient clipping",
    "max_seq_length": "OpenAI trains at the model's own context length and cannot truncate "
    "examples to another",
    "lora": "OpenAI chooses how it adapts the model; remove hyperparameters.lora",
}


def file_placeholder(role: str) -> str:
    """Stands for the uploaded file's id in a planned request."""
    return f"${{{role}_file}}"


_PLACEHOLDERS = frozenset(
    {file_placeholder("train"), file_placeholder("validation"), labels.RUN_KEY_PLACEHOLDER}
)


def plan(request: PlanRequest) -> Plan:
    """The plan of one target: uploads, the job, an Azure deployment, refusals and cost."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, OpenAIOptions)  # validated with options_model by core
    unmet = refusals(spec) + _region_refusals(options, target)
    tags = too_many_tags(spec)
    if tags is not None:
        unmet.append(tags)
    roles = ["train"] + (["validation"] if spec.dataset.validation is not None else [])
    requests = [_upload_request(request, options, role) for role in roles]
    requests.append(
        NativeRequest(
            service="openai",
            operation=CREATE_JOB,
            body=job_request(spec, target.key, options, roles),
            purpose="create the fine-tuning job",
        )
    )
    deployment = deploy_request(spec, options)
    if deployment is not None:
        requests.append(deployment)
    cost = None
    notes = []
    epochs = spec.hyperparameters.epochs
    train = request.datasets.get("train")
    if train is not None and train.examples and train.billable_tokens is not None:
        override = options.training_price_per_million_tokens
        estimated = estimate(
            spec.base_model, train.examples, train.billable_tokens, epochs, override
        )
        epochs = estimated.epochs
        cost = pricing.PRICES.cost(estimated, overridden=override is not None)
        if cost is None:
            notes.append(estimated.basis)
    if spec.placement.tags:
        notes.append("tags go into the job's metadata; uploaded files carry none")
    return Plan(
        target=target.key,
        provider=PROVIDER,
        region=target.region if options.flavor == "azure" else None,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=unmet,
        notes=notes,
    )


def estimate(
    base_model: str,
    examples: int,
    billable_tokens: int,
    epochs: int | None,
    price_override: float | None = None,
) -> TrainingEstimate:
    """Epochs (``epochs``, or OpenAI's rule for ``examples``), tokens trained and price."""
    return pricing.PRICES.estimate(
        PROVIDER, base_model, examples, billable_tokens, epochs, price_override
    )


def _upload_request(request: PlanRequest, options: OpenAIOptions, role: str) -> NativeRequest:
    """The upload of one dataset: one createFile, or an Upload in parts for a large file."""
    facts = request.datasets.get(role)
    size = facts.size_bytes if facts is not None else None
    digest = facts.sha256 if facts is not None else None
    multipart = size is not None and size >= options.multipart_threshold_bytes
    body: dict[str, Any] = {
        "purpose": PURPOSE,
        "filename": filename_for(digest) if digest else f"tunefleet-<sha256 of {role}>",
    }
    if multipart:
        body.update(bytes=size, mime_type=MIME_TYPE)
    return NativeRequest(
        phase="stage",
        service="openai",
        operation="createUpload" if multipart else "createFile",
        body=body,
        purpose=f"upload the {role} dataset"
        + (" in parts" if multipart else "")
        + " (skipped when a file with the same content is there)",
    )


def refusals(spec: RunSpec) -> list[Unmet]:
    """Each part of ``spec`` the fine-tuning API cannot honour, with the reason."""
    unmet: list[Unmet] = []
    hp = spec.hyperparameters
    if hp.learning_rate is not None:
        unmet.append(
            Unmet(
                requirement="hyperparameters.learning_rate",
                reason="OpenAI takes no absolute learning rate, only a multiplier of the "
                "rate it picks for the model and data; use learning_rate_multiplier instead",
            )
        )
    for field, reason in _NOT_SETTABLE.items():
        if getattr(hp, field) is not None:
            unmet.append(Unmet(requirement=f"hyperparameters.{field}", reason=reason))
    if hp.epochs is not None and hp.epochs > MAX_EPOCHS:
        unmet.append(
            Unmet(
                requirement="hyperparameters.epochs",
                reason=f"OpenAI trains for at most {MAX_EPOCHS} epochs",
            )
        )
    if hp.batch_size is not None and hp.batch_size > MAX_BATCH_SIZE:
        unmet.append(
            Unmet(
                requirement="hyperparameters.batch_size",
                reason=f"OpenAI takes batch sizes up to {MAX_BATCH_SIZE}",
            )
        )
    if spec.method.beta is not None and spec.method.beta > MAX_BETA:
        unmet.append(
            Unmet(requirement="method.beta", reason=f"OpenAI takes a DPO beta up to {MAX_BETA:g}")
        )
    model = spec.base_model
    if model.startswith("scratch:") or "/" in model:
        unmet.append(
            Unmet(
                requirement="base_model",
                reason=f"{model!r} is not an OpenAI model id (e.g. gpt-4o-mini-2024-07-18)",
            )
        )
    return unmet


def _region_refusals(options: OpenAIOptions, target: TargetSpec) -> list[Unmet]:
    if options.flavor == "azure" and target.region is None:
        return [
            Unmet(
                requirement="region",
                reason="an Azure OpenAI resource trains in its own region; set the target's "
                "region to the resource's location (it is checked before any upload)",
            )
        ]
    return []


def job_request(
    spec: RunSpec, target: str, options: OpenAIOptions, roles: list[str]
) -> dict[str, Any]:
    """The CreateFineTuningJob body for ``spec``, with placeholders for files and run key.

    ``roles`` are the dataset roles that will be uploaded (train, and validation if any).
    Unset hyperparameters are left out, so the service applies its ``auto`` rule. The
    run's labels go into the job's metadata, which ``find`` filters on.
    """
    hp = spec.hyperparameters
    hyperparameters: dict[str, Any] = {}
    if hp.epochs is not None:
        hyperparameters["n_epochs"] = hp.epochs
    if hp.batch_size is not None:
        hyperparameters["batch_size"] = hp.batch_size
    if hp.learning_rate_multiplier is not None:
        hyperparameters["learning_rate_multiplier"] = hp.learning_rate_multiplier
    method_type = spec.method.type
    if method_type == "dpo" and spec.method.beta is not None:
        hyperparameters["beta"] = spec.method.beta
    method: dict[str, Any] = {"type": method_type, method_type: {}}
    if hyperparameters:
        method[method_type]["hyperparameters"] = hyperparameters
    body: dict[str, Any] = {
        "model": spec.base_model,
        "training_file": file_placeholder("train"),
        "method": method,
        "suffix": options.suffix or spec.name,
        "metadata": labels.run_labels(spec, target=target),
    }
    if "validation" in roles:
        body["validation_file"] = file_placeholder("validation")
    if hp.seed is not None:
        body["seed"] = hp.seed
    return body


def too_many_tags(spec: RunSpec) -> Unmet | None:
    """The refusal when the placement tags do not fit in the job's metadata, if they don't."""
    room = MAX_METADATA_KEYS - len(_LABELS)
    if len(spec.placement.tags) <= room:
        return None
    return Unmet(
        requirement="placement.tags",
        reason=f"a job's metadata holds {MAX_METADATA_KEYS} keys and tunefleet uses "
        f"{len(_LABELS)}, so at most {room} tags fit (the spec has {len(spec.placement.tags)})",
    )


def fill(body: dict[str, Any], files: dict[str, str], run_key: str) -> dict[str, Any]:
    """``body`` with the uploaded files' ids and the run key in place of the placeholders;
    ValueError naming what was not staged when a file's placeholder is left."""
    values = {file_placeholder(role): file_id for role, file_id in files.items()}
    values[labels.RUN_KEY_PLACEHOLDER] = run_key
    filled = fill_placeholders(body, values)
    left = [
        key for key, value in filled.items() if isinstance(value, str) and value in _PLACEHOLDERS
    ]
    if left:
        raise ValueError(f"nothing staged for {', '.join(left)}")
    return filled
