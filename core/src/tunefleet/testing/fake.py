"""A stateful fake provider for tests of core and of the run engine.

It implements the whole provider contract against a directory on disk (``options.root``,
or ``TUNEFLEET_FAKE_ROOT``), so separate processes (a CLI subprocess killed mid-run and the
one that resumes it) see the same jobs. It is deterministic: a job advances one step each
time its status is read, emitting status, metric, checkpoint and cost events on the way.

Two flavours cover both ends of the capability range: ``fake`` can do everything a cloud
can (regions, private networks, keys, spot, pausing, endpoints with a traffic split) and
answers the golden set inside its jobs, as trainer-image clouds do; ``fake_hosted`` behaves
like a hosted fine-tuning API (no regions, no network or key control, the service picks
the adapter, no endpoints) and implements the required contract plus estimates, a training
context and answering through its "chat API".

Their models answer deterministically, so evaluation tests can assert exact scores:
``fake``'s trained model answers the first ``skill`` share of the golden questions with
the expected answer and the rest with :data:`UNSURE`; ``fake_hosted``'s fine-tuned model
answers a question it saw in its training data with that data's answer, and anything else
with :data:`UNSURE`; base models always say :data:`UNSURE`. The judge model
:data:`JUDGE_MODEL` prefers an answer that is not :data:`UNSURE`, and says TIE otherwise. Neither is registered by an installed
distribution: tests register them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tunefleet import _failpoints
from tunefleet.errors import (
    AlreadyExistsError,
    ProviderError,
    ProviderNotFoundError,
    TransientProviderError,
)
from tunefleet.events import (
    CheckpointEvent,
    CostEvent,
    Event,
    EventPage,
    JobState,
    MetricEvent,
    StatusEvent,
)
from tunefleet.hookspecs import hookimpl
from tunefleet.kit import cost
from tunefleet.kit.files import locked
from tunefleet.kit.limits import check_concurrency
from tunefleet.provider import (
    ArtifactRef,
    Capabilities,
    ChatReply,
    ChatRequest,
    CostEstimate,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    NativeRequest,
    Plan,
    PlanRequest,
    TrainingEstimate,
    Unmet,
    UploadProgress,
)
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    Prediction,
    golden_examples,
    write_predictions,
)

PRICE_DATE = date(2026, 11, 1)
UNSURE = "I do not know."
"""What the fakes' models answer when they do not know."""
FIRST_VERSION = "primary"
"""The version label of what ``fake``'s plain deploy serves."""
JUDGE_MODEL = "fake-judge"
"""``fake_hosted``'s judge model."""
_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
PAGE_SIZE = 3  # small, so tests exercise paging


