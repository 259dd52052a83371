"""Job store views → API bodies, with signed URLs for everything downloadable."""

from __future__ import annotations

from typing import Any

from vodforge.api import schemas
from vodforge.api.signing import ObjectUrls
from vodforge.errors import STDERR_TAIL_LINES, ObjectNotFound
from vodforge.jobs import DeadLetterView, JobState, JobStore, JobView, StepView
from vodforge.jobs.outbox import DeliveryView
from vodforge.pipeline import dag
from vodforge.pipeline.steps import PUBLISHED

__all__ = ["Renderer", "output_kind"]


def output_kind(key: str, job_id: str) -> str:
    rel = key.removeprefix(f"outputs/{job_id}/")
    if rel == "manifest.json":
        return "manifest"
    head = rel.split("/", 1)[0]
    return "preview" if head == "previews" else head


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in stderr.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _delivery(d: DeliveryView) -> schemas.DeliveryOut:
    state = d.state if d.state in ("pending", "delivered", "failed") else "pending"
    return schemas.DeliveryOut(
        url=d.url,
        event=d.event,
        state=state,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
    )


class Renderer:
    """Renders for one request (signed URLs are built on its base URL)."""

    def __init__(self, jobs: JobStore, urls: ObjectUrls, outbox: Any, base_url: str) -> None:
        self.jobs = jobs
        self.urls = urls
        self.outbox = outbox
        self.base_url = base_url

    def url(self, key: str) -> str:
        return self.urls.get_url(key, self.base_url)

    def poster_key(self, job: JobView) -> str:
        return f"outputs/{job.id}/previews/poster.jpg"

    def _poster_url(self, job: JobView) -> str | None:
        key = self.poster_key(job)
        if self.urls.local:
            return self.url(key) if self.urls.store.exists(key) else None
        return self.url(key) if job.state is JobState.SUCCEEDED else None

    def _job_error(self, job: JobView, *, detail: bool) -> schemas.ErrorOut | None:
        if job.error_label is None:
            return None
        worker = exit_code = None
        tail = ""
        if detail and job.failed_step:
            attempts = [a for a in self.jobs.attempts(job.id, job.failed_step) if a.error_label]
            if attempts:
                last = attempts[-1]
                worker, exit_code, tail = last.worker, last.exit_code, stderr_tail(last.stderr)
        return schemas.ErrorOut(
            type=job.error_label,
            message=job.error_message or "",
            step=job.failed_step,
            worker=worker,
            exit_code=exit_code,
            stderr_tail=tail,
        )

    def summary(self, job: JobView, *, detail: bool = False) -> schemas.JobSummary:
        return schemas.JobSummary(
            id=job.id,
            state=job.state.value,
            preset=job.preset,
            key=job.key,
            progress=job.progress,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            toolchain=job.toolchain_id,
            error=self._job_error(job, detail=detail),
            poster_url=self._poster_url(job),
        )

    def _step(self, job_id: str, step: StepView, errors: dict[str, Any]) -> schemas.StepOut:
        error = None
        if step.error_label is not None:
            last = errors.get(step.name)
            error = schemas.ErrorOut(
                type=step.error_label,
                message=step.error_message or "",
                step=step.name,
                worker=last.worker if last else step.worker,
                exit_code=last.exit_code if last else None,
                stderr_tail=stderr_tail(last.stderr) if last else "",
            )
        return schemas.StepOut(
            name=step.name,
            lane=step.lane,
            state=step.state.value,
            progress=step.progress,
            attempts=step.attempts,
            started_at=step.started_at,
            finished_at=step.finished_at,
            worker=step.worker,
            cpu_seconds=step.cpu_seconds,
            wall_seconds=step.wall_seconds,
            error=error,
        )

    def quick_keys(self, job: JobView, steps: list[StepView]) -> list[str]:
        """Published preview keys: from the previews step as soon as it finished (before the
        job is done), else from the job's outputs once it succeeded."""
        if job.state is JobState.SUCCEEDED:
            return [
                o.key for o in self.jobs.outputs(job.id) if output_kind(o.key, job.id) == "preview"
            ]
        for step in steps:
            if step.name == dag.PREVIEWS and step.outputs and PUBLISHED in step.outputs:
                return [str(k) for k in step.outputs[PUBLISHED]]
        return []

    def outputs(self, job: JobView, steps: list[StepView]) -> list[schemas.OutputOut]:
        if job.state is JobState.SUCCEEDED:
            records = [(o.key, o.size, o.sha256) for o in self.jobs.outputs(job.id)]
            if job.manifest_key and all(k != job.manifest_key for k, _, _ in records):
                try:
                    info = self.urls.store.stat(job.manifest_key)
                    records.append((job.manifest_key, info.size, info.etag))
                except ObjectNotFound:
                    pass
        else:
            records = []
            for key in self.quick_keys(job, steps):
                try:
                    info = self.urls.store.stat(key)
                except ObjectNotFound:
                    continue
                records.append((key, info.size, info.etag))
        return [
            schemas.OutputOut(
                key=key, kind=output_kind(key, job.id), size=size, sha256=sha, url=self.url(key)
            )
            for key, size, sha in records
        ]

    def job(self, job: JobView) -> schemas.Job:
        steps = self.jobs.steps(job.id)
        errors: dict[str, Any] = {}
        for attempt in self.jobs.attempts(job.id):
            if attempt.error_label is not None:
                errors[attempt.step] = attempt
        outputs = self.outputs(job, steps)
        master = f"outputs/{job.id}/hls/master.m3u8"
        hls_url = None
        if any(o.key == master for o in outputs):
            hls_url = self.urls.prefix_url(f"outputs/{job.id}/hls/", master, self.base_url)
        wall = None
        if job.finished_at is not None:
            wall = (job.finished_at - (job.started_at or job.created_at)).total_seconds()
        step_cpu = sum(s.cpu_seconds or 0.0 for s in steps)
        return schemas.Job(
            **self.summary(job, detail=True).model_dump(),
            source=schemas.SourceOut(bucket=job.bucket, key=job.key, etag=job.etag, size=job.size),
            steps=[self._step(job.id, s, errors) for s in steps],
            outputs=outputs,
            cpu_seconds=round(max(job.cpu_seconds, step_cpu), 3),
            wall_seconds=wall,
            webhooks=[_delivery(d) for d in self.outbox.for_job(job.id)],
            hls_url=hls_url,
        )

    def dead_letter(self, letter: DeadLetterView) -> schemas.DeadLetterOut:
        return schemas.DeadLetterOut(
            id=letter.id,
            job_id=letter.job_id,
            step=letter.step,
            state=letter.state.value,
            error=schemas.ErrorOut(
                type=letter.error_label,
                message=letter.message,
                step=letter.step,
                worker=letter.worker,
                exit_code=letter.exit_code,
                stderr_tail=stderr_tail(letter.stderr),
            ),
            argv=list(letter.argv or ()),
            stderr=letter.stderr,
            toolchain=letter.toolchain_id,
            attempts=[dict(a) for a in letter.attempts],
            created_at=letter.created_at,
            replayed_at=letter.replayed_at,
        )

    def upload_result(self, job: JobView) -> tuple[schemas.UploadResult, bool]:
        """The upload's answer and whether its quick outputs (poster, thumbnails, GIF) are in."""
        detail = self.job(job)
        keys = self.quick_keys(job, self.jobs.steps(job.id))
        names = {k.rsplit("/", 1)[-1]: k for k in keys}
        thumbs = sorted(k for n, k in names.items() if n.startswith("thumb_"))

        def url_of(name: str) -> str | None:
            return self.url(names[name]) if name in names else None

        result = schemas.UploadResult(
            job=detail,
            source_url=self.url(job.key),
            poster_url=url_of("poster.jpg"),
            thumbnail_urls=[self.url(k) for k in thumbs],
            gif_url=url_of("preview.gif"),
            sprite_url=url_of("sprite.jpg"),
            vtt_url=url_of("sprite.vtt"),
        )
        ready = bool(result.poster_url and result.gif_url and thumbs)
        return result, ready
