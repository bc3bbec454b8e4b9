"""Local jobs: one directory per run key, shared by the provider, the runner and the trainer.

::

    <workdir>/jobs/<run_key>/
        job.json        what was submitted (target, datasets, created_at); written last
        trainer.json    the TrainerConfig the trainer runs (the plan's, with this job's paths)
        runner.json     the runner's pid and start time (written by submit)
        runner.log      what the runner itself printed (empty unless it crashed)
        train.log       everything the trainer printed
        events.jsonl    normalized events (see tunefleet_local._events)
        cancel          present once a cancel was asked for
        exit.json       the outcome, written last by the runner (atomically)
        output/         the trainer's output_dir (adapter or model, manifest.json)
        checkpoints/    the trainer's checkpoint_dir

A job's id is its directory, so any process can watch it: ``find``, ``status`` and
``events`` only read files. Every file with more than one reader is replaced atomically or
appended in whole lines, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunefleet.errors import AlreadyExistsError, ProviderError, ProviderNotFoundError
from tunefleet.jobstate import JobState
from tunefleet.kit.files import locked, read_json, write_json
from tunefleet.kit.limits import check_concurrency
from tunefleet.kit.processes import is_alive, start_time
from tunefleet.kit.trainer import with_paths
from tunefleet.provider import ArtifactRef, DatasetRef, JobRef, JobStatus, Plan
from tunefleet_local._planning import RUN_TRAINER
from tunefleet_local.options import LocalOptions, workdir

if TYPE_CHECKING:
    from tunefleet_trainer.config import TrainerConfig

__all__ = [
    "POLL_AFTER",
    "RUNNER",
    "JobFiles",
    "artifacts",
    "cancel",
    "files_of",
    "find",
    "local_path",
    "read_artifact",
    "state",
    "status",
    "submit",
]

RUNNER = "tunefleet_local._runner"
"""The module ``submit`` runs (``python -m``) to drive one job's trainer."""
POLL_AFTER = 1.0
"""Seconds between status reads: the job's files are on this disk."""
# Run keys name job directories: letters, digits, dot, dash, underscore; no path tricks.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class JobFiles:
    """The paths of one job's directory."""

    root: Path

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def trainer_config(self) -> Path:
        return self.root / "trainer.json"

    @property
    def runner(self) -> Path:
        return self.root / "runner.json"

    @property
    def runner_log(self) -> Path:
        return self.root / "runner.log"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def cancel_marker(self) -> Path:
        return self.root / "cancel"

    @property
    def exit(self) -> Path:
        return self.root / "exit.json"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def manifest(self) -> Path:
        return self.output / "manifest.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


def local_path(provider: str, uri: str) -> Path:
    """The path of a ``file://`` URI (what ``stage`` and ``artifacts`` hand out)."""
    # Imported here: urllib.request loads http.client and ssl, 10 ms that a plan never uses.
    from urllib.request import url2pathname

    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "file":
        raise ProviderError(provider, f"{uri} is not a file on this machine", code="not_local")
    return Path(url2pathname(parts.path))


def _job_files(provider: str, root: Path, run_key: str) -> JobFiles:
    if not _SAFE_KEY.fullmatch(run_key):
        raise ProviderError(
            provider, f"run key {run_key!r} is not a safe directory name", code="invalid_run_key"
        )
    return JobFiles(root / "jobs" / run_key)


def files_of(provider: str, job: JobRef) -> JobFiles:
    """The directory of ``job``; ProviderNotFoundError ``job_not_found`` once it is gone."""
    files = JobFiles(Path(job.id))
    if not files.job.is_file():
        raise ProviderNotFoundError(provider, f"no job at {job.id}", code="job_not_found")
    return files


def _ref(provider: str, target: str, files: JobFiles, run_key: str) -> JobRef:
    return JobRef(
        provider=provider,
        target=target,
        id=str(files.root),
        run_key=run_key,
        console_url=files.log.as_uri(),
    )


def find(provider: str, plan: Plan, run_key: str) -> JobRef | None:
    """The job ``run_key`` created under the plan's work directory, or None."""
    files = _job_files(provider, workdir(plan.options), run_key)
    return _ref(provider, plan.target, files, run_key) if files.job.is_file() else None


def _trainer_config(
    provider: str, plan: Plan, datasets: Mapping[str, DatasetRef], files: JobFiles
) -> TrainerConfig:
    """The planned trainer config with this job's paths."""
    planned = plan.request(RUN_TRAINER).body["config"]
    validation = datasets.get("validation")
    golden = datasets.get("golden_set")
    try:
        return with_paths(
            planned,
            train=str(local_path(provider, datasets["train"].uri)),
            validation=str(local_path(provider, validation.uri)) if validation else None,
            output_dir=str(files.output),
            checkpoint_dir=str(files.checkpoints),
            golden_set=str(local_path(provider, golden.uri)) if golden else None,
        )
    except ValueError as exc:  # the planned config does not fit this trainer's contract
        raise ProviderError(provider, str(exc), code="invalid_trainer_config") from None


def _signal_runner(runner: Mapping[str, Any] | None, signum: signal.Signals) -> None:
    """Send ``signum`` to a runner's process group (the runner and its trainer), if alive."""
    if runner is not None and is_alive(runner["pid"], runner.get("start_time")):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner["pid"], signum)


def _clear_debris(files: JobFiles) -> None:
    """Remove the directory a submit left without its job.json (it died half-way).

    Nobody can find or watch that job, so its runner, if one started, is killed outright.
    """
    if files.root.exists():
        _signal_runner(read_json(files.runner), signal.SIGKILL)
        shutil.rmtree(files.root)


