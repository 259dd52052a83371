"""The fan-in counter under real concurrency: threads on both backends, processes on SQLite.

Every chunk of a fan-in group finishes exactly once as far as the job store is concerned, and
exactly one finisher learns that the group is complete, however the finishes interleave and
however often a message is redelivered.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from tests.integration.jobs.conftest import Backend, new_job
from vodforge.jobs import JobStore, StepFinish, StepState
from vodforge.jobs.models import Fanin

STEPS = 40
THREADS = 8
PROCESSES = 4
CPU_PER_STEP = 0.25


def _prepare(store: JobStore) -> tuple[str, list[str]]:
    """A job with 40 encode steps in one fan-in group, every step already running."""
    job = new_job(store)
    names = [f"encode:{i:04d}" for i in range(STEPS)]
    store.add_steps(job.id, [(n, "long") for n in names])
    store.set_fanin(job.id, "encode", STEPS)
    for name in names:
        assert store.start_step(job.id, name, worker="setup:1") is not None
    return job.id, names


def _check(store: JobStore, job_id: str, results: Sequence[StepFinish], *, finishes: int) -> None:
    assert len(results) == finishes
    assert sum(r.newly_finished for r in results) == STEPS
    assert sum(r.group_complete for r in results) == 1
    assert {s.state for s in store.steps(job_id)} == {StepState.SUCCEEDED}
    assert store.get_job(job_id).cpu_seconds == STEPS * CPU_PER_STEP
    with store.engine.connect() as conn:
        done = conn.scalar(select(Fanin.done).where(Fanin.job_id == job_id))
    assert done == STEPS


def test_fanin_with_threads_and_duplicate_finishes(backend: Backend) -> None:
    """8 threads finish 40 steps, each step twice (a redelivered message): one completion."""
    with backend.open() as store:
        job_id, names = _prepare(store)
        work: queue.Queue[str] = queue.Queue()
        for name in names + names[::-1]:
            work.put(name)
        results: list[StepFinish] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def worker(n: int) -> None:
            barrier.wait()
            try:
                while True:
                    try:
                        name = work.get_nowait()
                    except queue.Empty:
                        return
                    result = store.finish_step(
                        job_id,
                        name,
                        worker=f"thread:{n}",
                        wall_seconds=1.0,
                        cpu_seconds=CPU_PER_STEP,
                        fanin_group="encode",
                    )
                    with lock:
                        results.append(result)
            except BaseException as exc:  # surfaced below, with the thread's own traceback
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        _check(store, job_id, results, finishes=2 * STEPS)


def _finish_in_process(
    url: str, job_id: str, names: list[str], barrier: Any, out: Any
) -> None:  # pragma: no cover - runs in a spawned child
    store = JobStore(url)
    try:
        barrier.wait(timeout=60)
        results = [
            store.finish_step(
                job_id,
                name,
                worker=f"proc:{multiprocessing.current_process().pid}",
                wall_seconds=1.0,
                cpu_seconds=CPU_PER_STEP,
                fanin_group="encode",
            )
            for name in names
        ]
        out.put([(r.newly_finished, r.group_complete) for r in results])
    except BaseException as exc:
        out.put(repr(exc))
        raise
    finally:
        store.close()


def test_fanin_with_processes_on_one_sqlite_file(sqlite_backend: Backend) -> None:
    """4 spawned processes share the database file, 10 steps each: exactly one completion."""
    with sqlite_backend.open() as store:
        job_id, names = _prepare(store)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(PROCESSES)
        out = ctx.Queue()
        share = len(names) // PROCESSES
        procs = [
            ctx.Process(
                target=_finish_in_process,
                args=(sqlite_backend.url, job_id, names[i * share : (i + 1) * share], barrier, out),
            )
            for i in range(PROCESSES)
        ]
        for p in procs:
            p.start()
        try:
            reports = [out.get(timeout=120) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=30)
        out.close()
        out.join_thread()
        assert all(isinstance(r, list) for r in reports), reports
        results = [StepFinish(newly, complete) for report in reports for newly, complete in report]
        assert [p.exitcode for p in procs] == [0] * PROCESSES
        _check(store, job_id, results, finishes=STEPS)
