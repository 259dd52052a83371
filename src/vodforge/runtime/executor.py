"""Runs one step of one job and decides what happens next — independent of the broker.

``StepExecutor.execute(message)`` is what a Dramatiq actor calls (and what tests call directly):

1. ``start_step`` in the job store: skips a step that already succeeded or whose job ended
   (duplicate delivery, cancel); counts the attempt, including deliveries a crashed worker never
   finished — so an input that kills its worker every time still ends in the dead-letter queue.
2. picks the job's own toolchain (``ToolchainPool``: every registered ffmpeg, each with its own
   runner) and refuses the step if this worker's binary of it drifted from its fingerprint —
   the binary is never trusted blindly. A refused step is handed back without spending an
   attempt (``JobStore.release_step``) and re-sent after ``REFUSAL_DELAY_MS``, so a healthy
   worker takes it; a worker whose binary drifted keeps refusing (metric + log every time)
   until it is fixed, and a job no healthy worker takes ends at its max age.
3. runs the step function with heartbeats; on success records it and sends the successors (the
   last finisher of the media fan-in, as decided by the job store's atomic counter, sends
   ``package``).
4. on failure: transient and attempts left → record it and send the step again after an
   exponential backoff with jitter (Dramatiq's ``compute_backoff``, as a delayed message);
   permanent or out of attempts → the job fails and a dead letter keeps argv, exit code, full
   stderr, toolchain and the attempt history. The message itself is always acknowledged: the
   retry budget lives in the job store, where it survives crashes and redeliveries.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dramatiq.common import compute_backoff

from vodforge.errors import (
    FfmpegKilled,
    ToolchainDrift,
    VodforgeError,
)
from vodforge.jobs import (
    ErrorInfo,
    JobStore,
    JobView,
    OutputRecord,
    PlannedSteps,
    Publication,
    StepFinish,
)
from vodforge.media.runner import CallRecord
from vodforge.media.toolchain import Toolchain
from vodforge.observability import metrics
from vodforge.observability.logging import bind_step, get_logger
from vodforge.pipeline import dag, steps
from vodforge.pipeline.dag import Lane
from vodforge.runtime.heartbeats import Beat, Heartbeats

if TYPE_CHECKING:
    from vodforge.runtime.toolchains import ToolchainPool

log = get_logger(__name__)

HEARTBEAT_SECONDS = 2.0
#: A step refused by this worker (drifted toolchain) comes back after this long.
REFUSAL_DELAY_MS = 200


@dataclass(frozen=True)
class StepMessage:
    """The body of every step message: keys and names, never media."""

    ref: steps.JobRef
    step: str
    #: Wall-clock time (``time.time()``) the triggering event was received: dispatch latency.
    event_received_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref.to_dict(),
            "step": self.step,
            "event_received_at": self.event_received_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepMessage:
        return cls(
            ref=steps.JobRef.from_dict(data["ref"]),
            step=str(data["step"]),
            event_received_at=data.get("event_received_at"),
        )


class StepSender(Protocol):
    """The broker seam: put a step message on a lane (optionally after a delay)."""

    def send(self, lane: Lane, message: StepMessage, *, delay_ms: int | None = None) -> None: ...


def default_backoff(attempt: int, *, min_ms: int = 1000, max_ms: int = 60_000) -> int:
    """Milliseconds before retry number ``attempt`` (1-based): exponential with jitter."""
    _, delay = compute_backoff(attempt - 1, factor=max(1, min_ms), max_backoff=max_ms)
    return int(delay)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class StepExecutor:
    jobs: JobStore
    ctx: steps.StepContext
    sender: StepSender
    toolchain: Toolchain | None
    max_attempts: int = 3
    worker: str = field(default_factory=worker_id)
    backoff: Callable[[int], int] = default_backoff
    #: Every registered toolchain (None: only ``ctx``/``toolchain``, as in tests with a fake).
    pool: ToolchainPool | None = None
    heartbeats: Heartbeats = field(init=False)

    def __post_init__(self) -> None:
        self.heartbeats = Heartbeats(
            lambda job_id, step, progress: self.jobs.heartbeat(job_id, step, progress=progress),
            interval=HEARTBEAT_SECONDS,
        )

    # -----------------------------------------------------------------------------------------

    def execute(self, message: StepMessage, lane: Lane | None = None) -> None:
        """Run the step of ``message``, delivered on ``lane`` (None: called directly, not by a
        lane's actor) — and the step it chains, if any (``dag.chains_transcode``)."""
        try:
            chained = self._execute(message, lane)
            while chained is not None:
                chained = self._execute(chained, lane)
        finally:
            # Before the message is acknowledged: the lane's consumer then holds one message
            # fewer for this thread (see pipeline.gate).
            if self.ctx.media_gate is not None:
                self.ctx.media_gate.step_ended()

    def _execute(self, message: StepMessage, lane: Lane | None = None) -> StepMessage | None:
        """Run one step; returns the step to run next in this thread (a chained transcode)."""
        ref, step = message.ref, message.step
        kind = dag.step_kind(step)
        with bind_step(job_id=ref.job_id, step=step, worker=self.worker):
            started = self.jobs.start_step(ref.job_id, step, worker=self.worker)
            if started is None:
                log.info("step skipped: already done or job ended")
                if step == dag.PROBE:
                    # A redelivered probe whose chained transcode died with its worker: run
                    # it again now, as its own redelivered message would have been.
                    return self._chained(ref, lane)
                return None
            attempt = started.attempt
            with bind_step(attempt=attempt):
                if step == dag.PROBE and message.event_received_at is not None:
                    metrics.DISPATCH_LATENCY.observe(
                        max(0.0, time.time() - message.event_received_at)
                    )
                if attempt > self.max_attempts:
                    # Started this many times and never finished: the worker died each time
                    # (OOM, a crash in the decoder). Stop the loop here.
                    exc = FfmpegKilled(
                        f"{step}: started {attempt - 1} times without finishing "
                        f"(its worker died each time); giving up"
                    )
                    self._dead_letter(ref, step, exc, kind, t0=time.monotonic())
                    return None
                t0 = time.monotonic()
                try:
                    ctx = self._context_for(started.job.toolchain_id)
                except ToolchainDrift as exc:
                    self._hand_back(message, exc)
                    return None
                except VodforgeError as exc:
                    self._failed(message, exc, attempt, kind, t0)
                    return None
                try:
                    records, chained = self._run(ref, step, ctx, started.job, lane)
                except ToolchainDrift as exc:  # the binary changed under a running step
                    self._hand_back(message, exc)
                    return None
                except VodforgeError as exc:
                    self._failed(message, exc, attempt, kind, t0)
                    return None
                except Exception as exc:
                    log.exception("step crashed with an unexpected error")
                    self._failed(message, exc, attempt, kind, t0)
                    return None
                for record in records:
                    # Labelled by the call's own step (encode, audio, ...), also inside a
                    # single-step transcode.
                    metrics.FFMPEG_INVOCATIONS.labels(
                        record.step, record.toolchain_id, str(record.exit_code)
                    ).inc()
                    metrics.FFMPEG_SECONDS.labels(record.step, record.toolchain_id).observe(
                        record.wall_seconds
                    )
                metrics.STEP_SECONDS.labels(kind, "succeeded").observe(time.monotonic() - t0)
                return chained

    # -----------------------------------------------------------------------------------------

    def _context_for(self, toolchain_id: str) -> steps.StepContext:
        """The job's toolchain's context; ``ToolchainDrift`` if this worker's binary of it
        changed (refuse), ``ToolchainNotFound`` if it is not registered (fail the job)."""
        if self.pool is not None:
            return self.pool.context_for(toolchain_id)[1]
        if self.toolchain is not None:
            try:
                self.toolchain.verify_unchanged()
            except ToolchainDrift:
                metrics.TOOLCHAIN_REFUSALS.labels("drift").inc()
                raise
        return self.ctx

    def _hand_back(self, message: StepMessage, exc: ToolchainDrift) -> None:
        """Refuse the step without spending an attempt: release it and send it again."""
        ref, step = message.ref, message.step
        reason = f"worker {self.worker} refused the step: {exc.one_line()}"
        log.warning("refusing work: toolchain drifted", reason=exc.one_line())
        if self.jobs.release_step(ref.job_id, step, worker=self.worker, reason=reason):
            self.sender.send(dag.lane_of(step), message, delay_ms=REFUSAL_DELAY_MS)

    def _heartbeat(self, ref: steps.JobRef, step: str) -> tuple[steps.ProgressSink, Beat]:
        """A progress sink for the step; it writes to the job store at most every
        HEARTBEAT_SECONDS, and the process's heartbeat thread beats for a step without progress
        output so it still shows it is alive."""
        beat = self.heartbeats.start(ref.job_id, step)
        return functools.partial(self.heartbeats.progress, beat), beat

    def _run(
        self,
        ref: steps.JobRef,
        step: str,
        ctx: steps.StepContext,
        job: JobView,
        lane: Lane | None = None,
    ) -> tuple[list[CallRecord], StepMessage | None]:
        """The step's ffmpeg calls, and the step to run next in this thread, if any."""
        sink, beat = self._heartbeat(ref, step)
        t0 = time.monotonic()
        try:
            if step == dag.PROBE:
                return [], self._probe(ref, t0, lane)
            if step == dag.VERIFY:
                return self._verify(ref, t0, ctx, job), None
            if step == dag.TRANSCODE:
                return self._transcode(ref, t0, sink, ctx, job), None
            if step.startswith(dag.ENCODE_PREFIX):
                result = steps.run_encode(ctx, ref, dag.chunk_index(step), sink)
            elif step == dag.AUDIO:
                result = steps.run_audio(ctx, ref, sink)
            elif step == dag.PREVIEWS:
                result = steps.run_previews(ctx, ref, sink)
            elif step == dag.PACKAGE:
                result = steps.run_package(ctx, ref, sink)
            else:
                raise VodforgeError(f"unknown step {step!r}")
        finally:
            self.heartbeats.stop(beat)
        self._advance(ref, step, t0, result.cpu_seconds, result.outputs)
        return result.records, None

    def _advance(
        self,
        ref: steps.JobRef,
        step: str,
        t0: float,
        cpu_seconds: float,
        outputs: dict[str, Any] | None,
        *,
        plan: PlannedSteps | None = None,
        publish: Publication | None = None,
        keep: str | None = None,
    ) -> StepFinish | None:
        """Record the step, and in the same transaction mark its successors queued (and, for
        the final step, complete the job); then send the successors but ``keep`` (which the
        caller runs itself). Returns the finish, or None when recording failed.

        The work is done by now, so a failure here is not the step's failure: it is logged and
        the reaper re-drives whatever did not get sent."""
        try:
            specs = self._specs(ref)
            spec = next(s for s in specs if s.name == step)
            nexts = {n.name: n for n in dag.successors(specs, step)}
            finish = self.jobs.finish_step(
                ref.job_id,
                step,
                worker=self.worker,
                wall_seconds=time.monotonic() - t0,
                cpu_seconds=cpu_seconds,
                outputs=outputs,
                fanin_group=spec.fanin,
                successors=list(nexts),
                plan=plan,
                publish=publish,
            )
            for name in finish.queued:
                if name != keep:
                    self.sender.send(nexts[name].lane, StepMessage(ref, name))
        except Exception as exc:
            log.warning("step done but not advanced; the reaper will re-drive", error=repr(exc))
            return None
        return finish

    def _specs(self, ref: steps.JobRef) -> list[dag.StepSpec]:
        """The job's step graph: derived from its plan (cached per worker process), exactly as
        the probe derived it when it created the step rows."""
        return steps.run_probe(self.ctx, ref).specs

    def _probe(self, ref: steps.JobRef, t0: float, lane: Lane | None) -> StepMessage | None:
        """Plan the job and create its steps; returns the transcode when this thread runs it
        next (``dag.chains_transcode``)."""
        probed = steps.run_probe(self.ctx, ref)
        specs = probed.specs
        planned = PlannedSteps(
            steps=tuple((s.name, s.lane.value) for s in specs),
            plan=probed.plan.to_dict(),
            fanins=dict(dag.fanin_totals(specs)),
        )
        chain = dag.chains_transcode(specs, lane)
        finish = self._advance(
            ref,
            dag.PROBE,
            t0,
            0.0,
            {"chunks": len(probed.plan.chunks.chunks)},
            plan=planned,
            keep=dag.TRANSCODE if chain else None,
        )
        if chain and finish is not None and dag.TRANSCODE in finish.queued:
            return StepMessage(ref, dag.TRANSCODE)
        return None

    def _chained(self, ref: steps.JobRef, lane: Lane | None) -> StepMessage | None:
        """The transcode a probe on ``lane`` chains, for a probe found already done; None if
        it chains none, or the job cannot be planned any more (its source is gone)."""
        if lane is not Lane.LONG:
            return None
        try:
            specs = self._specs(ref)
        except Exception as exc:
            log.info("no chained step to resume", reason=repr(exc))
            return None
        return StepMessage(ref, dag.TRANSCODE) if dag.chains_transcode(specs, lane) else None

    def _verify(
        self, ref: steps.JobRef, t0: float, ctx: steps.StepContext, job: JobView
    ) -> list[CallRecord]:
        published = steps.run_verify(ctx, ref, source_etag=job.etag, bucket=job.bucket)
        self._complete(ref, dag.VERIFY, t0, published)
        return []

    def _transcode(
        self,
        ref: steps.JobRef,
        t0: float,
        sink: steps.ProgressSink,
        ctx: steps.StepContext,
        job: JobView,
    ) -> list[CallRecord]:
        published = steps.run_transcode(
            ctx, ref, source_etag=job.etag, bucket=job.bucket, progress=sink
        )
        self._complete(ref, dag.TRANSCODE, t0, published)
        return published.records

    def _complete(
        self, ref: steps.JobRef, step: str, t0: float, published: steps.Published
    ) -> None:
        cpu = float(published.manifest.get("totals", {}).get("cpu_seconds", 0.0))
        publication = Publication(
            outputs=tuple(
                OutputRecord(key=o["key"], size=o["size"], sha256=o["sha256"], kind=o["kind"])
                for o in published.outputs
            ),
            manifest_key=published.manifest_key,
        )
        finish = self._advance(
            ref, step, t0, cpu, {"manifest": published.manifest_key}, publish=publication
        )
        steps.forget_plan(self.ctx, ref)  # the job is done: its plan only takes room now
        done = finish.job if finish is not None else None
        if done is not None:
            age = (done.finished_at - done.created_at).total_seconds() if done.finished_at else 0.0
            metrics.JOB_SECONDS.labels("succeeded").observe(age)
            log.info("job succeeded", outputs=len(published.outputs), seconds=round(age, 3))

    # -----------------------------------------------------------------------------------------

    def _failed(
        self, message: StepMessage, exc: BaseException, attempt: int, kind: str, t0: float
    ) -> None:
        ref, step = message.ref, message.step
        permanent = getattr(exc, "permanent", False) if isinstance(exc, VodforgeError) else False
        if not permanent and attempt < self.max_attempts:
            error = ErrorInfo.from_exception(exc, worker=self.worker)
            self.jobs.fail_attempt(ref.job_id, step, error=error, will_retry=True)
            metrics.STEP_RETRIES.labels(kind, error.label).inc()
            metrics.STEP_SECONDS.labels(kind, "retried").observe(time.monotonic() - t0)
            log.warning(
                "step failed; will retry",
                error=error.message,
                label=error.label,
                attempts_left=self.max_attempts - attempt,
                stderr=error.stderr or None,
            )
            self.jobs.mark_queued(ref.job_id, step)
            self.sender.send(dag.lane_of(step), message, delay_ms=self.backoff(attempt))
            return
        self._dead_letter(ref, step, exc, kind, t0)

    def _dead_letter(
        self, ref: steps.JobRef, step: str, exc: BaseException, kind: str, t0: float
    ) -> None:
        error = ErrorInfo.from_exception(exc, worker=self.worker)
        self.jobs.fail_attempt(ref.job_id, step, error=error, will_retry=False)
        letter = self.jobs.fail_job(ref.job_id, step, error=error)
        metrics.DEAD_LETTERS.labels(kind, error.label).inc()
        metrics.STEP_SECONDS.labels(kind, "failed").observe(time.monotonic() - t0)
        job = self.jobs.get_job(ref.job_id)
        if job.finished_at is not None:
            metrics.JOB_SECONDS.labels("failed").observe(
                (job.finished_at - job.created_at).total_seconds()
            )
        # The whole stderr, never just "failed": this line is what an operator greps for.
        log.warning(
            "job failed; dead-lettered",
            dead_letter=letter.id,
            error=error.message,
            label=error.label,
            argv=list(error.argv) if error.argv else None,
            exit_code=error.exit_code,
            toolchain=error.toolchain_id,
            stderr=error.stderr or None,
        )
