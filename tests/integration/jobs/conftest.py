"""Job store fixtures: every store test runs on SQLite (a file in tmp_path) and on the real
PostgreSQL of the environment, each PostgreSQL test in a schema of its own.

PostgreSQL is part of the environment contract (``VODFORGE_TEST_POSTGRES_URL``, default the
local trust-auth server): when it is unreachable the tests fail rather than skip, so a green run
always means both backends were exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from vodforge.jobs import JobSpec, JobStore, JobView, job_id_for

POSTGRES_URL = os.environ.get(
    "VODFORGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


class FakeClock:
    """The store's clock seam: time moves only when a test says so."""

    def __init__(self, start: datetime = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    def open(self, clock: Callable[[], datetime] | None = None) -> JobStore:
        if clock is None:
            return JobStore.open(self.url, connect_args=self.connect_args)
        return JobStore.open(self.url, clock=clock, connect_args=self.connect_args)


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is part of the test environment and is not "
            f"reachable: {' '.join(str(exc).split())}",
            pytrace=False,
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    schema = f"vf_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield Backend("postgresql", POSTGRES_URL, {"options": f"-csearch_path={schema}"})
    finally:
        with _admin() as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(backend: Backend, clock: FakeClock) -> Iterator[JobStore]:
    s = backend.open(clock)
    try:
        yield s
    finally:
        s.close()


def spec_for(key: str = "in/clip.mp4", **overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "bucket": "media",
        "key": key,
        "etag": "etag-1",
        "size": 1234,
        "preset": "default",
        "toolchain_id": "tc-1",
        "max_age_seconds": 3600.0,
        "owner": None,
    }
    fields.update(overrides)
    job_id = job_id_for(
        fields["bucket"], fields["key"], fields["etag"], fields["preset"], fields["toolchain_id"]
    )
    return JobSpec(job_id=job_id, **fields)


def new_job(store: JobStore, key: str = "in/clip.mp4", **overrides: Any) -> JobView:
    view, created = store.create_job(spec_for(key, **overrides))
    assert created
    return view
