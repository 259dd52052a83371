"""The hand-written migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect

from tests.integration.jobs.conftest import Backend
from vodforge.jobs import JobStore
from vodforge.jobs.models import Base
from vodforge.jobs.store import MIGRATIONS_DIR

TABLES = {
    "api_keys",
    "attempts",
    "dead_letters",
    "events",
    "fanins",
    "jobs",
    "outputs",
    "rollout_decisions",
    "rollouts",
    "steps",
    "toolchains",
    "webhook_deliveries",
}


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _diffs(store: JobStore, metadata: MetaData) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_migrations_match_the_models(backend: Backend) -> None:
    with backend.open() as store:
        assert _diffs(store, Base.metadata) == []
        assert set(inspect(store.engine).get_table_names()) == TABLES | {"alembic_version"}


def test_the_comparison_would_see_drift(backend: Backend) -> None:
    """Guards the test above against comparing nothing."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["jobs"].append_column(Column("priority", Integer(), nullable=True))
    with backend.open() as store:
        diffs = _diffs(store, drifted)
    assert len(diffs) == 1
    assert "priority" in repr(diffs[0])


def test_migrate_is_repeatable_and_reversible(backend: Backend) -> None:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    with backend.open() as store:
        store.migrate()  # already at head: nothing to do
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
        config = _config()
        with store.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
        store.migrate()
        assert _diffs(store, Base.metadata) == []


@pytest.mark.parametrize("openers", [4])
def test_concurrent_open_of_a_fresh_database(backend: Backend, openers: int) -> None:
    """Several processes starting at once on an empty database: one migrates, none fails."""
    barrier = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            backend.open().close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with backend.open() as store:
        assert _diffs(store, Base.metadata) == []
