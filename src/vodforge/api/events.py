"""Job state changes for ``GET /v1/events``: one poller per API process reads the jobs whose
``updated_at`` moved (every ``interval`` seconds, only while someone listens) and fans them out
to the subscribers allowed to see them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fastapi.concurrency import run_in_threadpool

from vodforge.jobs import JobStore, JobView
from vodforge.observability.logging import get_logger

__all__ = ["EventHub", "Subscription"]

log = get_logger(__name__)

QUEUE_SIZE = 1000


@dataclass(eq=False)
class Subscription:
    sees: Callable[[str | None], bool]
    queue: asyncio.Queue[JobView] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0


class EventHub:
    def __init__(self, jobs: JobStore, *, interval: float = 0.3) -> None:
        self.jobs = jobs
        self.interval = interval
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def subscribe(self, sees: Callable[[str | None], bool]) -> Subscription:
        sub = Subscription(sees)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            since = await run_in_threadpool(self.jobs.now)
            self._task = asyncio.create_task(self._poll(since), name="vodforge-events")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self, since: datetime) -> None:
        while self._subs:
            try:
                changed = await run_in_threadpool(self.jobs.changed_jobs, since=since)
            except Exception as exc:
                log.warning("event poll failed", error=repr(exc))
                changed = []
            for job in changed:
                since = max(since, job.updated_at)
                for sub in list(self._subs):
                    if not sub.sees(job.owner):
                        continue
                    try:
                        sub.queue.put_nowait(job)
                    except asyncio.QueueFull:
                        sub.dropped += 1
            await asyncio.sleep(self.interval)