class FakeOptions(BaseModel):
    """Options of the fake providers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str | None = None
    """State directory; defaults to $TUNEFLEET_FAKE_ROOT."""
    steps: int = Field(default=4, ge=1, le=1000)
    fail_at_step: int | None = Field(default=None, ge=1)
    subnets: list[str] = Field(default_factory=list)
    kms_key: str | None = None
    price_per_million_tokens: float = Field(default=2.0, ge=0)
    max_concurrent_jobs: int | None = Field(default=None, ge=1)
    """Refuse submissions while this many jobs under ``root`` are unfinished, as services
    with a per-account limit on concurrent jobs do."""
    transient_failures: int = Field(default=0, ge=0)
    """Fail each operation this many times (per job or dataset) with a retryable 503 first."""
    hang_on: list[str] = Field(default_factory=list)
    """Operations that stop answering: they sleep ``hang_seconds`` before doing anything."""
    hang_seconds: float = Field(default=3600.0, ge=0)
    hold_while: str | None = None
    """While this file exists, a running job takes no step: a test's gate that keeps a job
    unfinished until the test has seen what it waits for (so the test does not race the
    job's polls)."""
    skill: float = Field(default=1.0, ge=0, le=1)
    """Share of the golden questions ``fake``'s trained model answers right (the first)."""
    alarm: bool = False
    """Served as a canary, this job's model sets off the endpoint's server-error alarm."""
    unloadable: bool = False
    """This job's model cannot be served beside another (add_version fails for good)."""


HOSTED_CONTEXT = 8192
PRICES = cost.TokenPrices(
    price_date=PRICE_DATE,
    per_million={"any": FakeOptions().price_per_million_tokens},
    family=lambda model: "any",
    default_epochs=cost.scaled_epochs,
)
"""The fakes charge by the token, with OpenAI's default-epochs rule."""


class _FakeJobs:
    """The required contract, played against files; the flavours add what they support."""

    name: ClassVar[str] = "fake"
    options_model: ClassVar[type[BaseModel]] = FakeOptions
    _predictions: ClassVar[Literal["job", "answer"]] = "job"
    _capabilities = Capabilities(
        methods=frozenset({"supervised", "dpo"}),
        adapters=frozenset({"full", "lora", "qlora"}),
        regions=("fake-east-1", "fake-west-2", "fake-eu-1"),
        private_network=True,
        customer_managed_keys=True,
        spot=True,
        instance_types=True,
        multi_node=True,
        autoscaling=True,
        tags=True,
    )

    # ------------------------------------------------------------------ planning

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        return self._capabilities

    def plan(self, request: PlanRequest) -> Plan:
        spec, target = request.spec, request.target
        options = request.options
        assert isinstance(options, FakeOptions)
        unmet: list[Unmet] = []
        policy = spec.placement
        if (
            policy.require_private_network
            and self._capabilities.private_network
            and not options.subnets
        ):
            unmet.append(
                Unmet(
                    requirement="placement.require_private_network",
                    reason="no subnets given in options.subnets",
                )
            )
        if (
            policy.require_customer_managed_key
            and self._capabilities.customer_managed_keys
            and not options.kms_key
        ):
            unmet.append(
                Unmet(
                    requirement="placement.require_customer_managed_key",
                    reason="no key given in options.kms_key",
                )
            )
        hp = spec.hyperparameters
        body: dict[str, Any] = {
            "name": f"{spec.name}-{target.key}",
            "base_model": spec.base_model,
            "method": spec.method.type,
            "adapter": spec.method.adapter,
            "hyperparameters": hp.model_dump(mode="json", exclude_none=True),
            "region": target.region,
            "compute": target.compute.model_dump(mode="json", exclude_none=True),
            "tags": dict(policy.tags),
        }
        if options.subnets:
            body["subnets"] = list(options.subnets)
        if options.kms_key:
            body["kms_key"] = options.kms_key
        if spec.evaluation is not None and self._predictions == "job":
            body["evaluation"] = {
                "max_examples": spec.evaluation.max_examples,
                "max_tokens": spec.evaluation.max_tokens,
            }
        train = request.datasets.get("train")
        cost = None
        epochs = hp.epochs
        if train is not None and train.examples and train.billable_tokens is not None:
            estimate = PRICES.estimate(
                self.name,
                spec.base_model,
                train.examples,
                train.billable_tokens,
                hp.epochs,
                options.price_per_million_tokens,
            )
            epochs = estimate.epochs
            cost = CostEstimate(
                amount=estimate.amount or 0.0, basis=estimate.basis, price_date=PRICE_DATE
            )
        requests = [
            NativeRequest(
                phase="stage",
                service="fake",
                operation="UploadFile",
                body={"role": role, "sha256": facts.sha256},
                purpose=f"stage the {role} dataset",
            )
            for role, facts in request.datasets.items()
        ]
        requests.append(
            NativeRequest(
                service="fake", operation="CreateJob", body=body, purpose="start training"
            )
        )
        return Plan(
            target=target.key,
            provider=self.name,
            region=target.region,
            options=options.model_dump(mode="json"),
            epochs=epochs,
            requests=requests,
            cost=cost,
            unmet=unmet,
            predictions=self._predictions,
        )

    # ------------------------------------------------------------------ state

    def _root(self, plan_or_options: Mapping[str, Any]) -> Path:
        root = plan_or_options.get("root") or os.environ.get("TUNEFLEET_FAKE_ROOT")
        if not root:
            raise ProviderError(
                self.name, "no state directory: set options.root or TUNEFLEET_FAKE_ROOT"
            )
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _job_root(self, job: JobRef) -> Path:
        root = job.id.split("|", 1)[0]
        return Path(root)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        os.replace(partial, path)

    # ------------------------------------------------------------------ jobs

    def _misbehave(self, options: Mapping[str, Any], operation: str, subject: str) -> None:
        """Play the faults the options ask for: a hang, then transient failures."""
        settings = FakeOptions.model_validate(options)
        if operation in settings.hang_on:
            time.sleep(settings.hang_seconds)
        if not settings.transient_failures:
            return
        root = self._root(options)
        counts_path = root / "faults.json"
        with locked(root):
            counts = self._read(counts_path) if counts_path.exists() else {}
            key = f"{operation}:{subject}"
            counts[key] = counts.get(key, 0) + 1
            self._write(counts_path, counts)
        if counts[key] <= settings.transient_failures:
            raise TransientProviderError(
                self.name,
                f"503 Service Unavailable ({operation}, failure {counts[key]})",
                status=503,
            )

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        self._misbehave(plan.options, "stage", sha256)
        root = self._root(plan.options)
        objects = root / "objects"
        objects.mkdir(exist_ok=True)
        target = objects / sha256
        with locked(root):
            if not target.exists():
                data = path.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
                if actual != sha256:
                    raise ProviderError(
                        self.name, f"{path} changed while staging (sha256 {actual})"
                    )
                # Written under a temporary name and renamed, as object stores commit an
                # upload: a crash mid-upload leaves no object that looks complete.
                partial = objects / f".{sha256}.partial"
                with partial.open("wb") as out:
                    out.write(data[: len(data) // 2])
                    out.flush()
                    if progress is not None:
                        progress(len(data) // 2, len(data))
                    _failpoints.reached("fake-mid-upload")
                    out.write(data[len(data) // 2 :])
                os.replace(partial, target)
                if progress is not None:
                    progress(len(data), len(data))
        return DatasetRef(
            provider=self.name,
            role=role,
            uri=f"fake://{root}/objects/{sha256}",
            sha256=sha256,
            size_bytes=target.stat().st_size,
        )

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        self._misbehave(plan.options, "find", run_key)
        root = self._root(plan.options)
        path = root / "jobs" / f"{run_key}.json"
        if not path.exists():
            return None
        data = self._read(path)
        return JobRef(
            provider=self.name,
            target=data["target"],
            id=data["id"],
            region=data["region"],
            run_key=run_key,
        )

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        self._misbehave(plan.options, "submit", run_key)
        root = self._root(plan.options)
        jobs = root / "jobs"
        jobs.mkdir(exist_ok=True)
        options = FakeOptions.model_validate(plan.options)
        with locked(root):
            if (jobs / f"{run_key}.json").exists():
                raise AlreadyExistsError(
                    self.name, f"a job for run key {run_key} exists already", code="conflict"
                )
            active = sum(
                not JobState(self._read(path)["state"]).terminal for path in jobs.glob("*.json")
            )
            check_concurrency(self.name, active, options.max_concurrent_jobs, "under this root")
            job_id = f"{root}|{run_key}"
            self._write(
                jobs / f"{run_key}.json",
                {
                    "id": job_id,
                    "target": plan.target,
                    "region": plan.region,
                    "run_key": run_key,
                    "state": "queued",
                    "step": 0,
                    "steps": options.steps,
                    "fail_at_step": options.fail_at_step,
                    "datasets": {role: ref.uri for role, ref in datasets.items()},
                    "events": [self._status_event(0, JobState.QUEUED, "queued")],
                    "price": options.price_per_million_tokens,
                    "options": plan.options,
                    "evaluation": plan.request("CreateJob").body.get("evaluation"),
                },
            )
        return JobRef(
            provider=self.name, target=plan.target, id=job_id, region=plan.region, run_key=run_key
        )

    @staticmethod
    def _status_event(seq: int, state: JobState, message: str) -> dict[str, Any]:
        return StatusEvent(
            id=f"e{seq}", time=datetime.now(UTC), state=state, message=message
        ).model_dump(mode="json")

    def _job_path(self, job: JobRef) -> Path:
        return self._job_root(job) / "jobs" / f"{job.run_key}.json"

    def _advance(self, data: dict[str, Any]) -> None:
        state = JobState(data["state"])
        if state.terminal:
            return
        events = data["events"]
        now = datetime.now(UTC)

        def add(event: BaseModel) -> None:
            events.append(event.model_dump(mode="json"))

        def move_to(new_state: JobState, message: str) -> None:
            data["state"] = new_state.value
            events.append(self._status_event(len(events), new_state, message))

        if state == JobState.STOPPING:
            move_to(JobState.CANCELLED, "cancelled")
            return
        if state == JobState.PAUSED:
            return  # until resumed
        if state == JobState.QUEUED:
            move_to(JobState.RUNNING, "running")
            return
        hold = data["options"].get("hold_while")
        if hold is not None and Path(hold).exists():
            return
        step = data["step"] + 1
        data["step"] = step
        if data["fail_at_step"] == step:
            move_to(JobState.FAILED, f"diverged at step {step}")
            return
        loss = round(2.5 / (1 + step), 4)
        add(
            MetricEvent(
                id=f"e{len(events)}",
                time=now,
                step=step,
                total_steps=data["steps"],
                epoch=step / data["steps"],
                train_loss=loss,
                valid_loss=round(loss * 1.1, 4),
                train_token_accuracy=min(1.0, 0.5 + step / 20),
                learning_rate=1e-4,
            )
        )
        if step % 2 == 0:
            add(
                CheckpointEvent(
                    id=f"e{len(events)}",
                    time=now,
                    step=step,
                    uri=f"fake://checkpoints/{data['run_key']}/{step}",
                )
            )
        if step >= data["steps"]:
            add(
                CostEvent(
                    id=f"e{len(events)}",
                    time=now,
                    amount=round(step * 0.01, 4),
                    basis=f"{step} steps x $0.01",
                )
            )
            self._answer_golden(data)
            move_to(JobState.SUCCEEDED, "succeeded")

    def _answer_golden(self, data: dict[str, Any]) -> None:
        """Write the job's answers to the golden set, as the trainer does after training."""
        golden_uri = data["datasets"].get("golden_set")
        if golden_uri is None or self._predictions != "job":
            return
        settings = data.get("evaluation") or {}
        examples = golden_examples(
            Path(golden_uri.removeprefix("fake://")), settings.get("max_examples")
        )
        right = round(FakeOptions.model_validate(data["options"]).skill * len(examples))
        folder = self._job_root_of(data) / "predictions" / data["run_key"]
        folder.mkdir(parents=True, exist_ok=True)
        write_predictions(
            folder / PREDICTIONS_NAME,
            [
                Prediction(index=e.index, text=e.expected if e.index < right else UNSURE)
                for e in examples
            ],
        )
        write_predictions(
            folder / BASELINE_PREDICTIONS_NAME,
            [Prediction(index=e.index, text=UNSURE) for e in examples],
        )

    @staticmethod
    def _job_root_of(data: Mapping[str, Any]) -> Path:
        return Path(str(data["id"]).split("|", 1)[0])

    def _job_options(self, job: JobRef) -> Mapping[str, Any]:
        path = self._job_path(job)
        if not path.exists():
            raise ProviderNotFoundError(self.name, f"no job {job.id}", code="not_found")
        return self._read(path)["options"]  # type: ignore[no-any-return]

    def status(self, job: JobRef) -> JobStatus:
        self._misbehave(self._job_options(job), "status", job.run_key)
        path = self._job_path(job)
        with locked(self._job_root(job)):
            if not path.exists():
                raise ProviderNotFoundError(self.name, f"no job {job.id}", code="not_found")
            data = self._read(path)
            self._advance(data)
            self._write(path, data)
        return JobStatus(
            state=JobState(data["state"]),
            message=data["events"][-1].get("message"),
            checked_at=datetime.now(UTC),
            trained_tokens=data["step"] * 1000,
        )

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        self._misbehave(self._job_options(job), "events", f"{job.run_key}@{cursor}")
        data = self._read(self._job_path(job))
        start = int(cursor) if cursor else 0
        chunk = data["events"][start : start + PAGE_SIZE]
        return EventPage(events=_EVENTS.validate_python(chunk), cursor=str(start + len(chunk)))

    def cancel(self, job: JobRef) -> None:
        path = self._job_path(job)
        with locked(self._job_root(job)):
            data = self._read(path)
            if not JobState(data["state"]).terminal:
                data["state"] = "stopping"
                data["events"].append(
                    self._status_event(len(data["events"]), JobState.STOPPING, "stopping")
                )
                self._write(path, data)

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        data = self._read(self._job_path(job))
        if data["state"] != "succeeded":
            raise ProviderError(
                self.name, f"job {job.id} has not succeeded (state {data['state']})"
            )
        refs = [
            ArtifactRef(kind="adapter", uri=f"fake://models/{job.run_key}/adapter"),
            ArtifactRef(kind="metrics", uri=f"fake://models/{job.run_key}/metrics.json"),
        ]
        folder = self._job_root(job) / "predictions" / job.run_key
        for kind, name in (
            ("predictions", PREDICTIONS_NAME),
            ("baseline_predictions", BASELINE_PREDICTIONS_NAME),
        ):
            if (folder / name).exists():
                refs.append(ArtifactRef(kind=kind, uri=f"fake://{folder / name}"))
        return refs

    def read_artifact(self, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
        path = Path(artifact.uri.removeprefix("fake://"))
        if not path.is_relative_to(self._job_root(job) / "predictions" / job.run_key):
            raise ProviderError(self.name, f"{artifact.uri} is not of job {job.id}")
        if not path.exists():
            raise ProviderNotFoundError(self.name, f"no artifact {artifact.uri}", code="not_found")
        if path.stat().st_size > max_bytes:
            raise ProviderError(
                self.name, f"{artifact.uri} is over {max_bytes} bytes", code="artifact_too_large"
            )
        return path.read_bytes()


class FakeProvider(_FakeJobs):
    """Everything a cloud can do, played against files: the required contract, pausing,
    serving with a traffic split, and estimates."""

    name: ClassVar[str] = "fake"

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        return PRICES.estimate(self.name, base_model, examples, billable_tokens, epochs)

    def _set_paused(self, job: JobRef, paused: bool) -> None:
        path = self._job_path(job)
        old, new = (
            (JobState.RUNNING, JobState.PAUSED) if paused else (JobState.PAUSED, JobState.RUNNING)
        )
        with locked(self._job_root(job)):
            data = self._read(path)
            if JobState(data["state"]) != old:
                raise ProviderError(self.name, f"job {job.id} is {data['state']}, not {old.value}")
            data["state"] = new.value
            data["events"].append(
                self._status_event(len(data["events"]), new, "paused" if paused else "resumed")
            )
            self._write(path, data)

    def pause(self, job: JobRef) -> None:
        self._set_paused(job, True)

    def resume(self, job: JobRef) -> None:
        self._set_paused(job, False)

    # ------------------------------------------------------------------ endpoints

    def _endpoint_path(self, plan_options: Mapping[str, Any], name: str) -> Path:
        folder = self._root(plan_options) / "endpoints"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.json"

    @staticmethod
    def _endpoint_file(endpoint: EndpointRef) -> Path:
        return Path(str(endpoint.url).removeprefix("fake://"))

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        path = self._endpoint_path(plan.options, name)
        self._write(
            path,
            {
                "name": name,
                "versions": {FIRST_VERSION: {"artifact": artifact.uri, "weight": 100}},
                "root": str(self._root(plan.options)),
            },
        )
        return EndpointRef(provider=self.name, name=name, region=plan.region, url=f"fake://{path}")

    def _endpoint(self, endpoint: EndpointRef) -> dict[str, Any]:
        path = self._endpoint_file(endpoint)
        if not path.exists():
            raise ProviderNotFoundError(self.name, f"no endpoint {endpoint.name}", code="not_found")
        return self._read(path)

    def add_version(
        self, plan: Plan, endpoint: EndpointRef, artifact: ArtifactRef, version: str
    ) -> EndpointRef:
        with locked(self._endpoint_file(endpoint).parent):
            data = self._endpoint(endpoint)
            found = data["versions"].get(version)
            if found is not None and found["artifact"] != artifact.uri:
                raise AlreadyExistsError(
                    self.name, f"version {version} serves another model", code="conflict"
                )
            job = self._job_of(data["root"], artifact.uri)
            if job is not None and FakeOptions.model_validate(job["options"]).unloadable:
                raise ProviderError(
                    self.name, f"version {version} cannot be loaded", code="version_load_failed"
                )
            if found is None:
                data["versions"][version] = {"artifact": artifact.uri, "weight": 0}
                self._write(self._endpoint_file(endpoint), data)
        return endpoint

    def versions(self, endpoint: EndpointRef) -> dict[str, int]:
        return {name: v["weight"] for name, v in self._endpoint(endpoint)["versions"].items()}

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        if sum(weights.values()) != 100:
            raise ProviderError(self.name, "traffic weights must add up to 100")
        with locked(self._endpoint_file(endpoint).parent):
            data = self._endpoint(endpoint)
            unknown = set(weights) - set(data["versions"])
            if unknown:
                raise ProviderNotFoundError(
                    self.name, f"no version {sorted(unknown)[0]}", code="not_found"
                )
            for name, version in data["versions"].items():
                version["weight"] = weights.get(name, 0)
            self._write(self._endpoint_file(endpoint), data)

    def remove_version(self, endpoint: EndpointRef, version: str) -> None:
        with locked(self._endpoint_file(endpoint).parent):
            data = self._endpoint(endpoint)
            found = data["versions"].get(version)
            if found is None:
                return
            if found["weight"]:
                raise ProviderError(
                    self.name, f"version {version} still has traffic", code="version_has_traffic"
                )
            del data["versions"][version]
            self._write(self._endpoint_file(endpoint), data)

    def alarms(self, endpoint: EndpointRef, version: str) -> list[str]:
        found = self._endpoint(endpoint)["versions"].get(version)
        if found is None:
            return []
        job = self._job_of(self._endpoint(endpoint)["root"], found["artifact"])
        if job is not None and FakeOptions.model_validate(job["options"]).alarm:
            return [f"{version}: server errors above their limit (fake alarm)"]
        return []

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        if endpoint.url:
            self._endpoint_file(endpoint).unlink(missing_ok=True)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        data = self._endpoint(endpoint)
        # The heaviest version answers: deterministic, so tests can assert on it.
        version = max(data["versions"], key=lambda name: data["versions"][name]["weight"])
        return self._answer_as(data, version, request)

    def invoke_version(
        self, endpoint: EndpointRef, version: str, request: ChatRequest
    ) -> ChatReply:
        data = self._endpoint(endpoint)
        if version not in data["versions"]:
            raise ProviderNotFoundError(self.name, f"no version {version}", code="not_found")
        return self._answer_as(data, version, request)

    def _job_of(self, root: str, artifact: str) -> dict[str, Any] | None:
        run_key = artifact.removeprefix("fake://models/").split("/", 1)[0]
        path = Path(root) / "jobs" / f"{run_key}.json"
        return self._read(path) if path.exists() else None

    def _answer_as(self, data: Mapping[str, Any], version: str, request: ChatRequest) -> ChatReply:
        """A version's model answers a golden question as its job did (the first ``skill``
        share right); anything else is echoed."""
        job = self._job_of(data["root"], data["versions"][version]["artifact"])
        golden = (job or {}).get("datasets", {}).get("golden_set")
        if job is not None and golden is not None:
            examples = golden_examples(Path(golden.removeprefix("fake://")))
            right = round(FakeOptions.model_validate(job["options"]).skill * len(examples))
            for example in examples:
                if _prompt_key(example.prompt) == _prompt_key(request.messages):
                    text = example.expected if example.index < right else UNSURE
                    return ChatReply(text=text, finish_reason="stop")
        question = str(request.messages[-1].get("content", ""))
        return ChatReply(text=f"fake answer to: {question}", finish_reason="stop")


class FakeHostedProvider(_FakeJobs):
    """Like a hosted fine-tuning API: no regions, no network or key control, no endpoints;
    it estimates by the token and names a training context."""

    name: ClassVar[str] = "fake_hosted"
    _capabilities = Capabilities(methods=frozenset({"supervised", "dpo"}))

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        return PRICES.estimate(self.name, base_model, examples, billable_tokens, epochs)

    def training_context(self, base_model: str) -> tuple[int, str]:
        return HOSTED_CONTEXT, "fake_hosted training context"

    _predictions: ClassVar[Literal["job", "answer"]] = "answer"

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        super().artifacts(job)  # refuses a job that has not succeeded
        return [ArtifactRef(kind="hosted_model", uri=f"ft:fake:{job.run_key}")]

    def answer(
        self,
        options: Mapping[str, Any],
        model: str,
        requests: Sequence[ChatRequest],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ChatReply]:
        """The fine-tuned model ``ft:fake:<run key>`` answers what its training data
        answered; base models are unsure; :data:`JUDGE_MODEL` judges (see the module)."""
        self._misbehave(options, "answer", model)
        learned: dict[str, str] = {}
        if model.startswith("ft:fake:"):
            path = self._root(options) / "jobs" / f"{model.removeprefix('ft:fake:')}.json"
            if not path.exists():
                raise ProviderNotFoundError(self.name, f"no model {model}", code="model_not_found")
            train = self._read(path)["datasets"]["train"].removeprefix("fake://")
            learned = {_prompt_key(e.prompt): e.expected for e in golden_examples(Path(train))}
        replies = []
        for done, request in enumerate(requests, start=1):
            if model == JUDGE_MODEL:
                text = judge_verdict(request)
            else:
                text = learned.get(_prompt_key(request.messages), UNSURE)
            replies.append(ChatReply(text=text, finish_reason="stop"))
            if progress is not None:
                progress(done, len(requests))
        return replies


def _prompt_key(messages: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(
        [{"role": m.get("role"), "content": m.get("content")} for m in messages], sort_keys=True
    )


def judge_answers(request: ChatRequest) -> tuple[str, str]:
    """Answers A and B of a judge request, as a judge model reads them from its prompt
    (the tagged blocks of :func:`tunefleet.evaluation.judge.judge_request`)."""
    text = str(request.messages[-1].get("content", ""))
    found = [
        re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.S) for tag in ("answer_a", "answer_b")
    ]
    if found[0] is None or found[1] is None:
        raise ProviderError("fake_hosted", "not a judge request", code="invalid_request")
    return found[0].group(1), found[1].group(1)


def judge_verdict(request: ChatRequest) -> str:
    """:data:`JUDGE_MODEL`'s verdict: the answer that is not :data:`UNSURE` wins; TIE when
    both or neither are."""
    first, second = judge_answers(request)
    if (first == UNSURE) == (second == UNSURE):
        return "TIE"
    return "B" if first == UNSURE else "A"


@hookimpl
def tunefleet_providers() -> Sequence[type[Any]]:
    return [FakeProvider, FakeHostedProvider]
