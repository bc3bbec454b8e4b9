"""Planning: the neutral spec turned into Azure ML requests, and what the target lacks.

A planned Resource Manager request is ``{"path": <resource path under the workspace>,
"body": <the JSON body>}``: the body is sent verbatim with api-version 2025-12-01, so the
command job `tunefleet plan` shows is the job created. Placeholders stand for what exists
only later (``${run_key}``, each staged dataset's data asset URI); :func:`fill` puts the
real values in at submit. The job's name is derived from the run key, so finding the job
of a run key is one GET.

What only the workspace can tell (its region, network isolation, encryption, the
cluster's subnet) is checked by :mod:`._workspace` before the first upload; plan says so
in its notes.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tunefleet.kit.labels import RUN_KEY_PLACEHOLDER, run_labels
from tunefleet.kit.trainer import epochs as trainer_epochs
from tunefleet.kit.trainer import trainer_config as neutral_trainer_config
from tunefleet.kit.trainer import trainer_unmet, with_paths
from tunefleet.provider import (
    CostEstimate,
    NativeRequest,
    Plan,
    PlanRequest,
    Unmet,
    fill_placeholders,
)
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_azureml import _finetuning, _serving
from tunefleet_azureml.options import AzureMLOptions
from tunefleet_azureml.pricing import PRICES, gpus

__all__ = [
    "CONFIG_ENV",
    "ENVIRONMENT",
    "INPUTS",
    "RUN_KEY",
    "blob_path",
    "data_asset",
    "data_asset_uri",
    "data_request",
    "datastore_path",
    "environment_version",
    "expectations",
    "fill",
    "job_name",
    "job_request",
    "model_request",
    "plan",
    "roles_of",
    "uri_placeholder",
]

RUN_KEY = RUN_KEY_PLACEHOLDER
DATASET_HASH = "<sha256>"
"""Stands for a dataset's content hash in a planned upload when plan was not told it."""
CONFIG_ENV = "TUNEFLEET_TRAINER_CONFIG"
"""The environment variable the trainer reads its config from (less the paths, which only
Azure ML knows: they are on the command line as ``${{inputs.*}}`` and ``${{outputs.*}}``)."""
ENVIRONMENT = "tunefleet-trainer"
"""The environment (the trainer image) jobs run in; one version per image."""
INPUTS = {"train": "train", "validation": "validation", "golden_set": "golden"}
"""The job input of each staged dataset's role."""
_FLAGS = {"train": "--train", "validation": "--validation", "golden_set": "--golden-set"}
"""The trainer's flag for each input's path."""
_JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$")
"""A job's name: letters, digits, hyphens and underscores, at most 255 characters,
case-sensitive (Jobs - Create Or Update, the ``id`` path parameter,
https://learn.microsoft.com/rest/api/azureml/jobs/create-or-update)."""
_ASSET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$")
"""A data asset's or environment's name (Data Versions - Create Or Update, ``name``)."""


def uri_placeholder(role: str) -> str:
    """Stands for a staged dataset's data asset URI in a planned request."""
    return f"${{{role}_uri}}"


def job_name(template: str, run_key: str) -> str:
    """The job name of ``run_key`` from the planned name template."""
    return template.replace(RUN_KEY, run_key)


def blob_path(options: AzureMLOptions, sha256: str) -> str:
    """Where in the datastore's container a dataset with content hash ``sha256`` goes."""
    return "/".join(part for part in (options.prefix, "datasets", f"{sha256}.jsonl") if part)


def _datastore_uri(options: AzureMLOptions, *parts: str) -> str:
    path = "/".join(part.strip("/") for part in (options.prefix, *parts) if part.strip("/"))
    return f"azureml://datastores/{options.datastore}/paths/{path}"


def data_asset(spec: RunSpec, role: str) -> str:
    """The data asset of a role's dataset, named after the run and the role; its versions
    are content hashes, so staging unchanged data registers nothing new."""
    return f"{spec.name}-{role.replace('_', '-')}"


