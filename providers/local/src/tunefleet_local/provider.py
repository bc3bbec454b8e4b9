"""The local provider: fine-tuning on this machine, the embedded default.

This version plans: it checks the spec against what this machine can do and shows the
trainer invocation it will run. Running it (stage, submit, watch, serve) arrives with the
trainer (``tunefleet.trainer``); until then those calls raise CapabilityError saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tunefleet.errors import CapabilityError
from tunefleet.events import EventPage
from tunefleet.provider import (
    ArtifactRef,
    Capabilities,
    CostEstimate,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    NativeRequest,
    Plan,
    PlanRequest,
    TrainingEstimate,
)

DEFAULT_EPOCHS = 3
_NOT_YET = "running jobs on this machine needs the trainer, which this version does not ship yet"


class LocalOptions(BaseModel):
    """Options of the local provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdir: str | None = None
    """Where runs keep staged data, checkpoints and models (default: the user data dir)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """Where to train: auto picks a GPU when there is one."""


class LocalProvider:
    """Trains on this machine with tunefleet's trainer."""

    name: ClassVar[str] = "local"
    options_model: ClassVar[type[BaseModel]] = LocalOptions

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            runs_locally=True,
        )

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        chosen = epochs or DEFAULT_EPOCHS
        return TrainingEstimate(
            provider=self.name,
            epochs=chosen,
            epochs_source="spec" if epochs else "provider default",
            trained_tokens=billable_tokens * chosen,
            amount=0.0,
            basis="runs on this machine: no charge",
        )

    def plan(self, request: PlanRequest) -> Plan:
        spec = request.spec
        options = request.options
        assert isinstance(options, LocalOptions)
        train = request.datasets.get("train")
        estimate = (
            self.estimate_training(
                spec.base_model,
                train.examples or 0,
                train.billable_tokens or 0,
                spec.hyperparameters.epochs,
            )
            if train is not None
            else None
        )
        body = {
            "entry_point": "tunefleet.trainer",
            "base_model": spec.base_model,
            "method": spec.method.type,
            "adapter": spec.method.adapter or "lora",
            "hyperparameters": spec.hyperparameters.model_dump(mode="json", exclude_none=True),
            "datasets": {role: facts.location for role, facts in request.datasets.items()},
            "device": options.device,
        }
        return Plan(
            target=request.target.key,
            provider=self.name,
            region=None,
            options=options.model_dump(mode="json"),
            epochs=estimate.epochs if estimate else spec.hyperparameters.epochs,
            requests=[
                NativeRequest(
                    service="local",
                    operation="RunTrainer",
                    body=body,
                    purpose="train on this machine",
                )
            ],
            cost=CostEstimate(amount=0.0, basis="runs on this machine: no charge")
            if estimate
            else None,
            notes=[]
            if not spec.placement.tags
            else ["tags are recorded in the journal; local files carry none"],
        )

    def stage(self, plan: Plan, role: str, path: Path, sha256: str) -> DatasetRef:
        raise CapabilityError(self.name, _NOT_YET)

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        raise CapabilityError(self.name, _NOT_YET)

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        raise CapabilityError(self.name, _NOT_YET)

    def status(self, job: JobRef) -> JobStatus:
        raise CapabilityError(self.name, _NOT_YET)

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        raise CapabilityError(self.name, _NOT_YET)

    def cancel(self, job: JobRef) -> None:
        raise CapabilityError(self.name, _NOT_YET)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        raise CapabilityError(self.name, _NOT_YET)

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        raise CapabilityError(self.name, _NOT_YET)

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        raise CapabilityError(self.name, _NOT_YET)

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        raise CapabilityError(self.name, _NOT_YET)
