"""The webhook outbox: deliveries of jobs' terminal states, durable in the job store.

A deliverer finds jobs that reached ``succeeded``/``failed`` with a webhook target (the job's
own URL, or its owner key's) and no delivery for that transition yet, writes one row per target,
then works the rows whose ``next_attempt_at`` has come. Every attempt is appended to the row's
log, so a restart loses nothing and the job's page shows what happened.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from vodforge.jobs.models import ApiKey, Job, WebhookDelivery
from vodforge.jobs.states import JobState
from vodforge.jobs.store import JobStore, _job_view
from vodforge.jobs.views import JobView, _ToDict

__all__ = ["DeliveryState", "DeliveryView", "WebhookOutbox"]

EVENTS = {JobState.SUCCEEDED.value: "job.succeeded", JobState.FAILED.value: "job.failed"}


class DeliveryState:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class DeliveryView(_ToDict):
    id: str
    job_id: str
    job_finished_at: datetime
    key_id: str | None
    url: str
    event: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    log: tuple[dict[str, Any], ...]


def _view(d: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        id=d.id,
        job_id=d.job_id,
        job_finished_at=d.job_finished_at,
        key_id=d.key_id,
        url=d.url,
        event=d.event,
        payload=d.payload,
        state=d.state,
        attempts=d.attempts,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        log=tuple(d.log),
    )


class WebhookOutbox:
    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs

    def now(self) -> datetime:
        return self._jobs.now()

    def enqueue_finished(
        self,
        payload_for: Callable[[JobView, str], dict[str, Any]],
        *,
        lookback: timedelta = timedelta(days=1),
    ) -> int:
        """Write deliveries for terminal transitions (within ``lookback``) that have none yet;
        returns how many rows were written. Safe to repeat."""
        now = self._jobs.now()
        stmt = (
            select(Job, ApiKey.webhook_url)
            .outerjoin(ApiKey, ApiKey.id == Job.owner)
            .where(
                Job.state.in_(list(EVENTS)),
                Job.updated_at >= now - lookback,
                Job.finished_at.is_not(None),
                (Job.webhook_url.is_not(None)) | (ApiKey.webhook_url.is_not(None)),
            )
        )
        written = 0
        with self._jobs.transaction(write=True) as s:
            for job, key_url in s.execute(stmt).all():
                assert job.finished_at is not None
                targets = [u for u in dict.fromkeys((job.webhook_url, key_url)) if u]
                known = set(
                    s.scalars(
                        select(WebhookDelivery.url).where(
                            WebhookDelivery.job_id == job.id,
                            WebhookDelivery.job_finished_at == job.finished_at,
                        )
                    )
                )
                event = EVENTS[job.state]
                for url in targets:
                    if url in known:
                        continue
                    s.add(
                        WebhookDelivery(
                            id=uuid.uuid4().hex,
                            job_id=job.id,
                            job_finished_at=job.finished_at,
                            key_id=job.owner,
                            url=url,
                            event=event,
                            payload=payload_for(_job_view(job), event),
                            state=DeliveryState.PENDING,
                            attempts=0,
                            created_at=now,
                            next_attempt_at=now,
                            last_status=None,
                            last_error=None,
                            delivered_at=None,
                            log=[],
                        )
                    )
                    written += 1
        return written

    def due(self, *, limit: int = 20) -> list[DeliveryView]:
        """Pending deliveries whose next attempt is due, oldest first."""
        stmt = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.state == DeliveryState.PENDING,
                WebhookDelivery.next_attempt_at <= self._jobs.now(),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        with self._jobs.transaction(write=False) as s:
            return [_view(d) for d in s.scalars(stmt)]

    def record_attempt(
        self,
        delivery_id: str,
        *,
        status: int | None,
        error: str | None,
        seconds: float,
        retry_at: datetime | None,
    ) -> DeliveryView:
        """One attempt: delivered (2xx, no error), retried at ``retry_at``, or given up (None)."""
        now = self._jobs.now()
        ok = error is None and status is not None and 200 <= status < 300
        with self._jobs.transaction(write=True) as s:
            row = s.get(WebhookDelivery, delivery_id, with_for_update=True)
            if row is None:
                raise KeyError(delivery_id)
            row.attempts += 1
            row.last_status = status
            row.last_error = error
            row.log = [
                *row.log,
                {
                    "at": now.isoformat(),
                    "status": status,
                    "error": error,
                    "seconds": round(seconds, 3),
                },
            ]
            if ok:
                row.state = DeliveryState.DELIVERED
                row.delivered_at = now
            elif retry_at is None:
                row.state = DeliveryState.FAILED
            else:
                row.next_attempt_at = retry_at
            s.flush()
            return _view(row)

    def for_job(self, job_id: str) -> list[DeliveryView]:
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.url)
        )
        with self._jobs.transaction(write=False) as s:
            return [_view(d) for d in s.scalars(stmt)]