def data_asset_uri(options: AzureMLOptions, name: str, version: str) -> str:
    """A data asset's long-form URI, as a job input names it ("Access data in a job",
    https://learn.microsoft.com/azure/machine-learning/how-to-read-write-data-v2)."""
    return (
        f"azureml://subscriptions/{options.subscription_id}/resourcegroups/"
        f"{options.resource_group}/workspaces/{options.workspace}/data/{name}/versions/{version}"
    )


def environment_version(image: str) -> str:
    """The environment version of ``image``: its hash, so one image is one version (a
    version, once made, cannot change)."""
    return hashlib.sha256(image.encode()).hexdigest()[:16]


def roles_of(spec: RunSpec, options: AzureMLOptions) -> list[str]:
    """The datasets a job of ``spec`` reads: the golden set too when a command job answers
    it (the spec has an evaluation)."""
    roles = ["train"]
    if spec.dataset.validation is not None:
        roles.append("validation")
    if spec.evaluation is not None and options.mode == "command":
        roles.append("golden_set")
    return roles


def _processes(options: AzureMLOptions, instance_type: str) -> int:
    """Trainer processes per node: as asked, else one per GPU of the VM size."""
    return options.processes_per_instance or max(gpus(instance_type) or 1, 1)


def _instance_type(target: TargetSpec, options: AzureMLOptions) -> str:
    return target.compute.instance_type or options.instance_type


def trainer_config(spec: RunSpec) -> dict[str, Any]:
    """The trainer's config, less the paths Azure ML decides (the golden set's and where
    its answers go come as flags); the serving container loads a whole model, so an
    adapter is merged in too."""
    adapter = spec.method.adapter or "lora"
    config = neutral_trainer_config(spec, adapter=adapter, merge=adapter != "full")
    # Checked now with stand-in paths, so a config the trainer would refuse fails at plan.
    golden = "/mnt/golden.jsonl" if "evaluation" in config else None
    with_paths(config, train="/mnt/train.jsonl", output_dir="/mnt/model", golden_set=golden)
    return config


def command(roles: list[str]) -> str:
    """The job's command line: the trainer, with the paths Azure ML mounts."""
    parts = ["python -m tunefleet_trainer"]
    for role in roles:
        parts.append(f"{_FLAGS[role]} ${{{{inputs.{INPUTS[role]}}}}}")
    parts.append("--output-dir ${{outputs.model}} --checkpoint-dir ${{outputs.checkpoints}}")
    if "golden_set" in roles:
        parts.append("--predictions-dir ${{outputs.predictions}}")
    return " ".join(parts)


def job_request(
    spec: RunSpec, target: TargetSpec, options: AzureMLOptions, roles: list[str], image: str
) -> dict[str, Any]:
    """The Jobs - Create Or Update request of the command job, with placeholders."""
    name = f"{spec.name}-{RUN_KEY}"
    compute = target.compute
    instance_type = _instance_type(target, options)
    processes = _processes(options, instance_type)
    hours = compute.max_runtime_hours or options.max_runtime_hours
    resources: dict[str, Any] = {"instanceCount": compute.instance_count}
    properties: dict[str, Any] = {
        "jobType": "Command",
        "displayName": spec.name,
        "experimentName": options.experiment_name,
        "command": command(roles),
        "environmentId": f"{options.workspace_id}/environments/{ENVIRONMENT}/versions/"
        f"{environment_version(image)}",
        "environmentVariables": {CONFIG_ENV: json.dumps(trainer_config(spec), sort_keys=True)},
        "inputs": {
            INPUTS[role]: {
                "jobInputType": "uri_file",
                "uri": uri_placeholder(role),
                "mode": "Download",
            }
            for role in roles
        },
        "outputs": {
            "model": {
                "jobOutputType": "uri_folder",
                "uri": _datastore_uri(options, "models", name),
                "mode": "Upload",
            },
            # Mounted read-write, so checkpoints outlive a preempted node and the trainer
            # resumes from them when Azure ML restarts the job.
            "checkpoints": {
                "jobOutputType": "uri_folder",
                "uri": _datastore_uri(options, "checkpoints", name),
                "mode": "ReadWriteMount",
            },
        },
        "limits": {"jobLimitsType": "Command", "timeout": f"PT{int(hours * 3600)}S"},
        "resources": resources,
        "tags": run_labels(spec, target=target.key),
    }
    if "golden_set" in roles:
        # The golden set's answers, apart from the model: reading them downloads no model.
        properties["outputs"]["predictions"] = {
            "jobOutputType": "uri_folder",
            "uri": _datastore_uri(options, "predictions", name),
            "mode": "Upload",
        }
    if spec.description:
        properties["description"] = spec.description
    if options.compute is not None:
        properties["computeId"] = f"{options.workspace_id}/computes/{options.compute}"
    else:
        # Serverless compute: the job names the VM size, and spot capacity is its tier.
        resources["instanceType"] = instance_type
        if compute.spot:
            properties["queueSettings"] = {"jobTier": "Spot"}
    if compute.instance_count > 1 or processes > 1:
        properties["distribution"] = {
            "distributionType": "PyTorch",
            "processCountPerInstance": processes,
        }
    return {"path": f"jobs/{name}", "body": {"properties": properties}}


