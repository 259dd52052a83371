"""The durable job store: one short transaction per call, on SQLite (embedded) or PostgreSQL.

Workers, the API and the reaper share it across processes and hosts, and messages arrive at
least once, so every write is safe to repeat: ``create_job`` collapses duplicate events, a
duplicate ``finish_step`` is recognised by a conditional UPDATE, and the fan-in counter is a
single ``UPDATE … SET done = done + 1 … RETURNING`` so exactly one finisher sees the group
complete.

Locking: a write on a job takes the job's row first (``SELECT … FOR UPDATE``, or an UPDATE of
it, on PostgreSQL) and only then its steps, attempts and counters, always in that order, so two
calls on one job never deadlock. SQLite has one writer at a time; write transactions open
with ``BEGIN IMMEDIATE`` so they queue on ``busy_timeout`` instead of failing half-way when a
read lock has to be upgraded. Connection failures and lock timeouts surface as ``TransientError``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from vodforge.errors import ConfigError, InvalidTransition, JobError, JobNotFound, TransientError
from vodforge.jobs.direct import DirectStatements, DirectTx
from vodforge.jobs.models import Attempt, DeadLetter, Event, Fanin, Job, Output, Step
from vodforge.jobs.states import (
    ACTIVE_STEP_STATES,
    JOB_TRANSITIONS,
    RESETTABLE_STEP_STATES,
    TERMINAL_JOB_STATES,
    AttemptOutcome,
    DeadLetterState,
    JobState,
    StepState,
    check_job_transition,
    check_step_reset,
    check_step_transition,
)
from vodforge.jobs.views import (
    EVENT_OUTCOMES,
    AttemptView,
    DeadLetterView,
    ErrorInfo,
    EventRecord,
    EventView,
    JobSpec,
    JobView,
    OutputRecord,
    PlannedSteps,
    Publication,
    StepFinish,
    StepStart,
    StepView,
)

__all__ = ["MIGRATIONS_DIR", "Clock", "JobStore", "utc_now"]

Clock = Callable[[], datetime]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: pg_advisory_xact_lock key serialising concurrent ``migrate()`` calls ("vfjobs").
_MIGRATION_LOCK_KEY = 0x76666A6F6273
_WRITE_OPTION = "vodforge_write"
_TERMINAL = [s.value for s in TERMINAL_JOB_STATES]
_CAN_SUCCEED = [a.value for a, targets in JOB_TRANSITIONS.items() if JobState.SUCCEEDED in targets]
_FAILABLE_STEP_STATES = ACTIVE_STEP_STATES | {StepState.FAILED}


def utc_now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """The job store behind one SQLAlchemy engine; thread-safe, one per process."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = utc_now,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        self._clock = clock
        self._url = _engine_url(url)
        self._engine = _create_engine(self._url, dict(connect_args or {}))
        # On SQLite, sessions bound to the write engine open with BEGIN IMMEDIATE.
        self._write_engine = self._engine.execution_options(**{_WRITE_OPTION: True})
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        # The hot path (events, a step's start and finish): the same statements on the DBAPI
        # cursor, without the Session's per-execution layer (see jobs/direct.py).
        self._statements = DirectStatements(self._engine)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        clock: Clock = utc_now,
        connect_args: Mapping[str, Any] | None = None,
    ) -> Self:
        """Connect and bring the schema up to date: what a server or worker does at start."""
        store = cls(url, clock=clock, connect_args=connect_args)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.get_backend_name()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def migrate(self) -> None:
        """``alembic upgrade head`` with the migrations shipped in this package."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with _map_db_errors(), self._write_engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Two processes starting at once must not both create the tables.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # -- events and jobs ------------------------------------------------------------------

    def record_event(self, ev: EventRecord) -> int:
        """Log a storage event and what the runtime did with it; returns the event id."""
        with self.direct(write=True) as s:
            return _record_event(s, ev, self._now())

    def admit(
        self, spec: JobSpec, event: EventRecord, first_step: tuple[str, str]
    ) -> tuple[JobView, bool]:
        """An event that starts a job, in one transaction: create the job with its first step
        already queued (``(name, lane)``) and record the event as ``created`` — or, for a job
        that exists, record it as ``duplicate`` and return that job with ``False``.

        The existing job is found by its source (bucket, key, etag, preset), not only by its
        id: the id includes the toolchain, and a duplicate event that arrives after a rollout
        changed the toolchain new jobs get must still find the job its upload already has."""
        now = self._now()
        try:
            with self.direct(write=True) as s:
                job, created = _create_or_get(s, spec, now, by_source=True)
                if not created:
                    _record_event(
                        s, dataclasses.replace(event, job_id=job.id, outcome="duplicate"), now
                    )
                    return job, False
                name, lane = first_step
                s.execute(
                    _INSERT_STEPS,
                    {
                        "job_id": spec.job_id,
                        "name": name,
                        "lane": lane,
                        "state": StepState.QUEUED.value,
                        "attempts": 0,
                        "enqueued_at": now,
                        "updated_at": now,
                        "progress": 0.0,
                    },
                )
                _record_event(
                    s, dataclasses.replace(event, job_id=spec.job_id, outcome="created"), now
                )
                return job, True
        except IntegrityError:
            # A concurrent duplicate inserted the same id between our check and our insert.
            job_view = self.get_job(spec.job_id)
            self.record_event(dataclasses.replace(event, job_id=job_view.id, outcome="duplicate"))
            return job_view, False

    def create_job(self, spec: JobSpec) -> tuple[JobView, bool]:
        """Create the job, or return the existing one with ``False`` (duplicate event)."""
        now = self._now()
        try:
            with self.direct(write=True) as s:
                return _create_or_get(s, spec, now)
        except IntegrityError:
            # A concurrent duplicate inserted the same id between our check and our insert.
            return self.get_job(spec.job_id), False

    def get_job(self, job_id: str) -> JobView:
        with self._tx(write=False) as s:
            return _job_view(_job(s, job_id))

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobView]:
        """Newest first."""
        stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
        if state is not None:
            stmt = stmt.where(Job.state == JobState(state).value)
        if owner is not None:
            stmt = stmt.where(Job.owner == owner)
        with self._tx(write=False) as s:
            return [_job_view(j) for j in s.scalars(stmt.limit(limit).offset(offset))]

    def changed_jobs(self, *, since: datetime, limit: int = 500) -> list[JobView]:
        """Jobs whose ``updated_at`` is after ``since``, oldest change first (the API's event
        stream polls this)."""
        stmt = (
            select(Job)
            .where(Job.updated_at > _aware(since, "since"))
            .order_by(Job.updated_at, Job.id)
            .limit(limit)
        )
        with self._tx(write=False) as s:
            return [_job_view(j) for j in s.scalars(stmt)]

    def jobs_created_since(
        self, since: datetime, *, owner: str | None = None
    ) -> list[tuple[datetime, JobState, datetime | None]]:
        """``(created_at, state, finished_at)`` of jobs created since ``since`` (for stats)."""
        stmt = select(Job.created_at, Job.state, Job.finished_at).where(
            Job.created_at >= _aware(since, "since")
        )
        if owner is not None:
            stmt = stmt.where(Job.owner == owner)
        with self._tx(write=False) as s:
            return [(c, JobState(st), f) for c, st, f in s.execute(stmt.order_by(Job.created_at))]

    def count_by_state(self) -> dict[JobState, int]:
        """Every state, zeros included (dashboards and gauges want a stable set of keys)."""
        counts = dict.fromkeys(JobState, 0)
        with self._tx(write=False) as s:
            for state, n in s.execute(select(Job.state, func.count()).group_by(Job.state)):
                counts[JobState(state)] = int(n)
        return counts

    # -- planning ---------------------------------------------------------------------------

    def add_steps(
        self,
        job_id: str,
        steps: Sequence[tuple[str, str]],
        *,
        plan: dict[str, Any] | None = None,
    ) -> None:
        """Add ``(name, lane)`` steps as pending; steps that exist are left untouched, so a
        replanned duplicate message does not reset progress."""
        with self.direct(write=True) as s:
            _add_steps(s, job_id, steps, plan, self._now())

    def set_fanin(self, job_id: str, group: str, total: int) -> None:
        """Declare a fan-in group of ``total`` steps; a repeat with the same total is a no-op."""
        with self.direct(write=True) as s:
            _locked_job(s, job_id)
            _set_fanin(s, job_id, group, total)

    # -- step lifecycle ---------------------------------------------------------------------

    def mark_queued(self, job_id: str, step: str) -> None:
        """The runtime sent the step's message: the step now waits in a queue."""
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            row = _step(s, job_id, step, lock=True)
            check_step_transition(StepState(row.state), StepState.QUEUED, subject=_sub(row))
            row.state = StepState.QUEUED.value
            row.enqueued_at = now
            row.updated_at = now
            job.updated_at = now

    def start_step(self, job_id: str, step: str, *, worker: str) -> StepStart | None:
        """Begin an attempt, or None when there is nothing to do (step done, job terminal).

        A step found ``running`` was being run by a worker that vanished (its message was
        redelivered): that attempt is marked abandoned and a new one begins.
        """
        now = self._now()
        ids = {"p_job": job_id, "p_step": step}
        with self.direct(write=True) as s:
            job = _locked_job(s, job_id)
            job_state = JobState(job.state)
            if job_state in TERMINAL_JOB_STATES:
                return None
            row = s.execute(_SELECT_STEP_LOCKED, ids).first()
            if row is None:
                raise JobNotFound(f"job {job_id} has no step {step}")
            step_state = StepState(row.state)
            if step_state is StepState.SUCCEEDED:
                return None
            check_step_transition(step_state, StepState.RUNNING, subject=f"step {job_id}/{step}")
            state = job_state
            if job_state is JobState.QUEUED:
                check_job_transition(job_state, JobState.RUNNING, subject=f"job {job_id}")
                state = JobState.RUNNING
            started_at = job.started_at or now
            s.execute(
                _START_JOB,
                {**ids, "p_state": state.value, "p_started": started_at, "p_now": now},
            )
            # A step never attempted has no attempt to abandon (requeue and release_step, the
            # paths that lower the count, close the running attempts they drop): one SELECT
            # less on the first attempt of every step.
            if row.attempts:
                for previous in s.execute(_RUNNING_ATTEMPTS, ids).all():
                    wall = max(0.0, (now - previous.started_at).total_seconds())
                    s.execute(_ABANDON_ATTEMPT, {"p_id": previous.id, "p_now": now, "p_wall": wall})
            attempt = row.attempts + 1
            s.execute(_START_STEP, {**ids, "p_now": now, "p_attempts": attempt, "p_worker": worker})
            s.execute(
                _INSERT_ATTEMPT,
                {
                    "job_id": job_id,
                    "step": step,
                    "number": attempt,
                    "worker": worker,
                    "started_at": now,
                    "finished_at": None,
                    "outcome": AttemptOutcome.RUNNING.value,
                    "error_label": None,
                    "error_message": None,
                    "exit_code": None,
                    "stderr": "",
                    "argv": None,
                    "toolchain_id": job.toolchain_id,
                    "wall_seconds": None,
                    "cpu_seconds": None,
                },
            )
            view = dataclasses.replace(
                _job_view(job), state=state, started_at=started_at, updated_at=now
            )
            return StepStart(attempt=attempt, job=view)

    def heartbeat(self, job_id: str, step: str, *, progress: float | None = None) -> None:
        """Still alive: advances ``updated_at`` of the job and the running step (the reaper
        watches it). Two UPDATEs, no reads."""
        now = self._now()
        params: dict[str, Any] = {"p_job": job_id, "p_step": step, "p_now": now}
        with self.direct(write=True) as s:
            if s.execute(_TOUCH_JOB, params).rowcount == 0:
                raise JobNotFound(f"no job {job_id}")
            if progress is None:
                s.execute(_HEARTBEAT_STEP, params)
            else:
                params["p_progress"] = min(1.0, max(0.0, progress))
                s.execute(_HEARTBEAT_STEP_PROGRESS, params)

    def finish_step(
        self,
        job_id: str,
        step: str,
        *,
        worker: str,
        wall_seconds: float,
        cpu_seconds: float,
        outputs: dict[str, Any] | None = None,
        fanin_group: str | None = None,
        successors: Sequence[str] = (),
        plan: PlannedSteps | None = None,
        publish: Publication | None = None,
    ) -> StepFinish:
        """Record a success once. A redelivered duplicate gets ``newly_finished=False``; of the
        steps of a fan-in group exactly one caller gets ``group_complete=True``.

        In the same transaction (one commit per finished step, not four): ``plan`` adds the
        job's steps and fan-in groups first (the probe); the caller that advances the job (the
        new finisher, or the group's last one) marks ``successors`` queued — those still
        pending, returned in ``queued`` for the caller to send — and ``publish`` completes the
        job with its outputs (the final step)."""
        now = self._now()
        with self.direct(write=True) as s:
            if plan is not None:
                _add_steps(s, job_id, plan.steps, plan.plan, now)
                for group, total in plan.fanins.items():
                    _set_fanin(s, job_id, group, total)
            finish = _finish_step(
                s,
                job_id,
                step,
                worker=worker,
                wall_seconds=wall_seconds,
                cpu_seconds=cpu_seconds,
                outputs=outputs,
                fanin_group=fanin_group,
                now=now,
            )
            advance = finish.group_complete if fanin_group is not None else finish.newly_finished
            if not advance:
                return finish
            queued = tuple(_queue_pending(s, job_id, successors, now))
            job = None
            if publish is not None:
                job = _complete_job(s, job_id, publish.outputs, publish.manifest_key, now)
            return dataclasses.replace(finish, queued=queued, job=job)

    def fail_attempt(self, job_id: str, step: str, *, error: ErrorInfo, will_retry: bool) -> None:
        """Close the running attempt with its error; the step waits for a retry or has failed."""
        now = self._now()
        target = StepState.RETRYING if will_retry else StepState.FAILED
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            row = _step(s, job_id, step, lock=True)
            check_step_transition(StepState(row.state), target, subject=_sub(row))
            running = _running_attempts(s, job_id, step)
            mine = [a for a in running if a.worker == error.worker]
            for attempt in (mine or running)[-1:]:
                outcome = AttemptOutcome.RETRYING if will_retry else AttemptOutcome.FAILED
                _close_attempt(attempt, outcome, now, error=error)
            row.state = target.value
            row.error_label = error.label
            row.error_message = error.message
            row.updated_at = now
            if target is StepState.FAILED:
                row.finished_at = now
            job.updated_at = now

    def fail_job(self, job_id: str, step: str, *, error: ErrorInfo) -> DeadLetterView:
        """Fail the job at ``step`` and write a dead letter with the step's attempt history.

        Repeating it (a redelivered message) returns the open dead letter already written. Only
        a step in flight (queued, running, retrying) becomes failed; one the job does not have
        (it failed before planning) or that is not in flight (a job-level failure such as
        expiry, named after a succeeded or pending step) keeps its own truthful record.
        """
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            job_state = JobState(job.state)
            if job_state is JobState.FAILED:
                existing = s.scalars(
                    select(DeadLetter)
                    .where(
                        DeadLetter.job_id == job_id,
                        DeadLetter.step == step,
                        DeadLetter.state == DeadLetterState.OPEN.value,
                    )
                    .order_by(DeadLetter.created_at.desc())
                    .limit(1)
                ).first()
                if existing is not None:
                    return _dead_letter_view(existing)
            check_job_transition(job_state, JobState.FAILED, subject=f"job {job_id}")
            row = s.get(Step, (job_id, step), with_for_update=True)
            if row is not None and StepState(row.state) in _FAILABLE_STEP_STATES:
                if row.state != StepState.FAILED:
                    check_step_transition(StepState(row.state), StepState.FAILED, subject=_sub(row))
                    row.state = StepState.FAILED.value
                    row.finished_at = now
                row.error_label = error.label
                row.error_message = error.message
                row.updated_at = now
                for attempt in _running_attempts(s, job_id, step):
                    _close_attempt(attempt, AttemptOutcome.FAILED, now, error=error)
            job.state = JobState.FAILED.value
            job.error_label = error.label
            job.error_message = error.message
            job.failed_step = step
            job.finished_at = now
            job.updated_at = now
            s.flush()
            history = list(
                s.scalars(
                    select(Attempt)
                    .where(Attempt.job_id == job_id, Attempt.step == step)
                    .order_by(Attempt.number, Attempt.id)
                )
            )
            # A summary error (no evidence of its own) borrows the last attempt's evidence.
            last = history[-1] if history else None
            argv = list(error.argv) if error.argv is not None else (last.argv if last else None)
            letter = DeadLetter(
                id=uuid.uuid4().hex,
                job_id=job_id,
                step=step,
                created_at=now,
                error_label=error.label,
                message=error.message,
                argv=argv,
                exit_code=error.exit_code
                if error.exit_code is not None
                else (last.exit_code if last else None),
                stderr=error.stderr or (last.stderr if last else ""),
                toolchain_id=error.toolchain_id or job.toolchain_id,
                worker=error.worker,
                attempts=[_attempt_view(a).to_dict() for a in history],
                state=DeadLetterState.OPEN.value,
                replayed_at=None,
                replay_count=0,
            )
            s.add(letter)
            s.flush()
            return _dead_letter_view(letter)

    def complete_job(
        self, job_id: str, *, outputs: Sequence[OutputRecord], manifest_key: str
    ) -> JobView:
        """Published: the job succeeded with these outputs (replacing any recorded before).
        Repeating it with the same manifest key returns the job unchanged."""
        with self.direct(write=True) as s:
            return _complete_job(s, job_id, outputs, manifest_key, self._now())

    def cancel_job(self, job_id: str) -> JobView:
        """Stop the job: workers get None from ``start_step``. Cancelling twice is a no-op."""
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            job_state = JobState(job.state)
            if job_state is not JobState.CANCELLED:
                check_job_transition(job_state, JobState.CANCELLED, subject=f"job {job_id}")
                job.state = JobState.CANCELLED.value
                job.finished_at = now
                job.updated_at = now
            return _job_view(job)

    def requeue(self, job_id: str) -> list[str]:
        """Put a failed or cancelled job back to queued; returns the steps still to run.

        Steps that did not succeed go back to ``pending`` (in-flight attempts are abandoned);
        succeeded steps and their fan-in counts are kept, so only the missing work is redone. An
        empty list means the job never got a plan: the runtime starts it from the beginning.
        Open dead letters stay open until ``mark_replayed``.
        """
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            job_state = JobState(job.state)
            if job_state not in {JobState.FAILED, JobState.CANCELLED}:
                raise InvalidTransition(
                    f"job {job_id}: only a failed or cancelled job can be requeued, not {job_state}"
                )
            check_job_transition(job_state, JobState.QUEUED, subject=f"job {job_id}")
            rows = list(s.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.name)))
            for row in rows:
                state = StepState(row.state)
                if state in RESETTABLE_STEP_STATES:
                    check_step_reset(state, subject=_sub(row))
                    row.state = StepState.PENDING.value
                    row.attempts = 0  # a fresh attempt budget; the history stays in attempts
                    row.finished_at = None
                    row.progress = 0.0
                    row.error_label = None
                    row.error_message = None
                    row.updated_at = now
            for attempt in s.scalars(
                select(Attempt).where(
                    Attempt.job_id == job_id, Attempt.outcome == AttemptOutcome.RUNNING.value
                )
            ):
                _close_attempt(attempt, AttemptOutcome.ABANDONED, now)
            job.state = JobState.QUEUED.value
            job.error_label = None
            job.error_message = None
            job.failed_step = None
            job.finished_at = None
            job.requeued_at = now
            job.updated_at = now
            return [r.name for r in rows if r.state != StepState.SUCCEEDED]

    # -- dead letters -----------------------------------------------------------------------

    def list_dead_letters(
        self, *, state: str | None = "open", limit: int = 50, offset: int = 0
    ) -> list[DeadLetterView]:
        """Newest first; ``state=None`` lists open and replayed ones."""
        stmt = select(DeadLetter).order_by(DeadLetter.created_at.desc(), DeadLetter.id)
        if state is not None:
            stmt = stmt.where(DeadLetter.state == _dead_letter_state(state).value)
        with self._tx(write=False) as s:
            return [_dead_letter_view(d) for d in s.scalars(stmt.limit(limit).offset(offset))]

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetterView:
        with self._tx(write=False) as s:
            return _dead_letter_view(_dead_letter(s, dead_letter_id))

    def mark_replayed(self, dead_letter_id: str) -> DeadLetterView:
        """The operator replayed it (after ``requeue``); counts replays of the same letter."""
        now = self._now()
        with self._tx(write=True) as s:
            letter = _dead_letter(s, dead_letter_id, lock=True)
            letter.state = DeadLetterState.REPLAYED.value
            letter.replayed_at = now
            letter.replay_count += 1
            s.flush()
            return _dead_letter_view(letter)

    # -- reads ------------------------------------------------------------------------------

    def steps(self, job_id: str) -> list[StepView]:
        """The job's steps by name (``JobNotFound`` for an unknown job)."""
        with self._tx(write=False) as s:
            _job(s, job_id)
            rows = s.scalars(select(Step).where(Step.job_id == job_id).order_by(Step.name))
            return [_step_view(r) for r in rows]

    def attempts(self, job_id: str, step: str | None = None) -> list[AttemptView]:
        """Attempts in the order they began."""
        stmt = select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.id)
        if step is not None:
            stmt = stmt.where(Attempt.step == step)
        with self._tx(write=False) as s:
            _job(s, job_id)
            return [_attempt_view(a) for a in s.scalars(stmt)]

    def outputs(self, job_id: str) -> list[OutputRecord]:
        with self._tx(write=False) as s:
            _job(s, job_id)
            rows = s.scalars(select(Output).where(Output.job_id == job_id).order_by(Output.key))
            return [
                OutputRecord(key=o.key, size=o.size, sha256=o.sha256, kind=o.kind) for o in rows
            ]

    def events(self, limit: int = 50) -> list[EventView]:
        """The most recent storage events, newest first."""
        with self._tx(write=False) as s:
            rows = s.scalars(select(Event).order_by(Event.id.desc()).limit(limit))
            return [_event_view(e) for e in rows]

    # -- the reaper's questions -------------------------------------------------------------

    def stale_steps(self, *, older_than: timedelta) -> list[StepView]:
        """Queued, running or retrying steps of live jobs that nobody touched since the cutoff:
        a lost message or a dead worker. Oldest first."""
        cutoff = self._now() - older_than
        stmt = (
            select(Step)
            .join(Job, Job.id == Step.job_id)
            .where(
                Step.state.in_([s.value for s in ACTIVE_STEP_STATES]),
                Step.updated_at < cutoff,
                Job.state.not_in(_TERMINAL),
            )
            .order_by(Step.updated_at, Step.job_id, Step.name)
        )
        with self._tx(write=False) as s:
            return [_step_view(r) for r in s.scalars(stmt)]

    def stalled_jobs(self, *, older_than: timedelta) -> list[JobView]:
        """Jobs accepted before the cutoff that never got a plan (the first message was lost)."""
        cutoff = self._now() - older_than
        stmt = (
            select(Job)
            .where(
                Job.state == JobState.QUEUED.value,
                Job.created_at < cutoff,
                ~exists().where(Step.job_id == Job.id),
            )
            .order_by(Job.created_at)
        )
        with self._tx(write=False) as s:
            return [_job_view(j) for j in s.scalars(stmt)]

    def expired_jobs(self) -> list[JobView]:
        """Live jobs older than their ``max_age_seconds`` (checked here, not in SQL: date
        arithmetic differs between SQLite and PostgreSQL, and live jobs are few)."""
        now = self._now()
        stmt = select(Job).where(Job.state.not_in(_TERMINAL)).order_by(Job.created_at)
        with self._tx(write=False) as s:
            return [
                _job_view(j)
                for j in s.scalars(stmt)
                if (j.requeued_at or j.created_at) + timedelta(seconds=j.max_age_seconds) < now
            ]

    def step_durations(self, *, since: datetime | None = None) -> list[tuple[str, str, float]]:
        """``(toolchain_id, step kind, wall seconds)`` of succeeded steps; the kind is the name
        before ``:`` (``encode:0003`` -> ``encode``), for metrics and rollout comparisons."""
        stmt = (
            select(Job.toolchain_id, Step.name, Step.wall_seconds)
            .join(Job, Job.id == Step.job_id)
            .where(Step.state == StepState.SUCCEEDED.value, Step.wall_seconds.is_not(None))
            .order_by(Step.finished_at)
        )
        if since is not None:
            stmt = stmt.where(Step.finished_at >= _aware(since, "since"))
        with self._tx(write=False) as s:
            return [
                (toolchain, name.split(":", 1)[0], float(wall))
                for toolchain, name, wall in s.execute(stmt)
                if wall is not None
            ]

    # -- toolchains: refusal and reassignment (vodforge.rollout) ---------------------------

    def release_step(self, job_id: str, step: str, *, worker: str, reason: str) -> bool:
        """Hand a started step back without spending an attempt: the worker refused it (its
        toolchain drifted). The attempt is closed as abandoned (labelled ``worker_refused``),
        the attempt count goes back down and the step is queued again. False if the step is
        no longer this worker's running attempt (nothing changed)."""
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            row = _step(s, job_id, step, lock=True)
            mine = [a for a in _running_attempts(s, job_id, step) if a.worker == worker]
            if StepState(row.state) is not StepState.RUNNING or not mine:
                return False
            for attempt in mine:
                _close_attempt(attempt, AttemptOutcome.ABANDONED, now)
                attempt.error_label = "worker_refused"
                attempt.error_message = reason
            check_step_transition(StepState.RUNNING, StepState.QUEUED, subject=_sub(row))
            row.state = StepState.QUEUED.value
            row.attempts = max(0, row.attempts - len(mine))
            row.enqueued_at = now
            row.updated_at = now
            job.updated_at = now
            return True

    def reassign_toolchain(self, job_id: str, toolchain_id: str) -> JobView:
        """Re-run a failed or cancelled job from scratch on another toolchain (a rollback).

        Unlike ``requeue``, succeeded steps are not kept: every output of the job is made again
        by the one toolchain the job now records. Step rows and fan-in counters are dropped (the
        probe recreates them); the attempt history stays.
        """
        now = self._now()
        with self._tx(write=True) as s:
            job = _job(s, job_id, lock=True)
            job_state = JobState(job.state)
            if job_state not in {JobState.FAILED, JobState.CANCELLED}:
                raise InvalidTransition(
                    f"job {job_id}: only a failed or cancelled job can move to another "
                    f"toolchain, not {job_state}"
                )
            check_job_transition(job_state, JobState.QUEUED, subject=f"job {job_id}")
            for attempt in s.scalars(
                select(Attempt).where(
                    Attempt.job_id == job_id, Attempt.outcome == AttemptOutcome.RUNNING.value
                )
            ):
                _close_attempt(attempt, AttemptOutcome.ABANDONED, now)
            s.execute(delete(Step).where(Step.job_id == job_id), execution_options=_NO_SYNC)
            s.execute(delete(Fanin).where(Fanin.job_id == job_id), execution_options=_NO_SYNC)
            job.toolchain_id = toolchain_id
            job.state = JobState.QUEUED.value
            job.plan = None
            job.error_label = None
            job.error_message = None
            job.failed_step = None
            job.finished_at = None
            job.started_at = None
            job.progress = 0.0
            job.requeued_at = now
            job.updated_at = now
            s.flush()
            return _job_view(job)

    def jobs_since(
        self, since: datetime, *, toolchains: Sequence[str] | None = None
    ) -> list[JobView]:
        """Jobs created at or after ``since`` (optionally on these toolchains), oldest first:
        the window a canary rollout evaluates."""
        stmt = (
            select(Job)
            .where(Job.created_at >= _aware(since, "since"))
            .order_by(Job.created_at, Job.id)
        )
        if toolchains is not None:
            stmt = stmt.where(Job.toolchain_id.in_(list(toolchains)))
        with self._tx(write=False) as s:
            return [_job_view(j) for j in s.scalars(stmt)]

    # -- plumbing ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The store's clock (UTC-aware): what companion stores stamp their rows with."""
        return self._now()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Session]:
        """A session for companion stores of the same database (API keys, webhook outbox):
        the same engine, write locking and error mapping as the store's own calls."""
        with self._tx(write=write) as session:
            yield session

    def _now(self) -> datetime:
        return _aware(self._clock(), "clock")

    @contextmanager
    def direct(self, *, write: bool) -> Iterator[DirectTx]:
        """One short transaction on the hot path (``jobs/direct.py``) for prebuilt Core
        statements: the store's own and its companions' (a rollout's routing of every upload).
        Same locking and error mapping as ``transaction``."""
        with _map_db_errors(), self._statements.transaction(write=write) as tx:
            yield tx

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Session]:
        """One short transaction; commits on success, rolls back on any exception."""
        factory = self._writes if write else self._reads
        with _map_db_errors(), factory.begin() as session:
            yield session


