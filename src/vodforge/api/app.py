"""The HTTP server of ``vodforge serve``: health, readiness and Prometheus metrics.
(The versioned API and the dashboard mount here too.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from vodforge import __version__
from vodforge.api.dashboard import mount_dashboard
from vodforge.observability.metrics import StateCollector, render


@dataclass
class Probes:
    """Readiness checks by name: each returns None when fine, else a one-line reason."""

    checks: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    collector: StateCollector | None = None


def create_app(probes: Probes, *, static_dir: Path | None = None) -> FastAPI:
    """The HTTP app; ``static_dir``: the dashboard's files, served at ``/`` (None: no dashboard)."""
    app = FastAPI(title="vodforge", version=__version__)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
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

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = render(probes.collector)
        return Response(body, media_type=content_type)

    # Last: the dashboard's mount at / matches every path, so it must follow all routes.
    if static_dir is not None:
        mount_dashboard(app, static_dir)
    return app
