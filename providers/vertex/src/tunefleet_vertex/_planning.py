"""Planning: the neutral spec turned into Vertex AI requests, and what the target lacks.

A planned Vertex request is ``{"parent": "projects/P/locations/L", "<resource>": <the
resource's JSON>}``: the resource (a CustomJob, a TuningJob) is given to the
``aiplatform_v1`` client as planned, so the job created is the job `tunefleet plan` shows.
Placeholders stand for what exists only later (``${run_key}``, each staged dataset's
Cloud Storage URI and its Cloud Storage FUSE path); :func:`fill` puts the real values in
at submit. Vertex chooses a job's ID itself, so the job carries the run key in a label and
``find`` is one list filtered by it.

Labels follow Google's rules ("Labels overview",
https://cloud.google.com/resource-manager/docs/labels-overview): keys and values of
lowercase letters, digits, ``_`` and ``-``, keys starting with a letter, both at most 63
characters, at most 64 labels. A policy tag that breaks them is refused at plan with the
reason, never rewritten.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tunefleet.kit.labels import RUN, RUN_KEY_PLACEHOLDER, TARGET, run_labels
from tunefleet.kit.labels import RUN_KEY as RUN_KEY_TAG
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
from tunefleet_vertex import _serving, _tuning, pricing
from tunefleet_vertex.options import VertexOptions

__all__ = [
    "CONFIG_ENV",
    "LABELS",
    "RUN_KEY",
    "RUN_KEY_LABEL",
    "display_name",
    "fill",
    "fuse_path",
    "job_request",
    "label_unmet",
    "object_name",
    "path_placeholder",
    "plan",
    "roles_of",
    "uri_placeholder",
    "vertex_labels",
]

RUN_KEY = RUN_KEY_PLACEHOLDER
DATASET_HASH = "<sha256>"
"""Stands for a dataset's content hash in a planned upload when plan was not told it."""
CONFIG_ENV = "TUNEFLEET_TRAINER_CONFIG"
"""The environment variable the trainer reads its config from (less the paths)."""
LABELS = {RUN_KEY_TAG: "tunefleet-run-key", RUN: "tunefleet-run", TARGET: "tunefleet-target"}
"""tunefleet's labels in Google's alphabet (no ``:``)."""
RUN_KEY_LABEL = LABELS[RUN_KEY_TAG]
"""The label ``find`` filters jobs by."""
_FLAGS = {"train": "--train", "validation": "--validation", "golden_set": "--golden-set"}
"""The trainer's flag for each staged dataset's path."""
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_MAX_LABELS = 64
_DISPLAY_NAME_MAX = 128
"""CustomJob.displayName: "can be up to 128 characters long" (discovery document)."""


def uri_placeholder(role: str) -> str:
    """Stands for a staged dataset's ``gs://`` URI in a planned request."""
    return f"${{{role}_uri}}"


def path_placeholder(role: str) -> str:
    """Stands for a staged dataset's Cloud Storage FUSE path (``/gcs/BUCKET/NAME``)."""
    return f"${{{role}_path}}"


def fuse_path(uri: str) -> str:
    """The path at which a custom job's container reads ``gs://BUCKET/NAME``: Vertex
    mounts Cloud Storage with Cloud Storage FUSE at ``/gcs/`` ("Prepare training code",
    https://cloud.google.com/vertex-ai/docs/training/code-requirements#fuse)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri!r} is not a gs:// URI")
    return "/gcs/" + uri.removeprefix("gs://")


def display_name(spec: RunSpec) -> str:
    """The job's display name template: the run's name and the run key."""
    return f"{spec.name}-{RUN_KEY}"


def object_name(options: VertexOptions, sha256: str, role: str) -> str:
    """Where in the bucket a dataset with content hash ``sha256`` goes: content-addressed,
    and for Gemini tuning the converted file, named by the source's hash and the
    conversion's version (a new conversion writes new objects)."""
    if options.mode == "tuning":
        return options.object_name("datasets", f"{sha256}.{_tuning.FORMAT}.jsonl")
    return options.object_name("datasets", f"{sha256}.jsonl")


def roles_of(spec: RunSpec, options: VertexOptions) -> list[str]:
    """The datasets a job of ``spec`` reads: the golden set too when a custom job answers
    it (the spec has an evaluation)."""
    roles = ["train"]
    if spec.dataset.validation is not None:
        roles.append("validation")
    if spec.evaluation is not None and options.mode == "custom":
        roles.append("golden_set")
    return roles


def vertex_labels(spec: RunSpec, target: TargetSpec) -> dict[str, str]:
    """The policy's tags and tunefleet's labels (keys mapped to Google's alphabet), with
    the run key's placeholder."""
    return {
        LABELS.get(key, key): value for key, value in run_labels(spec, target=target.key).items()
    }


