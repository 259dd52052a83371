"""Jobs: create from a stored object, list (paginated), show, cancel, retry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.context import ApiContext, api_context
from vodforge.api.keys import check_webhook_url
from vodforge.api.problems import HttpProblem
from vodforge.api.routes.common import renderer, visible_job
from vodforge.api.routes.uploads import check_preset
from vodforge.errors import InvalidTransition, ObjectNotFound
from vodforge.jobs import JobState
from vodforge.runtime.control import retry_job
from vodforge.storage import ObjectCreated, normalize_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 429)
}
MAX_OFFSET = 1_000_000


def _cursor(value: str | None) -> int:
    if value is None:
        return 0
    if not value.isdigit() or int(value) > MAX_OFFSET:
        raise HttpProblem(400, "cursor is not one this API gave out", "bad_cursor")
    return int(value)


@router.post(
    "",
    summary="Start a job for an object already in the store",
    response_model=schemas.Job,
    status_code=201,
    responses={
        200: {"model": schemas.Job, "description": "the same job, already there"},
        **_ERRORS,
    },
)
async def create_job(
    body: schemas.JobCreate,
    request: Request,
    who: Annotated[Principal, Depends(require("upload"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> JSONResponse:
    preset = check_preset(body.preset)
    if body.webhook_url:
        check_webhook_url(body.webhook_url)
    key = normalize_key(body.key)
    if not who.admin and not key.startswith(f"uploads/{who.key_id}/"):
        # Another key's upload or someone's outputs: only admin may transcode what it did
        # not upload. Same answer as a missing object, so nothing leaks.
        raise ObjectNotFound(f"no object {key!r} among this key's uploads")

    def start() -> tuple[str, str | None]:
        info = ctx.store.stat(key)
        event = ObjectCreated(
            bucket=ctx.store.bucket,
            key=key,
            size=info.size,
            etag=info.etag,
            event_time=datetime.now(UTC),
            source="vodforge:api",
        )
        done = ctx.dispatcher.handle(
            event, preset=preset, owner=who.key_id, webhook_url=body.webhook_url
        )
        return done.outcome, done.job_id

    outcome, job_id = await run_in_threadpool(start)
    if job_id is None:
        raise HttpProblem(422, f"no job started for {key!r}: {outcome}", "no_job")
    job = await visible_job(ctx, who, job_id)
    body_out = await run_in_threadpool(renderer(ctx, request).job, job)
    status = 201 if outcome == "created" else 200
    return JSONResponse(body_out.model_dump(mode="json"), status_code=status)


@router.get(
    "", summary="List jobs, newest first", response_model=schemas.JobPage, responses=_ERRORS
)
async def list_jobs(
    request: Request,
    who: Annotated[Principal, Depends(require("read"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
    state: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=16)] = None,
) -> schemas.JobPage:
    offset = _cursor(cursor)
    owner = None if who.admin else who.key_id
    jobs = await run_in_threadpool(
        ctx.jobs.list_jobs, state=state, owner=owner, limit=limit + 1, offset=offset
    )
    render = renderer(ctx, request)
    items = await run_in_threadpool(lambda: [render.summary(j) for j in jobs[:limit]])
    more = len(jobs) > limit
    return schemas.JobPage(items=items, next_cursor=str(offset + limit) if more else None)


@router.get("/{job_id}", summary="One job", response_model=schemas.Job, responses=_ERRORS)
async def get_job(
    job_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require("read"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> schemas.Job:
    job = await visible_job(ctx, who, job_id)
    return await run_in_threadpool(renderer(ctx, request).job, job)


@router.post(
    "/{job_id}/cancel", summary="Cancel a job", response_model=schemas.Job, responses=_ERRORS
)
async def cancel_job(
    job_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require("upload"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> schemas.Job:
    job = await visible_job(ctx, who, job_id)
    if job.terminal:
        raise InvalidTransition(f"job {job_id} already ended ({job.state})")
    job = await run_in_threadpool(ctx.jobs.cancel_job, job_id)
    return await run_in_threadpool(renderer(ctx, request).job, job)


@router.post(
    "/{job_id}/retry",
    summary="Run a failed or cancelled job again",
    response_model=schemas.Job,
    responses=_ERRORS,
)
async def retry(
    job_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require("upload"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> schemas.Job:
    job = await visible_job(ctx, who, job_id)
    if job.state not in {JobState.FAILED, JobState.CANCELLED}:
        raise InvalidTransition(f"job {job_id} is {job.state}: only failed or cancelled retry")
    await run_in_threadpool(retry_job, ctx.jobs, ctx.dispatcher, job_id)
    job = await run_in_threadpool(ctx.jobs.get_job, job_id)
    return await run_in_threadpool(renderer(ctx, request).job, job)
