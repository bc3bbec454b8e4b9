"""The provider contract: what a backend declares and what it must do.

A provider is a class satisfying :class:`Provider`, contributed by a distribution through
the ``tunefleet_providers`` hook (see :mod:`tunefleet.hookspecs`). Constructing one must be
cheap and must not import a cloud SDK; the SDK is imported by the first method that needs it.

The required part, nine methods, in the order the engine drives a target::

    capabilities(options)     what it can do (at all, or with a target's options)
    plan(PlanRequest)         the exact native requests, a cost estimate, and every
                              requirement it cannot honour with the reason -- no side effects
    stage(plan, ...)          put a dataset where the job can read it (content-addressed)
    find(plan, run_key)       the job this run key already created, if any (idempotency)
    submit(plan, ...)         create the job
    status / events / cancel  watch and control it
    artifacts(job)            what it produced

Optional protocols, for what only some backends do; a provider implements the ones its
service really supports and nothing else (no method exists only to refuse):

    Pausable          pause(job) / resume(job)
    Serving           deploy(plan, artifact, name) / delete_endpoint / invoke
    TrafficSplitting  add_version / versions / shift_traffic / invoke_version /
                      remove_version / alarms: versions side by side, for canaries
    Estimating        estimate_training(...): epochs and price before there is a spec
    ContextLimits     training_context(base_model): tokens per example the service trains
    Answering         answer(options, model, requests): a model answers through the
                      provider without an endpoint tunefleet deployed (hosted chat APIs)
    ArtifactReading   read_artifact(job, artifact): the bytes of a small artifact (the
                      golden set's answers the training job wrote)

Evaluation: a plan says how the golden set's answers come (:attr:`Plan.predictions`):
``job``, the training job answers it (trainer-image providers stage the golden set, the
trainer writes ``predictions`` artifacts, read back with ``ArtifactReading``), or
``answer``, the trained model answers through ``Answering``. Scoring is core's.

The capability flags ``pause``, ``endpoints`` and ``traffic_split`` are read off these
protocols by :func:`capabilities_of`, so the flags and the methods cannot disagree.
What trainer-image backends share (the trainer's config, its lines as events, cost models,
run-key labels, limits) is in :mod:`tunefleet.kit`.

Every value crossing this boundary is a pydantic model that serializes to JSON, so the
journal can store it and a later process can pick the run up where a crashed one left it.
This module imports neither the engine (``tunefleet.run``) nor data validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.errors import CapabilityError, ProviderError
from tunefleet.estimates import TrainingEstimate
from tunefleet.jobstate import JobState
from tunefleet.spec import RunSpec, TargetSpec
from tunefleet_trainer.config import Adapter, Method

if TYPE_CHECKING:  # the event models are built only where events are read
    from tunefleet.events import EventPage

__all__ = [
    "Answering",
    "ArtifactReading",
    "ArtifactRef",
    "Capabilities",
    "ChatReply",
    "ChatRequest",
    "ContextLimits",
    "CostEstimate",
    "DatasetFacts",
    "DatasetRef",
    "EndpointRef",
    "Estimating",
    "JobRef",
    "JobStatus",
    "NativeRequest",
    "Pausable",
    "Phase",
    "Plan",
    "PlanRequest",
    "Provider",
    "Serving",
    "TrafficSplitting",
    "TrainingEstimate",
    "Unmet",
    "UploadProgress",
    "capabilities_of",
    "fill_placeholders",
    "optional",
]

P = TypeVar("P")

UploadProgress = Callable[[int, int], None]
"""Called with (bytes sent, total bytes) while a dataset uploads."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capabilities(_Frozen):
    """What a provider can do at all. Core checks a spec against these before planning."""

    methods: frozenset[Method]
    adapters: frozenset[Adapter] = frozenset()
    """Adapters a spec may ask for; empty when the service chooses (hosted APIs)."""
    regions: tuple[str, ...] = ()
    """Regions it can run in; empty when the service does not let you choose."""
    runs_locally: bool = False
    """Runs on the machine tunefleet runs on: no data leaves it, so region pins and private
    networking are honoured as they are."""
    private_network: bool = False
    """Can keep training and serving traffic inside a user's private network."""
    customer_managed_keys: bool = False
    """Can encrypt data at rest with a key the user manages."""
    spot: bool = False
    instance_types: bool = False
    """A spec may choose the machine type."""
    multi_node: bool = False
    autoscaling: bool = False
    """Its endpoints scale with load."""
    tags: bool = False
    """Can apply the placement policy's tags to what it creates."""
    endpoints: bool = False
    """Serves models (implements :class:`Serving`). Derived: leave it unset."""
    traffic_split: bool = False
    """Splits an endpoint's traffic between versions (:class:`TrafficSplitting`). Derived."""
    pause: bool = False
    """Pauses a running job and resumes it where it stopped (:class:`Pausable`). Derived."""


