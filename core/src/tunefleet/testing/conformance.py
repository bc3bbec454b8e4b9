"""The provider conformance suite: the same scenarios, run against every provider.

Subclass :class:`ProviderConformance` in your provider's tests and supply a ``harness``
fixture; pytest collects the inherited tests::

    from tunefleet.testing.conformance import ConformanceHarness, ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def harness(self, tmp_path) -> ConformanceHarness:
            return ConformanceHarness(provider=MyProvider(), spec=..., dataset=...)

The harness's spec must target the provider in ``targets[0]`` with options that work
against the harness's backend (an emulator, a fake server, or the real service). The
scenarios of an optional protocol (pausing, serving, traffic split) run for providers that
implement it and are skipped, with the reason, for the others. Every scenario cancels the
jobs it submits, so no trainer outlives a test.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from tunefleet.events import JobState, MetricEvent, StatusEvent
from tunefleet.names import PROVIDER_NAME_PATTERN
from tunefleet.planning import plan_run
from tunefleet.plugins import Registry
from tunefleet.provider import (
    DERIVED_CAPABILITIES,
    Capabilities,
    ChatRequest,
    DatasetRef,
    JobRef,
    Pausable,
    Plan,
    Provider,
    Serving,
    capabilities_of,
)
from tunefleet.spec import RunSpec

__all__ = ["ConformanceHarness", "ProviderConformance"]


@dataclass
class ConformanceHarness:
    """What the suite needs to exercise one provider."""

    provider: Provider
    spec: RunSpec
    """A valid spec whose targets[0] uses ``provider``; its dataset must be local."""
    registry: Registry
    """A registry in which ``provider`` is registered."""
    advance: Callable[[JobRef], None] = lambda job: None
    """Moves the backend on (for emulators that need a nudge); a no-op for real services."""
    poll_interval: float = 0.0
    timeout: float = 60.0
    cannot_serve: str | None = None
    """Why the harness's target cannot serve although the provider implements Serving (a
    HyperPod cluster orchestrated by Slurm has no inference operator; plan refuses its
    endpoints); the serving scenario is skipped with it."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ProviderConformance:
    """Scenarios every provider must pass. Subclasses provide the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> ConformanceHarness:
        raise NotImplementedError("subclasses provide a `harness` fixture")

    # ------------------------------------------------------------------ helpers

    def _plan(self, harness: ConformanceHarness) -> Plan:
        run_plan = plan_run(
            harness.spec, target=harness.spec.targets[0].key, registry=harness.registry
        )
        plan = run_plan.plans[0]
        assert plan.ok, f"the harness spec should plan cleanly, unmet: {plan.unmet}"
        return plan

    def _staged(self, harness: ConformanceHarness, plan: Plan) -> dict[str, DatasetRef]:
        path = Path(harness.spec.resolve_location(harness.spec.dataset.train))
        return {"train": harness.provider.stage(plan, "train", path, _sha256(path))}

    def _submit(self, harness: ConformanceHarness, plan: Plan, name: str) -> JobRef:
        """Submit a job for this scenario; it is cancelled when the scenario ends."""
        job = harness.provider.submit(
            plan, self._staged(harness, plan), f"conformance-{name}-{time.time_ns()}"
        )
        self._submitted.append(job)
        return job

    @pytest.fixture(autouse=True)
    def _cancel_what_was_submitted(self, harness: ConformanceHarness) -> Iterator[None]:
        self._submitted: list[JobRef] = []
        yield
        for job in self._submitted:
            harness.provider.cancel(job)  # a no-op for finished jobs

    def _wait(self, harness: ConformanceHarness, job: JobRef) -> JobState:
        deadline = time.monotonic() + harness.timeout
        while True:
            harness.advance(job)
            state = harness.provider.status(job).state
            if state.terminal:
                return state
            if time.monotonic() > deadline:
                pytest.fail(f"job {job.id} still {state} after {harness.timeout}s")
            time.sleep(harness.poll_interval)

    # ------------------------------------------------------------------ scenarios

    def test_declares_name_options_and_capabilities(self, harness: ConformanceHarness) -> None:
        import re

        provider = harness.provider
        assert re.fullmatch(PROVIDER_NAME_PATTERN, provider.name)
        assert issubclass(provider.options_model, BaseModel)
        assert provider.options_model.model_config.get("extra") == "forbid", (
            "unknown options must be errors"
        )
        declared = provider.capabilities()
        assert isinstance(declared, Capabilities)
        assert not DERIVED_CAPABILITIES & declared.model_fields_set, (
            "pause, endpoints and traffic_split come from the protocols a provider "
            "implements; a provider does not declare them"
        )
        caps = capabilities_of(provider)
        assert caps.methods, "a provider trains with at least one method"
        if caps.autoscaling or caps.traffic_split:
            assert caps.endpoints, "autoscaling and traffic split need endpoints"
        for name in ("pause", "resume", "deploy", "delete_endpoint", "invoke", "shift_traffic"):
            method = getattr(provider, name, None)
            if method is not None:
                assert callable(method)

    def test_plan_is_deterministic_and_serializable(self, harness: ConformanceHarness) -> None:
        first = self._plan(harness)
        second = self._plan(harness)
        assert first == second, "planning twice must give the same plan"
        assert first.provider == harness.provider.name
        assert first.target == harness.spec.targets[0].key
        assert first.requests, "a plan shows the requests it will send"
        assert Plan.model_validate_json(first.model_dump_json()) == first

    def test_stage_is_content_addressed(self, harness: ConformanceHarness, tmp_path: Path) -> None:
        plan = self._plan(harness)
        first = self._staged(harness, plan)["train"]
        again = self._staged(harness, plan)["train"]
        assert again.uri == first.uri, "staging the same content twice must reuse the first upload"
        other = tmp_path / "other.jsonl"
        source = Path(harness.spec.resolve_location(harness.spec.dataset.train))
        # Still a valid dataset (its first example once more), for a provider that must
        # read it to stage it (a conversion to the service's own format).
        text = source.read_bytes()
        other.write_bytes(
            text + (b"" if text.endswith(b"\n") else b"\n") + text.splitlines()[0] + b"\n"
        )
        reports: list[tuple[int, int]] = []
        changed = harness.provider.stage(
            plan, "train", other, _sha256(other), lambda sent, total: reports.append((sent, total))
        )
        assert changed.uri != first.uri, "different content must not reuse an upload"
        size = other.stat().st_size
        if reports:  # progress is optional, but when reported it must add up
            sent = [done for done, _ in reports]
            assert sent == sorted(sent), "upload progress never goes backwards"
            assert reports[-1] == (size, size), "the last progress report is the whole file"

    def test_find_returns_the_submitted_job(self, harness: ConformanceHarness) -> None:
        plan = self._plan(harness)
        assert harness.provider.find(plan, f"conformance-none-{time.time_ns()}") is None
        job = self._submit(harness, plan, "find")
        found = harness.provider.find(plan, job.run_key)
        assert found is not None and found.id == job.id, (
            "find must reattach to the job of a run key"
        )

    def test_job_succeeds_with_each_event_once(self, harness: ConformanceHarness) -> None:
        plan = self._plan(harness)
        job = self._submit(harness, plan, "run")
        assert self._wait(harness, job) == JobState.SUCCEEDED
        seen: list[str] = []
        events = []
        cursor: str | None = None
        for _ in range(10_000):
            page = harness.provider.events(job, cursor)
            if not page.events:
                break
            seen.extend(e.id for e in page.events)
            events.extend(page.events)
            cursor = page.cursor
        assert len(seen) == len(set(seen)), "paging with the cursor must not repeat an event"
        assert not harness.provider.events(job, cursor).events, (
            "reading on from the last cursor gives nothing new"
        )
        states = [e.state for e in events if isinstance(e, StatusEvent)]
        assert states and states[-1] == JobState.SUCCEEDED
        steps = [e.step for e in events if isinstance(e, MetricEvent)]
        assert steps == sorted(steps), "metric events arrive in step order"
        artifacts = harness.provider.artifacts(job)
        assert artifacts and artifacts[0].kind in {"adapter", "merged_model", "hosted_model"}

    def test_cancel_stops_the_job(self, harness: ConformanceHarness) -> None:
        plan = self._plan(harness)
        job = self._submit(harness, plan, "cancel")
        harness.provider.cancel(job)
        assert self._wait(harness, job) == JobState.CANCELLED
        harness.provider.cancel(job)  # cancelling a finished job is a no-op

    def test_pause_and_resume(self, harness: ConformanceHarness) -> None:
        provider = harness.provider
        if not isinstance(provider, Pausable):
            pytest.skip(f"{provider.name} does not implement Pausable")
        plan = self._plan(harness)
        job = self._submit(harness, plan, "pause")
        deadline = time.monotonic() + harness.timeout
        while (state := provider.status(job).state) != JobState.RUNNING:
            assert not state.terminal, "the job finished before it could be paused"
            assert time.monotonic() < deadline, f"job {job.id} never started running"
            harness.advance(job)
            time.sleep(harness.poll_interval)
        provider.pause(job)
        assert provider.status(job).state == JobState.PAUSED
        provider.resume(job)
        assert self._wait(harness, job) == JobState.SUCCEEDED

    def test_serving(self, harness: ConformanceHarness) -> None:
        provider = harness.provider
        if not isinstance(provider, Serving):
            pytest.skip(f"{provider.name} does not implement Serving")
        if harness.cannot_serve is not None:
            pytest.skip(f"{provider.name}: {harness.cannot_serve}")
        plan = self._plan(harness)
        job = self._submit(harness, plan, "serve")
        assert self._wait(harness, job) == JobState.SUCCEEDED
        endpoint = provider.deploy(plan, provider.artifacts(job)[0], "conformance-endpoint")
        try:
            assert endpoint.provider == provider.name
            reply = provider.invoke(
                endpoint,
                ChatRequest(messages=[{"role": "user", "content": "Hello?"}], max_tokens=8),
            )
            assert isinstance(reply.text, str), "a served model answers a chat request"
        finally:
            provider.delete_endpoint(endpoint)
        provider.delete_endpoint(endpoint)  # deleting a missing endpoint is a no-op
