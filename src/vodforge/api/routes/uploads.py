"""``POST /v1/uploads`` (multipart, optionally synchronous) and ``POST /v1/uploads/presign``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.context import ApiContext, api_context
from vodforge.api.ingest import Ingest, upload_key
from vodforge.api.keys import check_webhook_url
from vodforge.api.problems import HttpProblem
from vodforge.api.receive import Received, receive_multipart
from vodforge.api.routes.common import ingest_of, renderer
from vodforge.errors import ConfigError
from vodforge.jobs import JobState, JobView
from vodforge.media.presets import load_preset
from vodforge.media.signatures import blames_input
from vodforge.storage import ObjectStore, SupportsMoveIn

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

#: How often a synchronous upload looks at the job store while it waits.
WAIT_POLL_SECONDS = 0.1
#: Multipart framing on top of the file itself, allowed before Content-Length is refused.
FORM_OVERHEAD_BYTES = 64 * 1024

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 404, 413, 415, 422, 429)
}


def check_preset(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    if "/" in name or name.startswith("."):
        raise ConfigError(f"preset {name[:80]!r} is not a preset name")
    load_preset(name)  # ConfigError (400) for an unknown one
    return name


def store_upload(
    store: ObjectStore, ingest: Ingest, key: str, received: Received
) -> tuple[JobView | None, str | None]:
    """Move the received file into the store; its object-created event makes the job."""
    assert received.path is not None
    if isinstance(store, SupportsMoveIn):
        store.move_in(key, received.path, content_type=received.content_type)
    else:
        try:
            store.put_file(key, received.path, content_type=received.content_type)
        finally:
            received.discard()
    dispatched = ingest.take(key)
    if dispatched is None or dispatched.job_id is None:
        return None, dispatched.outcome if dispatched else "not_dispatched"
    return ingest.dispatcher.jobs.get_job(dispatched.job_id), None


@router.post(
    "",
    summary="Upload a video (multipart) and start a job",
    response_model=schemas.UploadResult,
    status_code=202,
    responses={
        200: {"model": schemas.UploadResult, "description": "quick outputs ready"},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "preset": {"type": "string"},
                            "webhook_url": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def upload(
    request: Request,
    who: Annotated[Principal, Depends(require("upload"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for previews")] = 0,
) -> JSONResponse:
    limit = ctx.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD_BYTES:
        raise HttpProblem(413, f"upload is larger than the limit of {limit} bytes")
    received = await receive_multipart(
        request.headers.get("content-type", ""),
        request.stream(),
        directory=ctx.settings.data_dir / "tmp",
        limit=limit,
    )
    try:
        if received.size == 0:
            raise HttpProblem(400, "the uploaded file is empty (0 bytes)", "input_empty")
        preset = check_preset(received.fields.get("preset"))
        webhook = received.fields.get("webhook_url") or None
        if webhook:
            check_webhook_url(webhook)
        key = upload_key(who.key_id, received.filename or "upload")
        ingest = ingest_of(request)
        ingest.expect(key, owner=who.key_id, preset=preset, webhook_url=webhook)
        job, why = await run_in_threadpool(store_upload, ctx.store, ingest, key, received)
    finally:
        received.discard()
    if job is None:
        raise HttpProblem(422, f"stored as {key} but no job was started ({why})", "no_job")
    render = renderer(ctx, request)
    deadline = time.monotonic() + wait
    while True:
        result, ready = await run_in_threadpool(render.upload_result, job)
        if ready or job.terminal or time.monotonic() >= deadline:
            break
        await asyncio.sleep(WAIT_POLL_SECONDS)
        job = await run_in_threadpool(ctx.jobs.get_job, job.id)
    if job.state is JobState.FAILED and blames_input(job.error_label):
        # The upload itself is bad (not media, corrupt, no video): say so as the client's
        # error, with the job that recorded it.
        body = {
            "error": {
                "code": job.error_label or "input",
                "message": job.error_message or "the upload is not a usable video",
            },
            **result.model_dump(mode="json"),
        }
        return JSONResponse(body, status_code=422)
    if not ready:
        result = result.model_copy(
            update={
                "poster_url": None,
                "thumbnail_urls": [],
                "gif_url": None,
                "sprite_url": None,
                "vtt_url": None,
            }
        )
    return JSONResponse(result.model_dump(mode="json"), status_code=200 if ready else 202)


@router.post(
    "/presign",
    summary="A presigned PUT for a direct upload",
    response_model=schemas.PresignResponse,
    status_code=201,
    responses=_ERRORS,
)
async def presign(
    body: schemas.PresignRequest,
    request: Request,
    who: Annotated[Principal, Depends(require("upload"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> schemas.PresignResponse:
    if body.size > ctx.settings.max_upload_bytes:
        raise HttpProblem(
            413, f"size {body.size} is larger than the limit of {ctx.settings.max_upload_bytes}"
        )
    preset = check_preset(body.preset)
    if body.webhook_url:
        check_webhook_url(body.webhook_url)
    key = upload_key(who.key_id, body.filename)
    ingest_of(request).expect(key, owner=who.key_id, preset=preset, webhook_url=body.webhook_url)
    put = ctx.urls.put_url(key, body.size, body.content_type, str(request.base_url))
    return schemas.PresignResponse(
        key=key, url=put.url, method="PUT", headers=put.headers, expires_at=put.expires_at
    )
