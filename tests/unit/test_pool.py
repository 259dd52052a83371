"""BoundedLane: an executor's concurrency limit over a shared pool whose threads are reused."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from vodforge.media.pool import BoundedLane, share


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=16)
    yield executor
    executor.shutdown(wait=True)


def test_runs_at_most_limit_at_once_in_submission_order(pool: ThreadPoolExecutor) -> None:
    lane = BoundedLane(2, pool)
    lock = threading.Lock()
    running, peak, started = [0], [0], []

    def task(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            started.append(i)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i * i

    futures = [lane.submit(task, i) for i in range(8)]
    assert [f.result(timeout=10) for f in futures] == [i * i for i in range(8)]
    assert peak[0] == 2
    assert started[2:] == sorted(started[2:])  # the queued ones start in order


def test_exceptions_reach_the_caller_and_free_the_slot(pool: ThreadPoolExecutor) -> None:
    lane = BoundedLane(1, pool)

    def boom() -> None:
        raise ValueError("bad input")

    failed = lane.submit(boom)
    after = lane.submit(lambda: "ran")
    with pytest.raises(ValueError, match="bad input"):
        failed.result(timeout=10)
    assert after.result(timeout=10) == "ran"


def test_cancelling_a_queued_task_skips_it(pool: ThreadPoolExecutor) -> None:
    lane = BoundedLane(1, pool)
    gate = threading.Event()
    ran: list[str] = []
    first = lane.submit(lambda: gate.wait(10))
    second = lane.submit(lambda: ran.append("second"))
    third = lane.submit(lambda: ran.append("third"))
    assert second.cancel()  # still waiting for the slot: like an executor's queued future
    gate.set()
    assert first.result(timeout=10) is True
    third.result(timeout=10)
    lane.drain()
    assert ran == ["third"]
    assert second.cancelled()


def test_drain_waits_for_tasks_submitted_by_tasks(pool: ThreadPoolExecutor) -> None:
    outer, inner = BoundedLane(2, pool), BoundedLane(1, pool)
    done: list[int] = []

    def child(i: int) -> None:
        time.sleep(0.01)
        done.append(i)

    def parent(i: int) -> None:
        inner.submit(child, i)

    for i in range(4):
        outer.submit(parent, i)
    outer.drain()
    inner.drain()
    assert sorted(done) == [0, 1, 2, 3]


def test_threads_are_reused_across_lanes() -> None:
    executor = ThreadPoolExecutor(max_workers=8)
    try:
        idents: set[int] = set()
        for _ in range(50):  # fifty "jobs", each with its own lane
            lane = BoundedLane(2, executor)
            for f in [lane.submit(threading.get_ident) for _ in range(4)]:
                idents.add(f.result(timeout=10))
            lane.drain()
        assert len(idents) <= 8
    finally:
        executor.shutdown(wait=True)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedLane(0)


# share: the calling thread as one of a lane's workers


def _recording_tasks(
    n: int, threads: list[int], *, sleep: float = 0.01, fail: set[int] | None = None
) -> list[Callable[[], Any]]:
    def task(i: int) -> Any:
        threads.append(threading.get_ident())
        time.sleep(sleep)
        if fail and i in fail:
            raise ValueError(f"task {i} failed")
        return i

    return [functools.partial(task, i) for i in range(n)]


def test_share_runs_a_single_task_in_the_calling_thread(pool: ThreadPoolExecutor) -> None:
    threads: list[int] = []
    assert share(BoundedLane(2, pool), _recording_tasks(1, threads)) == [0]
    assert threads == [threading.get_ident()]


def test_share_keeps_the_lane_limit_counting_the_caller(pool: ThreadPoolExecutor) -> None:
    threads: list[int] = []
    lock = threading.Lock()
    running, peak = [0], [0]

    def tracked(task: Callable[[], Any]) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return task()
        finally:
            with lock:
                running[0] -= 1

    tasks = [functools.partial(tracked, t) for t in _recording_tasks(8, threads)]
    assert share(BoundedLane(3, pool), tasks) == list(range(8))
    assert peak[0] == 3
    assert threading.get_ident() in threads
    assert len(set(threads)) == 3


def test_share_raises_the_first_failure_and_starts_nothing_after_one(
    pool: ThreadPoolExecutor,
) -> None:
    threads: list[int] = []
    tasks = _recording_tasks(10, threads, fail={2, 3})
    with pytest.raises(ValueError, match="task 2 failed"):
        share(BoundedLane(2, pool), tasks)
    assert len(threads) < 10
