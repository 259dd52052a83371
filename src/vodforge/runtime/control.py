"""Operator actions on jobs: retry a failed job, replay a dead letter, re-drive ready steps.
Used by the CLI, the reaper and (next) the HTTP API."""

from __future__ import annotations

from collections.abc import Callable

from vodforge.jobs import DeadLetterView, JobStore, StepState, StepView
from vodforge.pipeline import dag
from vodforge.runtime.dispatch import Dispatcher
from vodforge.runtime.executor import StepMessage


def job_specs(steps: list[StepView]) -> list[dag.StepSpec]:
    """The job's step graph from its step rows (only the probe until the probe has run)."""
    rows = {s.name: s for s in steps}
    if dag.PROBE not in rows or rows[dag.PROBE].state != StepState.SUCCEEDED or len(rows) == 1:
        return [dag.probe_spec()]
    names = set(rows)
    return dag.job_steps(
        chunks=sum(1 for n in names if n.startswith(dag.ENCODE_PREFIX)) or 1,
        has_audio=dag.AUDIO in names,
        has_previews=dag.PREVIEWS in names,
        single=dag.TRANSCODE in names,
    )


def send_ready_steps(
    jobs: JobStore,
    dispatcher: Dispatcher,
    job_id: str,
    *,
    include: Callable[[dag.StepSpec, StepView | None], bool] = lambda spec, row: True,
) -> list[str]:
    """Send every step whose predecessors all succeeded and that has not (and ``include`` says
    so); returns their names. Safe to repeat: steps are idempotent."""
    job = jobs.get_job(job_id)
    rows = {s.name: s for s in jobs.steps(job_id)}
    if not rows:
        dispatcher.start(dispatcher.ref_for(job.id, job.key, job.preset))
        return [dag.PROBE]
    ref = dispatcher.ref_for(job.id, job.key, job.preset)
    succeeded = {n: r.state == StepState.SUCCEEDED for n, r in rows.items()}
    sent = []
    for spec in dag.ready(job_specs(list(rows.values())), succeeded):
        if not include(spec, rows.get(spec.name)):
            continue
        jobs.mark_queued(job_id, spec.name)
        dispatcher.sender.send(spec.lane, StepMessage(ref, spec.name))
        sent.append(spec.name)
    return sent


def retry_job(jobs: JobStore, dispatcher: Dispatcher, job_id: str) -> list[str]:
    """A failed or cancelled job runs again from its first unfinished step."""
    jobs.requeue(job_id)
    return send_ready_steps(jobs, dispatcher, job_id)


def replay_dead_letter(jobs: JobStore, dispatcher: Dispatcher, letter_id: str) -> DeadLetterView:
    """Re-run a dead-lettered job from the step that failed (finished steps are kept)."""
    letter = jobs.get_dead_letter(letter_id)
    retry_job(jobs, dispatcher, letter.job_id)
    return jobs.mark_replayed(letter_id)
