"""Planning: the neutral spec turned into the requests the API will get, the parts of it the
API cannot honour (each with the reason), and the token-priced estimate. No network.

It also says how the golden set's answers come (``predictions``): on the OpenAI API the
fine-tuned model answers them, and a spec with an evaluation shows the chat request that
asks them (:mod:`tunefleet_openai._answering`); on Azure a fine-tuned model answers only
once deployed, so an evaluation is refused there with the reason.

The plan shows each request with placeholders for what only exists later (the uploaded
files' ids, the run key, an endpoint's name); :func:`fill` and
:func:`tunefleet_openai._serving.deploy` put the real values in when sending, so what is
created is exactly what was planned. Every documented limit of those requests
(:mod:`tunefleet_openai._limits`) is checked here, on the requests as they will be sent,
and each one broken is an :class:`Unmet` naming the spec's field and the limit's source.
"""

from __future__ import annotations

from typing import Any

from tunefleet.errors import ProviderError
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
from tunefleet_openai import _answering, _limits, pricing
from tunefleet_openai._client import PROVIDER
from tunefleet_openai._serving import DEPLOY, deploy_request
from tunefleet_openai._staging import upload_requests
from tunefleet_openai.options import OpenAIOptions

__all__ = [
    "AZURE_SUFFIX_ROOM",
    "CREATE_JOB",
    "RUN_KEY_TAG",
    "estimate",
    "file_placeholder",
    "fill",
    "job_request",
    "plan",
    "planned_suffix",
    "refusals",
    "run_key_tag",
]

CREATE_JOB = "createFineTuningJob"
"""The planned request ``submit`` sends, by the operation id OpenAI's API reference uses."""
_LABELS = (labels.RUN, labels.TARGET, labels.RUN_KEY)
"""The metadata keys tunefleet itself puts on a job (:func:`tunefleet.kit.labels.run_labels`)."""

RUN_KEY_TAG = "${run_key_tag}"
"""Azure: stands for the run key's tag (:func:`run_key_tag`) in the planned suffix."""
TAG_LENGTH = 16
"""Hex digits of the run key an Azure job's suffix carries: 64 bits, so two run keys share
a tag once in 2**64 (a resource holds at most 100 jobs, per Azure's quotas page)."""
AZURE_SUFFIX_ROOM = _limits.AZURE_SUFFIX_MAX - 1 - TAG_LENGTH
"""Characters of an Azure job's suffix left for the name once ``-<tag>`` is added (23)."""
SAMPLE_RUN_KEY = "0" * 32
"""A run key of the real length (32 hex digits, tunefleet.run.keys), to check limits with."""

_NOT_SETTABLE = {
    "warmup_ratio": "OpenAI does not let you set the learning-rate warm-up",
    "scheduler": "OpenAI does not let you choose the learning-rate schedule",
    "max_grad_norm": "OpenAI does not let you set gradient clipping",
    "max_seq_length": "OpenAI trains at the model's own context length and cannot truncate "
    "examples to another",
    "lora": "OpenAI chooses how it adapts the model; remove hyperparameters.lora",
}
_HYPERPARAMETERS = {
    "n_epochs": "hyperparameters.epochs",
    "batch_size": "hyperparameters.batch_size",
    "learning_rate_multiplier": "hyperparameters.learning_rate_multiplier",
    "beta": "method.beta",
}
"""The spec's field behind each hyperparameter of the job request."""
_GLOBAL_STANDARD = "GlobalStandard"
_GLOBAL_STANDARD_SOURCE = (
    "https://learn.microsoft.com/azure/ai-services/openai/how-to/fine-tuning-deploy#global-standard"
)


def file_placeholder(role: str) -> str:
    """Stands for the uploaded file's id in a planned request."""
    return f"${{{role}_file}}"


_PLACEHOLDERS = frozenset(
    {file_placeholder("train"), file_placeholder("validation"), labels.RUN_KEY_PLACEHOLDER}
)


def run_key_tag(run_key: str) -> str:
    """The part of ``run_key`` an Azure job's suffix carries, so ``find`` can find it."""
    return run_key[:TAG_LENGTH]


