"""The job store's direct path (``jobs/direct.py``) against SQLAlchemy's own execution, on
SQLite and PostgreSQL: the same statement must store the same bytes and read back the same
values either way, and driver errors must reach the store's error boundary as before."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from tests.integration.jobs.conftest import Backend, new_job
from vodforge.errors import JobNotFound, TransientError
from vodforge.jobs import store as store_module
from vodforge.jobs.direct import DirectStatements, Prepared
from vodforge.jobs.models import Job, Step

_STEPS: Table = Step.__table__  # type: ignore[assignment]
_JOBS: Table = Job.__table__  # type: ignore[assignment]
WHEN = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _step_row(job_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "name": name,
        "lane": "quick",
        "state": "pending",
        "attempts": 0,
        "updated_at": WHEN,
        "enqueued_at": WHEN.astimezone(timezone(timedelta(hours=2))),
        "progress": 0.25,
        "outputs": None,
        **extra,
    }


def _raw(backend: Backend, store: Any, job_id: str, name: str) -> tuple[Any, ...]:
    with store.engine.connect() as c:
        cast_outputs = "CAST(outputs AS TEXT)" if backend.name == "postgresql" else "outputs"
        row = c.execute(
            text(
                f"SELECT updated_at, enqueued_at, {cast_outputs}, progress FROM steps "
                "WHERE job_id = :j AND name = :n"
            ),
            {"j": job_id, "n": name},
        ).one()
    return tuple(row)


def test_the_direct_path_stores_what_a_session_stores(store: Any, backend: Backend) -> None:
    job = new_job(store)
    statements = DirectStatements(store.engine)
    for outputs in (None, {"chunks": 3, "keys": ["a", "b"]}):
        with store.transaction(write=True) as session:
            session.execute(
                insert(_STEPS), _step_row(job.id, f"orm-{outputs is None}", outputs=outputs)
            )
        with statements.transaction(write=True) as tx:
            tx.execute(
                insert(_STEPS), _step_row(job.id, f"direct-{outputs is None}", outputs=outputs)
            )
        orm = _raw(backend, store, job.id, f"orm-{outputs is None}")
        direct = _raw(backend, store, job.id, f"direct-{outputs is None}")
        assert orm == direct  # byte for byte: datetimes' text on SQLite, JSON 'null' for None

    # And they read back as the Session reads them: aware UTC datetimes, decoded JSON.
    query = (
        select(_STEPS.c.name, _STEPS.c.enqueued_at, _STEPS.c.outputs)
        .where(_STEPS.c.job_id == bindparam("j"))
        .order_by(_STEPS.c.name)
    )
    with statements.transaction(write=False) as tx:
        direct_rows = [tuple(r) for r in tx.execute(query, {"j": job.id}).all()]
    with store.transaction(write=False) as session:
        orm_rows = [tuple(r) for r in session.execute(query, {"j": job.id}).all()]
    assert direct_rows == orm_rows
    enqueued = {name: at for name, at, _ in direct_rows}
    assert enqueued["direct-False"] == WHEN
    assert enqueued["direct-False"].tzinfo is not None
    assert {name: out for name, _, out in direct_rows}["direct-False"] == {
        "chunks": 3,
        "keys": ["a", "b"],
    }


def test_rowcount_returning_and_rollback(store: Any) -> None:
    job = new_job(store)
    statements = DirectStatements(store.engine)
    bump = (
        update(_JOBS)
        .where(_JOBS.c.id == bindparam("p_job"))
        .values(progress=bindparam("p_progress"))
        .returning(_JOBS.c.progress, _JOBS.c.updated_at)
    )
    touch = update(_JOBS).where(_JOBS.c.id == bindparam("p_job")).values(progress=0.5)
    with statements.transaction(write=True) as tx:
        assert tx.execute(touch, {"p_job": "nope"}).rowcount == 0
        assert tx.execute(touch, {"p_job": job.id}).rowcount == 1
        progress, updated = tx.execute(bump, {"p_job": job.id, "p_progress": 0.75}).one()
    assert progress == 0.75
    assert updated.tzinfo is not None

    def abort_after_an_update() -> None:
        with statements.transaction(write=True) as tx:
            tx.execute(touch.values(progress=0.9), {"p_job": job.id})
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abort_after_an_update()
    assert store.get_job(job.id).progress == 0.75  # rolled back


def test_driver_errors_are_sqlalchemys_and_the_store_maps_them(store: Any) -> None:
    job = new_job(store)
    statements = DirectStatements(store.engine)
    row = _step_row(job.id, "twice")
    with statements.transaction(write=True) as tx:
        tx.execute(insert(_STEPS), row)
    with pytest.raises(IntegrityError), statements.transaction(write=True) as tx:
        tx.execute(insert(_STEPS), row)
    # The store's own calls on the direct path keep their errors.
    with pytest.raises(JobNotFound):
        store.start_step("0" * 32, "probe", worker="w")


def test_a_locked_sqlite_database_is_a_transient_error(
    sqlite_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    store = sqlite_backend.open()
    try:
        job = new_job(store)
        holder = sqlite3.connect(
            sqlite_backend.url.removeprefix("sqlite:///"), isolation_level=None
        )
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(TransientError, match="job store unavailable"):
                store.heartbeat(job.id, "probe")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        store.heartbeat(job.id, "probe")  # and works again once the lock is gone
    finally:
        store.close()


def test_what_the_direct_path_refuses(store: Any) -> None:
    dialect = store.engine.dialect
    with pytest.raises(ValueError, match="IN parameters"):
        Prepared(select(_JOBS.c.id).where(_JOBS.c.state.in_(["a", "b"])), dialect)
    # Job.cpu_seconds has a Python-side default: the direct path wants every value passed.
    with pytest.raises(ValueError, match="defaults"):
        Prepared(insert(_JOBS), dialect, ["id", "bucket"])


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_lost_mid_transaction_is_a_transient_error(store: Any) -> None:
    """The server ends the session inside a transaction (PostgreSQL: the backend terminates
    itself): the driver's error is flagged a disconnect, the connection is dropped from the
    pool, the store raises ``TransientError``, and the next call runs on a new connection."""
    job = new_job(store)

    def lose_the_connection() -> None:
        with store.direct(write=True) as tx:
            tx.run_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(TransientError, match="job store unavailable"):
        lose_the_connection()
    store.heartbeat(job.id, "probe")  # a fresh connection
    assert store.get_job(job.id).id == job.id
