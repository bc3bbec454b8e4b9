"""The run engine: plan, then apply, resumably.

:meth:`Engine.start` plans a spec (validating its datasets), records the run and one row
per target in the journal, and returns them. :meth:`Engine.drive` then applies each target
in its own thread until its job has finished and its artifacts are collected:

    stage datasets  ->  find or submit the job  ->  poll status, store events  ->  artifacts

Every step reads what the journal and the provider say exists before acting, so any step
can be repeated after a crash: an upload is content-addressed, a job is written as an
intent before the create call and looked up by run key (``Provider.find``) before a
second create, and events are stored with the cursor after them in one transaction.

One process drives a target at a time: the driver holds the target's lease in the journal
and renews it from a heartbeat thread. Another process (a second `tunefleet run` of the
same spec, a `watch`) finds the lease held and observes the journal instead, taking over
only when the holder is gone. A provider at a concurrency or quota limit queues the
target; transient errors are retried (:mod:`tunefleet.run.calls`); a permanent error or
retries run out stops the target in phase ``error``, which `tunefleet resume` retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunefleet import _failpoints
from tunefleet.errors import (
    LeaseLostError,
    ProviderBusyError,
    ProviderError,
    StateError,
    UsageError,
)
from tunefleet.evaluation.planning import load_json_schema
from tunefleet.evaluation.runner import evaluate_target
from tunefleet.evaluation.scoring import ThresholdMiss
from tunefleet.events import JobState
from tunefleet.planning import RunPlan, plan_run
from tunefleet.plugins import Registry, default_registry
from tunefleet.provider import DatasetRef, JobRef, Pausable, Plan, Provider, optional
from tunefleet.registry import SERVABLE, model_ref, register
from tunefleet.run import keys
from tunefleet.run.calls import CallPolicy, EngineStoppedError, call
from tunefleet.spec import RunSpec, is_local, load_spec
from tunefleet.state.journal import Journal, Owner
from tunefleet.state.models import Run, RunTarget

__all__ = ["DriveHandle", "Engine", "EngineSettings", "StartedRun"]

Notice = Callable[[str, str], None]
"""Called with (target name, message) for things a person watching should know."""


@dataclass(frozen=True)
class EngineSettings:
    """Timing of the engine; the defaults suit cloud jobs that run for hours."""

    poll_interval: float = 15.0
    """Seconds between status polls of a running job."""
    queue_interval: float = 60.0
    """Seconds before submitting again to a provider at its limit (unless it says)."""
    heartbeat_interval: float = 10.0
    """Seconds between lease renewals (the lease lapses after 60 s without one)."""
    max_queue: float | None = None
    """Seconds a target may wait in the queue before it fails, saying why it waited; None
    waits as long as it takes (a queue behind your own max_concurrent_jobs may be long)."""
    calls: CallPolicy = field(default_factory=CallPolicy)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        """The defaults, overridden by ``TUNEFLEET_POLL_INTERVAL``,
        ``TUNEFLEET_QUEUE_INTERVAL``, ``TUNEFLEET_CALL_TIMEOUT``,
        ``TUNEFLEET_RETRY_ATTEMPTS`` and ``TUNEFLEET_RETRY_BACKOFF`` (seconds, or a count),
        and ``TUNEFLEET_MAX_QUEUE_HOURS``."""
        env = os.environ if environ is None else environ

        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"{name} must be a number, not {raw!r}") from None
            if value < minimum:
                raise UsageError(f"{name} must be at least {minimum:g}, not {raw}")
            return value

        calls = CallPolicy(
            attempts=int(number("TUNEFLEET_RETRY_ATTEMPTS", CallPolicy.attempts, 1)),
            backoff=number("TUNEFLEET_RETRY_BACKOFF", CallPolicy.backoff, 0),
            timeout=number("TUNEFLEET_CALL_TIMEOUT", CallPolicy.timeout, 0.001),
        )
        return cls(
            poll_interval=number("TUNEFLEET_POLL_INTERVAL", cls.poll_interval, 0),
            queue_interval=number("TUNEFLEET_QUEUE_INTERVAL", cls.queue_interval, 0),
            max_queue=(
                number("TUNEFLEET_MAX_QUEUE_HOURS", 0, 0.0001) * 3600
                if env.get("TUNEFLEET_MAX_QUEUE_HOURS")
                else None
            ),
            calls=calls,
        )


@dataclass(frozen=True)
class StartedRun:
    """A run recorded in the journal and the targets of it that this start selected."""

    run: Run
    targets: list[RunTarget]
    plan: RunPlan
    created: bool


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Engine:
    """Applies runs recorded in a journal; one instance per process is the usual shape."""

    def __init__(
        self,
        journal: Journal,
        *,
        registry: Registry | None = None,
        settings: EngineSettings | None = None,
        notice: Notice | None = None,
    ) -> None:
        self.journal = journal
        self.registry = registry or default_registry()
        self.settings = settings or EngineSettings()
        self.owner = Owner.here()
        self._notice = notice or (lambda target, message: None)

    # ------------------------------------------------------------------ start

    def start(
        self,
        spec: RunSpec | str | Path,
        *,
        target: str | None = None,
        new_attempt: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> StartedRun:
        """Plan ``spec`` and record the run and its targets (or find them recorded).

        Raises what :func:`~tunefleet.planning.plan_run` raises, PlanError when a target
        cannot honour a requirement (before anything is created), and UsageError for a
        dataset the engine cannot stage.
        """
        if not isinstance(spec, RunSpec):
            spec = load_spec(spec)
        run_plan = plan_run(spec, target=target, registry=self.registry, progress=progress)
        run_plan.raise_for_unmet()
        datasets: dict[str, Any] = {}
        golden = spec.evaluation.golden_set if spec.evaluation is not None else None
        for role, location, key in (
            ("train", spec.dataset.train, "dataset.train"),
            ("validation", spec.dataset.validation, "dataset.validation"),
            ("golden_set", golden, "evaluation.golden_set"),
        ):
            if location is None:
                continue
            if not is_local(location):
                raise UsageError(
                    f"{key}: {location} is a cloud URI; the run engine stages "
                    "local files (point the spec at a local copy)"
                )
            report = run_plan.datasets[role]
            datasets[role] = {
                "path": str(Path(spec.resolve_location(location)).resolve()),
                "sha256": report.sha256,
                "size_bytes": report.size_bytes,
                "examples": report.examples,
                "billable_tokens": report.billable_tokens,
            }
        identity = keys.identity(spec, {role: d["sha256"] for role, d in datasets.items()})
        if spec.evaluation is not None and spec.evaluation.json_schema is not None:
            # Kept with the run: `tunefleet eval` scores against the schema the run had.
            datasets["json_schema"] = {"schema": load_json_schema(spec)}
        run, created = self.journal.ensure_run(
            run_id=keys.run_id(spec.name, identity),
            name=spec.name,
            identity=identity,
            spec=spec.model_dump(mode="json"),
            spec_source=spec.source,
            datasets=datasets,
        )
        targets = []
        for plan in run_plan.plans:
            config = keys.config_hash(spec.target(plan.target))
            row, _ = self.journal.ensure_target(
                run_id=run.id,
                name=plan.target,
                config_hash=config,
                run_key_for=lambda attempt, c=config: keys.run_key(identity, c, attempt),  # type: ignore[misc]
                provider=plan.provider,
                region=plan.region,
                plan=plan.model_dump(mode="json"),
                new_attempt=new_attempt,
            )
            targets.append(row)
        _failpoints.reached("after-record-run")
        return StartedRun(run=run, targets=targets, plan=run_plan, created=created)

    # ------------------------------------------------------------------ drive

    def drive(
        self,
        run_id: str,
        target_ids: list[int] | None = None,
        *,
        retry_errors: bool = False,
        stop: threading.Event | None = None,
    ) -> DriveHandle:
        """Start driving the run's targets (all by default) in background threads.

        ``retry_errors`` restarts targets a permanent error stopped (what `resume` does).
        Returns at once; see :class:`DriveHandle`.
        """
        rows = self.journal.targets(run_id)
        if target_ids is not None:
            rows = [row for row in rows if row.id in target_ids]
        run = self.journal.run(run_id)
        handle = DriveHandle(self, [row.id for row in rows], stop or threading.Event())
        for row in rows:
            driver = _TargetDriver(self, run, row.id, row.name, handle, retry_errors)
            handle._start(driver.loop, row.name)
        handle._start_heartbeat()
        return handle

    def cancel(self, run_id: str, target: str | None = None) -> list[RunTarget]:
        """Ask for the run's active targets (or one) to be cancelled; returns them.

        A target with a job gets it cancelled by whoever drives it; one without a job
        is marked cancelled and never submitted.
        """
        rows = [row for row in self.journal.targets(run_id) if row.phase != "done"]
        if target is not None:
            rows = [row for row in rows if row.name == target]
            if not rows:
                raise UsageError(f"run {run_id} has no active target {target!r}")
        return [self.journal.request_cancel(row.id) for row in rows]

    def pause(self, run_id: str, target: str | None = None) -> list[RunTarget]:
        """Pause the run's running jobs (or one target's) where their providers can; returns
        the targets paused. Whoever drives them sees ``paused`` at the next poll."""
        return self._toggle(run_id, target, pause=True)

    def unpause(self, run_id: str, target: str | None = None) -> list[RunTarget]:
        """Resume the run's paused jobs (or one target's); returns the targets resumed."""
        return self._toggle(run_id, target, pause=False)

    def _toggle(self, run_id: str, target: str | None, *, pause: bool) -> list[RunTarget]:
        wanted = JobState.RUNNING.value if pause else JobState.PAUSED.value
        rows = [
            row
            for row in self.journal.targets(run_id)
            if row.job is not None
            and row.phase != "done"
            and row.state == wanted
            and (target is None or row.name == target)
        ]
        if target is not None and not rows:
            state = "running" if pause else "paused"
            raise UsageError(f"run {run_id} has no {state} job for target {target!r}")
        done = []
        for row in rows:
            provider = optional(self.registry.provider(row.provider), Pausable)
            job = JobRef.model_validate(row.job)
            operation = provider.pause if pause else provider.resume
            call(self.settings.calls, row.provider, operation.__name__, operation, job)
            action = "job.pause" if pause else "job.resume"
            self.journal.record(action, run_id, row.name, job=job.id)
            done.append(row)
        return done

    def notice(self, target: str, message: str) -> None:
        self._notice(target, message)


class DriveHandle:
    """Background drivers of a run's targets: wait on them, or stop them (detach)."""

    def __init__(self, engine: Engine, target_ids: list[int], stop_event: threading.Event) -> None:
        self._engine = engine
        self.target_ids = target_ids
        self.stop_event = stop_event
        self._threads: list[threading.Thread] = []
        self._heartbeat: threading.Thread | None = None
        self.crashes: list[BaseException] = []
        """Unexpected exceptions that stopped a driver (a lost journal, a bug)."""

    def _start(self, target: Callable[[], None], name: str) -> None:
        # Daemon threads: a provider call that hangs must not keep the process alive
        # after the user detaches.
        thread = threading.Thread(target=target, name=f"drive-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_heartbeat(self) -> None:
        engine = self._engine

        def beat() -> None:
            interval = engine.settings.heartbeat_interval
            while not self.stop_event.wait(interval) and self.alive:
                try:
                    engine.journal.heartbeat(engine.owner)
                except Exception as exc:  # the next beat may succeed; the lease is 60 s
                    engine.notice("*", f"could not renew leases: {exc}")

        self._heartbeat = threading.Thread(target=beat, name="heartbeat", daemon=True)
        self._heartbeat.start()

    @property
    def alive(self) -> bool:
        """True while any target is still being driven or observed."""
        return any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every target to finish; False if ``timeout`` passed first."""
        for thread in self._threads:
            thread.join(timeout)
        return not self.alive

    def detach(self, grace: float = 2.0) -> None:
        """Stop driving (the jobs keep running at the providers) and give the leases back."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(grace)
        for target_id in self.target_ids:
            # Best effort: a lease not given back expires by itself.
            with contextlib.suppress(Exception):
                self._engine.journal.release(target_id, self._engine.owner)


class _TargetDriver:
    """Drives one target to the end: one step per loop, each step idempotent."""

    def __init__(
        self,
        engine: Engine,
        run: Run,
        target_id: int,
        name: str,
        handle: DriveHandle,
        retry_errors: bool,
    ) -> None:
        self.engine = engine
        self.journal = engine.journal
        self.owner = engine.owner
        self.settings = engine.settings
        self.run = run
        self.target_id = target_id
        self.name = name
        self.handle = handle
        self.stop = handle.stop_event
        self.retry_errors = retry_errors
        self._provider: Provider | None = None

    # ------------------------------------------------------------------ loop

    def loop(self) -> None:
        try:
            self._loop()
        except EngineStoppedError:
            pass
        except Exception as exc:  # a lost journal or a bug: hand it to whoever waits
            self.handle.crashes.append(exc)
            return
        if not self.stop.is_set():
            self.journal.release(self.target_id, self.owner)

    def _loop(self) -> None:
        while not self.stop.is_set():
            row = self.journal.target(self.target_id)
            if row.phase == "done" or (row.phase == "error" and not self.retry_errors):
                return
            if not self.journal.acquire(self.target_id, self.owner):
                # Another live process drives it; watch the journal until it is done or
                # that process goes away.
                self.stop.wait(min(self.settings.poll_interval, 2.0))
                continue
            try:
                if row.phase == "error":
                    self.retry_errors = False
                    row = self._update(
                        phase="pending",
                        message=None,
                        queued_at=None,
                        audit_action="target.retried",
                    )
                wait = self._step(row)
            except LeaseLostError:
                self.engine.notice(self.name, "another process took over; watching it")
                continue
            except ProviderError as exc:
                self._fail(exc)
                return
            if wait:
                self.stop.wait(wait)

    def _fail(self, exc: ProviderError) -> None:
        try:
            self._update(
                phase="error",
                message=str(exc),
                audit_action="target.error",
                audit_detail={"error": str(exc)},
            )
        except LeaseLostError:
            return
        self.engine.notice(self.name, f"error: {exc}")

    # ------------------------------------------------------------------ helpers

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            row = self.journal.target(self.target_id)
            self._provider = self.engine.registry.provider(row.provider)
        return self._provider

    def _call(
        self, operation: str, fn: Callable[..., Any], *args: Any, timeout: float | None = None
    ) -> Any:
        return call(
            self.settings.calls,
            self.provider.name,
            operation,
            fn,
            *args,
            timeout=timeout,
            stop=self.stop,
            on_retry=lambda message: self.engine.notice(self.name, f"retrying {message}"),
        )

    def _update(
        self,
        *,
        audit_action: str | None = None,
        audit_detail: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> RunTarget:
        return self.journal.update_target(
            self.target_id,
            self.owner,
            audit_action=audit_action,
            audit_detail=audit_detail,
            **fields,
        )

    # ------------------------------------------------------------------ steps

    def _step(self, row: RunTarget) -> float:
        """Take the next step; returns seconds to wait before the one after."""
        plan = Plan.model_validate(row.plan)
        if row.cancel_requested and row.job is None:
            self._update(
                phase="done",
                state=JobState.CANCELLED.value,
                message="cancelled before a job was created",
                finished_at=_now(),
                audit_action="target.finished",
                audit_detail={"state": "cancelled"},
            )
            return 0
        if row.job is None:
            datasets = self._stage(row, plan)
            return self._submit(row, plan, datasets)
        job = JobRef.model_validate(row.job)
        if row.cancel_requested and row.phase != "cancelling":
            self._call("cancel", self.provider.cancel, job)
            row = self._update(
                phase="cancelling", audit_action="job.cancel", audit_detail={"job": job.id}
            )
        return self._watch(row, job)

    def _stage(self, row: RunTarget, plan: Plan) -> dict[str, DatasetRef]:
        refs: dict[str, DatasetRef] = {}
        # The golden set goes to the provider only when its job answers it.
        roles = (
            ("train", "validation", "golden_set")
            if plan.predictions == "job"
            else (
                "train",
                "validation",
            )
        )
        for role, info in self.run.datasets.items():
            if role not in roles:
                continue
            resource = self.journal.intend(
                self.target_id,
                self.owner,
                kind="dataset",
                key=f"{role}:{info['sha256']}",
                provider=self.provider.name,
                detail={"role": role, "sha256": info["sha256"], "size_bytes": info["size_bytes"]},
            )
            if resource.status == "confirmed":
                refs[role] = DatasetRef.model_validate(resource.detail["ref"])
                continue
            if row.phase != "staging":
                row = self._update(phase="staging")
            path = Path(info["path"])
            try:
                actual = _sha256(path)
            except OSError as exc:
                raise ProviderError(
                    self.provider.name, f"cannot read the {role} dataset {path}: {exc.strerror}"
                ) from None
            if actual != info["sha256"]:
                raise ProviderError(
                    self.provider.name,
                    f"the {role} dataset {path} changed since the run started; run the spec "
                    "again to start a run on the new data",
                )
            self.engine.notice(
                self.name, f"uploading {role} dataset ({info['size_bytes']:,} bytes)"
            )
            _failpoints.reached("before-stage")
            ref: DatasetRef = self._call(
                "stage",
                self.provider.stage,
                plan,
                role,
                path,
                info["sha256"],
                _UploadNotices(self.engine, self.name, role),
                timeout=self.settings.calls.stage_timeout,
            )
            _failpoints.reached("after-stage")
            self.journal.confirm(
                resource.id,
                self.owner,
                native_id=ref.uri,
                uri=ref.uri,
                detail={"ref": ref.model_dump(mode="json")},
            )
            refs[role] = ref
        return refs

    def _submit(self, row: RunTarget, plan: Plan, datasets: dict[str, DatasetRef]) -> float:
        resource = self.journal.intend(
            self.target_id, self.owner, kind="job", key=row.run_key, provider=self.provider.name
        )
        how = "found"
        if resource.status == "confirmed":
            job = JobRef.model_validate(resource.detail["job"])
        else:
            # Before any create: a crashed process may have created the job after writing
            # the intent, and the provider is the only one who knows.
            found = self._call("find", self.provider.find, plan, row.run_key)
            if found is not None:
                job = found
                self.engine.notice(self.name, f"reattached to job {job.id}")
            else:
                if row.phase != "submitting":
                    row = self._update(phase="submitting")
                _failpoints.reached("before-submit")
                try:
                    job = self._call("submit", self.provider.submit, plan, datasets, row.run_key)
                except ProviderBusyError as exc:
                    return self._queue(row, exc)
                how = "created"
                _failpoints.reached("after-submit")
            self.journal.confirm(
                resource.id,
                self.owner,
                native_id=job.id,
                uri=job.console_url,
                detail={"job": job.model_dump(mode="json")},
                how=how,
            )
        self._update(
            job=job.model_dump(mode="json"),
            phase="watching",
            state=JobState.QUEUED.value,
            message=None,
            queued_at=None,
            started_at=row.started_at or _now(),
        )
        _failpoints.reached("after-confirm-submit")
        self.engine.notice(self.name, f"job {job.id} {how}")
        return 0

    def _queue(self, row: RunTarget, exc: ProviderBusyError) -> float:
        """Queue the target until the provider has room, for at most ``max_queue``."""
        reason = str(exc)
        now = _now()
        # Set when the target first queues, kept across the submits it retries (each one
        # passes through "submitting"), cleared once a job exists or the target is retried.
        since = row.queued_at or now
        limit = self.settings.max_queue
        if limit is not None and (now - since).total_seconds() > limit:
            raise ProviderError(
                self.provider.name,
                f"queued since {since:%Y-%m-%d %H:%M} UTC, longer than the queue's limit "
                f"of {limit / 3600:g} h (TUNEFLEET_MAX_QUEUE_HOURS); the last reason: "
                f"{exc.detail}",
                code="queue_timeout",
            )
        if row.phase != "queued" or row.message != reason:
            self._update(
                phase="queued",
                message=reason,
                queued_at=since,
                audit_action="target.queued",
                audit_detail={"reason": reason},
            )
            self.engine.notice(self.name, f"queued: {reason}")
        wait = exc.retry_after if exc.retry_after is not None else self.settings.queue_interval
        return max(wait, 0.0)

    def _watch(self, row: RunTarget, job: JobRef) -> float:
        # Status first, then events: once the status is terminal, the events read after
        # it include everything up to the end.
        status = self._call("status", self.provider.status, job)
        self._read_events(job)
        changes: dict[str, Any] = {
            "state": status.state.value,
            "message": status.message,
            "trained_tokens": status.trained_tokens,
            "billable_seconds": status.billable_seconds,
        }
        if status.state.value != row.state:
            row = self._update(
                audit_action="job.state",
                audit_detail={"from": row.state, "to": status.state.value, "job": job.id},
                **changes,
            )
            self.engine.notice(self.name, f"job {status.state.value}")
        else:
            row = self._update(**changes)
        if not status.state.terminal:
            if status.poll_after is not None:
                return min(float(status.poll_after), self.settings.poll_interval)
            return self.settings.poll_interval
        _failpoints.reached("after-terminal")
        message = None
        if status.state == JobState.SUCCEEDED:
            row = self._update(phase="collecting")
            artifacts = self._call("artifacts", self.provider.artifacts, job)
            self.journal.add_artifacts(
                self.target_id, self.owner, [(a.kind, a.uri) for a in artifacts]
            )
            message = self._evaluate(row)
            if any(kind in SERVABLE for kind in (a.kind for a in artifacts)):
                version = register(self.journal, self.run, self.journal.target(self.target_id))
                self.engine.notice(self.name, f"registered model {model_ref(version)}")
        self._update(
            phase="done",
            finished_at=_now(),
            message=message or status.message,
            audit_action="target.finished",
            audit_detail={"state": status.state.value, "job": job.id},
        )
        return 0

    def _evaluation_call(self, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
        # Answering a golden set is hundreds of requests in one call: it gets the long
        # timeout uploads get, not the one for a status poll.
        long = operation in ("answer", "judge")
        timeout = self.settings.calls.stage_timeout if long else None
        return self._call(operation, fn, *args, timeout=timeout)

    def _evaluate(self, row: RunTarget) -> str | None:
        """Score the model on the golden set, once per target (a resumed step finds the
        evaluation recorded); returns a line for the target's message when it failed."""
        if self.run.spec.get("evaluation") is None:
            return None
        done = [e for e in self.journal.evaluations(self.target_id) if e.trigger == "run"]
        if done:
            evaluation = done[-1]
        else:
            self._update(phase="evaluating")
            self.engine.notice(self.name, "evaluating on the golden set")
            try:
                evaluation = evaluate_target(
                    self.journal,
                    self.engine.registry,
                    self.run,
                    row,
                    trigger="run",
                    caller=self._evaluation_call,
                    progress=_EvaluationNotices(self.engine, self.name),
                )
            except LeaseLostError:
                raise
            except (StateError, UsageError, ValueError) as exc:
                # Stops the target in phase error with the reason; `resume` evaluates again.
                raise ProviderError(
                    self.provider.name, f"evaluation could not run: {exc}", code="evaluation_error"
                ) from None
        failures = [
            ThresholdMiss.model_validate(m).describe()
            for m in evaluation.result.get("failures", [])
        ]
        summary = (
            "evaluation passed"
            if evaluation.passed
            else "evaluation failed: " + "; ".join(failures)
        )
        self.engine.notice(self.name, summary)
        return None if evaluation.passed else summary

    def _read_events(self, job: JobRef) -> None:
        cursor = self.journal.cursor(self.target_id)
        while not self.stop.is_set():
            page = self._call("events", self.provider.events, job, cursor)
            if not page.events:
                return
            self.journal.record_events(self.target_id, self.owner, page.events, page.cursor)
            cursor = page.cursor
            _failpoints.reached("after-events-page")


class _EvaluationNotices:
    """Turns evaluation progress into a notice at each further quarter of a task."""

    def __init__(self, engine: Engine, target: str) -> None:
        self._engine = engine
        self._target = target
        self._shown: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        quarters = 4 * done // total if total > 0 else 4
        if quarters > self._shown.get(task, 0):
            self._shown[task] = quarters
            self._engine.notice(self._target, f"evaluation: {task} {done:,} of {total:,}")


class _UploadNotices:
    """Turns a provider's upload progress into a notice at each further tenth uploaded."""

    def __init__(self, engine: Engine, target: str, role: str) -> None:
        self._engine = engine
        self._target = target
        self._role = role
        self._tenths = 0

    def __call__(self, sent: int, total: int) -> None:
        tenths = 10 * sent // total if total > 0 else 10
        if tenths > self._tenths and sent < total:
            self._tenths = tenths
            self._engine.notice(
                self._target, f"uploading {self._role} dataset: {sent:,} of {total:,} bytes"
            )