def environment_request(options: AzureMLOptions, spec: RunSpec, image: str) -> dict[str, Any]:
    """The Environment Versions - Create Or Update request of the trainer image."""
    version = environment_version(image)
    return {
        "path": f"environments/{ENVIRONMENT}/versions/{version}",
        "body": {
            "properties": {
                "image": image,
                "osType": "Linux",
                "description": "tunefleet's trainer (deploy/trainer)",
                "tags": {k: v for k, v in run_labels(spec).items() if v != RUN_KEY},
            }
        },
    }


def data_request(options: AzureMLOptions, name: str, role: str, sha256: str) -> dict[str, Any]:
    """The Data Versions - Create Or Update request registering a staged dataset as
    version ``sha256[:32]`` of data asset ``name``."""
    return {
        "path": f"data/{name}/versions/{sha256[:32]}",
        "body": {
            "properties": {
                "dataType": "uri_file",
                "dataUri": datastore_path(options, sha256),
                "description": f"tunefleet's {role.replace('_', ' ')} dataset",
                "tags": {"sha256": sha256},
                "isAnonymous": False,
            }
        },
    }


def datastore_path(options: AzureMLOptions, sha256: str) -> str:
    """The datastore URI of the blob of a dataset with content hash ``sha256``."""
    return f"azureml://datastores/{options.datastore}/paths/{blob_path(options, sha256)}"


def expectations(spec: RunSpec, target: TargetSpec, options: AzureMLOptions) -> dict[str, Any]:
    """What staging checks the workspace against before the first upload: the target's
    region and the placement policy's requirements."""
    return {
        "location": target.region,
        "requirePrivateNetwork": spec.placement.require_private_network,
        "requireCustomerManagedKey": spec.placement.require_customer_managed_key,
        "keyVaultKey": options.key_vault_key,
        "compute": options.compute,
    }


def model_request(job: str, output: str, adapter: str) -> dict[str, Any]:
    """The Model Versions - Create Or Update request registering job ``job``'s model
    output: model ``job``, version 1 (a job makes one model)."""
    what = "the fine-tuned model" if adapter == "full" else f"the {adapter} adapter, merged/ too"
    return {
        "path": f"models/{job}/versions/1",
        "body": {
            "properties": {
                "modelUri": output,
                "modelType": "custom_model",
                "jobName": job,
                "description": f"{what}, trained by tunefleet",
                "tags": {"adapter": adapter},
            }
        },
    }


