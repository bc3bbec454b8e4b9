"""Serving: a fine-tuned model behind an endpoint, and chat with it.

On the OpenAI API nothing is created: the API serves a fine-tuned model for as long as the
model exists, so deploying checks the model is there and the endpoint is the model id. On
Azure a fine-tuned model answers only once deployed under a name of its own, so deploying
sends the planned ``Deployments_CreateOrUpdate`` request to Resource Manager and the
endpoint is that deployment. Either way, ``invoke`` is a chat completion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunefleet.errors import CapabilityError, ProviderError
from tunefleet.kit.chat import chat_reply
from tunefleet.provider import (
    ArtifactRef,
    ChatReply,
    ChatRequest,
    EndpointRef,
    NativeRequest,
    Plan,
    fill_placeholders,
)
from tunefleet.spec import RunSpec
from tunefleet_openai._azure import Management
from tunefleet_openai._client import PROVIDER, Clients, translated
from tunefleet_openai.options import OpenAIOptions

if TYPE_CHECKING:
    import openai

__all__ = ["DEPLOY", "delete_endpoint", "deploy", "deploy_request", "invoke"]

DEPLOY = "Deployments_CreateOrUpdate"
"""Resource Manager's operation that creates (or replaces) an Azure OpenAI deployment."""
ENDPOINT_NAME = "${endpoint_name}"
MODEL = "${model}"
SERVABLE = frozenset({"hosted_model", "checkpoint"})


def deploy_request(spec: RunSpec, options: OpenAIOptions) -> NativeRequest | None:
    """Azure: the deployment ``deploy`` creates, with placeholders for its name and the
    model; None on the OpenAI API, where serving creates nothing."""
    if options.flavor != "azure":
        return None
    deployment: dict[str, Any] = {
        "sku": {"name": options.deployment_sku, "capacity": options.deployment_capacity},
        "properties": {"model": {"format": "OpenAI", "name": MODEL, "version": "1"}},
    }
    if spec.placement.tags:
        deployment["tags"] = dict(spec.placement.tags)
    return NativeRequest(
        phase="deploy",
        service="azure-resource-manager",
        operation=DEPLOY,
        body={
            "resourceGroupName": options.azure_resource_group,
            "accountName": options.azure_resource,
            "deploymentName": ENDPOINT_NAME,
            "deployment": deployment,
        },
        purpose="on deploy: serve the fine-tuned model as a deployment of the resource",
    )


def deploy(
    clients: Clients, options: OpenAIOptions, plan: Plan, artifact: ArtifactRef, name: str
) -> EndpointRef:
    """Serve ``artifact`` (a fine-tuned model or checkpoint id) as endpoint ``name``."""
    if artifact.kind not in SERVABLE:
        raise CapabilityError(
            PROVIDER, f"serves models fine-tuned on the API, not a {artifact.kind}"
        )
    if options.flavor == "azure":
        planned = plan.request(DEPLOY, phase="deploy")
        body = fill_placeholders(planned.body, {ENDPOINT_NAME: name, MODEL: artifact.uri})
        return EndpointRef(
            provider=PROVIDER,
            name=name,
            region=plan.region,
            url=f"{options.endpoint}/openai/deployments/{name}/chat/completions",
            id=Management(options).deploy(body),
            scope=options.scope(),
        )
    client = clients.get(options)
    with translated("retrieve model"):
        model = client.models.retrieve(artifact.uri)
    return EndpointRef(
        provider=PROVIDER,
        name=name,
        url=f"{client.base_url}".rstrip("/") + "/chat/completions",
        id=model.id,
        scope=options.scope(),
    )


def delete_endpoint(endpoint: EndpointRef) -> None:
    """Azure: delete the deployment (a missing one is a no-op). On the OpenAI API nothing
    was created to serve the model, and the model is the run's artifact, which stays."""
    options = OpenAIOptions.from_scope(endpoint.scope)
    if options.flavor == "azure":
        Management(options).delete(endpoint.name)


def invoke(client: openai.OpenAI, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
    """A chat completion from the model behind ``endpoint``."""
    if endpoint.id is None:
        raise ProviderError(
            PROVIDER, f"endpoint {endpoint.name} records no model id", code="no_model_id"
        )
    azure = endpoint.scope.get("flavor") == "azure"
    with translated("create chat completion"):
        completion = client.chat.completions.create(
            model=endpoint.name if azure else endpoint.id,  # Azure: the deployment
            messages=request.messages,  # type: ignore[arg-type]
            # max_tokens is deprecated in the chat API in favour of this.
            max_completion_tokens=request.max_tokens,
            temperature=request.temperature,
        )
    return chat_reply(PROVIDER, completion.model_dump(), f"endpoint {endpoint.name}")
