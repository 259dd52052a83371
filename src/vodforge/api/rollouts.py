"""``/v1/toolchains`` and ``/v1/rollouts`` (docs/api-contract.md), as a router the HTTP app
mounts with its own auth dependencies: ``read`` for the GETs, ``admin`` for start and abort.

Errors are the contract's JSON body ``{"error": {"code", "message"}}``: 404 unknown rollout,
409 a rollout already running, 422 a bad policy or an unknown candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vodforge.api import schemas
from vodforge.errors import ConfigError, JobNotFound, RolloutConflict, ToolchainNotFound
from vodforge.rollout.canary import Policy, parse_fraction
from vodforge.rollout.registry import Registry
from vodforge.rollout.service import RolloutService


class RolloutRequest(BaseModel):
    candidate: str
    steps: list[float] = Field(default_factory=lambda: [1.0, 10.0, 50.0, 100.0])
    min_jobs: int = 20
    #: A fraction (0.001) or a percentage string ("0.1%").
    max_failure_rate: float | str = 0.001
    max_p95_regression: float | str = 0.2


#: Every route here may answer these (auth, scope, rate limit, unknown rollout, conflict, body).
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (401, 403, 404, 409, 422, 429)
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def rollout_router(
    service: RolloutService,
    registry: Registry,
    *,
    read: Sequence[Callable[..., Any]] = (),
    admin: Sequence[Callable[..., Any]] = (),
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["rollouts"], responses=_ERRORS)
    read_deps = [Depends(d) for d in read]
    admin_deps = [Depends(d) for d in admin]

    @router.get("/toolchains", dependencies=read_deps)
    def toolchains() -> dict[str, Any]:
        return {"items": [e.to_dict() for e in registry.entries()]}

    @router.get("/rollouts", dependencies=read_deps)
    def rollouts() -> dict[str, Any]:
        return {"items": [r.to_dict() for r in service.recent(50)]}

    @router.post("/rollouts", dependencies=admin_deps, status_code=201, response_model=None)
    def start(body: RolloutRequest) -> dict[str, Any] | JSONResponse:
        try:
            policy = Policy(
                tuple(body.steps),
                body.min_jobs,
                parse_fraction(body.max_failure_rate),
                parse_fraction(body.max_p95_regression),
            )
            return service.start(body.candidate, policy).to_dict()
        except RolloutConflict as exc:
            return _error(409, "conflict", exc.one_line())
        except (ConfigError, ToolchainNotFound) as exc:
            return _error(422, "invalid_request", exc.one_line())

    @router.post("/rollouts/{rollout_id}/abort", dependencies=admin_deps, response_model=None)
    def abort(rollout_id: str) -> dict[str, Any] | JSONResponse:
        try:
            return service.abort(rollout_id).to_dict()
        except JobNotFound as exc:
            return _error(404, "not_found", exc.one_line())

    return router
