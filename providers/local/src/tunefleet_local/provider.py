"""The local provider: fine-tuning on this machine, the embedded default.

It runs :mod:`tunefleet.trainer` -- the same entry point the cloud images run -- in a
background process, so a local run is a true dry run of the cloud workload. Everything lives
under the work directory (``options.workdir``, default the user data dir)::

    datasets/<sha256>.jsonl       staged data, content-addressed
    jobs/<run_key>/               one job (see tunefleet_local.jobs)
    endpoints/<name>.json         a served model: pid, port, what it serves

Jobs outlive the CLI that started them and any process can watch them: ``find``, ``status``
and ``events`` read the job directory. Endpoints are OpenAI-compatible servers on the
loopback interface (:mod:`tunefleet_local.server`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field

from tunefleet._processes import is_alive, start_time
from tunefleet.errors import CapabilityError, ProviderBusyError, ProviderError
from tunefleet.events import EventPage, JobState
from tunefleet.names import NAME_PATTERN
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
from tunefleet.spec import is_local
from tunefleet.trainer.config import TrainerConfig
from tunefleet_local.jobs import JobFiles, read_json, write_json

DEFAULT_EPOCHS = 3
PAGE_SIZE = 500
POLL_AFTER = 1.0
"""Seconds between status reads: the job's files are on this disk."""
SERVER_START_TIMEOUT = 180.0
TRAIN_EXTRA = ("torch", "transformers", "peft", "trl", "datasets")
# Run keys name job directories: letters, digits, dot, dash, underscore; no path tricks.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class LocalOptions(BaseModel):
    """Options of the local provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workdir: str | None = None
    """Where runs keep staged data, checkpoints and models (default: $TUNEFLEET_LOCAL_WORKDIR,
    else the user data dir)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """Where to train: auto picks a GPU when there is one."""
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    """Jobs training at once; more wait in the queue (they would share the same cores)."""
    merge: bool = False
    """Also write the model with the adapter merged in."""
    logging_steps: int = Field(default=1, ge=1)
    """Optimizer steps between metric lines."""
    save_steps: int | None = Field(default=None, ge=1)
    """Steps between checkpoints (besides one per epoch)."""


WORKDIR_ENV = "TUNEFLEET_LOCAL_WORKDIR"


def _workdir(options: Mapping[str, Any]) -> Path:
    """options.workdir, else $TUNEFLEET_LOCAL_WORKDIR, else <user data dir>/local."""
    root = (
        options.get("workdir")
        or os.environ.get(WORKDIR_ENV)
        or os.path.join(user_data_dir("tunefleet"), "local")
    )
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _path(uri: str) -> str:
    """The local path of a ``file://`` URI."""
    return urllib.request.url2pathname(urllib.parse.urlsplit(uri).path)


def _missing_train_extra() -> list[str]:
    return [name for name in TRAIN_EXTRA if importlib.util.find_spec(name) is None]


def _has_cuda_device() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


