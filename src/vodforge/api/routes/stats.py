"""``GET /v1/stats``: throughput, failure rate, step p95 and states, from the job store."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from vodforge.api import schemas
from vodforge.api.auth import Principal, require
from vodforge.api.context import ApiContext, api_context
from vodforge.jobs import JobState

router = APIRouter(tags=["stats"])


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def compute(ctx: ApiContext, who: Principal, hours: int) -> schemas.Stats:
    since = ctx.jobs.now() - timedelta(hours=hours)
    owner = None if who.admin else who.key_id
    created = ctx.jobs.jobs_created_since(since, owner=owner)
    per_minute = Counter(c.replace(second=0, microsecond=0) for c, _, _ in created)
    ended: dict[datetime, list[bool]] = defaultdict(list)
    for _, state, finished in created:
        if finished is not None and state in (JobState.SUCCEEDED, JobState.FAILED):
            ended[finished.replace(minute=0, second=0, microsecond=0)].append(
                state is JobState.FAILED
            )
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    if who.admin:
        for toolchain, step, wall in ctx.jobs.step_durations(since=since):
            durations[(toolchain, step)].append(wall)
    by_state = Counter(state.value for _, state, _ in created)
    if who.admin:
        by_state = Counter({s.value: n for s, n in ctx.jobs.count_by_state().items()})
    return schemas.Stats(
        jobs_per_minute=[schemas.MinuteCount(t=t, count=n) for t, n in sorted(per_minute.items())],
        failure_rate=[
            schemas.RatePoint(t=t, rate=sum(v) / len(v)) for t, v in sorted(ended.items())
        ],
        step_p95=[
            schemas.StepP95(toolchain=tc, step=step, p95_seconds=round(p95(v), 3), n=len(v))
            for (tc, step), v in sorted(durations.items())
        ],
        by_state={s.value: by_state.get(s.value, 0) for s in JobState},
    )


@router.get(
    "/v1/stats",
    summary="Jobs per minute, failure rate per hour, step p95, jobs by state",
    response_model=schemas.Stats,
    responses={c: {"model": schemas.ErrorResponse} for c in (401, 403, 422, 429)},
)
async def stats(
    who: Annotated[Principal, Depends(require("read"))],
    ctx: Annotated[ApiContext, Depends(api_context)],
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> schemas.Stats:
    return await run_in_threadpool(compute, ctx, who, hours)