def label_unmet(spec: RunSpec) -> list[Unmet]:
    """Each policy tag that cannot be a Google label, with the rule it breaks."""
    found: list[Unmet] = []
    for key, value in spec.placement.tags.items():
        if not _LABEL_KEY.match(key):
            found.append(
                Unmet(
                    requirement=f"placement.tags.{key}",
                    reason=f"{key!r} cannot be a Google Cloud label key (lowercase letters, "
                    "digits, _ and -, starting with a letter, at most 63 characters); "
                    "tunefleet does not rewrite tags: rename it",
                )
            )
        elif not _LABEL_VALUE.match(value):
            found.append(
                Unmet(
                    requirement=f"placement.tags.{key}",
                    reason=f"{value!r} cannot be a Google Cloud label value (lowercase "
                    "letters, digits, _ and -, at most 63 characters); tunefleet does not "
                    "rewrite tags: change it",
                )
            )
    if len(spec.placement.tags) + len(LABELS) > _MAX_LABELS:
        found.append(
            Unmet(
                requirement="placement.tags",
                reason=f"a Google Cloud resource holds at most {_MAX_LABELS} labels and "
                f"tunefleet adds {len(LABELS)}",
            )
        )
    return found


def trainer_config(spec: RunSpec) -> dict[str, Any]:
    """The trainer's config, less the paths Vertex decides (datasets come as flags, the
    model and checkpoint directories from Vertex's ``AIP_*`` variables); the serving
    container loads a whole model, so an adapter is merged in too."""
    adapter = spec.method.adapter or "lora"
    config = neutral_trainer_config(spec, adapter=adapter, merge=adapter != "full")
    # Checked now with stand-in paths, so a config the trainer would refuse fails at plan.
    golden = "/gcs/b/golden.jsonl" if "evaluation" in config else None
    checked = json.loads(json.dumps(config))
    with_paths(checked, train="/gcs/b/train.jsonl", output_dir="/gcs/b/model", golden_set=golden)
    return config


def output_directory(options: VertexOptions, spec: RunSpec) -> str:
    """The job's base output directory: AIP_MODEL_DIR is ``<it>/model/``,
    AIP_CHECKPOINT_DIR ``<it>/checkpoints/`` ("Environment variables for special Cloud
    Storage directories", https://cloud.google.com/vertex-ai/docs/training/code-requirements#environment-variables)."""
    return f"gs://{options.bucket}/{options.object_name('jobs', display_name(spec))}"


def _machine(target: TargetSpec, options: VertexOptions) -> tuple[str, str | None, int]:
    machine = target.compute.instance_type or options.machine_type
    accelerator, count = pricing.accelerators(
        machine, options.accelerator_type, options.accelerator_count
    )
    return machine, accelerator, count


def _processes(options: VertexOptions, gpus: int) -> int:
    return options.processes_per_replica or max(gpus, 1)


def _args(roles: list[str], processes: int, predictions: str | None) -> list[str]:
    args = ["--nproc-per-node", str(processes), "--"]
    for role in roles:
        args += [_FLAGS[role], path_placeholder(role)]
    if predictions is not None:
        args += ["--predictions-dir", fuse_path(predictions)]
    return args


def job_request(
    spec: RunSpec, target: TargetSpec, options: VertexOptions, roles: list[str], image: str
) -> dict[str, Any]:
    """The customJobs.create request of the trainer's custom job, with placeholders."""
    compute = target.compute
    machine, accelerator, count = _machine(target, options)
    output = output_directory(options, spec)
    predictions = f"{output}/predictions" if "golden_set" in roles else None
    machine_spec: dict[str, Any] = {"machineType": machine}
    if accelerator is not None:
        machine_spec.update(acceleratorType=accelerator, acceleratorCount=count)
    pool: dict[str, Any] = {
        "machineSpec": machine_spec,
        "replicaCount": "1",
        "diskSpec": {"bootDiskSizeGb": compute.volume_size_gb or options.boot_disk_size_gb},
        "containerSpec": {
            "imageUri": image,
            # Vertex's cluster environment (CLUSTER_SPEC, AIP_*) turned into the trainer's
            # paths and torch distributed's topology (deploy/trainer, tunefleet_trainer.cluster).
            "command": ["python", "-m", "tunefleet_trainer.cluster"],
            "args": _args(roles, _processes(options, count), predictions),
            "env": [
                {"name": CONFIG_ENV, "value": json.dumps(trainer_config(spec), sort_keys=True)}
            ],
        },
    }
    # Vertex's chief is worker pool 0, one replica; the other replicas are pool 1
    # ("Distributed training", https://cloud.google.com/vertex-ai/docs/training/distributed-training).
    if options.boot_disk_type is not None:
        pool["diskSpec"]["bootDiskType"] = options.boot_disk_type
    pools = [pool]
    if compute.instance_count > 1:
        pools.append({**pool, "replicaCount": str(compute.instance_count - 1)})
    hours = compute.max_runtime_hours or options.max_runtime_hours
    scheduling: dict[str, Any] = {"timeout": f"{int(hours * 3600)}s"}
    if compute.spot:
        scheduling["strategy"] = "SPOT"
    job_spec: dict[str, Any] = {
        "workerPoolSpecs": pools,
        "scheduling": scheduling,
        "baseOutputDirectory": {"outputUriPrefix": output},
    }
    if options.service_account:
        job_spec["serviceAccount"] = options.service_account
    if options.network:
        job_spec["network"] = options.network
        if options.reserved_ip_ranges:
            job_spec["reservedIpRanges"] = list(options.reserved_ip_ranges)
    if options.psc_network_attachment:
        job_spec["pscInterfaceConfig"] = {"networkAttachment": options.psc_network_attachment}
    job: dict[str, Any] = {
        "displayName": display_name(spec),
        "jobSpec": job_spec,
        "labels": vertex_labels(spec, target),
    }
    if options.kms_key_name:
        job["encryptionSpec"] = {"kmsKeyName": options.kms_key_name}
    return {"parent": f"projects/{options.project}/locations/{target.region}", "customJob": job}


def upload_request(options: VertexOptions, role: str, sha256: str) -> dict[str, Any]:
    """The Cloud Storage upload of one dataset: content-addressed, never over an object
    that exists (``ifGenerationMatch: 0``), with the customer key when there is one."""
    body: dict[str, Any] = {
        "role": role,
        "bucket": options.bucket,
        "name": object_name(options, sha256, role),
        "ifGenerationMatch": "0",
        "metadata": {"sha256": sha256},
    }
    if options.mode == "tuning":
        body["convert"] = _tuning.FORMAT
    if options.kms_key_name:
        body["kmsKeyName"] = options.kms_key_name
    return body


def unmet(spec: RunSpec, target: TargetSpec, options: VertexOptions) -> list[Unmet]:
    """What this target's options lack for the spec's requirements, each with the setting."""
    found: list[Unmet] = []
    policy = spec.placement
    if target.region is None:
        found.append(
            Unmet(
                requirement="region",
                reason="set the target's region (a Vertex AI region such as europe-west4): "
                "Vertex's resources are regional",
            )
        )
    if policy.require_customer_managed_key and options.kms_key_name is None:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="no options.kms_key_name: the datasets, the job and its outputs would "
                "be encrypted with a Google-managed key; name a Cloud KMS key in the "
                "target's region",
            )
        )
    if (
        options.kms_key_name
        and target.region
        and f"/locations/{target.region}/" not in options.kms_key_name
    ):
        found.append(
            Unmet(
                requirement="options.kms_key_name",
                reason=f"the key is not in {target.region}: Vertex AI uses a key of the "
                'resource\'s own region ("Customer-managed encryption keys", '
                "https://cloud.google.com/vertex-ai/docs/general/cmek)",
            )
        )
    if options.mode == "tuning":
        return found + _tuning.unmet(spec, target, options)
    found += trainer_unmet(spec)
    if options.training_image is None:
        found.append(
            Unmet(
                requirement="options.training_image",
                reason="a custom job runs tunefleet's trainer image (deploy/trainer): push "
                "it to Artifact Registry and name it here",
            )
        )
    if policy.require_private_network and not (options.network or options.psc_network_attachment):
        found.append(
            Unmet(
                requirement="placement.require_private_network",
                reason="no options.network (a VPC peered with Vertex AI) or "
                "options.psc_network_attachment (a Private Service Connect interface): the "
                "job would run on Google's network, outside yours",
            )
        )
    try:
        _, accelerator, _ = _machine(target, options)
    except ValueError as exc:
        found.append(Unmet(requirement="compute.instance_type", reason=str(exc)))
        return found
    if spec.method.adapter == "qlora" and (
        accelerator is None or not accelerator.startswith("NVIDIA")
    ):
        found.append(
            Unmet(
                requirement="method.adapter",
                reason="qlora needs a CUDA GPU; set options.accelerator_type or a GPU machine",
            )
        )
    longest = display_name(spec).replace(RUN_KEY, "f" * 32)
    if len(longest) > _DISPLAY_NAME_MAX:
        found.append(
            Unmet(requirement="name", reason=f"display name {longest!r} is over 128 characters")
        )
    return found


