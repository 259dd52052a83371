"""Initial job store: jobs, steps, attempts, fan-ins, outputs, dead letters, events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _job_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["job_id"], ["jobs.id"], name=f"fk_{table}_job_id_jobs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("toolchain_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("requeued_at", nullable=True),
        sa.Column("max_age_seconds", sa.Double(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("error_label", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(128), nullable=True),
        sa.Column("manifest_key", sa.Text(), nullable=True),
        sa.Column("cpu_seconds", sa.Double(), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_state_created_at", "jobs", ["state", "created_at"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_updated_at", "jobs", ["updated_at"])
    op.create_index("ix_jobs_owner_created_at", "jobs", ["owner", "created_at"])

    op.create_table(
        "steps",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("lane", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("enqueued_at", nullable=True),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at", nullable=False),
        sa.Column("wall_seconds", sa.Double(), nullable=True),
        sa.Column("cpu_seconds", sa.Double(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error_label", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=True),
        _job_fk("steps"),
        sa.PrimaryKeyConstraint("job_id", "name", name="pk_steps"),
    )
    op.create_index("ix_steps_state_updated_at", "steps", ["state", "updated_at"])

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_label", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("argv", sa.JSON(), nullable=True),
        sa.Column("toolchain_id", sa.String(128), nullable=True),
        sa.Column("wall_seconds", sa.Double(), nullable=True),
        sa.Column("cpu_seconds", sa.Double(), nullable=True),
        _job_fk("attempts"),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
    )
    op.create_index("ix_attempts_job_id_step_number", "attempts", ["job_id", "step", "number"])

    op.create_table(
        "fanins",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("group", sa.String(128), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        _job_fk("fanins"),
        sa.PrimaryKeyConstraint("job_id", "group", name="pk_fanins"),
    )

    op.create_table(
        "outputs",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _job_fk("outputs"),
        sa.PrimaryKeyConstraint("job_id", "key", name="pk_outputs"),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(128), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("error_label", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("argv", sa.JSON(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("toolchain_id", sa.String(128), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("replayed_at", nullable=True),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        _job_fk("dead_letters"),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_state_created_at", "dead_letters", ["state", "created_at"])
    op.create_index("ix_dead_letters_job_id", "dead_letters", ["job_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("received_at", nullable=False),
        _ts("event_time", nullable=True),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("event_name", sa.String(128), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_events_job_id", "events", ["job_id"])


def downgrade() -> None:
    for table in ("events", "dead_letters", "outputs", "fanins", "attempts", "steps", "jobs"):
        op.drop_table(table)
