"""Toolchain registry and canary rollouts: toolchains, rollouts, rollout_decisions.

Revision ID: 0003_rollout
Revises: 0002_api
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003_rollout"
down_revision: str | None = "0002_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "toolchains",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("release", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("encoders", sa.JSON(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("stable", sa.Boolean(), nullable=False),
        _ts("added_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_toolchains"),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("candidate", sa.String(128), nullable=False),
        sa.Column("stable", sa.String(128), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("min_jobs", sa.Integer(), nullable=False),
        sa.Column("max_failure_rate", sa.Double(), nullable=False),
        sa.Column("max_p95_regression", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("started_at", nullable=False),
        _ts("step_started_at", nullable=False),
        _ts("ended_at", nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("drained", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_state_started_at", "rollouts", ["state", "started_at"])
    op.create_table(
        "rollout_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.String(32), nullable=False),
        _ts("at", nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("weight_percent", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_rollout_decisions_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_decisions"),
    )
    op.create_index("ix_rollout_decisions_rollout_id", "rollout_decisions", ["rollout_id"])


def downgrade() -> None:
    op.drop_table("rollout_decisions")
    op.drop_table("rollouts")
    op.drop_table("toolchains")
