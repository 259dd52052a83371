"""``GET /v1/events``: server-sent events of job changes (``event: job``, ``data: JobSummary``)
with a ``: ping`` comment every ``ping_seconds``; ends when the client goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.context import ApiContext, api_context
from vodforge.api.events import EventHub
from vodforge.api.routes.common import renderer

router = APIRouter(tags=["events"])

PING_SECONDS = 15.0


def hub_of(request: Request) -> EventHub:
    hub = request.app.state.events
    assert isinstance(hub, EventHub)
    return hub


@router.get(
    "/v1/events",
    summary="Server-sent events: job state and progress changes",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **{c: {"model": schemas.ErrorResponse} for c in (401, 403, 429)},
    },
)
async def events(
    request: Request,
    who: Annotated[Principal, Depends(require("read"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> StreamingResponse:
    hub = hub_of(request)
    sub = await hub.subscribe(who.sees)
    render = renderer(ctx, request)
    ping = float(getattr(request.app.state, "ping_seconds", PING_SECONDS))

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    job = await asyncio.wait_for(sub.queue.get(), timeout=ping)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                body = await run_in_threadpool(render.summary, job)
                yield f"event: job\ndata: {json.dumps(body.model_dump(mode='json'))}\n\n"
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