DERIVED_CAPABILITIES = frozenset({"endpoints", "traffic_split", "pause"})
"""Capability flags read off the optional protocols a provider implements."""


class DatasetFacts(_Frozen):
    """What validation learnt about one dataset, for planning and cost."""

    role: Literal["train", "validation", "golden_set"]
    location: str
    examples: int | None = None
    tokens: int | None = None
    billable_tokens: int | None = None
    """Tokens trained on per epoch: each example capped at the context limit."""
    encoding: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None


class PlanRequest(_Frozen):
    """Everything a provider needs to plan one target."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    spec: RunSpec
    target: TargetSpec
    options: BaseModel
    """The target's options, already validated with the provider's ``options_model``."""
    datasets: Mapping[str, DatasetFacts] = {}


Phase = Literal["stage", "submit", "evaluate", "deploy"]
"""When a planned request is sent: staging data, creating the job, answering the golden set
after the job succeeded, or serving."""


class NativeRequest(_Frozen):
    """One request exactly as the provider will send it."""

    phase: Phase = "submit"
    """The step that sends it; providers look their planned requests up by phase and
    operation, never by reading ``purpose``."""
    service: str
    """The API it goes to: `sagemaker`, `s3`, `openai`, `local`."""
    operation: str
    """The operation's name in the service's own terms (`CreateTrainingJob`)."""
    body: dict[str, Any]
    purpose: str
    """One line for people reading the plan."""


def fill_placeholders(body: dict[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A planned request's ``body`` with each key of ``values``, a placeholder written
    whole (``"${run_key}"``), replaced by its value wherever it appears in a string, keys
    included (a map keyed by a name known later, such as an endpoint's traffic by
    deployment).

    Providers plan a request with placeholders for what exists only later (an uploaded
    file's id, the run key, an endpoint's name) and fill them in when they send it, so the
    request sent is the one `tunefleet plan` showed.
    """

    def text(node: str) -> str:
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                text(key) if isinstance(key, str) else key: substitute(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [substitute(item) for item in node]
        if isinstance(node, str):
            return text(node)
        return node

    filled: dict[str, Any] = substitute(body)
    return filled


class CostEstimate(_Frozen):
    """What the run is expected to cost on this target, and how that was worked out."""

    amount: float = Field(ge=0)
    currency: str = "USD"
    basis: str
    """The arithmetic in words: `4,306 tokens x 20 epochs x $3.00/M`."""
    price_date: date | None = None
    """When the price table behind it was taken."""


class Unmet(_Frozen):
    """A requirement of the spec the provider cannot honour, and why."""

    requirement: str
    """The spec key it comes from: `placement.require_private_network`."""
    reason: str


class Plan(_Frozen):
    """A target turned into provider-native work. Planning never creates anything."""

    target: str
    provider: str
    region: str | None
    options: dict[str, Any]
    """The validated options, as JSON, so a later process can act on the plan."""
    epochs: int | None = None
    requests: list[NativeRequest] = []
    cost: CostEstimate | None = None
    unmet: list[Unmet] = []
    notes: list[str] = []
    predictions: Literal["job", "answer"] | None = None
    """How the golden set's answers come for this target: the training job writes them
    (``job``: the provider stages the golden set, puts it in the trainer's config and lists
    ``predictions`` artifacts), or the trained model answers through :class:`Answering`
    (``answer``). None: this target's model cannot be evaluated, and a spec with an
    evaluation fails at plan."""

    @property
    def ok(self) -> bool:
        """True when the provider can honour every requirement."""
        return not self.unmet

    def requests_for(self, phase: Phase) -> list[NativeRequest]:
        """The planned requests ``phase`` sends, in order."""
        return [request for request in self.requests if request.phase == phase]

    def request(self, operation: str, phase: Phase = "submit") -> NativeRequest:
        """The planned request of ``operation`` in ``phase``; ProviderError ``plan_outdated``
        when the plan has none (a plan recorded by an older version: plan the run again)."""
        for request in self.requests:
            if request.operation == operation and request.phase == phase:
                return request
        raise ProviderError(
            self.provider,
            f"the plan of target {self.target!r} has no {phase} request {operation} (planned "
            "by an older version); run the spec again to plan it anew",
            code="plan_outdated",
        )


class DatasetRef(_Frozen):
    """A dataset staged where the provider's job can read it."""

    provider: str
    role: str
    uri: str
    sha256: str
    size_bytes: int = Field(ge=0)


class JobRef(_Frozen):
    """A training job a provider created."""

    provider: str
    target: str
    id: str
    region: str | None = None
    run_key: str
    console_url: str | None = None
    scope: dict[str, str] = {}
    """What a later call needs besides ``id`` to reach the job (an API endpoint, an
    account, a project); never a credential."""


class JobStatus(_Frozen):
    """A job's state as of ``checked_at``."""

    state: JobState
    message: str | None = None
    """The provider's own words about the state (failure reason, queue position)."""
    checked_at: datetime
    trained_tokens: int | None = None
    billable_seconds: int | None = None
    poll_after: float | None = Field(default=None, ge=0)
    """Seconds until a new status is worth asking for, where the provider knows better than
    the engine's default (a local job's files cost nothing to read)."""


class ArtifactRef(_Frozen):
    """Something a job produced."""

    kind: Literal[
        "adapter",
        "merged_model",
        "hosted_model",
        "checkpoint",
        "metrics",
        "predictions",
        "baseline_predictions",
    ]
    uri: str
    """A URI or, for hosted models, the provider's model id."""


class EndpointRef(_Frozen):
    """A deployed model behind a managed endpoint."""

    provider: str
    name: str
    region: str | None = None
    url: str | None = None
    id: str | None = None
    """The provider's own id for it (an ARN, a resource path), where it has one."""
    scope: dict[str, str] = {}
    """What a later call needs besides ``id`` to reach it, as in :attr:`JobRef.scope`."""


class ChatRequest(_Frozen):
    """A chat request to a served model, in OpenAI's chat terms."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    """``{"role": ..., "content": ...}`` messages, oldest first."""
    max_tokens: int = Field(default=256, ge=1, le=65536)
    temperature: float = Field(default=0.0, ge=0, le=2)
    """0 decodes greedily (repeatable answers, for evaluation)."""


class ChatReply(_Frozen):
    """What a served model answered."""

    text: str
    finish_reason: str | None = None
    """``stop`` when the model ended its turn, ``length`` when max_tokens cut it off."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class Provider(Protocol):
    """The backend contract. See the module docstring for the order of calls.

    Methods raise :class:`tunefleet.errors.ProviderError` subclasses, translated from the
    SDK's exceptions in one place per SDK: ProviderNotFoundError, AlreadyExistsError,
    QuotaExceededError, TransientProviderError (the engine retries it) and ProviderBusyError
    (the engine queues the target).
    """

    name: ClassVar[str]
    """Unique provider name used in specs (`targets[].provider`)."""
    options_model: ClassVar[type[BaseModel]]
    """Validates `targets[].options`; it should forbid unknown keys."""

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        """What this provider can do. Must be cheap: no network, no SDK import.

        ``options`` are a target's validated options, for providers whose abilities depend
        on them (the OpenAI provider's Azure flavour runs in a region; the API does not).
        Without them, the answer describes the provider as `tunefleet providers` lists it.
        """
        ...

    def plan(self, request: PlanRequest) -> Plan:
        """The exact requests for this target, a cost estimate and anything it cannot honour.

        No side effects, no credentials needed: `tunefleet plan` runs anywhere.
        """
        ...

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        """Upload the local file at ``path`` (content hash ``sha256``) for the job.

        Content-addressed: staging the same content again returns the same ref and
        uploads nothing. ``progress`` is called with (bytes sent, total bytes) as the
        upload advances, where the provider can tell.
        """
        ...

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        """The job created earlier for ``run_key``, or None. How re-runs reattach."""
        ...

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        """Create the training job, labelled with ``run_key`` so ``find`` can see it."""
        ...

    def status(self, job: JobRef) -> JobStatus:
        """The job's current state."""
        ...

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        """Events after ``cursor`` (None: from the start), oldest first."""
        ...

    def cancel(self, job: JobRef) -> None:
        """Ask the service to stop the job. Cancelling a finished job is a no-op."""
        ...

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        """What a succeeded job produced (the model id or the adapter's URI first)."""
        ...


@runtime_checkable
class Pausable(Protocol):
    """Optional: the service can pause a running job and resume it where it stopped."""

    def pause(self, job: JobRef) -> None:
        """Pause a running job, keeping its progress. Its status then reads ``paused`` until
        :meth:`resume`."""
        ...

    def resume(self, job: JobRef) -> None:
        """Resume a paused job where it stopped."""
        ...


@runtime_checkable
class Serving(Protocol):
    """Optional: the provider serves a trained model behind an endpoint."""

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        """Serve ``artifact`` behind an endpoint called ``name``; returns once it answers.
        Deploying a new artifact under an existing name replaces the model it serves (as a
        canary where the spec asks for one and the service can)."""
        ...

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        """Delete the endpoint and what only it used. Deleting a missing one is a no-op."""
        ...

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        """Ask the model behind ``endpoint``; ProviderError when it is gone or fails."""
        ...


@runtime_checkable
class TrafficSplitting(Protocol):
    """Optional: an endpoint serves several model versions side by side and splits its
    traffic between them by weight, natively (production variants, deployments, a local
    router). The engine drives canary rollouts with it: add the new version, give it its
    share, compare it with the old one on the golden set through :meth:`invoke_version`,
    watch :meth:`alarms`, then move all traffic or roll back, each step idempotent.

    Versions are labelled by the caller (``support-v3``: letters, digits and hyphens, at
    most 40 characters); the version a plain :meth:`Serving.deploy` created is the one
    :meth:`versions` lists for a new endpoint.
    """

    def add_version(
        self, plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
    ) -> EndpointRef:
        """Serve ``artifact`` on ``endpoint`` as ``version`` beside what it serves, with no
        traffic yet; returns once the version answers. Adding a version that is there
        already with the same artifact changes nothing (a resumed rollout)."""
        ...

    def versions(self, endpoint: EndpointRef) -> dict[str, int]:
        """The versions ``endpoint`` serves and each one's share of traffic in percent."""
        ...

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        """Route the endpoint's traffic by percentage: ``weights`` name versions it serves
        and add up to 100; a version left out gets none."""
        ...

    def invoke_version(
        self, endpoint: EndpointRef, version: str, request: ChatRequest
    ) -> ChatReply:
        """Ask ``version`` directly, whatever the weights (for a shadow comparison)."""
        ...

    def remove_version(self, endpoint: EndpointRef, version: str) -> None:
        """Stop serving ``version``, which has no traffic; a missing version is a no-op."""
        ...

    def alarms(self, endpoint: EndpointRef, version: str) -> list[str]:
        """The alarms firing for ``version`` now (server errors above their limit, the
        user's own alarms), one line each; empty when it is healthy."""
        ...


@runtime_checkable
class Estimating(Protocol):
    """Optional: what training a dataset would take, before there is a spec
    (``tunefleet data validate --provider NAME``)."""

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        """Epochs (``epochs``, or the provider's default rule for ``examples`` examples),
        the tokens trained on, and their price where the service charges per token."""
        ...


@runtime_checkable
class ContextLimits(Protocol):
    """Optional: the service trains on at most so many tokens per example, by model."""

    def training_context(self, base_model: str) -> tuple[int, str] | None:
        """Tokens per training example for ``base_model`` and where the figure comes from;
        None when the provider does not know the model."""
        ...


@runtime_checkable
class Answering(Protocol):
    """Optional: a model answers chat requests through the provider, without an endpoint
    tunefleet deployed: a hosted service's chat API answering a fine-tuned or base model by
    id (how hosted targets are evaluated, and how a judge model is asked)."""

    def answer(
        self,
        options: Mapping[str, Any],
        model: str,
        requests: Sequence[ChatRequest],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ChatReply]:
        """``model``'s reply to each of ``requests``, in order.

        ``options`` are a target's (or the judge's) validated options as JSON, for what
        reaching the service needs (an Azure endpoint); ``model`` is a model id the service
        knows or an artifact's URI. ``progress`` is called with (answered, total). Nothing
        is created, so a repeat after a crash costs tokens, never a resource.
        """
        ...


@runtime_checkable
class ArtifactReading(Protocol):
    """Optional: the bytes of a small artifact a job wrote (the golden set's answers)."""

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        """The content of ``artifact`` of ``job``; ProviderError ``artifact_too_large`` when
        it holds more than ``max_bytes``, ProviderNotFoundError when it is gone."""
        ...


def capabilities_of(provider: Provider, options: BaseModel | None = None) -> Capabilities:
    """What ``provider`` can do (with ``options``): what it declares, with the flags of the
    optional operations read off the protocols it implements."""
    declared = provider.capabilities(options)
    return declared.model_copy(
        update={
            "endpoints": isinstance(provider, Serving),
            "traffic_split": isinstance(provider, TrafficSplitting),
            "pause": isinstance(provider, Pausable),
        }
    )


_WHAT = {
    Pausable: "pause jobs",
    Serving: "serve models",
    TrafficSplitting: "split an endpoint's traffic",
    Estimating: "estimate training without a spec",
    ContextLimits: "name a training context",
    Answering: "answer chat requests without an endpoint",
    ArtifactReading: "read a job's artifacts",
}


def optional(provider: Provider, protocol: type[P]) -> P:
    """``provider`` as ``protocol``; CapabilityError naming what it cannot do otherwise."""
    if not isinstance(provider, protocol):
        what = _WHAT.get(protocol, protocol.__name__)
        raise CapabilityError(provider.name, f"this provider cannot {what}")
    return provider