def unmet(spec: RunSpec, target: TargetSpec, options: AzureMLOptions) -> list[Unmet]:
    """What this target's options lack for the spec's requirements, each with the setting."""
    found: list[Unmet] = []
    if options.mode == "command":
        found += trainer_unmet(spec)
        if options.training_image is None:
            found.append(
                Unmet(
                    requirement="options.training_image",
                    reason="a command job runs tunefleet's trainer image (deploy/trainer): "
                    "push it to the workspace's container registry and name it here",
                )
            )
    else:
        found += _finetuning.unmet(spec, target, options)
    policy = spec.placement
    if target.region is None:
        found.append(
            Unmet(
                requirement="region",
                reason="set the target's region to the workspace's (Azure ML runs jobs "
                "where the workspace is)",
            )
        )
    if policy.require_customer_managed_key and options.encryption_scope is None:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="no options.encryption_scope: the datasets would be written with the "
                "storage account's default (Microsoft-managed) key; name an encryption scope "
                "backed by your Key Vault key",
            )
        )
    if target.compute.spot and options.compute is not None:
        found.append(
            Unmet(
                requirement="compute.spot",
                reason=f"a job on cluster {options.compute!r} runs at the cluster's own "
                "priority; spot capacity is a tier of serverless compute (remove "
                "options.compute, or train on a low-priority cluster without compute.spot)",
            )
        )
    instance_type = _instance_type(target, options)
    if spec.method.adapter == "qlora" and gpus(instance_type) == 0:
        found.append(
            Unmet(
                requirement="method.adapter",
                reason=f"qlora needs a CUDA GPU; {instance_type} has none",
            )
        )
    if (
        options.mode == "command"
        and options.compute is not None
        and target.compute.instance_type is not None
    ):
        found.append(
            Unmet(
                requirement="compute.instance_type",
                reason=f"cluster {options.compute!r} has its own VM size; remove "
                "compute.instance_type, or remove options.compute to run on serverless "
                "compute of that size",
            )
        )
    return found


def limit_unmet(spec: RunSpec) -> list[Unmet]:
    """The documented name rules the planned requests would break."""
    found: list[Unmet] = []
    longest_job = job_name(f"{spec.name}-{RUN_KEY}", "f" * 32)
    if not _JOB_NAME.match(longest_job):
        found.append(
            Unmet(
                requirement="name",
                reason=f"job name {longest_job!r} breaks Azure ML's rule (letters, digits, "
                "- and _, at most 255 characters)",
            )
        )
    for role in ("train", "validation", "golden_set"):
        name = data_asset(spec, role)
        if not _ASSET_NAME.match(name):
            found.append(
                Unmet(
                    requirement="name",
                    reason=f"data asset name {name!r} breaks Azure ML's rule (letters, "
                    "digits, ., - and _, at most 255 characters)",
                )
            )
    return found


def fill(body: dict[str, Any], uris: dict[str, str], run_key: str) -> dict[str, Any]:
    """``body`` with the run key and the staged datasets' URIs in place of placeholders."""
    values = {uri_placeholder(role): uri for role, uri in uris.items()}
    filled = fill_placeholders(body, {**values, RUN_KEY: run_key})
    properties = filled["body"]["properties"]
    inputs = properties.get("inputs") or {
        key: value
        for key, value in (properties.get("fineTuningDetails") or {}).items()
        if key in ("trainingData", "validationData")
    }
    for name, job_input in inputs.items():
        if not str(job_input["uri"]).startswith("azureml://"):
            raise ValueError(f"nothing staged for input {name}")
    return filled


def _cost(
    request: PlanRequest, options: AzureMLOptions, body: dict[str, Any], epochs: int
) -> tuple[CostEstimate | None, list[str]]:
    train = request.datasets.get("train")
    tokens = None if train is None or train.billable_tokens is None else train.billable_tokens
    properties = body["properties"]
    if properties["jobType"] == "FineTuning" and options.price_per_hour is None:
        return None, [
            "serverless fine-tuning is billed by the service's own meter (per token trained "
            "for some catalog models, per hour for others; see the model's card in the "
            "catalog); set options.price_per_hour and options.tokens_per_second for an "
            "estimate"
        ]
    if options.compute is not None and options.price_per_hour is None:
        return None, [
            f"the estimate needs cluster {options.compute!r}'s VM size: set "
            "options.price_per_hour (and options.tokens_per_second)"
        ]
    spot = properties.get("queueSettings", {}).get("jobTier") == "Spot"
    return PRICES.estimate(
        instance=_instance_type(request.target, options),
        count=(properties.get("resources") or {}).get("instanceCount", 1),
        region=request.target.region or PRICES.fallback_region,
        tokens=None if tokens is None else tokens * epochs,
        spot_discount=options.low_priority_discount if spot else None,
        price_per_hour=options.price_per_hour,
        tokens_per_second=options.tokens_per_second,
    )


