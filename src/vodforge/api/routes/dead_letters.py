"""The dead-letter queue: list (admin: all; others: their jobs') and replay (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.context import ApiContext, api_context
from vodforge.api.routes.common import renderer
from vodforge.jobs import DeadLetterState
from vodforge.runtime.control import replay_dead_letter

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 429)
}


@router.get(
    "",
    summary="Dead letters, newest first",
    response_model=schemas.DeadLetterPage,
    responses=_ERRORS,
)
async def list_dead_letters(
    request: Request,
    who: Annotated[Principal, Depends(require("read"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
    state: Annotated[DeadLetterState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> schemas.DeadLetterPage:
    def load() -> list[schemas.DeadLetterOut]:
        letters = ctx.jobs.list_dead_letters(
            state=state.value if state else None, limit=limit if who.admin else 1000
        )
        if not who.admin:
            owners: dict[str, str | None] = {}
            for letter in letters:
                if letter.job_id not in owners:
                    owners[letter.job_id] = ctx.jobs.get_job(letter.job_id).owner
            letters = [d for d in letters if who.sees(owners[d.job_id])][:limit]
        render = renderer(ctx, request)
        return [render.dead_letter(d) for d in letters]

    return schemas.DeadLetterPage(items=await run_in_threadpool(load))


@router.post(
    "/{letter_id}/replay",
    summary="Re-run the job from the step that failed",
    response_model=schemas.DeadLetterOut,
    responses=_ERRORS,
)
async def replay(
    letter_id: str,
    request: Request,
    who: Annotated[Principal, Depends(require("admin"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
) -> schemas.DeadLetterOut:
    letter = await run_in_threadpool(replay_dead_letter, ctx.jobs, ctx.dispatcher, letter_id)
    return renderer(ctx, request).dead_letter(letter)
