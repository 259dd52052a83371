"""Helpers the routes share: the request's renderer, visible jobs, the ingest seam."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from vodforge.api.auth import Principal
from vodforge.api.context import ApiContext
from vodforge.api.ingest import Ingest
from vodforge.api.render import Renderer
from vodforge.errors import JobNotFound
from vodforge.jobs import JobView


def renderer(ctx: ApiContext, request: Request) -> Renderer:
    return Renderer(ctx.jobs, ctx.urls, ctx.outbox, str(request.base_url))


def ingest_of(request: Request) -> Ingest:
    ingest = request.app.state.ingest
    assert isinstance(ingest, Ingest)
    return ingest


async def visible_job(ctx: ApiContext, who: Principal, job_id: str) -> JobView:
    """The job if this key may see it; another key's job is a 404, as if it did not exist."""
    job = await run_in_threadpool(ctx.jobs.get_job, job_id)
    if not who.sees(job.owner):
        raise JobNotFound(f"no job {job_id}")
    return job