def _start_runner(files: JobFiles) -> int:
    """Start the runner in a session of its own, so it outlives the CLI (``--detach``,
    Ctrl-C) and ``cancel`` can signal its whole group; its pid."""
    with files.runner_log.open("ab") as log:  # the child keeps its own descriptor
        runner = subprocess.Popen(
            [sys.executable, "-m", RUNNER, str(files.root)],
            cwd=files.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return runner.pid


def submit(provider: str, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
    """Create the job directory and start its runner.

    AlreadyExistsError ``job_exists`` when the run key has a job; ProviderBusyError (via
    :func:`tunefleet.kit.limits.check_concurrency`) while ``max_concurrent_jobs`` jobs are
    unfinished on this machine, so the engine queues the target.
    """
    root = workdir(plan.options)
    options = LocalOptions.model_validate(plan.options)
    files = _job_files(provider, root, run_key)
    config = _trainer_config(provider, plan, datasets, files)
    # One lock for the whole work directory: the count of active jobs and the new job must
    # not interleave with another process's submit.
    with locked(root):
        if files.job.is_file():
            raise AlreadyExistsError(
                provider, f"a job for run key {run_key} exists already", code="job_exists"
            )
        active = sum(
            not state(JobFiles(path.parent))[0].terminal
            for path in (root / "jobs").glob("*/job.json")
        )
        check_concurrency(provider, active, options.max_concurrent_jobs, "on this machine")
        _clear_debris(files)
        files.root.mkdir(parents=True)
        write_json(files.trainer_config, config.model_dump(mode="json"))
        from tunefleet_local import _events  # the event models, which plans never build

        _events.append(
            files.events, _events.status_event(0, JobState.QUEUED, "starting the trainer")
        )
        pid = _start_runner(files)
        write_json(files.runner, {"pid": pid, "start_time": start_time(pid)})
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
    return _ref(provider, plan.target, files, run_key)


def state(files: JobFiles) -> tuple[JobState, str | None]:
    """A job's state and message, from its files and whether its runner still runs."""
    outcome = read_json(files.exit)
    if outcome is not None:
        return JobState(outcome["state"]), outcome.get("message")
    runner = read_json(files.runner)
    alive = runner is not None and is_alive(runner["pid"], runner.get("start_time"))
    if files.cancel_marker.exists():
        return (JobState.STOPPING, "stopping") if alive else (JobState.CANCELLED, "cancelled")
    if alive:
        return JobState.RUNNING, None
    if runner is None:
        return JobState.QUEUED, "starting the trainer"
    return JobState.FAILED, "the trainer's process ended without a result (see train.log)"


def status(provider: str, job: JobRef) -> JobStatus:
    """``job``'s state now, with the hint to poll again in :data:`POLL_AFTER` seconds."""
    job_state, message = state(files_of(provider, job))
    return JobStatus(
        state=job_state, message=message, checked_at=datetime.now(UTC), poll_after=POLL_AFTER
    )


def cancel(provider: str, job: JobRef) -> None:
    """Mark the job cancelled and SIGTERM its runner's group; a no-op once it has ended.

    The runner passes the signal on to the trainer and records the job as cancelled.
    """
    files = files_of(provider, job)
    if state(files)[0].terminal:
        return
    files.cancel_marker.touch()
    _signal_runner(read_json(files.runner), signal.SIGTERM)


def artifacts(provider: str, job: JobRef) -> list[ArtifactRef]:
    """The trained adapter or model first, a merged model if one was written, then the
    manifest as ``metrics``; ProviderNotFoundError ``manifest_not_found`` before the trainer
    wrote its manifest (the job has not succeeded)."""
    files = files_of(provider, job)
    manifest = read_json(files.manifest)
    if manifest is None:
        raise ProviderNotFoundError(
            provider,
            f"job {job.id} wrote no manifest (has it succeeded?)",
            code="manifest_not_found",
        )
    made: dict[str, str] = manifest["artifacts"]
    kinds = (("adapter", "adapter"), ("model", "merged_model"), ("merged", "merged_model"))
    refs = [
        ArtifactRef(kind=kind, uri=(files.output / made[key]).as_uri())
        for key, kind in kinds
        if key in made
    ]
    refs.append(ArtifactRef(kind="metrics", uri=files.manifest.as_uri()))
    answered = (manifest.get("predictions") or {}).get("files") or {}
    for kind in ("predictions", "baseline_predictions"):
        if isinstance(answered.get(kind), str):
            refs.append(ArtifactRef(kind=kind, uri=(files.output / answered[kind]).as_uri()))
    return refs


def read_artifact(provider: str, job: JobRef, artifact: ArtifactRef, max_bytes: int) -> bytes:
    """The bytes of one of ``job``'s artifact files (the golden set's answers);
    ProviderNotFoundError ``artifact_not_found``, ProviderError ``artifact_too_large`` or
    ``not_in_job`` for a file outside the job's directory."""
    files = files_of(provider, job)
    path = local_path(provider, artifact.uri)
    if not path.resolve().is_relative_to(files.root.resolve()):
        raise ProviderError(
            provider, f"{artifact.uri} is not a file of job {job.id}", code="not_in_job"
        )
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise ProviderError(
                    provider,
                    f"{path} holds {size:,} bytes, more than the {max_bytes:,} read back",
                    code="artifact_too_large",
                )
            return handle.read(max_bytes + 1)[:max_bytes]
    except FileNotFoundError:
        raise ProviderNotFoundError(
            provider, f"{path} is gone", code="artifact_not_found"
        ) from None
