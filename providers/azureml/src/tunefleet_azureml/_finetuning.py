"""Serverless fine-tuning of catalog models: Azure ML's own fine-tuning job.

The hosted route on Azure ML: a base model from a model catalog registry (Phi, Llama,
Mistral...) fine-tuned by Azure ML's fine-tuning pipeline on the staged chat data, as a
``FineTuning`` job with ``modelProvider: Custom`` and ``taskType: ChatCompletion`` (what
azure-ai-ml's ``azure.ai.ml.finetuning.create_finetuning_job`` builds; "Fine-tune models
using serverless APIs",
https://learn.microsoft.com/azure/ai-foundry/how-to/fine-tune-serverless). The service
chooses the adapter and trains with its own hyperparameters, passed as strings: the spec's
epochs, learning rate and batch size map onto them, anything else is refused with the
reason, never dropped. The result is registered as an MLflow model asset. Models of other
publishers than Microsoft (Llama, Mistral) need the workspace's project subscribed to the
model's Azure Marketplace offer first; the job fails with Azure's reason otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from tunefleet.kit.labels import RUN_KEY_PLACEHOLDER, run_labels
from tunefleet.provider import Unmet
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_azureml.options import AzureMLOptions

__all__ = ["CATALOG_MODEL", "HYPERPARAMETERS", "job_request", "output_model", "unmet"]

CATALOG_MODEL = re.compile(
    r"^azureml://registries/[a-zA-Z0-9][a-zA-Z0-9_-]{2,62}/models/[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}"
    r"/(versions/[a-zA-Z0-9._-]{1,64}|labels/latest)$"
)
"""A model of a registry, as a fine-tuning job's ``model`` input names it
(``azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1``)."""
HYPERPARAMETERS = {
    "epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
}
"""The spec's hyperparameters the fine-tuning pipeline takes, and its names for them (the
serverless fine-tuning samples' ``hyperparameters``)."""
_SERVICE_CHOOSES = (
    "warmup_ratio",
    "scheduler",
    "max_seq_length",
    "max_grad_norm",
    "seed",
    "lora",
    "learning_rate_multiplier",
)


def output_model(spec: RunSpec) -> str:
    """The model asset the job registers: the run's name and its run key (placeholder)."""
    return f"{spec.name}-{RUN_KEY_PLACEHOLDER}"


def unmet(spec: RunSpec, target: TargetSpec, options: AzureMLOptions) -> list[Unmet]:
    """What serverless fine-tuning cannot honour, each with the setting and the reason."""
    found: list[Unmet] = []
    if not CATALOG_MODEL.match(spec.base_model):
        found.append(
            Unmet(
                requirement="base_model",
                reason="serverless fine-tuning takes a model catalog registry's model, such "
                "as azureml://registries/azureml/models/Phi-4-mini-instruct/versions/1",
            )
        )
    if spec.method.type != "supervised":
        found.append(
            Unmet(
                requirement="method.type",
                reason="Azure ML's fine-tuning of catalog models is supervised (chat "
                "completion) only",
            )
        )
    if spec.method.adapter is not None:
        found.append(
            Unmet(
                requirement="method.adapter",
                reason="the fine-tuning service chooses its adapter; remove method.adapter "
                "(or use mode: command to train with tunefleet's trainer)",
            )
        )
    for field in _SERVICE_CHOOSES:
        if getattr(spec.hyperparameters, field) is not None:
            found.append(
                Unmet(
                    requirement=f"hyperparameters.{field}",
                    reason="Azure ML's fine-tuning pipeline takes epochs, learning_rate and "
                    "batch_size only; it sets the rest itself",
                )
            )
    if spec.evaluation is not None:
        found.append(
            Unmet(
                requirement="evaluation",
                reason="a serverless fine-tuning job does not answer the golden set, and its "
                "model is served by Azure's serverless endpoints, which tunefleet does not "
                "deploy yet; evaluate a command-job target instead",
            )
        )
    if spec.placement.require_customer_managed_key:
        found.append(
            Unmet(
                requirement="placement.require_customer_managed_key",
                reason="serverless fine-tuning does not support customer-managed keys "
                "(Fine-tune models using serverless APIs, Prerequisites); use mode: command",
            )
        )
    if target.compute.instance_type is not None:
        found.append(
            Unmet(
                requirement="compute.instance_type",
                reason="serverless fine-tuning chooses its machines; name a cluster in "
                "options.compute to choose them",
            )
        )
    if spec.placement.require_private_network:
        found.append(
            Unmet(
                requirement="placement.require_private_network",
                reason="serverless fine-tuning runs on compute the service manages, which "
                "tunefleet cannot place in your network; use mode: command on a cluster in "
                "your subnet",
            )
        )
    if spec.endpoint is not None:
        found.append(
            Unmet(
                requirement="endpoint",
                reason="the fine-tuned catalog model is an MLflow model served by Azure's "
                "serverless endpoints, which tunefleet does not deploy yet; remove endpoint",
            )
        )
    return found


def job_request(
    spec: RunSpec, target: TargetSpec, options: AzureMLOptions, roles: list[str], uri: Any
) -> dict[str, Any]:
    """The Jobs - Create Or Update request of the fine-tuning job, with placeholders;
    ``uri(role)`` is the placeholder of a staged dataset."""
    name = f"{spec.name}-{RUN_KEY_PLACEHOLDER}"
    hyperparameters = {
        service: str(getattr(spec.hyperparameters, field))
        for field, service in HYPERPARAMETERS.items()
        if getattr(spec.hyperparameters, field) is not None
    }
    details: dict[str, Any] = {
        "modelProvider": "Custom",
        "taskType": "ChatCompletion",
        "model": {"jobInputType": "mlflow_model", "uri": spec.base_model},
        "trainingData": {"jobInputType": "uri_file", "uri": uri("train")},
    }
    if "validation" in roles:
        details["validationData"] = {"jobInputType": "uri_file", "uri": uri("validation")}
    if hyperparameters:
        details["hyperParameters"] = hyperparameters
    properties: dict[str, Any] = {
        "jobType": "FineTuning",
        "displayName": spec.name,
        "experimentName": options.experiment_name,
        "fineTuningDetails": details,
        "outputs": {
            "registered_model": {"jobOutputType": "mlflow_model", "assetName": output_model(spec)}
        },
        "tags": run_labels(spec, target=target.key),
    }
    if spec.description:
        properties["description"] = spec.description
    if options.compute is not None:
        # Managed compute: the job runs on the workspace's cluster.
        properties["computeId"] = f"{options.workspace_id}/computes/{options.compute}"
    elif target.compute.spot:
        # Serverless: the service picks the machines (the serverless samples send neither
        # compute nor instance types); spot is a tier.
        properties["queueSettings"] = {"jobTier": "Spot"}
    return {"path": f"jobs/{name}", "body": {"properties": properties}}
