"""Finds work that stopped moving and moves it again: no job sits silently in a queue.

Every ``interval`` the reaper:
- fails jobs older than their max age (``JobExpired``, with a dead letter saying so);
- re-sends the probe of jobs accepted but never started (a message lost before the broker had it);
- re-sends steps whose heartbeat went quiet (a worker that died mid-step, a message lost), and
  the steps that are ready but were never sent (a crash between finishing a step and sending its
  successor).
Re-sending is safe: steps are idempotent and the job store counts each step's finish once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vodforge.errors import JobExpired
from vodforge.jobs import ErrorInfo, JobState, JobStore, StepState, StepView
from vodforge.observability import metrics
from vodforge.observability.logging import get_logger
from vodforge.pipeline import dag
from vodforge.runtime.control import send_ready_steps
from vodforge.runtime.dispatch import Dispatcher
from vodforge.runtime.executor import worker_id

log = get_logger(__name__)


@dataclass
class Reaper:
    jobs: JobStore
    dispatcher: Dispatcher
    stale_after: timedelta

    def sweep(self) -> dict[str, int]:
        counts = {"expired": 0, "unstarted": 0, "redriven": 0}
        for job in self.jobs.expired_jobs():
            error = ErrorInfo.from_exception(
                JobExpired(
                    f"job {job.id} exceeded its max age of {job.max_age_seconds:.0f} s "
                    f"(state {job.state})"
                ),
                worker=worker_id(),
            )
            step = job.failed_step or dag.PROBE
            self.jobs.fail_job(job.id, step, error=error)
            metrics.DEAD_LETTERS.labels(dag.step_kind(step), error.label).inc()
            log.warning("job expired", job_id=job.id)
            counts["expired"] += 1
        for job in self.jobs.stalled_jobs(older_than=self.stale_after):
            self.dispatcher.start(self.dispatcher.ref_for(job.id, job.key, job.preset))
            log.warning("job accepted but never started; re-sent", job_id=job.id)
            counts["unstarted"] += 1
        stale = {(s.job_id, s.name) for s in self.jobs.stale_steps(older_than=self.stale_after)}
        cutoff = datetime.now(UTC) - self.stale_after
        quiet = {
            j.id
            for j in self.jobs.list_jobs(state=JobState.RUNNING, limit=100_000)
            if j.updated_at < cutoff
        }
        for job_id in sorted({j for j, _ in stale} | quiet):
            counts["redriven"] += self._redrive(job_id, {n for j, n in stale if j == job_id})
        return counts

    def _redrive(self, job_id: str, stale_steps: set[str]) -> int:
        job = self.jobs.get_job(job_id)
        if job.state not in (JobState.QUEUED, JobState.RUNNING):
            return 0

        def quiet(spec: dag.StepSpec, row: StepView | None) -> bool:
            return row is None or spec.name in stale_steps or row.state == StepState.PENDING

        sent = send_ready_steps(self.jobs, self.dispatcher, job_id, include=quiet)
        if sent:
            log.warning("re-driving steps that stopped advancing", job_id=job_id, steps=sent)
        return len(sent)

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.sweep()
            except Exception as exc:
                log.warning("reaper sweep failed", error=repr(exc))