def _stage_requests(request: PlanRequest, options: AzureMLOptions) -> list[NativeRequest]:
    spec = request.spec
    requests = [
        NativeRequest(
            phase="stage",
            service="azureml",
            operation="Workspaces_Get",
            body={"path": "", "expect": expectations(spec, request.target, options)},
            purpose="read the workspace (region, network isolation, encryption) and check "
            "it against the placement policy before anything is uploaded",
        ),
        NativeRequest(
            phase="stage",
            service="azureml",
            operation="Datastores_Get",
            body={"path": f"datastores/{options.datastore}"},
            purpose="find the datastore's storage account and container",
        ),
    ]
    for role in roles_of(spec, options):
        facts = request.datasets.get(role)
        sha256 = facts.sha256 if facts and facts.sha256 else DATASET_HASH
        name = data_asset(spec, role)
        upload: dict[str, Any] = {
            "role": role,
            "dataAsset": name,
            "datastore": options.datastore,
            "path": blob_path(options, sha256),
            "metadata": {"sha256": sha256},
        }
        if options.encryption_scope:
            upload["encryptionScope"] = options.encryption_scope
        requests += [
            NativeRequest(
                phase="stage",
                service="storage",
                operation="PutBlockList",
                body=upload,
                purpose=f"upload the {role} dataset (skipped when the blob is there)",
            ),
            NativeRequest(
                phase="stage",
                service="azureml",
                operation="DataVersions_CreateOrUpdate",
                body=data_request(options, name, role, sha256),
                purpose=f"register the {role} dataset as a data asset (skipped when it is)",
            ),
        ]
    return requests


def plan(provider: str, request: PlanRequest) -> Plan:
    """The reads, uploads, environment and command job of one target, its VM-hour
    estimate, and what the options lack for the spec."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, AzureMLOptions)
    roles = roles_of(spec, options)
    requests = _stage_requests(request, options)
    if options.mode == "finetuning":
        job = _finetuning.job_request(spec, target, options, roles, uri_placeholder)
        requests.append(
            NativeRequest(
                service="azureml",
                operation="Jobs_CreateOrUpdate",
                body=job,
                purpose="create the serverless fine-tuning job (it registers the model)",
            )
        )
    else:
        image = options.training_image or "<options.training_image>"
        job = job_request(spec, target, options, roles, image)
        requests += [
            NativeRequest(
                service="azureml",
                operation="EnvironmentVersions_CreateOrUpdate",
                body=environment_request(options, spec, image),
                purpose="register the trainer image as an environment (skipped when it is)",
            ),
            NativeRequest(
                service="azureml",
                operation="Jobs_CreateOrUpdate",
                body=job,
                purpose="create the command job",
            ),
            NativeRequest(
                service="azureml",
                operation="ModelVersions_CreateOrUpdate",
                body=model_request(
                    job_name(job["path"].removeprefix("jobs/"), RUN_KEY),
                    job["body"]["properties"]["outputs"]["model"]["uri"],
                    spec.method.adapter or "lora",
                ),
                purpose="once the job completed: register its model output as a model asset",
            ),
        ]
        requests += _serving.requests(spec, target.region or "", options)
    epochs, _ = trainer_epochs(spec)
    cost, notes = _cost(request, options, job["body"], epochs)
    notes.append(
        f"before the first upload, tunefleet reads workspace {options.workspace!r} and "
        "checks its region, network isolation and encryption against the placement policy"
    )
    if spec.evaluation is not None and options.mode == "command":
        notes.append(
            "the job also answers the golden set, with the base model before training and "
            f"the trained model after it (greedy, up to {spec.evaluation.max_tokens} new "
            "tokens an answer); the cost estimate leaves that time out"
        )
    if not spec.base_model.startswith("scratch:"):
        notes.append(
            f"the job downloads {spec.base_model} from the Hugging Face Hub: the workspace's "
            "outbound rules must allow huggingface.co"
        )
    return Plan(
        target=target.key,
        provider=provider,
        region=target.region,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=unmet(spec, target, options) + limit_unmet(spec) + _serving.unmet(spec, options),
        notes=notes,
        # A command job answers the golden set itself (the GPU is paid for already); the
        # answers come back as the predictions artifacts of its predictions output.
        predictions="job" if spec.evaluation is not None and options.mode == "command" else None,
    )
