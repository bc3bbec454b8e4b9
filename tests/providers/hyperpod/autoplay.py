"""The HyperPod training operator played in the background, for tests that run the
``tunefleet`` CLI in a subprocess and cannot step the jobs themselves.

:class:`BackgroundOperator` lists the HyperPodPyTorchJobs of a namespace through the API
server every ``interval`` seconds and moves each one step on, exactly as
:meth:`tests.providers.hyperpod.conftest.Training.advance` does (it is that object doing
it): the pods start, the first pod prints the trainer's metric lines with a falling loss
and a checkpoint line, then the job completes (or fails, with ``fail_with``). With ``hold``
the jobs start and train but never finish until :meth:`BackgroundOperator.release`.

Given an :class:`~tests.providers.hyperpod.inference.InferenceOperator` (``inference``), each
round also moves every InferenceEndpointConfig of the namespace one step on: one being deleted
is finalized (its SageMaker endpoint torn down, then it is gone); one without a status, or whose
``status.observedGeneration`` is not its ``metadata.generation`` (new, or its spec changed), is
accepted (``DeploymentInProgress``) in one round and completed (``DeploymentComplete``, the
endpoint in moto) in the next, or failed with ``serve_fail_with`` as the message.

An exception in the thread stops the playing and is raised again when the ``with`` block
ends, so no test passes on an operator that silently gave up.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from tests.providers.hyperpod.conftest import Training
from tests.providers.hyperpod.inference import FINALIZER, InferenceOperator
from tests.providers.hyperpod.kube import JOB_LABEL, KubeCluster, Operator

from tunefleet.provider import JobRef

__all__ = ["BackgroundOperator", "all_jobs", "clear_jobs", "wait_until"]

RUN_KEY_LABEL = "tunefleet.dev/run-key"
_FINISHED = {"Completed", "Failed"}
T = TypeVar("T")


def all_jobs(cluster: KubeCluster) -> list[dict[str, Any]]:
    """Every HyperPodPyTorchJob on the API server, all namespaces, as it stores them."""
    group, version, plural = "sagemaker.amazonaws.com", "v1", "hyperpodpytorchjobs"
    listing = cluster.json("GET", f"/apis/{group}/{version}/{plural}")
    items: list[dict[str, Any]] = listing["items"]
    return items


def clear_jobs(cluster: KubeCluster, namespace: str = "default") -> None:
    """Delete the namespace's HyperPodPyTorchJobs and their pods. The API server lives for
    the session and has no garbage collector, and a spec's job name comes from its run key,
    so a test that does not start from an empty namespace would find an earlier test's
    job."""
    cluster.json("DELETE", cluster.job_path(namespace))
    cluster.json(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/pods",
        query={"labelSelector": JOB_LABEL, "gracePeriodSeconds": "0"},
    )
    wait_until(
        lambda: (
            not cluster.json("GET", cluster.job_path(namespace))["items"]
            and not cluster.json(
                "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": JOB_LABEL}
            )["items"]
        ),
        what=f"the jobs and pods of namespace {namespace} are gone",
    )


def wait_until(
    probe: Callable[[], T], *, what: str, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something true; that value. AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def _finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in _FINISHED and c.get("status") == "True" for c in conditions)


def _accepted(config: dict[str, Any]) -> bool:
    """Accepted and not yet completed or failed (for its current generation)."""
    status = config.get("status") or {}
    return status.get("state") == "DeploymentInProgress"


class BackgroundOperator:
    """Plays every HyperPodPyTorchJob of ``namespace`` through its life in a daemon thread
    (module docstring), and with ``inference`` every InferenceEndpointConfig of it too
    (completed, or failed with ``serve_fail_with``). Use it as a context manager."""

    def __init__(
        self,
        operator: Operator,
        namespace: str = "default",
        *,
        steps: int = 4,
        fail_with: str | None = None,
        hold: bool = False,
        interval: float = 0.1,
        inference: InferenceOperator | None = None,
        serve_fail_with: str | None = None,
        play_jobs: bool = True,
    ) -> None:
        self.operator = operator
        self.namespace = namespace
        self.training = Training(operator, namespace=namespace, steps=steps, fail_with=fail_with)
        self.play_jobs = play_jobs
        """False leaves the jobs to the test (the conformance suite steps them itself)."""
        self.inference = inference
        self.serve_fail_with = serve_fail_with
        self.serve_steps: dict[str, int] = {}
        """Steps played per InferenceEndpointConfig name (accept, complete/fail, finalize)."""
        self.interval = interval
        self._hold = threading.Event()
        if hold:
            self._hold.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        """What stopped the thread, if anything did."""
        self.rounds = 0
        """Rounds played so far (a round lists the jobs and advances each one once)."""

    # Control

    def hold(self) -> None:
        """From now on, jobs start and train but do not finish."""
        self._hold.set()

    def release(self) -> None:
        """Let held jobs finish (succeed, or fail with ``fail_with``)."""
        self._hold.clear()

    def check(self) -> None:
        """Raise what stopped the thread, if something did."""
        if self.error is not None:
            raise RuntimeError("the background operator failed") from self.error

    def played(self, name: str) -> int:
        """How many steps job ``name`` was moved on (its start is the first)."""
        return self.training.ticks.get(name, 0)

    # The thread

    def __enter__(self) -> BackgroundOperator:
        self._thread = threading.Thread(
            target=self._run, name=f"hyperpod-operator-{self.namespace}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("the background operator did not stop within 30 s")
        if self.error is None:
            return
        if value is not None:
            value.add_note(f"the background operator had failed too: {self.error!r}")
            return
        self.check()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._round()
            except BaseException as exc:  # recorded, raised again on exit
                self.error = exc
                return

    def _round(self) -> None:
        if (not self.play_jobs or self._play_jobs()) and self._play_endpoint_configs():
            self.rounds += 1

    def _play_jobs(self) -> bool:
        """One step for each job; False when stopped midway."""
        cluster = self.operator.cluster
        for job in cluster.json("GET", cluster.job_path(self.namespace))["items"]:
            if self._stop.is_set():
                return False
            metadata = job["metadata"]
            name = metadata["name"]
            if _finished(job) or metadata.get("deletionTimestamp"):
                continue
            if self._hold.is_set() and self.played(name) > self.training.steps:
                continue  # trained; its last step (the end) waits for release()
            ref = JobRef(
                provider="hyperpod",
                target="autoplay",
                id=name,
                run_key=(metadata.get("labels") or {}).get(RUN_KEY_LABEL, ""),
            )
            try:
                self.training.advance(ref)
            except Exception:
                status, _ = cluster.request("GET", cluster.job_path(self.namespace, name))
                if status == 404:
                    continue  # deleted (cancelled) while it was being played
                raise
        return True

    def _play_endpoint_configs(self) -> bool:
        """One step for each InferenceEndpointConfig (module docstring); False when stopped
        midway. Without ``inference``, nothing."""
        inference = self.inference
        if inference is None:
            return True
        cluster = inference.cluster
        for config in inference.endpoint_configs(self.namespace):
            if self._stop.is_set():
                return False
            metadata = config["metadata"]
            name = metadata["name"]
            status = config.get("status") or {}
            if metadata.get("deletionTimestamp"):
                if FINALIZER not in (metadata.get("finalizers") or []):
                    continue  # another finalizer holds it; not ours to play
                step = functools.partial(inference.finalize, self.namespace, name)
            elif status.get("observedGeneration") == metadata.get("generation"):
                continue  # completed or failed, and its spec has not changed since
            elif not _accepted(config):
                step = functools.partial(inference.accept, self.namespace, name)
            elif self.serve_fail_with is not None:
                step = functools.partial(
                    inference.fail, self.namespace, name, message=self.serve_fail_with
                )
            else:
                step = functools.partial(inference.complete, self.namespace, name)
            # Counted before it is played: a test that sees the step's effect on the
            # resource must find it counted (counting after raced such a test).
            self.serve_steps[name] = self.serve_steps.get(name, 0) + 1
            try:
                step()
            except Exception:
                self.serve_steps[name] -= 1
                answer, _ = cluster.request(
                    "GET", cluster.endpoint_config_path(self.namespace, name)
                )
                if answer == 404:
                    continue  # deleted while it was being played
                raise
        return True
