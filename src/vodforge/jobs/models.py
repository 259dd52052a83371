"""SQLAlchemy models of the job store. Private to ``vodforge.jobs``: callers get views.

States are stored as short strings (not database enums) so adding a state is a code change, not
a type migration. Timestamps are UTC: ``UTCDateTime`` refuses naive datetimes on the way in and
hands back aware ones on the way out, on SQLite as on PostgreSQL. The hand-written migrations in
``migrations/versions`` must match these tables; a test compares them with autogenerate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "NAMING_CONVENTION",
    "ApiKey",
    "Attempt",
    "Base",
    "DeadLetter",
    "Event",
    "Fanin",
    "Job",
    "Output",
    "RegisteredToolchain",
    "Rollout",
    "RolloutDecision",
    "Step",
    "UTCDateTime",
    "WebhookDelivery",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the job store")
        value = value.astimezone(UTC)
        # SQLite stores text: keep it naive UTC so values sort and compare as strings.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a plain class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        list[str]: JSON(),
        list[dict[str, Any]]: JSON(),
        float: Double(),
        int: Integer(),
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    preset: Mapped[str] = mapped_column(String(64))
    toolchain_id: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    #: Advances on every heartbeat and step change: the reaper's "still alive" signal.
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: Set when a failed/cancelled job is re-run: its max age counts from here.
    requeued_at: Mapped[datetime | None]
    max_age_seconds: Mapped[float]
    plan: Mapped[dict[str, Any] | None]
    error_label: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    failed_step: Mapped[str | None] = mapped_column(String(128))
    manifest_key: Mapped[str | None] = mapped_column(Text)
    cpu_seconds: Mapped[float] = mapped_column(default=0.0)
    progress: Mapped[float] = mapped_column(default=0.0)
    #: Where to POST this job's terminal state (besides the owner key's webhook), if anywhere.
    webhook_url: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_updated_at", "updated_at"),
        Index("ix_jobs_owner_created_at", "owner", "created_at"),
        #: An upload's jobs whatever their toolchain: a duplicate event finds its job by these.
        Index("ix_jobs_bucket_key_etag_preset", "bucket", "key", "etag", "preset"),
    )


class Step(Base):
    __tablename__ = "steps"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    lane: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    wall_seconds: Mapped[float | None]
    cpu_seconds: Mapped[float | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[float] = mapped_column(default=0.0)
    error_label: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[dict[str, Any] | None]

    __table_args__ = (Index("ix_steps_state_updated_at", "state", "updated_at"),)


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(128))
    number: Mapped[int]
    worker: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    error_label: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None]
    stderr: Mapped[str] = mapped_column(Text, default="")
    argv: Mapped[list[str] | None]
    toolchain_id: Mapped[str | None] = mapped_column(String(128))
    wall_seconds: Mapped[float | None]
    cpu_seconds: Mapped[float | None]

    __table_args__ = (Index("ix_attempts_job_id_step_number", "job_id", "step", "number"),)


class Fanin(Base):
    """An atomic counter: the step that makes ``done == total`` triggers the join step."""

    __tablename__ = "fanins"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    group: Mapped[str] = mapped_column(String(128), primary_key=True)
    total: Mapped[int]
    done: Mapped[int] = mapped_column(default=0)


class Output(Base):
    __tablename__ = "outputs"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    error_label: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    argv: Mapped[list[str] | None]
    exit_code: Mapped[int | None]
    stderr: Mapped[str] = mapped_column(Text, default="")
    toolchain_id: Mapped[str | None] = mapped_column(String(128))
    worker: Mapped[str | None] = mapped_column(String(255))
    #: The step's attempt history at the time of failure (AttemptView.to_dict() each).
    attempts: Mapped[list[dict[str, Any]]]
    state: Mapped[str] = mapped_column(String(16))
    replayed_at: Mapped[datetime | None]
    replay_count: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        Index("ix_dead_letters_state_created_at", "state", "created_at"),
        Index("ix_dead_letters_job_id", "job_id"),
    )


class Event(Base):
    """Every storage event the runtime saw, and what it did with it (an audit log, no FK)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    received_at: Mapped[datetime]
    event_time: Mapped[datetime | None]
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    event_name: Mapped[str] = mapped_column(String(128))
    record: Mapped[dict[str, Any]]
    job_id: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_events_received_at", "received_at"),
        Index("ix_events_job_id", "job_id"),
    )


class ApiKey(Base):
    """An API key: ``vf_<id>_<secret>``; only the sha256 of the (high-entropy) secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]]
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    #: Terminal states of this key's jobs are POSTed here, signed with ``webhook_secret``.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str] = mapped_column(String(128))
    #: ``limits`` notation ("600/minute"); None: the configured default.
    rate_limit: Mapped[str | None] = mapped_column(String(64))


class WebhookDelivery(Base):
    """The webhook outbox: one row per (job, terminal transition, target URL), with its log."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    #: The job's ``finished_at`` this delivery announces: a retried job that ends again is a
    #: new transition and gets new deliveries.
    job_finished_at: Mapped[datetime]
    key_id: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    #: Every attempt: ``{"at", "status", "error", "seconds"}``.
    log: Mapped[list[dict[str, Any]]]

    __table_args__ = (
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_job_id_job_finished_at", "job_id", "job_finished_at"),
    )


class RegisteredToolchain(Base):
    """A toolchain of the registry (``vodforge.rollout.registry``): one ffmpeg at one path."""

    __tablename__ = "toolchains"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    #: ``imageio-ffmpeg`` (the pinned wheel), ``debian`` (a distribution package) or ``path``.
    source: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(255))
    release: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    encoders: Mapped[list[str]]
    filters: Mapped[list[str]]
    #: New jobs run on the stable toolchain unless a rollout routes them to its candidate.
    stable: Mapped[bool] = mapped_column(Boolean, default=False)
    added_at: Mapped[datetime]


class Rollout(Base):
    """A canary rollout of a candidate toolchain (``vodforge.rollout.service``)."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    candidate: Mapped[str] = mapped_column(String(128))
    stable: Mapped[str] = mapped_column(String(128))
    steps: Mapped[list[Any]]
    step_index: Mapped[int]
    min_jobs: Mapped[int]
    max_failure_rate: Mapped[float]
    max_p95_regression: Mapped[float]
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    #: Jobs created since then count towards the current step's window.
    step_started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    #: Last evaluation's per-arm counts (``{"candidate": {...}, "stable": {...}}``).
    counts: Mapped[dict[str, Any]]
    #: After a rollback: every failed candidate job has been re-run on stable.
    drained: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_rollouts_state_started_at", "state", "started_at"),)


class RolloutDecision(Base):
    """The decision log of a rollout: start, hold, promote, rollback, abort, with a reason."""

    __tablename__ = "rollout_decisions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("rollouts.id", ondelete="CASCADE")
    )
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    step_index: Mapped[int]
    weight_percent: Mapped[float]

    __table_args__ = (Index("ix_rollout_decisions_rollout_id", "rollout_id"),)
