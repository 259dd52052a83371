"""The canary controller: a loop in the ``serve`` process (like the reaper) that evaluates the
running rollout and re-runs on stable every job that failed on a rolled-back candidate."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from vodforge.jobs import JobStore, JobView
from vodforge.observability.logging import get_logger
from vodforge.rollout.canary import Action
from vodforge.rollout.service import RolloutService
from vodforge.runtime.dispatch import Dispatcher

log = get_logger(__name__)


@dataclass
class RolloutController:
    service: RolloutService
    jobs: JobStore
    dispatcher: Dispatcher

    def rerun_on(self, job: JobView, toolchain_id: str) -> None:
        """The job again, from its first step, on ``toolchain_id``; its open dead letters are
        marked replayed (the job id stays: it still names the upload it was made for)."""
        moved = self.jobs.reassign_toolchain(job.id, toolchain_id)
        for letter in self.jobs.list_dead_letters(state="open", limit=100_000):
            if letter.job_id == job.id:
                self.jobs.mark_replayed(letter.id)
        self.dispatcher.start(self.dispatcher.ref_for(moved.id, moved.key, moved.preset))

    def tick(self) -> list[Action]:
        return self.service.evaluate(self.rerun_on)

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception as exc:
                log.warning("rollout evaluation failed", error=repr(exc))
