"""One thread pool per process, and bounded lanes over it.

A short job used to start and join seven threads (three per-job executors in the transcode, one
in verification): on this kind of VM a thread start is ~0.6 ms of system time (stack mmap,
clone, and a TLB shootdown when its stack is unmapped), a tenth of a tiny job's whole Python
cost. The process keeps one ``ThreadPoolExecutor`` whose idle threads are reused, and each job
takes bounded views of it (``BoundedLane``): a lane runs at most ``limit`` of its tasks at once,
queueing the rest in order, exactly like the per-job executor it replaces, without blocking the
submitter or holding a pool thread while it waits.

No task may wait on another task of the shared pool, nor block for long (deadlock once the pool
is full): tasks here run one ffmpeg call or one decode, and only the job's own thread waits on
their futures. Heartbeats have a thread of their own for that reason (runtime.heartbeats).
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

__all__ = ["BoundedLane", "share", "shared_pool"]

T = TypeVar("T")

#: Threads the shared pool may grow to; lanes bound what each job uses, so this only caps the
#: sum over concurrent jobs (each long-lane step runs a few calls and decodes at a time). Tasks
#: past the cap wait their turn; none of them waits on another, so that cannot deadlock.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> ThreadPoolExecutor:
    global _POOL  # noqa: PLW0603 — one pool per process, made on first use
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="vodforge")
        return _POOL


_Item = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class BoundedLane:
    """At most ``limit`` tasks running at once on the shared pool; the rest wait in order.

    ``submit`` returns a ``Future`` of the lane's own: cancelling one that has not started
    removes it from the queue, as with an executor of ``limit`` threads."""

    def __init__(self, limit: int, pool: ThreadPoolExecutor | None = None) -> None:
        if limit < 1:
            raise ValueError("a lane runs at least one task at a time")
        self.limit = limit
        self._pool = pool or shared_pool()
        self._running = 0
        self._waiting: deque[_Item] = deque()
        self._submitted: list[Future[Any]] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        outer: Future[T] = Future()
        with self._lock:
            self._submitted.append(outer)
            start = self._running < self.limit
            if start:
                self._running += 1
            else:
                self._waiting.append((outer, fn, args, kwargs))
        if start:
            self._start((outer, fn, args, kwargs))
        return outer

    def drain(self) -> None:
        """Wait until every task submitted so far has finished or was cancelled (what leaving
        an executor's ``with`` block did): nothing of a job may still run once it moves on."""
        while True:
            with self._lock:
                pending = [f for f in self._submitted if not f.done()]
                self._submitted = pending
            if not pending:
                return
            wait(pending)

    def _start(self, item: _Item) -> None:
        while True:
            outer, fn, args, kwargs = item
            if outer.set_running_or_notify_cancel():
                try:
                    inner = self._pool.submit(fn, *args, **kwargs)
                except BaseException as exc:  # the pool is shut down (interpreter exit)
                    outer.set_exception(exc)
                else:
                    inner.add_done_callback(functools.partial(self._finish, outer))
                    return
            # Cancelled while waiting (or could not start): its slot goes to the next one.
            with self._lock:
                if not self._waiting:
                    self._running -= 1
                    return
                item = self._waiting.popleft()

    def _finish(self, outer: Future[Any], inner: Future[Any]) -> None:
        exc = inner.exception()
        if exc is not None:
            outer.set_exception(exc)
        else:
            outer.set_result(inner.result())
        with self._lock:
            if not self._waiting:
                self._running -= 1
                return
            item = self._waiting.popleft()
        self._start(item)


def share(lane: BoundedLane, tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``tasks`` with ``lane``'s concurrency, the calling thread being one of its workers:
    it and up to ``lane.limit - 1`` helpers on the lane take the next task from one queue, so a
    task costs no thread hand-off of its own (one per helper; none for a single task). Returns
    the results in task order. The first failure (by task order) is raised once every worker
    stopped; none starts a task after a failure."""
    queue = deque(enumerate(tasks))
    results: dict[int, T] = {}
    failures: dict[int, BaseException] = {}

    def work() -> None:
        while not failures:
            try:
                index, task = queue.popleft()
            except IndexError:
                return
            try:
                results[index] = task()
            except BaseException as exc:  # re-raised by the caller once all workers stopped
                failures[index] = exc

    helpers = [lane.submit(work) for _ in range(min(lane.limit, len(tasks)) - 1)]
    try:
        work()
    finally:
        wait(helpers)
    for future in helpers:
        future.result()  # a helper that could not start (interpreter exit)
    if failures:
        raise failures[min(failures)]
    return [results[i] for i in range(len(tasks))]
