"""The journal's tables, as SQLAlchemy models shared by SQLite and PostgreSQL.

The schema changes only through Alembic migrations (``tunefleet/state/migrations``); a test
compares these models with the migrated database, so the two cannot drift.

* ``runs``: one per run identity (the spec without its targets, plus dataset hashes).
* ``run_targets``: one per target attempt; it carries the run key, the plan, where the
  engine is (``phase``), the job's state and the lease of the process driving it.
* ``resources``: every cloud resource, written as an intent before the create call and
  confirmed after it.
* ``events`` and ``event_cursors``: the normalized event stream and where each source was
  read up to, written in one transaction so a stream is stored exactly once.
* ``artifacts``: what a finished job produced.
* ``evaluations``: a trained model's answers to a golden set, scored against the spec's
  thresholds; the newest decides whether the model may be deployed.
* ``model_versions``: the model registry: every trained model, by name and version, with
  what it was trained from and its stage (candidate, staging, production, archived).
* ``rollouts``: a new model version rolled out to an endpoint as a canary: its phase,
  the shadow comparison with the version it replaces, and how it ended.
* ``audit_log`` and ``audit_head``: the append-only, hash-chained audit log.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Artifact",
    "AuditEntry",
    "AuditHead",
    "Base",
    "Evaluation",
    "Event",
    "EventCursor",
    "ModelVersion",
    "Resource",
    "Rollout",
    "Run",
    "RunTarget",
    "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the journal stores timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_created_at", "created_at"),)  # `runs` pages newest first

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the canonical spec without its targets, and the datasets' content hashes."""
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_source: Mapped[str] = mapped_column(Text)
    datasets: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Role -> {path, sha256, size_bytes, examples, billable_tokens}."""
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))


class RunTarget(Base):
    __tablename__ = "run_targets"
    __table_args__ = (UniqueConstraint("run_id", "name", "attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    run_key: Mapped[str] = mapped_column(String(64), unique=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the target's spec: a changed target is a new attempt, not the same job."""
    provider: Mapped[str] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, staging, submitting, queued, watching, collecting, evaluating, done, error."""
    state: Mapped[str | None] = mapped_column(String(16))
    """The job's JobState once submitted; `cancelled` also for targets cancelled before."""
    message: Mapped[str | None] = mapped_column(Text)
    """The provider's last word on the job, the queue reason, or the step's error."""
    job: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    trained_tokens: Mapped[int | None] = mapped_column(Integer)
    billable_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    owner: Mapped[str | None] = mapped_column(String(256))
    """The process driving this target: `host:pid:token`."""
    heartbeat_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    """When the target last entered the queue (a provider at its limit), for the queue's
    time limit; None when it is not queued."""
    event_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many events are stored for it, kept with each page stored (counting the events
    at every refresh of a live view would grow with the run)."""
    last_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The last known value of each measurement (``train_loss``, ``valid_loss``, ``step``
    ...): that of the newest metric event that has it, kept with each page stored. Values
    as stored in event payloads (NaN as the string ``"NaN"``); read them through
    :meth:`~tunefleet.state.Journal.latest_metric_values` or
    :func:`~tunefleet.state.journal.metric_values`."""


class Resource(Base):
    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("run_target_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """dataset, job, model, endpoint."""
    key: Mapped[str] = mapped_column(String(160))
    """What makes it this resource: `train:<sha256>`, the run key, an endpoint name."""
    status: Mapped[str] = mapped_column(String(16))
    """intent (about to be created), confirmed (exists), deleted."""
    provider: Mapped[str] = mapped_column(String(64))
    native_id: Mapped[str | None] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("run_target_id", "event_id"),
        Index("ix_events_target_seq", "run_target_id", "seq"),
        # The newest event of one kind (a live view's cost) is one probe of this index.
        Index("ix_events_target_kind_seq", "run_target_id", "kind", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"))
    event_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventCursor(Base):
    __tablename__ = "event_cursors"

    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_target_id", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    uri: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime]


class Evaluation(Base):
    """One scoring of a target's model on a golden set."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), index=True)
    golden_sha256: Mapped[str] = mapped_column(String(64))
    golden_location: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The evaluation spec it ran with (metrics, thresholds, judge) and the generation
    settings, so two scores can be told comparable or not."""
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The scores, slices, threshold misses and per-example answers."""
    passed: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[str] = mapped_column(String(16))
    """``run`` (right after training) or ``eval`` (`tunefleet eval`)."""
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))


class ModelVersion(Base):
    """A registered model: one per succeeded target attempt."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    run_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The servable artifact: {kind, uri}."""
    base_model: Mapped[str] = mapped_column(Text)
    training: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Method, adapter and hyperparameters as the spec set them, and the epochs run."""
    datasets: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Role -> {sha256, examples}."""
    spec_sha256: Mapped[str] = mapped_column(String(64))
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"))
    """The evaluation that decides whether it may be deployed (the newest)."""
    stage: Mapped[str] = mapped_column(String(16))
    """candidate, staging, production, archived."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Rollout(Base):
    """A canary rollout of a registered version to an endpoint serving another one."""

    __tablename__ = "rollouts"
    __table_args__ = (
        # One rollout under way per endpoint: two deploys racing to roll out two versions
        # cannot both start one (the loser's insert fails, in the same transaction).
        Index(
            "uq_rollouts_one_open_per_endpoint",
            "endpoint",
            unique=True,
            sqlite_where=text("phase NOT IN ('completed', 'rolled_back')"),
            postgresql_where=text("phase NOT IN ('completed', 'rolled_back')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(80), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    from_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"))
    to_target_id: Mapped[int] = mapped_column(ForeignKey("run_targets.id"), index=True)
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    to_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    from_label: Mapped[str] = mapped_column(String(64))
    """The endpoint's name for the version it served (the provider's version label)."""
    to_label: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(16))
    """adding, canary, baking, completing, rolling_back; then completed or rolled_back."""
    traffic_percent: Mapped[int] = mapped_column(Integer)
    bake_until: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    """Why it ended as it did (the regression or alarm that rolled it back)."""
    comparison: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The shadow comparison: both versions' scores on the golden sample."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))


class AuditEntry(Base):
    """One audited action. ``hash`` = sha256(prev_hash + canonical JSON of the fields)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    """ISO 8601 UTC, kept as text so the hashed bytes are exactly what is stored."""
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(80), index=True)
    target: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    """Canonical JSON (sorted keys, no spaces)."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's newest entry. Its row lock serializes appends; a cut tail shows here."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
