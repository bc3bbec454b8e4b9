"""The journal: what the engine has done and seen, in terms of runs, targets and resources.

Every method is one short transaction. Methods that change a target take the ``owner``
that holds its lease and raise :class:`~tunefleet.errors.LeaseLostError` if another process
has taken it over, in the same transaction as the change, so a stalled process can never
act on a target someone else is driving. Each change worth auditing appends its audit
entry in that same transaction.

Rows come back detached (``expire_on_commit=False``): read-only snapshots of the moment.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, Result, Select, and_, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tunefleet.errors import LeaseLostError, RunNotFoundError, StateError, UsageError
from tunefleet.events import Event as EventModel
from tunefleet.kit.processes import is_alive
from tunefleet.state import audit
from tunefleet.state.database import connect, display_url, resolve_state_url
from tunefleet.state.models import (
    Artifact,
    AuditEntry,
    Evaluation,
    Event,
    EventCursor,
    ModelVersion,
    Resource,
    Rollout,
    Run,
    RunTarget,
)

__all__ = [
    "LEASE_TTL",
    "MODEL_STAGES",
    "EventRecord",
    "Journal",
    "Owner",
    "TargetFacts",
    "metric_values",
    "open_journal",
]

LEASE_TTL = timedelta(seconds=60)
"""A lease whose holder has not renewed it for this long may be taken over."""

DONE = "done"
ROLLOUT_ENDS = ("completed", "rolled_back")
"""Phases a rollout ends in."""
MODEL_STAGES = ("candidate", "staging", "production", "archived")
"""A registered model's stages, in the order a model usually moves through them."""
_ROWS_PER_STATEMENT = 1000
"""Rows per multi-row INSERT: 5,000 bound values, well under SQLite's 32,766."""
_IDS_PER_STATEMENT = 500
"""Ids per ``IN (...)`` list, well under SQLite's bound-value limit."""
EVENT_PAGE = 1000
"""Events per page (and per short transaction) when events are streamed."""
_NOT_METRICS = frozenset({"id", "time", "kind"})
"""Payload keys of a metric event that are not measurements."""


def _now() -> datetime:
    return datetime.now(UTC)


def _inserted(result: Result[Any]) -> int:
    """1 if an ``INSERT ... ON CONFLICT DO NOTHING RETURNING 1`` inserted its row, else 0.

    (Not ``rowcount``: psycopg reports -1 for these statements.)"""
    return 0 if result.first() is None else 1