def fill(request: dict[str, Any], uris: dict[str, str], run_key: str) -> dict[str, Any]:
    """``request`` with the run key and the staged datasets' URIs and paths in place of
    placeholders; ValueError when a dataset it reads was not staged."""
    values = {RUN_KEY: run_key}
    for role, uri in uris.items():
        values[uri_placeholder(role)] = uri
        values[path_placeholder(role)] = fuse_path(uri)
    filled = fill_placeholders(request, values)
    left = re.findall(r"\$\{(\w+)_(?:uri|path)\}", json.dumps(filled))
    if left:
        raise ValueError(f"nothing staged for {', '.join(sorted(set(left)))}")
    return filled


def _cost(
    request: PlanRequest, options: VertexOptions, job: dict[str, Any], epochs: int
) -> tuple[CostEstimate | None, list[str]]:
    train = request.datasets.get("train")
    tokens = None if train is None or train.billable_tokens is None else train.billable_tokens
    pools = job["jobSpec"]["workerPoolSpecs"]
    machine = pools[0]["machineSpec"]
    replicas = sum(int(pool["replicaCount"]) for pool in pools)
    spot = job["jobSpec"]["scheduling"].get("strategy") == "SPOT"
    return pricing.PRICES.estimate(
        instance=pricing.price_key(
            machine["machineType"], machine.get("acceleratorType"), machine.get("acceleratorCount")
        ),
        count=replicas,
        region=request.target.region or pricing.PRICES.fallback_region,
        tokens=None if tokens is None else tokens * epochs,
        spot_discount=options.spot_discount if spot else None,
        price_per_hour=options.price_per_hour,
        tokens_per_second=options.tokens_per_second,
    )


def _stage_requests(request: PlanRequest, options: VertexOptions) -> list[NativeRequest]:
    requests = []
    for role in roles_of(request.spec, options):
        facts = request.datasets.get(role)
        sha256 = facts.sha256 if facts and facts.sha256 else DATASET_HASH
        what = (
            f"convert the {role} dataset to Gemini's tuning format and upload it"
            if options.mode == "tuning"
            else f"upload the {role} dataset"
        )
        requests.append(
            NativeRequest(
                phase="stage",
                service="storage",
                operation="objects.insert",
                body=upload_request(options, role, sha256),
                purpose=f"{what} (a resumable upload; skipped when the object is there)",
            )
        )
    return requests


def plan(provider: str, request: PlanRequest) -> Plan:
    """The uploads and the job of one target, its cost estimate, and what the options
    lack for the spec."""
    spec, target = request.spec, request.target
    options = request.options
    assert isinstance(options, VertexOptions)
    requests = _stage_requests(request, options)
    notes: list[str] = []
    epochs, _ = trainer_epochs(spec)
    unmet_found = unmet(spec, target, options) + label_unmet(spec) + _serving.unmet(spec, options)
    cost: CostEstimate | None = None
    if options.mode == "tuning":
        tuning = _tuning.job_request(spec, target, options)
        requests.append(
            NativeRequest(
                service="vertex",
                operation="tuningJobs.create",
                body=tuning,
                purpose="create the supervised tuning job of the Gemini model",
            )
        )
        cost, more = _tuning.cost(request, options)
        notes += more
        epochs = _tuning.epochs(spec, request)
    elif not [u for u in unmet_found if u.requirement == "compute.instance_type"]:
        image = options.training_image or "<options.training_image>"
        job = job_request(spec, target, options, roles_of(spec, options), image)
        requests.append(
            NativeRequest(
                service="vertex",
                operation="customJobs.create",
                body=job,
                purpose="create the custom job running tunefleet's trainer",
            )
        )
        requests += _serving.requests(spec, target, options)
        cost, more = _cost(request, options, job["customJob"], epochs)
        notes += more
        if spec.evaluation is not None:
            notes.append(
                "the job also answers the golden set, with the base model before training "
                "and the trained model after it (greedy, up to "
                f"{spec.evaluation.max_tokens} new tokens an answer); the cost estimate "
                "leaves that time out"
            )
        if not spec.base_model.startswith("scratch:"):
            notes.append(
                f"the job downloads {spec.base_model} from the Hugging Face Hub: with a "
                "private network, the VPC must reach huggingface.co (Cloud NAT)"
            )
    return Plan(
        target=target.key,
        provider=provider,
        region=target.region,
        options=options.model_dump(mode="json"),
        epochs=epochs,
        requests=requests,
        cost=cost,
        unmet=unmet_found,
        notes=notes,
        # A custom job answers the golden set itself (the GPU is paid for already); a tuned
        # Gemini model answers through its endpoint (Answering).
        predictions=None
        if spec.evaluation is None
        else ("job" if options.mode == "custom" else "answer"),
    )