def plan(request: PlanRequest) -> Plan:
    """The plan of one target: uploads, the job, an Azure deployment, refusals and cost."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, OpenAIOptions)  # validated with options_model by core
    flavor = options.flavor
    unmet = refusals(spec) + _region_refusals(options, target)
    roles = ["train"] + (["validation"] if spec.dataset.validation is not None else [])
    requests: list[NativeRequest] = []
    for role in roles:
        facts = request.datasets.get(role)
        uploads = upload_requests(
            role,
            facts.size_bytes if facts is not None else None,
            facts.sha256 if facts is not None else None,
            options,
        )
        unmet += _request_limits(flavor, uploads, lambda _path, role=role: f"dataset.{role}")
        requests += uploads
    job = NativeRequest(
        service="openai",
        operation=CREATE_JOB,
        body=job_request(spec, target.key, options, roles),
        purpose="create the fine-tuning job",
    )
    sample = fill(job.body, {role: f"file-{role}" for role in roles}, SAMPLE_RUN_KEY)
    unmet += _request_limits(
        flavor,
        [job.model_copy(update={"body": sample})],
        lambda path: _requirement(path, options),
        explain=lambda violation: _explain(violation, options),
    )
    requests.append(job)
    predictions, asked, evaluation_unmet, evaluation_notes = _answering.plan(
        spec, options, request.datasets.get("golden_set")
    )
    requests += asked
    unmet += evaluation_unmet
    deployment = deploy_request(spec, options)
    if deployment is not None:
        requests.append(deployment)
        unmet += _deployment_limits(spec, options, deployment)
    unmet += _dataset_limits(request, options)
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
        notes.append(
            "tags go on the deployment; Azure OpenAI's fine-tuning jobs and uploaded files "
            "carry none"
            if flavor == "azure"
            else "tags go into the job's metadata; uploaded files carry none"
        )
    notes += evaluation_notes
    return Plan(
        target=target.key,
        provider=PROVIDER,
        region=target.region if flavor == "azure" else None,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=unmet,
        notes=notes,
        predictions=predictions,
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


def _request_limits(
    flavor: str,
    requests: list[NativeRequest],
    requirement: Any,
    explain: Any = None,
) -> list[Unmet]:
    """An Unmet for each documented limit ``requests`` break; ``requirement(path)`` names
    the spec's field behind a body path, ``explain(violation)`` may add to the reason."""
    unmet = []
    for planned in requests:
        schema = _limits.schema_for(flavor, planned.operation)
        if schema is None:
            continue
        for violation in _limits.violations(schema, planned.body):
            extra = explain(violation) if explain is not None else ""
            unmet.append(
                Unmet(
                    requirement=requirement(violation.path),
                    reason=f"{planned.operation}: {violation}{extra}",
                )
            )
    return unmet


def _requirement(path: str, options: OpenAIOptions) -> str:
    head, _, _ = path.partition(".")
    leaf = path.rsplit(".", 1)[-1]
    if head == "suffix":
        return "options.suffix" if options.suffix else "name"
    if head == "metadata":
        return "placement.tags"
    if head == "seed":
        return "hyperparameters.seed"
    if head == "model":
        return "base_model"
    if leaf in _HYPERPARAMETERS:
        return _HYPERPARAMETERS[leaf]
    if head == "method":
        return "method.type"
    return f"{CREATE_JOB}.{path}" if path else CREATE_JOB


def _explain(violation: _limits.Violation, options: OpenAIOptions) -> str:
    if violation.path.startswith("metadata"):
        return f"; tunefleet's labels take {len(_LABELS)} of the job's metadata keys"
    if violation.path == "suffix" and options.flavor == "azure":
        return (
            f"; tunefleet adds '-' and {TAG_LENGTH} characters of the run key so it can find "
            f"the job again, leaving {AZURE_SUFFIX_ROOM} for options.suffix"
        )
    return ""


def refusals(spec: RunSpec) -> list[Unmet]:
    """Each part of ``spec`` the fine-tuning API has no way to take, with the reason (the
    bounds of what it takes are checked on the request itself, by :mod:`_limits`)."""
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


def _dataset_limits(request: PlanRequest, options: OpenAIOptions) -> list[Unmet]:
    """The documented limits on the training data itself: the least examples a job trains
    on, and on Azure the resource's limits on fine-tuning files and job size."""
    unmet = []
    train = request.datasets.get("train")
    examples = train.examples if train is not None else None
    if examples is not None and examples < _limits.MIN_TRAINING_EXAMPLES:
        unmet.append(
            Unmet(
                requirement="dataset.train",
                reason=f"the training file has {examples} example(s); a fine-tuning job "
                f"needs at least {_limits.MIN_TRAINING_EXAMPLES} "
                f"({_limits.MIN_TRAINING_EXAMPLES_SOURCE})",
            )
        )
    if options.flavor != "azure":
        return unmet
    sizes = [facts.size_bytes for facts in request.datasets.values() if facts.size_bytes]
    total = sum(sizes)
    if total > _limits.AZURE_MAX_TOTAL_FILE_BYTES:
        unmet.append(
            Unmet(
                requirement="dataset",
                reason=f"the datasets hold {total:,} bytes together; an Azure OpenAI resource "
                f"holds at most {_limits.AZURE_MAX_TOTAL_FILE_BYTES:,} bytes of fine-tuning "
                f"files ({_limits.AZURE_QUOTAS}: total size of all files per resource)",
            )
        )
    if len(sizes) > _limits.AZURE_MAX_FILES:  # a run uploads two files at most
        unmet.append(
            Unmet(
                requirement="dataset",
                reason=f"an Azure OpenAI resource holds at most {_limits.AZURE_MAX_FILES} "
                f"fine-tuning files ({_limits.AZURE_QUOTAS})",
            )
        )
    if train is not None and train.billable_tokens is not None:
        epochs = request.spec.hyperparameters.epochs or 1
        trained = train.billable_tokens * epochs
        if trained > _limits.AZURE_MAX_TRAINED_TOKENS:
            unmet.append(
                Unmet(
                    requirement="dataset.train",
                    reason=f"{train.billable_tokens:,} tokens x {epochs} epoch(s) is "
                    f"{trained:,} tokens; an Azure OpenAI job trains on at most "
                    f"{_limits.AZURE_MAX_TRAINED_TOKENS:,} ({_limits.AZURE_QUOTAS}: max "
                    "training job size)",
                )
            )
    return unmet


