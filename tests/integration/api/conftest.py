"""The API against real parts: a SQLite job store, a LocalStore in tmp_path and the dispatcher,
with a fake step sender instead of a broker (no step runs; tests drive job states directly)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vodforge.api.app import Probes, create_app
from vodforge.api.context import ApiContext
from vodforge.api.ingest import Ingest
from vodforge.api.keys import create_key
from vodforge.jobs import JobStore
from vodforge.pipeline.dag import Lane
from vodforge.runtime.dispatch import Dispatcher
from vodforge.runtime.executor import StepMessage
from vodforge.settings import Settings
from vodforge.storage import LocalStore


@dataclass
class FakeSender:
    sent: list[tuple[Lane, StepMessage]] = field(default_factory=list)

    def send(self, lane: Lane, message: StepMessage, *, delay_ms: int | None = None) -> None:
        self.sent.append((lane, message))


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    ctx: ApiContext
    sender: FakeSender
    tokens: dict[str, str]
    key_ids: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def make_api(tmp_path: Path, **overrides: Any) -> tuple[Api, JobStore]:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "secret_key": "test-secret-of-32-bytes-0123456789",
        "rate_limit": "1000/minute",
    }
    values.update(overrides)
    settings = Settings(**values)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    jobs = JobStore.open(settings.resolved_database_url)
    store = LocalStore(settings.data_dir / "store", secret=settings.secret())
    sender = FakeSender()
    dispatcher = Dispatcher(
        jobs=jobs,
        sender=sender,
        triggers=settings.triggers,
        toolchain_id="tc-test",
        max_age_seconds=3600,
        plan_workers=2,
        key_of=store.relative_key,
    )
    ctx = ApiContext(settings, jobs, store, dispatcher)
    ingest = Ingest(dispatcher, ctx.keys)
    store.subscribe(ingest.on_object_created)
    app = create_app(Probes(), ctx, ingest=ingest, events_interval=0.05)
    tokens: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for name, scopes in {
        "admin": "admin",
        "uploader": "upload,read",
        "other": "upload,read",
        "reader": "read",
    }.items():
        made = create_key(ctx.keys, name=name, scopes=scopes)
        tokens[name] = made.token
        key_ids[name] = made.key.id
    client = TestClient(app, raise_server_exceptions=False)
    return Api(app, client, ctx, sender, tokens, key_ids), jobs


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made, jobs = make_api(tmp_path)
    with made.client:
        yield made
    jobs.close()
