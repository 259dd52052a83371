"""Object-created events → jobs.

An event is recorded, matched against the triggers, and turned into a job whose id derives from
bucket/key/etag + preset + toolchain: the same upload announced twice (a retried notification,
the watch folder and an S3 event for one object) maps to the one job already there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vodforge.jobs import EventRecord, JobSpec, JobStore, job_id_for
from vodforge.observability import metrics
from vodforge.observability.logging import get_logger
from vodforge.pipeline import dag
from vodforge.pipeline.dag import Lane
from vodforge.pipeline.steps import JobRef
from vodforge.runtime.executor import StepMessage, StepSender
from vodforge.runtime.triggers import match_trigger
from vodforge.settings import Trigger
from vodforge.storage import ObjectCreated, to_s3_record

log = get_logger(__name__)


@dataclass(frozen=True)
class Dispatched:
    outcome: str  # created | duplicate | no_trigger
    job_id: str | None


@dataclass
class Dispatcher:
    jobs: JobStore
    sender: StepSender
    triggers: Sequence[Trigger]
    toolchain_id: str
    max_age_seconds: float
    plan_workers: int
    chunk_seconds: float | None = None
    #: Bucket key → the store's key (an S3Store with a prefix reports ``prefix/key`` in its
    #: events); None: the object is outside this store. Triggers match the store's key.
    key_of: Callable[[str], str | None] = lambda key: key
    #: (bucket, key, etag, preset) → the toolchain of a new job: a canary rollout's weighted
    #: choice (``RolloutService.route``). None, or a None answer: ``toolchain_id``.
    router: Callable[[str, str, str, str], str | None] | None = None
    #: Uploads up to this size are probed on the long lane (``dag.chains_transcode``); 0: none.
    chain_upload_bytes: int = 0

    def handle(
        self,
        event: ObjectCreated,
        *,
        preset: str | None = None,
        owner: str | None = None,
        webhook_url: str | None = None,
    ) -> Dispatched:
        """``preset`` given (an API call naming one) bypasses the triggers; ``owner`` (an API
        key id) and ``webhook_url`` are recorded on a newly created job."""
        received = time.time()
        key = self.key_of(event.key)
        if key is None:
            self._record(event, None, "no_trigger", "outside this store's prefix")
            return Dispatched("no_trigger", None)
        if preset is None:
            trigger = match_trigger(self.triggers, bucket=event.bucket, key=key)
            if trigger is None:
                self._record(event, None, "no_trigger", "no trigger matches this key")
                return Dispatched("no_trigger", None)
            preset = trigger.preset
        routed = self.router(event.bucket, key, event.etag, preset) if self.router else None
        toolchain_id = routed or self.toolchain_id
        job_id = job_id_for(event.bucket, key, event.etag, preset, toolchain_id)
        small = 0 < event.size <= self.chain_upload_bytes
        spec = dag.probe_spec(Lane.LONG if small else Lane.QUICK)
        job, created = self.jobs.admit(
            JobSpec(
                job_id=job_id,
                bucket=event.bucket,
                key=key,
                etag=event.etag,
                size=event.size,
                preset=preset,
                toolchain_id=toolchain_id,
                max_age_seconds=self.max_age_seconds,
                owner=owner,
                webhook_url=webhook_url,
            ),
            self._event_record(event, None, "created", None),
            (spec.name, spec.lane.value),
        )
        outcome = "created" if created else "duplicate"
        metrics.EVENTS.labels(outcome).inc()
        if created:
            # The probe step is already queued (same transaction as the job): send it.
            ref = self.ref_for(job.id, key, preset)
            self.sender.send(spec.lane, StepMessage(ref, spec.name, received))
        log.info("event", outcome=outcome, job_id=job.id, key=key, preset=preset)
        return Dispatched(outcome, job.id)

    def ref_for(self, job_id: str, key: str, preset: str) -> JobRef:
        return JobRef(
            job_id=job_id,
            source_key=key,
            preset=preset,
            chunk_seconds=self.chunk_seconds,
            plan_workers=self.plan_workers,
        )

    def start(self, ref: JobRef, *, received: float | None = None) -> None:
        spec = dag.probe_spec()
        self.jobs.add_steps(ref.job_id, [(spec.name, spec.lane.value)])
        self.jobs.mark_queued(ref.job_id, spec.name)
        self.sender.send(spec.lane, StepMessage(ref, spec.name, received))

    def _record(
        self, event: ObjectCreated, job_id: str | None, outcome: str, detail: str | None
    ) -> None:
        metrics.EVENTS.labels(outcome).inc()
        self.jobs.record_event(self._event_record(event, job_id, outcome, detail))

    @staticmethod
    def _event_record(
        event: ObjectCreated, job_id: str | None, outcome: str, detail: str | None
    ) -> EventRecord:
        return EventRecord(
            bucket=event.bucket,
            key=event.key,
            etag=event.etag,
            size=event.size,
            event_name=event.event_name,
            event_time=event.event_time,
            record=to_s3_record(event),
            job_id=job_id,
            outcome=outcome,
            detail=detail,
        )