def _chunks(ids: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield list(ids[start : start + _IDS_PER_STATEMENT])


def metric_values(row: RunTarget) -> dict[str, float | int]:
    """The last known value of each measurement of a target (``step``, ``train_loss``,
    ``valid_loss``, ``train_token_accuracy`` ...): that of the newest metric event that has
    it, so a loss the newest event lacks still shows its previous value. Read from the
    target row, where :meth:`Journal.record_events` keeps it; NaN and infinities (stored as
    strings, see events.py) come back as floats."""
    values: dict[str, float | int] = {}
    for name, value in (row.last_metrics or {}).items():
        if isinstance(value, str):
            try:
                values[name] = float(value)  # "NaN", "Infinity", "-Infinity"
            except ValueError:
                continue
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = value
    return values


class EventRecord(NamedTuple):
    """A stored event without its ORM object: what a log line needs, cheap to stream."""

    seq: int
    time: datetime
    kind: str
    payload: dict[str, Any]


@dataclass
class TargetFacts:
    """What progress shows of a target beyond its row, read for many targets at once."""

    cost: Event | None = None
    """The newest cost event."""
    artifacts: list[Artifact] = field(default_factory=list)
    model: ModelVersion | None = None
    """The registered version of the target's model."""
    evaluation: Evaluation | None = None
    """The evaluation that gates the model: the registered version's, else the newest."""


@dataclass(frozen=True)
class Owner:
    """The process driving a target: host, pid and a token unique to this engine."""

    host: str
    pid: int
    token: str

    @classmethod
    def here(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str) -> Owner:
        host, pid, token = text.rsplit(":", 2)
        return cls(host, int(pid), token)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    def is_gone(self) -> bool:
        """True when this owner is a process on this host that no longer runs."""
        if self.host != socket.gethostname():
            return False  # cannot tell; its lease expires with its heartbeat
        return not is_alive(self.pid)


def open_journal(url: str | None = None) -> Journal:
    """The journal at ``url`` (else ``$TUNEFLEET_STATE``, else the default SQLite file),
    created or migrated as needed."""
    resolved = resolve_state_url(url)
    return Journal(connect(resolved), resolved)


class Journal:
    """Runs, targets, resources, events, artifacts and the audit log."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.url = url
        """The URL it was opened with; print :attr:`display_url`, never this."""
        self.actor = audit.current_actor()

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _insert(self, model: type[Any]) -> Any:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)

    def _audit(
        self,
        session: Session,
        action: str,
        run_id: str | None = None,
        target: str | None = None,
        **detail: Any,
    ) -> None:
        audit.append(session, action, actor=self.actor, run_id=run_id, target=target, detail=detail)

    # ------------------------------------------------------------------ runs

    def ensure_run(
        self,
        *,
        run_id: str,
        name: str,
        identity: str,
        spec: dict[str, Any],
        spec_source: str,
        datasets: dict[str, Any],
    ) -> tuple[Run, bool]:
        """The run with this id, created if new; True when this call created it."""
        with self._tx() as session:
            inserted = _inserted(
                session.execute(
                    self._insert(Run)
                    .values(
                        id=run_id,
                        name=name,
                        identity=identity,
                        spec=spec,
                        spec_source=spec_source,
                        datasets=datasets,
                        created_at=_now(),
                        created_by=self.actor,
                    )
                    .on_conflict_do_nothing()
                    .returning(literal_column("1"))
                )
            )
            if inserted:
                self._audit(session, "run.created", run_id, source=spec_source)
            run = session.get(Run, run_id)
            assert run is not None
            return run, bool(inserted)

    def run(self, ref: str) -> Run:
        """The run whose id is ``ref``, else the newest run named ``ref``, else the one run
        whose id starts with ``ref``."""
        with self._tx() as session:
            run = session.get(Run, ref)
            if run is not None:
                return run
            named = session.execute(
                select(Run).where(Run.name == ref).order_by(Run.created_at.desc()).limit(1)
            ).scalar_one_or_none()
            if named is not None:
                return named
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = select(Run).where(Run.id.like(f"{escaped}%", escape="\\")).limit(5)
            matches = session.execute(query).scalars().all()
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                ids = ", ".join(sorted(m.id for m in matches))
                raise RunNotFoundError(f"run {ref!r} is ambiguous: it matches {ids}")
        raise RunNotFoundError(
            f"no run {ref!r} in the journal at {self.display_url} (see `tunefleet runs`)"
        )

    def runs(self, limit: int = 50, *, before: str | None = None) -> list[Run]:
        """At most ``limit`` runs, newest first; with ``before`` (a run as :meth:`run`
        finds it), only runs older than that one: the next page after it.

        Keyset paging on (created_at, id), served by an index, so a page costs the same
        however many runs the journal holds. RunNotFoundError when ``before`` is unknown.
        """
        query = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
        if before is not None:
            last = self.run(before)
            query = query.where(
                or_(
                    Run.created_at < last.created_at,
                    and_(Run.created_at == last.created_at, Run.id < last.id),
                )
            )
        with self._tx() as session:
            return list(session.execute(query).scalars())

    # ------------------------------------------------------------------ targets

    def ensure_target(
        self,
        *,
        run_id: str,
        name: str,
        config_hash: str,
        run_key_for: Callable[[int], str],
        provider: str,
        region: str | None,
        plan: dict[str, Any],
        new_attempt: bool = False,
    ) -> tuple[RunTarget, bool]:
        """The target's current attempt, or a new attempt when the target's configuration
        changed or ``new_attempt`` asks for one. True when this call created it.

        Raises UsageError when a new attempt is needed while the current one is active.
        """
        with self._tx() as session:
            latest = session.execute(
                select(RunTarget)
                .where(RunTarget.run_id == run_id, RunTarget.name == name)
                .order_by(RunTarget.attempt.desc())
                .limit(1)
                .with_for_update()
            ).scalar_one_or_none()
            if latest is not None and latest.config_hash == config_hash and not new_attempt:
                return latest, False
            if latest is not None and latest.phase != DONE:
                why = "its configuration changed" if not new_attempt else "a new attempt"
                raise UsageError(
                    f"target {name!r} of run {run_id} is still active ({latest.phase}); "
                    f"cancel it or let it finish before starting {why}"
                )
            attempt = latest.attempt + 1 if latest is not None else 1
            run_key = run_key_for(attempt)
            now = _now()
            inserted = _inserted(
                session.execute(
                    self._insert(RunTarget)
                    .values(
                        run_id=run_id,
                        name=name,
                        attempt=attempt,
                        run_key=run_key,
                        config_hash=config_hash,
                        provider=provider,
                        region=region,
                        plan=plan,
                        phase="pending",
                        cancel_requested=False,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(literal_column("1"))
                )
            )
            if inserted:
                self._audit(
                    session,
                    "target.created",
                    run_id,
                    name,
                    provider=provider,
                    region=region,
                    attempt=attempt,
                    run_key=run_key,
                )
            target = session.execute(
                select(RunTarget).where(RunTarget.run_key == run_key)
            ).scalar_one()
            return target, bool(inserted)

    def targets(self, run_id: str, *, all_attempts: bool = False) -> list[RunTarget]:
        """The run's targets in creation order; only each one's latest attempt by default."""
        with self._tx() as session:
            rows = list(
                session.execute(
                    select(RunTarget).where(RunTarget.run_id == run_id).order_by(RunTarget.id)
                ).scalars()
            )
        if all_attempts:
            return rows
        latest: dict[str, RunTarget] = {}
        for row in rows:
            latest[row.name] = row
        return list(latest.values())

    def latest_targets(self, run_ids: Sequence[str]) -> dict[str, list[RunTarget]]:
        """Each run's targets as :meth:`targets` gives them (latest attempts, in creation
        order), for many runs in one query; every run id is a key."""
        found: dict[str, dict[str, RunTarget]] = {run_id: {} for run_id in run_ids}
        with self._tx() as session:
            for ids in _chunks(list(run_ids)):
                query = select(RunTarget).where(RunTarget.run_id.in_(ids)).order_by(RunTarget.id)
                for row in session.execute(query).scalars():
                    found[row.run_id][row.name] = row  # a later attempt replaces the earlier
        return {run_id: list(rows.values()) for run_id, rows in found.items()}

    def target(self, target_id: int) -> RunTarget:
        with self._tx() as session:
            row = session.get(RunTarget, target_id)
            if row is None:
                raise RunNotFoundError(f"no target with id {target_id}")
            return row

    # ------------------------------------------------------------------ leases

    def acquire(self, target_id: int, owner: Owner) -> bool:
        """Take (or renew) the lease on a target; False while a live process holds it."""
        with self._tx() as session:
            row = session.get(RunTarget, target_id, with_for_update=True)
            if row is None:
                raise RunNotFoundError(f"no target with id {target_id}")
            now = _now()
            me = str(owner)
            if row.owner not in (None, me):
                expired = row.heartbeat_at is None or now - row.heartbeat_at > LEASE_TTL
                if not expired and not Owner.parse(row.owner).is_gone():
                    return False
                self._audit(session, "target.taken_over", row.run_id, row.name, previous=row.owner)
            row.owner, row.heartbeat_at = me, now
            return True

    def heartbeat(self, owner: Owner) -> None:
        """Renew every lease ``owner`` holds."""
        with self._tx() as session:
            session.execute(
                update(RunTarget).where(RunTarget.owner == str(owner)).values(heartbeat_at=_now())
            )

    def release(self, target_id: int, owner: Owner) -> None:
        with self._tx() as session:
            session.execute(
                update(RunTarget)
                .where(RunTarget.id == target_id, RunTarget.owner == str(owner))
                .values(owner=None, heartbeat_at=None)
            )

    def _owned(self, session: Session, target_id: int, owner: Owner) -> RunTarget:
        row = session.get(RunTarget, target_id, with_for_update=True)
        if row is None or row.owner != str(owner):
            name = row.name if row is not None else target_id
            raise LeaseLostError(f"another process took over target {name}")
        now = _now()
        row.heartbeat_at = row.updated_at = now
        return row

    # ------------------------------------------------------------------ changes

    def update_target(
        self,
        target_id: int,
        owner: Owner,
        *,
        audit_action: str | None = None,
        audit_detail: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> RunTarget:
        """Set ``fields`` on a target this owner drives, auditing the change if named."""
        with self._tx() as session:
            row = self._owned(session, target_id, owner)
            for key, value in fields.items():
                if not hasattr(RunTarget, key):
                    raise AttributeError(key)
                setattr(row, key, value)
            if audit_action:
                self._audit(session, audit_action, row.run_id, row.name, **(audit_detail or {}))
            return row

    def record(self, action: str, run_id: str, target: str | None = None, **detail: Any) -> None:
        """Append an audit entry for an action taken at a provider outside a target's lease
        (a job paused or resumed while another process drives it)."""
        with self._tx() as session:
            self._audit(session, action, run_id, target, **detail)

    def request_cancel(self, target_id: int) -> RunTarget:
        """Mark a target for cancelling; whoever drives it stops it at its next step."""
        with self._tx() as session:
            row = session.get(RunTarget, target_id, with_for_update=True)
            if row is None:
                raise RunNotFoundError(f"no target with id {target_id}")
            if not row.cancel_requested and row.phase != DONE:
                row.cancel_requested = True
                row.updated_at = _now()
                self._audit(session, "target.cancel_requested", row.run_id, row.name)
            return row

    # ------------------------------------------------------------------ resources

    def intend(
        self,
        target_id: int,
        owner: Owner,
        *,
        kind: str,
        key: str,
        provider: str,
        detail: Mapping[str, Any] | None = None,
    ) -> Resource:
        """Record that a resource is about to be created, before the create call.

        Returns the existing record when there is one (confirmed, or an intent a crashed
        process left), so the caller can reconcile it with the provider instead of
        creating the resource again.
        """
        with self._tx() as session:
            row = self._owned(session, target_id, owner)
            existing = session.execute(
                select(Resource).where(
                    Resource.run_target_id == target_id, Resource.kind == kind, Resource.key == key
                )
            ).scalar_one_or_none()
            if existing is not None and existing.status != "deleted":
                return existing
            if existing is not None:  # created again after a deletion: a new intent
                existing.status, existing.confirmed_at = "intent", None
                existing.detail = dict(detail or {})
                self._audit(
                    session,
                    "resource.intent",
                    row.run_id,
                    row.name,
                    kind=kind,
                    key=key,
                    **(detail or {}),
                )
                return existing
            resource = Resource(
                run_target_id=target_id,
                kind=kind,
                key=key,
                status="intent",
                provider=provider,
                detail=dict(detail or {}),
                created_at=_now(),
            )
            session.add(resource)
            self._audit(
                session,
                "resource.intent",
                row.run_id,
                row.name,
                kind=kind,
                key=key,
                **(detail or {}),
            )
            return resource

    def confirm(
        self,
        resource_id: int,
        owner: Owner,
        *,
        native_id: str | None,
        uri: str | None,
        detail: Mapping[str, Any] | None = None,
        how: str = "created",
    ) -> Resource:
        """Record that the resource exists (``how``: created, or found after a crash)."""
        with self._tx() as session:
            resource = session.get(Resource, resource_id, with_for_update=True)
            assert resource is not None
            row = self._owned(session, resource.run_target_id, owner)
            resource.status = "confirmed"
            resource.native_id, resource.uri = native_id, uri
            resource.detail = {**resource.detail, **(detail or {})}
            resource.confirmed_at = _now()
            self._audit(
                session,
                "resource.confirmed",
                row.run_id,
                row.name,
                kind=resource.kind,
                key=resource.key,
                native_id=native_id,
                how=how,
            )
            return resource

    def mark_deleted(self, resource_id: int, owner: Owner) -> Resource:
        """Record that the provider deleted the resource."""
        with self._tx() as session:
            resource = session.get(Resource, resource_id, with_for_update=True)
            assert resource is not None
            row = self._owned(session, resource.run_target_id, owner)
            resource.status = "deleted"
            self._audit(
                session,
                "resource.deleted",
                row.run_id,
                row.name,
                kind=resource.kind,
                key=resource.key,
                native_id=resource.native_id,
            )
            return resource

    def supersede(self, resource_id: int, by: str) -> Resource:
        """Record that another target's deployment replaced this endpoint's model (no lease
        needed: the target whose resource it is has finished)."""
        with self._tx() as session:
            resource = session.get(Resource, resource_id, with_for_update=True)
            assert resource is not None
            row = session.get(RunTarget, resource.run_target_id)
            assert row is not None
            if resource.status != "deleted":
                resource.status = "deleted"
                self._audit(
                    session,
                    "resource.superseded",
                    row.run_id,
                    row.name,
                    kind=resource.kind,
                    key=resource.key,
                    by=by,
                )
            return resource

    def endpoints_named(self, name: str) -> list[tuple[Resource, RunTarget]]:
        """Endpoint resources called ``name`` (intended or confirmed), across runs, newest
        first, each with its target."""
        with self._tx() as session:
            query = (
                select(Resource, RunTarget)
                .join(RunTarget, Resource.run_target_id == RunTarget.id)
                .where(
                    Resource.kind == "endpoint", Resource.key == name, Resource.status != "deleted"
                )
                .order_by(Resource.id.desc())
            )
            return [(resource, row) for resource, row in session.execute(query).all()]

    def resources(self, target_id: int, kind: str | None = None) -> list[Resource]:
        with self._tx() as session:
            query = select(Resource).where(Resource.run_target_id == target_id)
            if kind is not None:
                query = query.where(Resource.kind == kind)
            return list(session.execute(query.order_by(Resource.id)).scalars())

    # ------------------------------------------------------------------ events

    def cursor(self, target_id: int, source: str = "events") -> str | None:
        with self._tx() as session:
            row = session.get(EventCursor, (target_id, source))
            return row.cursor if row is not None else None

    def record_events(
        self,
        target_id: int,
        owner: Owner,
        events: Sequence[EventModel],
        cursor: str | None,
        source: str = "events",
    ) -> int:
        """Store a page of events and the cursor after it, atomically; returns how many
        were new. An event already stored (same id) is skipped, never stored twice.

        In the same transaction it keeps the target's ``event_count`` and
        ``last_metrics`` (the newest value of each measurement) up to date, folding in the
        new events in the order they are stored, so reads of either cost one row whatever
        the size of the run.
        """
        with self._tx() as session:
            row = self._owned(session, target_id, owner)
            rows = [
                {
                    "run_target_id": target_id,
                    "event_id": event.id,
                    "kind": event.kind,
                    "time": event.time,
                    # Through JSON text so NaN losses become "NaN" (see events.py).
                    "payload": json.loads(event.model_dump_json()),
                }
                for event in events
            ]
            new_ids: set[str] = set()
            # One multi-row statement per page: RETURNING names the rows that were new.
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                statement = (
                    self._insert(Event)
                    .values(rows[start : start + _ROWS_PER_STATEMENT])
                    .on_conflict_do_nothing()
                    .returning(Event.event_id)
                )
                new_ids.update(session.execute(statement).scalars())
            added = len(new_ids)
            if added:
                row.event_count += added  # the row is locked: no lost update
                metrics = dict(row.last_metrics or {})
                for event, stored in zip(events, rows, strict=True):
                    # RETURNING order is unspecified: fold in page (= seq) order, and an id
                    # repeated within the page once, as it was stored once.
                    if event.id not in new_ids:
                        continue
                    new_ids.discard(event.id)
                    if event.kind == "metric":
                        payload = stored["payload"]
                        metrics.update(
                            (k, v)
                            for k, v in payload.items()
                            if k not in _NOT_METRICS and v is not None
                        )
                        row.last_metrics = metrics
            session.merge(
                EventCursor(
                    run_target_id=target_id, source=source, cursor=cursor, updated_at=_now()
                )
            )
            return added

    def events(
        self,
        target_id: int,
        *,
        after_seq: int = 0,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Stored events of a target in the order they were recorded."""
        with self._tx() as session:
            query = select(Event).where(Event.run_target_id == target_id, Event.seq > after_seq)
            if kinds is not None:
                query = query.where(Event.kind.in_(list(kinds)))
            query = query.order_by(Event.seq)
            if limit is not None:
                query = query.limit(limit)
            return list(session.execute(query).scalars())

    def iter_events(
        self,
        target_id: int,
        *,
        after_seq: int = 0,
        since: datetime | None = None,
        page: int = EVENT_PAGE,
    ) -> Iterator[EventRecord]:
        """Stored events of a target after ``after_seq`` (and, with ``since``, whose time
        is at or after it), oldest first, streamed.

        Pages of ``page`` events by keyset on seq, each read in its own short transaction:
        memory stays flat however many events there are, and a reader that prints slowly
        never holds the database (SQLite's write lock included) while it prints. Events
        stored while it streams are included when they come after the page being read.
        """
        if page < 1:
            raise ValueError(f"page must be 1 or more, not {page}")
        last = after_seq
        while True:
            query = self._event_records(target_id, since).where(Event.seq > last)
            with self._tx() as session:
                batch = [EventRecord(*r) for r in session.execute(query.limit(page))]
            yield from batch
            if len(batch) < page:
                return
            last = batch[-1].seq

    def tail_events(
        self, target_id: int, count: int, *, since: datetime | None = None
    ) -> list[EventRecord]:
        """The last ``count`` stored events of a target (of those at or after ``since``),
        oldest first: a backwards index scan of ``count`` rows, whatever the run's size."""
        query = self._event_records(target_id, since).order_by(None).order_by(Event.seq.desc())
        with self._tx() as session:
            found = [EventRecord(*r) for r in session.execute(query.limit(count))]
        found.reverse()
        return found

    def last_seq(self, target_id: int) -> int:
        """The seq of the target's newest stored event, 0 when it has none (one probe)."""
        query = (
            select(Event.seq)
            .where(Event.run_target_id == target_id)
            .order_by(Event.seq.desc())
            .limit(1)
        )
        with self._tx() as session:
            return session.execute(query).scalar() or 0

    @staticmethod
    def _event_records(
        target_id: int, since: datetime | None
    ) -> Select[tuple[int, datetime, str, dict[str, Any]]]:
        # Columns, not ORM objects: a log line needs four fields, and streaming 200k
        # events through the identity map is what made `logs` slow and large.
        query = (
            select(Event.seq, Event.time, Event.kind, Event.payload)
            .where(Event.run_target_id == target_id)
            .order_by(Event.seq)
        )
        return query if since is None else query.where(Event.time >= since)

    def latest_event(self, target_id: int, kind: str) -> Event | None:
        """The target's newest event of ``kind``: one probe of the (target, kind, seq)
        index, however many events of other kinds it has."""
        return self.latest_events([target_id], kind).get(target_id)

    def latest_events(self, target_ids: Sequence[int], kind: str) -> dict[int, Event]:
        """The newest event of ``kind`` of each target that has one, one index probe per
        target, in two statements for all of them."""
        newest = (
            select(Event.seq)
            .where(Event.run_target_id == RunTarget.id, Event.kind == kind)
            .order_by(Event.seq.desc())
            .limit(1)
            .correlate(RunTarget)
            .scalar_subquery()
        )
        found: dict[int, Event] = {}
        with self._tx() as session:
            for ids in _chunks(list(target_ids)):
                seqs = session.execute(select(newest).where(RunTarget.id.in_(ids))).scalars()
                wanted = [seq for seq in seqs if seq is not None]
                if wanted:
                    query = select(Event).where(Event.seq.in_(wanted))
                    found.update((e.run_target_id, e) for e in session.execute(query).scalars())
        return found

    def event_count(self, target_id: int) -> int:
        """How many events are stored for the target (kept on its row: no count)."""
        return self.target(target_id).event_count

    def latest_metric_values(self, target_id: int) -> dict[str, float | int]:
        """The last known value of each measurement of the target (``step``,
        ``total_steps``, ``train_loss``, ``valid_loss``, ``train_token_accuracy`` ...):
        each from the newest metric event that has it, so a loss the newest metric event
        lacks (one that reports only ``valid_loss``, say) keeps its previous value; empty
        before the first metric. One row read, whatever the run's size (see
        :func:`metric_values`)."""
        return metric_values(self.target(target_id))

    def target_facts(self, target_ids: Sequence[int]) -> dict[int, TargetFacts]:
        """The newest cost event, artifacts, registered model and gating evaluation of
        each target, in a fixed number of statements however many targets are asked for
        (a page of `tunefleet runs` must not cost a query per target). Every id is a key."""
        facts = {target_id: TargetFacts() for target_id in target_ids}
        for target_id, event in self.latest_events(list(target_ids), "cost").items():
            facts[target_id].cost = event
        with self._tx() as session:
            for ids in _chunks(list(target_ids)):
                artifacts = select(Artifact).where(Artifact.run_target_id.in_(ids))
                for artifact in session.execute(artifacts.order_by(Artifact.id)).scalars():
                    facts[artifact.run_target_id].artifacts.append(artifact)
                versions = select(ModelVersion).where(ModelVersion.run_target_id.in_(ids))
                for version in session.execute(versions).scalars():
                    facts[version.run_target_id].model = version
                # The version's evaluation where it points at one, else the newest.
                gating = [
                    f.model.evaluation_id
                    for f in (facts[i] for i in ids)
                    if f.model is not None and f.model.evaluation_id is not None
                ]
                newest = (
                    select(func.max(Evaluation.id))
                    .where(Evaluation.run_target_id.in_(ids))
                    .group_by(Evaluation.run_target_id)
                )
                evaluations = select(Evaluation).where(
                    or_(Evaluation.id.in_(newest), Evaluation.id.in_(gating))
                )
                for evaluation in session.execute(evaluations.order_by(Evaluation.id)).scalars():
                    fact = facts[evaluation.run_target_id]
                    pinned = fact.model.evaluation_id if fact.model is not None else None
                    if pinned is None or evaluation.id == pinned:
                        fact.evaluation = evaluation
        return facts

    # ------------------------------------------------------------------ artifacts

    def add_artifacts(
        self, target_id: int, owner: Owner, artifacts: Sequence[tuple[str, str]]
    ) -> None:
        """Record ``(kind, uri)`` pairs a job produced; recording one twice is a no-op."""
        with self._tx() as session:
            row = self._owned(session, target_id, owner)
            for kind, uri in artifacts:
                session.execute(
                    self._insert(Artifact)
                    .values(run_target_id=target_id, kind=kind, uri=uri, recorded_at=_now())
                    .on_conflict_do_nothing()
                )
            self._audit(
                session,
                "artifacts.recorded",
                row.run_id,
                row.name,
                artifacts=[{"kind": k, "uri": u} for k, u in artifacts],
            )

    def artifacts(self, target_id: int) -> list[Artifact]:
        with self._tx() as session:
            query = select(Artifact).where(Artifact.run_target_id == target_id)
            return list(session.execute(query.order_by(Artifact.id)).scalars())

    # ------------------------------------------------------------------ evaluations

    def add_evaluation(
        self,
        target_id: int,
        *,
        golden_sha256: str,
        golden_location: str,
        settings: Mapping[str, Any],
        result: Mapping[str, Any],
        passed: bool,
        trigger: str,
        failures: Sequence[str] = (),
    ) -> Evaluation:
        """Record an evaluation of the target's model and make it the one that decides
        whether the model may be deployed (the registered version points at it)."""
        with self._tx() as session:
            row = session.get(RunTarget, target_id)
            if row is None:
                raise RunNotFoundError(f"no target with id {target_id}")
            evaluation = Evaluation(
                run_target_id=target_id,
                golden_sha256=golden_sha256,
                golden_location=golden_location,
                settings=dict(settings),
                result=dict(result),
                passed=passed,
                trigger=trigger,
                created_at=_now(),
                created_by=self.actor,
            )
            session.add(evaluation)
            session.flush()
            version = session.execute(
                select(ModelVersion).where(ModelVersion.run_target_id == target_id)
            ).scalar_one_or_none()
            if version is not None:
                version.evaluation_id = evaluation.id
                version.updated_at = _now()
            self._audit(
                session,
                "evaluation.recorded",
                row.run_id,
                row.name,
                evaluation=evaluation.id,
                passed=passed,
                golden_sha256=golden_sha256,
                trigger=trigger,
                failures=list(failures),
            )
            return evaluation

    def evaluations(self, target_id: int) -> list[Evaluation]:
        """The target's evaluations, oldest first."""
        with self._tx() as session:
            query = select(Evaluation).where(Evaluation.run_target_id == target_id)
            return list(session.execute(query.order_by(Evaluation.id)).scalars())

    def evaluation(self, evaluation_id: int) -> Evaluation:
        with self._tx() as session:
            found = session.get(Evaluation, evaluation_id)
            if found is None:
                raise RunNotFoundError(f"no evaluation with id {evaluation_id}")
            return found

    # ------------------------------------------------------------------ model registry

    def register_model(self, target_id: int, **fields: Any) -> tuple[ModelVersion, bool]:
        """The model version of the target, registered now as the next version of its
        name if it was not yet; True when this call registered it.

        ``fields`` are ModelVersion's columns other than the version, the target, the stage
        and the times. Idempotent: a target has one version, whoever asks twice.
        """
        for _ in range(5):  # two processes numbering versions of one name at once
            try:
                return self._register_model(target_id, fields)
            except IntegrityError:
                continue
        raise UsageError(f"could not number a version of model {fields.get('name')!r}")

    def _register_model(
        self, target_id: int, fields: Mapping[str, Any]
    ) -> tuple[ModelVersion, bool]:
        with self._tx() as session:
            found = session.execute(
                select(ModelVersion).where(ModelVersion.run_target_id == target_id)
            ).scalar_one_or_none()
            if found is not None:
                return found, False
            row = session.get(RunTarget, target_id)
            if row is None:
                raise RunNotFoundError(f"no target with id {target_id}")
            newest = session.execute(
                select(func.max(ModelVersion.version)).where(ModelVersion.name == fields["name"])
            ).scalar()
            latest = session.execute(
                select(Evaluation.id)
                .where(Evaluation.run_target_id == target_id)
                .order_by(Evaluation.id.desc())
                .limit(1)
            ).scalar()
            now = _now()
            version = ModelVersion(
                **fields,
                version=(newest or 0) + 1,
                run_id=row.run_id,
                run_target_id=target_id,
                target=row.name,
                provider=row.provider,
                evaluation_id=latest,
                stage="candidate",
                created_at=now,
                updated_at=now,
            )
            session.add(version)
            session.flush()
            self._audit(
                session,
                "model.registered",
                row.run_id,
                row.name,
                model=version.name,
                version=version.version,
                artifact=version.artifact,
            )
            return version, True

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Registered versions (of ``name``), newest first."""
        with self._tx() as session:
            query = select(ModelVersion)
            if name is not None:
                query = query.where(ModelVersion.name == name)
            query = query.order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
            return list(session.execute(query).scalars())

    def model_version(
        self, *, name: str | None = None, version: int | None = None, target_id: int | None = None
    ) -> ModelVersion | None:
        """A version by name and number (the newest of ``name`` without a number), or the
        version of a target; None when there is none."""
        with self._tx() as session:
            query = select(ModelVersion)
            if target_id is not None:
                query = query.where(ModelVersion.run_target_id == target_id)
            if name is not None:
                query = query.where(ModelVersion.name == name)
            if version is not None:
                query = query.where(ModelVersion.version == version)
            query = query.order_by(ModelVersion.version.desc()).limit(1)
            return session.execute(query).scalar_one_or_none()

    def set_model_stage(
        self, version_id: int, stage: str, *, reason: str | None = None
    ) -> list[ModelVersion]:
        """Move a version to ``stage``; a version promoted to production archives the
        name's production version before it. Returns the versions changed, audited each
        with the actor and ``reason``."""
        if stage not in MODEL_STAGES:
            raise UsageError(f"stage must be one of {', '.join(MODEL_STAGES)}, not {stage!r}")
        with self._tx() as session:
            version = session.get(ModelVersion, version_id, with_for_update=True)
            if version is None:
                raise RunNotFoundError(f"no model version with id {version_id}")
            changed = []
            moves = [(version, stage)]
            if stage == "production":
                current = session.execute(
                    select(ModelVersion).where(
                        ModelVersion.name == version.name,
                        ModelVersion.stage == "production",
                        ModelVersion.id != version.id,
                    )
                ).scalars()
                moves += [(old, "archived") for old in current]
            for row, to in moves:
                if row.stage == to:
                    continue
                self._audit(
                    session,
                    "model.stage",
                    row.run_id,
                    row.target,
                    model=row.name,
                    version=row.version,
                    **{"from": row.stage, "to": to},
                    reason=reason,
                )
                row.stage = to
                row.updated_at = _now()
                changed.append(row)
            return changed

    # ------------------------------------------------------------------ rollouts

    def start_rollout(self, **fields: Any) -> tuple[Rollout, bool]:
        """The open rollout of ``fields['to_version_id']`` to ``fields['endpoint']``, or a
        new one in phase ``adding``; True when this call started it (audited). StateError
        when another version's rollout to the endpoint is under way (one at a time, by a
        unique index, so two racing deploys cannot both start one)."""
        try:
            return self._start_rollout(fields)
        except IntegrityError:
            raise StateError(
                f"another rollout to endpoint {fields['endpoint']} is under way; deploy its "
                "model again to finish it first"
            ) from None

    def _start_rollout(self, fields: Mapping[str, Any]) -> tuple[Rollout, bool]:
        with self._tx() as session:
            found = session.execute(
                select(Rollout).where(
                    Rollout.endpoint == fields["endpoint"],
                    Rollout.to_version_id == fields["to_version_id"],
                    Rollout.phase.not_in(ROLLOUT_ENDS),
                )
            ).scalar_one_or_none()
            if found is not None:
                return found, False
            now = _now()
            rollout = Rollout(
                **fields,
                phase="adding",
                comparison={},
                created_at=now,
                updated_at=now,
                created_by=self.actor,
            )
            session.add(rollout)
            session.flush()
            row = session.get(RunTarget, rollout.to_target_id)
            assert row is not None
            self._audit(
                session,
                "rollout.started",
                row.run_id,
                row.name,
                rollout=rollout.id,
                endpoint=rollout.endpoint,
                from_label=rollout.from_label,
                to_label=rollout.to_label,
                traffic_percent=rollout.traffic_percent,
            )
            return rollout, True

    def open_rollout(self, endpoint: str) -> Rollout | None:
        """The rollout to ``endpoint`` that has not ended, if any."""
        with self._tx() as session:
            return session.execute(
                select(Rollout)
                .where(Rollout.endpoint == endpoint, Rollout.phase.not_in(ROLLOUT_ENDS))
                .order_by(Rollout.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def update_rollout(
        self,
        rollout_id: int,
        owner: Owner,
        *,
        audit_action: str | None = None,
        audit_detail: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Rollout:
        """Set ``fields`` on a rollout whose target this owner holds, auditing if named."""
        with self._tx() as session:
            rollout = session.get(Rollout, rollout_id, with_for_update=True)
            if rollout is None:
                raise RunNotFoundError(f"no rollout with id {rollout_id}")
            row = self._owned(session, rollout.to_target_id, owner)
            for key, value in fields.items():
                if not hasattr(Rollout, key):
                    raise AttributeError(key)
                setattr(rollout, key, value)
            rollout.updated_at = _now()
            if audit_action:
                self._audit(
                    session,
                    audit_action,
                    row.run_id,
                    row.name,
                    rollout=rollout.id,
                    endpoint=rollout.endpoint,
                    **(audit_detail or {}),
                )
            return rollout

    def rollouts(self, endpoint: str | None = None) -> list[Rollout]:
        """Rollouts (to ``endpoint``), newest first."""
        with self._tx() as session:
            query = select(Rollout)
            if endpoint is not None:
                query = query.where(Rollout.endpoint == endpoint)
            return list(session.execute(query.order_by(Rollout.id.desc())).scalars())

    # ------------------------------------------------------------------ audit

    def audit_entries(
        self, run_id: str | None = None, limit: int | None = None
    ) -> list[AuditEntry]:
        with self._tx() as session:
            query = select(AuditEntry)
            if run_id is not None:
                query = query.where(AuditEntry.run_id == run_id)
            query = query.order_by(AuditEntry.seq)
            if limit is not None:
                query = query.limit(limit)
            return list(session.execute(query).scalars())

    def verify_audit(self) -> audit.AuditVerification:
        with self._tx() as session:
            return audit.verify(session)
