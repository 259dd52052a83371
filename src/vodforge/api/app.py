"""The HTTP server of ``vodforge serve``: health, readiness and Prometheus metrics, the
versioned API under ``/v1`` (when given an ``ApiContext``) and the dashboard's static files.

OpenAPI at ``/docs`` and ``/openapi.json``. Every ``/v1`` route needs an API key except the
signed object URLs (see ``auth.UNAUTHENTICATED``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from vodforge import __version__
from vodforge.api import problems
from vodforge.api.context import ApiContext
from vodforge.api.dashboard import mount_dashboard
from vodforge.api.events import EventHub
from vodforge.api.ingest import Ingest
from vodforge.observability.metrics import StateCollector, render

__all__ = ["Probes", "create_app"]


@dataclass
class Probes:
    """Readiness checks by name: each returns None when fine, else a one-line reason."""

    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    collector: StateCollector | None = None


def create_app(
    probes: Probes,
    api: ApiContext | None = None,
    *,
    ingest: Ingest | None = None,
    static_dir: Path | None = None,
    events_interval: float = 0.3,
) -> FastAPI:
    """``api``: mount ``/v1`` on it (``ingest`` is the store listener that turns the API's
    uploads into jobs; built here if not given — then the caller subscribes it). ``static_dir``:
    the dashboard, served at ``/`` after every API route."""
    hub = EventHub(api.jobs, interval=events_interval) if api is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if hub is not None:
            await hub.close()

    app = FastAPI(
        title="vodforge",
        version=__version__,
        description="Video pipeline HTTP API v1. Authenticate with `Authorization: Bearer vf_…`.",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        failures: dict[str, str] = {}
        for name, check in probes.checks.items():
            try:
                reason = check()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                failures[name] = " ".join(reason.split())
        status = 200 if not failures else 503
        body = {"status": "ready" if not failures else "not ready", "failures": failures}
        return JSONResponse(body, status_code=status)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
    )
    def metrics_endpoint() -> Response:
        body, content_type = render(probes.collector)
        return Response(body, media_type=content_type)

    if api is not None:
        from vodforge.api.routes import (  # noqa: PLC0415
            dead_letters,
            events,
            jobs,
            me,
            objects,
            stats,
            uploads,
        )

        problems.install(app)
        app.state.api = api
        app.state.events = hub
        app.state.ingest = ingest or Ingest(api.dispatcher, api.keys)
        for module in (uploads, jobs, dead_letters, events, stats, me, objects):
            app.include_router(module.router)
        from vodforge.api.auth import require  # noqa: PLC0415
        from vodforge.api.rollouts import rollout_router  # noqa: PLC0415
        from vodforge.rollout.registry import Registry  # noqa: PLC0415
        from vodforge.rollout.service import RolloutService  # noqa: PLC0415

        registry = Registry(api.jobs)
        app.include_router(
            rollout_router(
                RolloutService(api.jobs, registry),
                registry,
                read=[require("read")],
                admin=[require("admin")],
            )
        )

    # Last: the dashboard's mount at / matches every path, so it must follow all routes.
    if static_dir is not None:
        mount_dashboard(app, static_dir)
    return app
