"""Jobs by source: an index on (bucket, key, etag, preset).

A duplicate event must map to the job already made for its upload even when the toolchain a new
job would get has changed since (a rollout promoted or rolled back in between), so admission
looks the job up by its source, not only by its id (which includes the toolchain).

Revision ID: 0004_job_source
Revises: 0003_rollout
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_job_source"
down_revision: str | None = "0003_rollout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_bucket_key_etag_preset", "jobs", ["bucket", "key", "etag", "preset"])


def downgrade() -> None:
    op.drop_index("ix_jobs_bucket_key_etag_preset", table_name="jobs")