class LocalProvider:
    """Trains on this machine with tunefleet's trainer and serves the result locally."""

    name: ClassVar[str] = "local"
    options_model: ClassVar[type[BaseModel]] = LocalOptions

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            runs_locally=True,
            endpoints=True,
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

    # ------------------------------------------------------------------ planning

    def plan(self, request: PlanRequest) -> Plan:
        spec, target = request.spec, request.target
        options = request.options
        assert isinstance(options, LocalOptions)
        adapter = spec.method.adapter or "lora"
        unmet: list[Unmet] = []
        missing = _missing_train_extra()
        if missing:
            unmet.append(
                Unmet(
                    requirement="targets[].provider",
                    reason=f"training here needs the train extra ({', '.join(missing)} missing): "
                    "pip install 'tunefleet[train]' (with torch==2.13.0 pinned where a CPU "
                    "build is wanted)",
                )
            )
        if adapter == "qlora" and (options.device in {"cpu", "mps"} or not _has_cuda_device()):
            unmet.append(
                Unmet(
                    requirement="method.adapter",
                    reason="qlora trains a 4-bit model and needs a CUDA GPU and bitsandbytes; "
                    "this machine has no CUDA GPU (use adapter lora)",
                )
            )
        base_model = spec.base_model
        local_base = spec.resolve_location(base_model)
        if not base_model.startswith("scratch:") and Path(local_base).is_dir():
            base_model = local_base  # a model directory next to the spec
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
        trainer = {
            "base_model": base_model,
            "method": spec.method.type,
            "adapter": adapter,
            "beta": spec.method.beta,
            "hyperparameters": spec.hyperparameters.model_dump(mode="json", exclude_none=True),
            "device": options.device,
            "merge": options.merge,
            "logging_steps": options.logging_steps,
            "save_steps": options.save_steps,
        }
        notes = []
        if spec.placement.tags:
            notes.append("tags are recorded in the journal; local files carry none")
        return Plan(
            target=target.key,
            provider=self.name,
            region=None,
            options=options.model_dump(mode="json"),
            epochs=estimate.epochs if estimate else spec.hyperparameters.epochs,
            requests=[
                NativeRequest(
                    service="local",
                    operation="CopyDataset",
                    body={"role": role, "sha256": facts.sha256},
                    purpose=f"copy the {role} dataset into the work directory",
                )
                for role, facts in request.datasets.items()
                if role in {"train", "validation"} and is_local(facts.location)
            ]
            + [
                NativeRequest(
                    service="local",
                    operation="RunTrainer",
                    body={"entry_point": "python -m tunefleet.trainer", "config": trainer},
                    purpose="train on this machine",
                )
            ],
            cost=CostEstimate(amount=0.0, basis="runs on this machine: no charge")
            if estimate
            else None,
            unmet=unmet,
            notes=notes,
        )

    # ------------------------------------------------------------------ staging

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        folder = _workdir(plan.options) / "datasets"
        folder.mkdir(exist_ok=True)
        staged = folder / f"{sha256}.jsonl"
        if not staged.exists():
            partial = folder / f".{sha256}.{os.getpid()}.partial"
            digest = hashlib.sha256()
            try:
                total = path.stat().st_size
                with path.open("rb") as source, partial.open("wb") as out:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                        if progress is not None:
                            progress(out.tell(), total)
                if digest.hexdigest() != sha256:
                    raise ProviderError(
                        self.name, f"{path} changed while it was copied (sha256 differs)"
                    )
                os.replace(partial, staged)
            except OSError as exc:
                raise ProviderError(self.name, f"cannot copy {path}: {exc.strerror}") from None
            finally:
                partial.unlink(missing_ok=True)
        return DatasetRef(
            provider=self.name,
            role=role,
            uri=staged.as_uri(),
            sha256=sha256,
            size_bytes=staged.stat().st_size,
        )

    # ------------------------------------------------------------------ jobs

    @contextmanager
    def _locked(self, workdir: Path) -> Iterator[None]:
        with (workdir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _files(self, job: JobRef) -> JobFiles:
        files = JobFiles(Path(job.id))
        if not files.job.exists():
            raise ProviderError(self.name, f"no job at {job.id}")
        return files

    def _ref(self, plan: Plan, files: JobFiles, run_key: str) -> JobRef:
        return JobRef(
            provider=self.name,
            target=plan.target,
            id=str(files.root),
            run_key=run_key,
            console_url=files.log.as_uri(),
        )

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        files = JobFiles(_workdir(plan.options) / "jobs" / run_key)
        return self._ref(plan, files, run_key) if files.job.exists() else None

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        if not _SAFE_KEY.fullmatch(run_key):
            raise ProviderError(self.name, f"run key {run_key!r} is not a safe directory name")
        workdir = _workdir(plan.options)
        options = LocalOptions.model_validate(plan.options)
        files = JobFiles(workdir / "jobs" / run_key)
        trainer_request = next(r for r in plan.requests if r.operation == "RunTrainer")
        with self._locked(workdir):
            if files.job.exists():
                raise ProviderError(self.name, f"a job for run key {run_key} exists already")
            active = [
                path.parent.name
                for path in (workdir / "jobs").glob("*/job.json")
                if not self._state(JobFiles(path.parent))[0].terminal
            ]
            if len(active) >= options.max_concurrent_jobs:
                raise ProviderBusyError(
                    self.name,
                    f"{len(active)} job(s) training on this machine "
                    f"(options.max_concurrent_jobs is {options.max_concurrent_jobs})",
                )
            files.root.mkdir(parents=True)
            config = TrainerConfig.model_validate(
                {
                    **trainer_request.body["config"],
                    "train": _path(datasets["train"].uri),
                    "validation": _path(datasets["validation"].uri)
                    if "validation" in datasets
                    else None,
                    "output_dir": str(files.output),
                    "checkpoint_dir": str(files.checkpoints),
                }
            )
            write_json(files.trainer_config, config.model_dump(mode="json"))
            files.append_event(files.status_event(0, JobState.QUEUED, "starting the trainer"))
            runner = subprocess.Popen(
                [sys.executable, "-m", "tunefleet_local.runner", str(files.root)],
                cwd=files.root,
                stdin=subprocess.DEVNULL,
                stdout=(files.root / "runner.log").open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the CLI; cancel signals its group
            )
            write_json(files.runner, {"pid": runner.pid, "start_time": start_time(runner.pid)})
            # job.json last: find() sees a job only once it can be watched and cancelled.
            write_json(
                files.job,
                {
                    "run_key": run_key,
                    "target": plan.target,
                    "created_at": datetime.now(UTC).isoformat(),
                    "datasets": {role: ref.uri for role, ref in datasets.items()},
                },
            )
        return self._ref(plan, files, run_key)

    def _state(self, files: JobFiles) -> tuple[JobState, str | None]:
        outcome = files.read(files.exit)
        if outcome is not None:
            return JobState(outcome["state"]), outcome.get("message")
        runner = files.read(files.runner)
        alive = runner is not None and is_alive(runner["pid"], runner.get("start_time"))
        if files.cancel_marker.exists():
            return (JobState.STOPPING, "stopping") if alive else (JobState.CANCELLED, "cancelled")
        if alive:
            return JobState.RUNNING, None
        if runner is None:
            return JobState.QUEUED, "starting the trainer"
        return JobState.FAILED, "the trainer's process ended without a result (see train.log)"

    def status(self, job: JobRef) -> JobStatus:
        state, message = self._state(self._files(job))
        return JobStatus(
            state=state, message=message, checked_at=datetime.now(UTC), poll_after=POLL_AFTER
        )

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        files = self._files(job)
        start = int(cursor) if cursor else 0
        events = files.read_events(start, PAGE_SIZE)
        return EventPage(events=events, cursor=str(start + len(events)))

    def cancel(self, job: JobRef) -> None:
        files = self._files(job)
        if self._state(files)[0].terminal:
            return
        files.cancel_marker.touch()
        runner = files.read(files.runner)
        if runner is not None and is_alive(runner["pid"], runner.get("start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(runner["pid"], signal.SIGTERM)  # the runner and the trainer

    def pause(self, job: JobRef) -> None:
        raise CapabilityError(self.name, "cannot pause a local job; cancel it and run again")

    def resume(self, job: JobRef) -> None:
        raise CapabilityError(self.name, "cannot pause a local job, so none is paused")

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        files = self._files(job)
        manifest = files.read(files.output / "manifest.json")
        if manifest is None:
            raise ProviderError(self.name, f"job {job.id} wrote no manifest (has it succeeded?)")
        made: dict[str, str] = manifest["artifacts"]
        refs = []
        if "adapter" in made:
            refs.append(ArtifactRef(kind="adapter", uri=(files.output / made["adapter"]).as_uri()))
        if "model" in made:
            refs.append(
                ArtifactRef(kind="merged_model", uri=(files.output / made["model"]).as_uri())
            )
        if "merged" in made:
            refs.append(
                ArtifactRef(kind="merged_model", uri=(files.output / made["merged"]).as_uri())
            )
        refs.append(ArtifactRef(kind="metrics", uri=(files.output / "manifest.json").as_uri()))
        return refs

    # ------------------------------------------------------------------ endpoints

    def _endpoint_file(self, workdir: Path, name: str) -> Path:
        if not re.fullmatch(NAME_PATTERN, name):
            raise ProviderError(self.name, f"endpoint name {name!r} is not a valid resource name")
        folder = workdir / "endpoints"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.json"

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        workdir = _workdir(plan.options)
        record_path = self._endpoint_file(workdir, name)
        model_dir = Path(_path(artifact.uri)).parent
        if not (model_dir / "manifest.json").is_file():
            raise ProviderError(self.name, f"{artifact.uri} is not a local training output")
        record = read_json(record_path)
        if record is not None and is_alive(record["pid"], record.get("start_time")):
            if record["model_dir"] == str(model_dir):
                return self._endpoint_ref(record, record_path)
            self._stop(record)
        ready = record_path.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        log = record_path.with_suffix(".log")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tunefleet_local.server",
                "--model-dir",
                str(model_dir),
                "--name",
                name,
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not ready.exists():
            if server.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                raise ProviderError(
                    self.name, f"the model server exited: {tail[0] if tail else 'no output'}"
                )
            if time.monotonic() > deadline:
                server.terminate()
                raise ProviderError(
                    self.name, f"the model server did not start in {SERVER_START_TIMEOUT:.0f}s"
                )
            time.sleep(0.1)
        endpoint = json.loads(ready.read_text())
        record = {
            "name": name,
            "pid": server.pid,
            "start_time": start_time(server.pid),
            "url": endpoint["url"],
            "model_dir": str(model_dir),
            "artifact": artifact.uri,
        }
        write_json(record_path, record)
        return self._endpoint_ref(record, record_path)

    def _endpoint_ref(self, record: Mapping[str, Any], record_path: Path) -> EndpointRef:
        return EndpointRef(
            provider=self.name, name=record["name"], url=record["url"], id=str(record_path)
        )

    def _stop(self, record: Mapping[str, Any]) -> None:
        if not is_alive(record["pid"], record.get("start_time")):
            return
        try:
            os.killpg(record["pid"], signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while is_alive(record["pid"], record.get("start_time")) and time.monotonic() < deadline:
            time.sleep(0.05)

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        raise CapabilityError(
            self.name, "a local endpoint serves one model; it cannot split traffic"
        )

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        if endpoint.id is None:
            raise ProviderError(self.name, f"endpoint {endpoint.name} has no record path")
        record_path = Path(endpoint.id)
        if record_path.suffix != ".json" or record_path.parent.name != "endpoints":
            raise ProviderError(self.name, f"{endpoint.id} is not a local endpoint record")
        record = read_json(record_path)
        if record is None or record.get("url") != endpoint.url:
            return  # gone already, or replaced by a newer deployment of that name
        self._stop(record)
        for leftover in (record_path, record_path.with_suffix(".ready")):
            leftover.unlink(missing_ok=True)

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        if not str(endpoint.url).startswith("http://127.0.0.1:"):
            raise ProviderError(self.name, f"{endpoint.url} is not a local endpoint")
        body = json.dumps(
            {
                "model": endpoint.name,
                "messages": request.messages,
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
            }
        ).encode()
        http = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            f"{endpoint.url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(http, timeout=300) as response:  # noqa: S310
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", exc.reason)
            raise ProviderError(self.name, f"endpoint {endpoint.name}: {detail}") from None
        except OSError as exc:  # refused, reset, timed out (URLError is an OSError)
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise ProviderError(
                self.name, f"endpoint {endpoint.name} does not answer ({reason})"
            ) from None
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        return ChatReply(
            text=choice["message"]["content"] or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )
