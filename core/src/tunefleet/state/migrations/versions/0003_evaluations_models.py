"""evaluations, model_versions and rollouts: evaluation results, the model registry and
canary rollouts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_target_id", sa.Integer(), sa.ForeignKey("run_targets.id"), nullable=False),
        sa.Column("golden_sha256", sa.String(64), nullable=False),
        sa.Column("golden_location", sa.Text(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
    )
    op.create_index("ix_evaluations_run_target_id", "evaluations", ["run_target_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(80), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column(
            "run_target_id",
            sa.Integer(),
            sa.ForeignKey("run_targets.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("artifact", sa.JSON(), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("spec_sha256", sa.String(64), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), sa.ForeignKey("evaluations.id"), nullable=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("name", "version"),
    )
    op.create_index("ix_model_versions_name", "model_versions", ["name"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(80), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("from_target_id", sa.Integer(), sa.ForeignKey("run_targets.id"), nullable=False),
        sa.Column("to_target_id", sa.Integer(), sa.ForeignKey("run_targets.id"), nullable=False),
        sa.Column(
            "from_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=True
        ),
        sa.Column(
            "to_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False
        ),
        sa.Column("from_label", sa.String(64), nullable=False),
        sa.Column("to_label", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("traffic_percent", sa.Integer(), nullable=False),
        sa.Column("bake_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("comparison", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
    )
    op.create_index("ix_rollouts_endpoint", "rollouts", ["endpoint"])
    op.create_index(
        "uq_rollouts_one_open_per_endpoint",
        "rollouts",
        ["endpoint"],
        unique=True,
        sqlite_where=sa.text("phase NOT IN ('completed', 'rolled_back')"),
        postgresql_where=sa.text("phase NOT IN ('completed', 'rolled_back')"),
    )
    op.create_index("ix_rollouts_to_target_id", "rollouts", ["to_target_id"])


def downgrade() -> None:
    op.drop_table("rollouts")
    op.drop_table("model_versions")
    op.drop_table("evaluations")