def _deployment_limits(
    spec: RunSpec, options: OpenAIOptions, deployment: NativeRequest
) -> list[Unmet]:
    """The documented limits of the planned Azure deployment: Resource Manager's tag
    limits, and a deployment type that would keep the weights outside the region."""
    tags = deployment.body["deployment"].get("tags") or {}
    unmet = [
        Unmet(requirement="placement.tags", reason=f"{DEPLOY}: tags {violation}")
        for violation in _limits.violations(_limits.TAG_LIMITS, tags)
    ]
    if options.deployment_sku == _GLOBAL_STANDARD and spec.placement.allowed_regions:
        unmet.append(
            Unmet(
                requirement="placement.allowed_regions",
                reason=f"a {_GLOBAL_STANDARD} deployment of a fine-tuned model may keep its "
                "weights outside the resource's geography (" + _GLOBAL_STANDARD_SOURCE + "); "
                "set options.deployment_sku to Standard",
            )
        )
    return unmet


def _azure_suffix(spec: RunSpec, options: OpenAIOptions) -> str:
    # The default (the run's name) is cut to the room left; a suffix the user chose is
    # kept whole, and one too long for Azure fails the plan (the limit is checked on it).
    base = options.suffix or spec.name[:AZURE_SUFFIX_ROOM].rstrip("-")
    return f"{base}-{RUN_KEY_TAG}"


def job_request(
    spec: RunSpec, target: str, options: OpenAIOptions, roles: list[str]
) -> dict[str, Any]:
    """The CreateFineTuningJob body for ``spec``, with placeholders for files and run key.

    ``roles`` are the dataset roles that will be uploaded (train, and validation if any).
    Unset hyperparameters are left out, so the service applies its ``auto`` rule.

    On the OpenAI API the run's labels go into the job's metadata, which ``find`` filters
    on. Azure OpenAI's jobs have no metadata (``FineTuningJobCreation`` of its 2025-04-01-
    preview description), so there the suffix carries the run key's tag, ``find`` matches
    it, and supervised hyperparameters go where Azure's description puts them (the job's
    ``hyperparameters``; its ``SupervisedMethodRequest`` holds only the type).
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
    body: dict[str, Any] = {"model": spec.base_model, "training_file": file_placeholder("train")}
    if options.flavor == "azure":
        method: dict[str, Any] = {"type": method_type}
        if method_type == "dpo":  # DpoMethodRequest requires its `dpo` object
            method["dpo"] = {"hyperparameters": hyperparameters} if hyperparameters else {}
        elif hyperparameters:
            body["hyperparameters"] = hyperparameters
        body["method"] = method
        body["suffix"] = _azure_suffix(spec, options)
    else:
        method = {"type": method_type, method_type: {}}
        if hyperparameters:
            method[method_type]["hyperparameters"] = hyperparameters
        body["method"] = method
        body["suffix"] = options.suffix or spec.name
        body["metadata"] = labels.run_labels(spec, target=target)
    if "validation" in roles:
        body["validation_file"] = file_placeholder("validation")
    if hp.seed is not None:
        body["seed"] = hp.seed
    return body


def fill(body: dict[str, Any], files: dict[str, str], run_key: str) -> dict[str, Any]:
    """``body`` with the uploaded files' ids and the run key in place of the placeholders;
    ValueError naming what was not staged when a file's placeholder is left."""
    values = {file_placeholder(role): file_id for role, file_id in files.items()}
    values[labels.RUN_KEY_PLACEHOLDER] = run_key
    values[RUN_KEY_TAG] = run_key_tag(run_key)
    filled = fill_placeholders(body, values)
    left = [
        key for key, value in filled.items() if isinstance(value, str) and value in _PLACEHOLDERS
    ]
    if left:
        raise ValueError(f"nothing staged for {', '.join(left)}")
    return filled


def planned_suffix(plan: Plan, run_key: str) -> str:
    """Azure: the suffix the job of ``run_key`` was (or will be) created with;
    ProviderError ``plan_outdated`` for a plan whose suffix carries no run key."""
    suffix = plan.request(CREATE_JOB).body.get("suffix")
    if not isinstance(suffix, str) or RUN_KEY_TAG not in suffix:
        raise ProviderError(
            PROVIDER,
            f"the plan of target {plan.target!r} does not tag its Azure job with the run key "
            "(planned by an older version), so its job cannot be found again; run the spec "
            "again to plan it anew",
            code="plan_outdated",
        )
    filled: str = fill_placeholders({"suffix": suffix}, {RUN_KEY_TAG: run_key_tag(run_key)})[
        "suffix"
    ]
    return filled
