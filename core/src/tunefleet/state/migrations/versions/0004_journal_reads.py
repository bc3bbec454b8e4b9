"""journal reads that stay flat as runs grow: events by (target, kind, seq), runs by
created_at, and each target's event count and last known metric values kept on its row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NOT_METRICS = ("id", "time", "kind")
"""Payload keys of a metric event that are not measurements (as in Journal.record_events)."""


def upgrade() -> None:
    # "The latest event of kind K of target T" (the cost and metric a live view shows) is
    # one index probe, not a walk over every event of the target.
    op.create_index("ix_events_target_kind_seq", "events", ["run_target_id", "kind", "seq"])
    # `tunefleet runs` pages newest first.
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    with op.batch_alter_table("run_targets") as batch:
        batch.add_column(sa.Column("event_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_metrics", sa.JSON(), nullable=True))
    _backfill()


def _backfill() -> None:
    """Count each target's stored events and fold its metric events, oldest first, into
    the last known value of each measurement: once, here, instead of at every read."""
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("seq", sa.Integer()),
        sa.column("run_target_id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("payload", sa.JSON()),
    )
    targets = sa.table(
        "run_targets",
        sa.column("id", sa.Integer()),
        sa.column("event_count", sa.Integer()),
        sa.column("last_metrics", sa.JSON()),
    )
    counted = (
        sa.select(sa.func.count())
        .select_from(events)
        .where(events.c.run_target_id == targets.c.id)
        .scalar_subquery()
    )
    bind.execute(sa.update(targets).values(event_count=counted))
    folded: dict[int, dict[str, Any]] = {}
    metrics = (
        sa.select(events.c.run_target_id, events.c.payload)
        .where(events.c.kind == "metric")
        .order_by(events.c.run_target_id, events.c.seq)
        .execution_options(yield_per=1000)  # a journal of millions of events, streamed
    )
    for target_id, payload in bind.execute(metrics):
        values = folded.setdefault(target_id, {})
        values.update(
            (key, value)
            for key, value in payload.items()
            if key not in _NOT_METRICS and value is not None
        )
    for target_id, values in folded.items():
        bind.execute(
            sa.update(targets).where(targets.c.id == target_id).values(last_metrics=values)
        )


def downgrade() -> None:
    with op.batch_alter_table("run_targets") as batch:
        batch.drop_column("last_metrics")
        batch.drop_column("event_count")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_events_target_kind_seq", table_name="events")