# -- module helpers --------------------------------------------------------------------------

#: Core-style UPDATEs through the session: nothing loaded needs refreshing.
_NO_SYNC: dict[str, Any] = {"synchronize_session": False}

# -- the hot path's statements, built once -----------------------------------------------------
# Every step of every job starts and finishes through these. Building a statement costs several
# times what executing it does (measured ~0.3 ms against ~0.05 ms on SQLite), and table-level
# statements skip the ORM's bulk-DML layer, so they are built here once, with bind parameters
# (named ``p_*``: a bind parameter may not share a column's name in an INSERT or UPDATE).


def _one_of(column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN (values)`` as plain binds (``a = ? OR b = ?``): an ``in_`` of a list is an
    expanding parameter, which the direct path does not render."""
    return or_(*(column == value for value in values))


_JOBS = cast(Table, Job.__table__)
_STEPS = cast(Table, Step.__table__)
_ATTEMPTS = cast(Table, Attempt.__table__)
_OUTPUTS = cast(Table, Output.__table__)
_FANINS = cast(Table, Fanin.__table__)
_EVENTS = cast(Table, Event.__table__)
_P_JOB: BindParameter[str] = bindparam("p_job")
_P_STEP: BindParameter[str] = bindparam("p_step")
_P_NOW: BindParameter[datetime] = bindparam("p_now")
_OF_JOB = _JOBS.c.id == _P_JOB
_OF_STEP = (_STEPS.c.job_id == _P_JOB, _STEPS.c.name == _P_STEP)

_SELECT_JOB_LOCKED = select(_JOBS).where(_OF_JOB).with_for_update()
_SELECT_STEP_LOCKED = select(_STEPS.c.state, _STEPS.c.attempts).where(*_OF_STEP).with_for_update()
_TOUCH_JOB = update(_JOBS).where(_OF_JOB).values(updated_at=_P_NOW)
_START_JOB = (
    update(_JOBS)
    .where(_OF_JOB)
    .values(state=bindparam("p_state"), started_at=bindparam("p_started"), updated_at=_P_NOW)
)
_START_STEP = (
    update(_STEPS)
    .where(*_OF_STEP)
    .values(
        state=StepState.RUNNING.value,
        attempts=bindparam("p_attempts"),
        started_at=_P_NOW,
        finished_at=None,
        updated_at=_P_NOW,
        worker=bindparam("p_worker"),
        progress=0.0,
    )
)
_RUNNING_ATTEMPTS = (
    select(_ATTEMPTS.c.id, _ATTEMPTS.c.started_at)
    .where(
        _ATTEMPTS.c.job_id == _P_JOB,
        _ATTEMPTS.c.step == _P_STEP,
        _ATTEMPTS.c.outcome == AttemptOutcome.RUNNING.value,
    )
    .order_by(_ATTEMPTS.c.number, _ATTEMPTS.c.id)
)
_ABANDON_ATTEMPT = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("p_id"))
    .values(
        outcome=AttemptOutcome.ABANDONED.value,
        finished_at=_P_NOW,
        wall_seconds=bindparam("p_wall"),
    )
)
_INSERT_ATTEMPT = insert(_ATTEMPTS)
_HEARTBEAT_STEP = (
    update(_STEPS)
    .where(*_OF_STEP, _STEPS.c.state == StepState.RUNNING.value)
    .values(updated_at=_P_NOW)
)
_HEARTBEAT_STEP_PROGRESS = _HEARTBEAT_STEP.values(progress=bindparam("p_progress"))
_FINISH_STEP = (
    update(_STEPS)
    .where(*_OF_STEP, _STEPS.c.state == StepState.RUNNING.value)
    .values(
        state=StepState.SUCCEEDED.value,
        finished_at=_P_NOW,
        updated_at=_P_NOW,
        wall_seconds=bindparam("p_wall"),
        cpu_seconds=bindparam("p_cpu"),
        worker=bindparam("p_worker"),
        progress=1.0,
        outputs=bindparam("p_outputs"),
        error_label=None,
        error_message=None,
    )
)
_STEP_STATE = select(_STEPS.c.state).where(*_OF_STEP)
#: This worker's latest attempt of the step, if still open: even a redundant run finished, and
#: its attempt says so (one UPDATE, no load).
_FINISH_ATTEMPT = (
    update(_ATTEMPTS)
    .where(
        _ATTEMPTS.c.id
        == (
            select(_ATTEMPTS.c.id)
            .where(
                _ATTEMPTS.c.job_id == _P_JOB,
                _ATTEMPTS.c.step == _P_STEP,
                _ATTEMPTS.c.worker == bindparam("p_worker"),
            )
            .order_by(_ATTEMPTS.c.number.desc())
            .limit(1)
            .scalar_subquery()
        ),
        _one_of(
            _ATTEMPTS.c.outcome, [AttemptOutcome.RUNNING.value, AttemptOutcome.ABANDONED.value]
        ),
    )
    .values(
        outcome=AttemptOutcome.SUCCEEDED.value,
        finished_at=_P_NOW,
        wall_seconds=bindparam("p_wall"),
        cpu_seconds=bindparam("p_cpu"),
    )
)
_STEP_COUNTS = select(
    func.count(),
    func.sum(case((_STEPS.c.state == StepState.SUCCEEDED.value, 1), else_=0)),
).where(_STEPS.c.job_id == _P_JOB)
_JOB_PROGRESS = (
    update(_JOBS)
    .where(_OF_JOB)
    .values(
        cpu_seconds=_JOBS.c.cpu_seconds + bindparam("p_cpu", type_=_JOBS.c.cpu_seconds.type),
        progress=bindparam("p_progress"),
    )
)
_COUNT_FANIN = (
    update(_FANINS)
    .where(
        _FANINS.c.job_id == _P_JOB,
        _FANINS.c.group == bindparam("p_group"),
        _FANINS.c.done < _FANINS.c.total,
    )
    .values(done=_FANINS.c.done + 1)
    .returning(_FANINS.c.done, _FANINS.c.total)
)
_QUEUE_PENDING = (
    update(_STEPS)
    .where(*_OF_STEP, _STEPS.c.state == StepState.PENDING.value)
    .values(state=StepState.QUEUED.value, enqueued_at=_P_NOW, updated_at=_P_NOW)
    .returning(_STEPS.c.name)
)
_PLAN_JOB = update(_JOBS).where(_OF_JOB).values(plan=bindparam("p_plan"), updated_at=_P_NOW)
_STEP_NAMES = select(_STEPS.c.name).where(_STEPS.c.job_id == _P_JOB)
_INSERT_STEPS = insert(_STEPS)
_COMPLETE_JOB = (
    update(_JOBS)
    .where(_OF_JOB, _one_of(_JOBS.c.state, _CAN_SUCCEED))
    .values(
        state=JobState.SUCCEEDED.value,
        finished_at=_P_NOW,
        updated_at=_P_NOW,
        progress=1.0,
        manifest_key=bindparam("p_manifest"),
    )
    .returning(*_JOBS.c)
)
_DELETE_OUTPUTS = delete(_OUTPUTS).where(_OUTPUTS.c.job_id == _P_JOB)
_INSERT_OUTPUTS = insert(_OUTPUTS)
_SELECT_JOB = select(_JOBS).where(_OF_JOB)
_SELECT_JOB_BY_SOURCE = (
    select(_JOBS)
    .where(
        _JOBS.c.bucket == bindparam("p_bucket"),
        _JOBS.c.key == bindparam("p_key"),
        _JOBS.c.etag == bindparam("p_etag"),
        _JOBS.c.preset == bindparam("p_preset"),
    )
    .order_by(_JOBS.c.created_at, _JOBS.c.id)
    .limit(1)
)
_INSERT_JOB = insert(_JOBS).returning(*_JOBS.c)
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_SELECT_FANIN = select(_FANINS.c.total, _FANINS.c.done).where(
    _FANINS.c.job_id == _P_JOB, _FANINS.c.group == bindparam("p_group")
)
_INSERT_FANIN = insert(_FANINS)


def _finish_step(
    s: DirectTx,
    job_id: str,
    step: str,
    *,
    worker: str,
    wall_seconds: float,
    cpu_seconds: float,
    outputs: dict[str, Any] | None,
    fanin_group: str | None,
    now: datetime,
) -> StepFinish:
    params = {
        "p_job": job_id,
        "p_step": step,
        "p_now": now,
        "p_wall": wall_seconds,
        "p_cpu": cpu_seconds,
        "p_worker": worker,
        "p_outputs": outputs,
    }
    # Touch the job first: it takes the job's row lock before any step's (lock order).
    if s.execute(_TOUCH_JOB, params).rowcount == 0:
        raise JobNotFound(f"no job {job_id}")
    newly = s.execute(_FINISH_STEP, params).rowcount == 1
    if not newly:
        current = s.scalar(_STEP_STATE, params)
        if current is None:
            raise JobNotFound(f"job {job_id} has no step {step}")
        if current != StepState.SUCCEEDED:
            check_step_transition(
                StepState(current), StepState.SUCCEEDED, subject=f"step {job_id}/{step}"
            )
    s.execute(_FINISH_ATTEMPT, params)
    if not newly:
        return StepFinish(newly_finished=False, group_complete=False)
    total, done = s.execute(_STEP_COUNTS, params).one()
    # 1.0 is reserved for complete_job: published, not merely computed.
    progress = min(0.99, int(done or 0) / max(1, int(total)))
    s.execute(_JOB_PROGRESS, {**params, "p_progress": progress})
    complete = False
    if fanin_group is not None:
        complete = _count_fanin(s, job_id, fanin_group)
    return StepFinish(newly_finished=True, group_complete=complete)


def _record_event(s: DirectTx, ev: EventRecord, now: datetime) -> int:
    if ev.outcome not in EVENT_OUTCOMES:
        raise JobError(f"unknown event outcome {ev.outcome!r} (one of {sorted(EVENT_OUTCOMES)})")
    result = s.execute(
        _INSERT_EVENT,
        {
            "received_at": now,
            "event_time": ev.event_time,
            "bucket": ev.bucket,
            "key": ev.key,
            "etag": ev.etag,
            "size": ev.size,
            "event_name": ev.event_name,
            "record": ev.record,
            "job_id": ev.job_id,
            "outcome": ev.outcome,
            "detail": ev.detail,
        },
    )
    return int(result.scalar_one())


def _create_or_get(
    s: DirectTx, spec: JobSpec, now: datetime, *, by_source: bool = False
) -> tuple[JobView, bool]:
    """The job of ``spec``: the existing one with ``False``, or a new one with ``True``. A
    concurrent insert of the same id surfaces as ``IntegrityError``. ``by_source``: an
    existing job of the same source under another toolchain counts too (the first made)."""
    if by_source:
        source = {
            "p_bucket": spec.bucket,
            "p_key": spec.key,
            "p_etag": spec.etag,
            "p_preset": spec.preset,
        }
        existing = s.execute(_SELECT_JOB_BY_SOURCE, source).first()
    else:
        existing = s.execute(_SELECT_JOB, {"p_job": spec.job_id}).first()
    if existing is not None:
        return _job_view(existing), False
    return _job_view(s.execute(_INSERT_JOB, _new_job(spec, now)).one()), True


def _new_job(spec: JobSpec, now: datetime) -> dict[str, Any]:
    return {
        "id": spec.job_id,
        "bucket": spec.bucket,
        "key": spec.key,
        "etag": spec.etag,
        "size": spec.size,
        "preset": spec.preset,
        "toolchain_id": spec.toolchain_id,
        "owner": spec.owner,
        "state": JobState.QUEUED.value,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "requeued_at": None,
        "max_age_seconds": float(spec.max_age_seconds),
        "plan": None,
        "error_label": None,
        "error_message": None,
        "failed_step": None,
        "manifest_key": None,
        "cpu_seconds": 0.0,
        "progress": 0.0,
        "webhook_url": spec.webhook_url,
    }


def _add_steps(
    s: DirectTx,
    job_id: str,
    steps: Sequence[tuple[str, str]],
    plan: dict[str, Any] | None,
    now: datetime,
) -> None:
    # The job's row first (its lock, on PostgreSQL, before any step's).
    params = {"p_job": job_id, "p_now": now}
    if plan is not None:
        touched = s.execute(_PLAN_JOB, {**params, "p_plan": plan})
    else:
        touched = s.execute(_TOUCH_JOB, params)
    if touched.rowcount == 0:
        raise JobNotFound(f"no job {job_id}")
    known = set(s.scalars(_STEP_NAMES, params))
    rows = []
    for name, lane in steps:
        if name in known:
            continue
        known.add(name)
        rows.append(
            {
                "job_id": job_id,
                "name": name,
                "lane": lane,
                "state": StepState.PENDING.value,
                "attempts": 0,
                "updated_at": now,
                "progress": 0.0,
            }
        )
    if rows:
        s.execute(_INSERT_STEPS, rows)


def _set_fanin(s: DirectTx, job_id: str, group: str, total: int) -> None:
    if total < 1:
        raise JobError(f"fan-in {group} of job {job_id} needs at least one step, not {total}")
    fanin = s.execute(_SELECT_FANIN, {"p_job": job_id, "p_group": group}).first()
    if fanin is None:
        s.execute(_INSERT_FANIN, {"job_id": job_id, "group": group, "total": total, "done": 0})
    elif fanin.total != total:
        raise JobError(
            f"fan-in {group} of job {job_id} already has {fanin.total} steps, not {total}"
        )


def _queue_pending(s: DirectTx, job_id: str, names: Sequence[str], now: datetime) -> list[str]:
    """Mark the named steps queued if they are still pending (one UPDATE each, usually one);
    returns the ones this call queued — a step some other path already queued or ran is left
    alone."""
    params = {"p_job": job_id, "p_now": now}
    return [
        name
        for name in dict.fromkeys(names)
        if s.execute(_QUEUE_PENDING, {**params, "p_step": name}).first() is not None
    ]


def _complete_job(
    s: DirectTx, job_id: str, outputs: Sequence[OutputRecord], manifest_key: str, now: datetime
) -> JobView:
    # One UPDATE when the transition is allowed (the usual case); else read and explain.
    params = {"p_job": job_id, "p_now": now, "p_manifest": manifest_key}
    row = s.execute(_COMPLETE_JOB, params).first()
    if row is None:
        job = _locked_job(s, job_id)
        job_state = JobState(job.state)
        if job_state is JobState.SUCCEEDED and job.manifest_key == manifest_key:
            return _job_view(job)
        check_job_transition(job_state, JobState.SUCCEEDED, subject=f"job {job_id}")
        raise JobError(f"job {job_id} could not be completed from state {job_state}")
    s.execute(_DELETE_OUTPUTS, params)
    by_key = {o.key: o for o in outputs}  # last one wins, as in the object store
    if by_key:
        s.execute(
            _INSERT_OUTPUTS,
            [
                {"job_id": job_id, "key": o.key, "size": o.size, "sha256": o.sha256, "kind": o.kind}
                for o in by_key.values()
            ],
        )
    return _job_view(row)


def _engine_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError(f"job store URL must be sqlite:/// or postgresql://, not {backend}://")
    return parsed


def _create_engine(url: URL, connect_args: dict[str, Any]) -> Engine:
    if url.get_backend_name() == "postgresql":
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # We emit BEGIN ourselves (below); sqlite3's own transaction handling would not
        # begin before SELECTs and cannot be told to take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _set_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried: on a fresh file, switching the journal mode while
    another process opens it fails with "database is locked" at once — SQLite's busy handler
    does not cover it. Once a file is in WAL mode it stays so and this returns first time."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def _map_db_errors() -> Iterator[None]:
    """The one boundary where database errors become vodforge errors."""
    try:
        yield
    except OperationalError as exc:
        raise TransientError(f"job store unavailable: {_one_line(exc)}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise TransientError(f"job store unavailable: {_one_line(exc)}") from exc
        raise
    except PoolTimeout as exc:
        raise TransientError(f"job store busy: no free connection ({exc})") from exc


def _one_line(exc: DBAPIError) -> str:
    return " ".join(str(exc.orig).split())[:500]


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ConfigError(f"{what} gave a naive datetime ({value.isoformat()}); use UTC-aware ones")
    return value.astimezone(UTC)


def _sub(row: Step) -> str:
    return f"step {row.job_id}/{row.name}"


def _dead_letter_state(state: str) -> DeadLetterState:
    try:
        return DeadLetterState(state)
    except ValueError:
        raise JobError(
            f"unknown dead letter state {state!r} (one of {[s.value for s in DeadLetterState]})"
        ) from None


def _job(s: Session, job_id: str, *, lock: bool = False) -> Job:
    job = s.get(Job, job_id, with_for_update=lock or None)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


def _step(s: Session, job_id: str, name: str, *, lock: bool = False) -> Step:
    row = s.get(Step, (job_id, name), with_for_update=lock or None)
    if row is None:
        raise JobNotFound(f"job {job_id} has no step {name}")
    return row


def _locked_job(s: DirectTx, job_id: str) -> Any:
    """The job's row, locked (on PostgreSQL) for the rest of the transaction: ``_job`` on the
    direct path."""
    row = s.execute(_SELECT_JOB_LOCKED, {"p_job": job_id}).first()
    if row is None:
        raise JobNotFound(f"no job {job_id}")
    return row


def _dead_letter(s: Session, dead_letter_id: str, *, lock: bool = False) -> DeadLetter:
    letter = s.get(DeadLetter, dead_letter_id, with_for_update=lock or None)
    if letter is None:
        raise JobNotFound(f"no dead letter {dead_letter_id}")
    return letter


def _running_attempts(s: Session, job_id: str, step: str) -> list[Attempt]:
    return list(
        s.scalars(
            select(Attempt)
            .where(
                Attempt.job_id == job_id,
                Attempt.step == step,
                Attempt.outcome == AttemptOutcome.RUNNING.value,
            )
            .order_by(Attempt.number, Attempt.id)
        )
    )


def _close_attempt(
    attempt: Attempt, outcome: AttemptOutcome, now: datetime, *, error: ErrorInfo | None = None
) -> None:
    attempt.outcome = outcome.value
    attempt.finished_at = now
    attempt.wall_seconds = max(0.0, (now - attempt.started_at).total_seconds())
    if error is not None:
        attempt.error_label = error.label
        attempt.error_message = error.message
        attempt.exit_code = error.exit_code
        attempt.stderr = error.stderr
        attempt.argv = list(error.argv) if error.argv is not None else None
        attempt.toolchain_id = error.toolchain_id or attempt.toolchain_id


def _count_fanin(s: DirectTx, job_id: str, group: str) -> bool:
    """Atomically count one more finished step; True for the increment that completes it."""
    params = {"p_job": job_id, "p_group": group}
    row = s.execute(_COUNT_FANIN, params).one_or_none()
    if row is not None:
        done, total = row
        return bool(done == total)
    fanin = s.execute(_SELECT_FANIN, params).first()
    if fanin is None:
        raise JobNotFound(f"job {job_id} has no fan-in group {group}")
    raise JobError(f"fan-in {group} of job {job_id} is already complete ({fanin.total} steps)")


def _job_view(j: Any) -> JobView:
    """A view of an ORM ``Job``, or of a ``jobs`` row read on the direct path (a named tuple,
    from a SELECT or a RETURNING): the mapped attributes and the columns share their names."""
    return JobView(
        id=j.id,
        bucket=j.bucket,
        key=j.key,
        etag=j.etag,
        size=j.size,
        preset=j.preset,
        toolchain_id=j.toolchain_id,
        owner=j.owner,
        state=JobState(j.state),
        created_at=j.created_at,
        updated_at=j.updated_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
        requeued_at=j.requeued_at,
        max_age_seconds=j.max_age_seconds,
        plan=j.plan,
        error_label=j.error_label,
        error_message=j.error_message,
        failed_step=j.failed_step,
        manifest_key=j.manifest_key,
        cpu_seconds=j.cpu_seconds,
        progress=j.progress,
        webhook_url=j.webhook_url,
    )


def _step_view(r: Step) -> StepView:
    return StepView(
        job_id=r.job_id,
        name=r.name,
        lane=r.lane,
        state=StepState(r.state),
        attempts=r.attempts,
        enqueued_at=r.enqueued_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        updated_at=r.updated_at,
        wall_seconds=r.wall_seconds,
        cpu_seconds=r.cpu_seconds,
        worker=r.worker,
        progress=r.progress,
        error_label=r.error_label,
        error_message=r.error_message,
        outputs=r.outputs,
    )


def _attempt_view(a: Attempt) -> AttemptView:
    return AttemptView(
        id=a.id,
        job_id=a.job_id,
        step=a.step,
        number=a.number,
        worker=a.worker,
        started_at=a.started_at,
        finished_at=a.finished_at,
        outcome=AttemptOutcome(a.outcome),
        error_label=a.error_label,
        error_message=a.error_message,
        exit_code=a.exit_code,
        stderr=a.stderr,
        argv=tuple(a.argv) if a.argv is not None else None,
        toolchain_id=a.toolchain_id,
        wall_seconds=a.wall_seconds,
        cpu_seconds=a.cpu_seconds,
    )


def _dead_letter_view(d: DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        id=d.id,
        job_id=d.job_id,
        step=d.step,
        created_at=d.created_at,
        error_label=d.error_label,
        message=d.message,
        argv=tuple(d.argv) if d.argv is not None else None,
        exit_code=d.exit_code,
        stderr=d.stderr,
        toolchain_id=d.toolchain_id,
        worker=d.worker,
        attempts=tuple(d.attempts),
        state=DeadLetterState(d.state),
        replayed_at=d.replayed_at,
        replay_count=d.replay_count,
    )


def _event_view(e: Event) -> EventView:
    return EventView(
        id=e.id,
        received_at=e.received_at,
        event_time=e.event_time,
        bucket=e.bucket,
        key=e.key,
        etag=e.etag,
        size=e.size,
        event_name=e.event_name,
        record=e.record,
        job_id=e.job_id,
        outcome=e.outcome,
        detail=e.detail,
    )
