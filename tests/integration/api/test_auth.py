"""Every route but the unauthenticated list refuses a missing or wrong key; scopes; limits."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from tests.integration.api.conftest import Api, make_api
from vodforge.api.auth import UNAUTHENTICATED

WRONG = [
    None,
    "Bearer nope",
    "Bearer vf_0123456789abcdef_" + "A" * 43,
    "Basic dXNlcjpwYXNz",
]


def _exempt(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in UNAUTHENTICATED)


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as branches)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (inner := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(inner.routes)


def test_every_route_refuses_a_missing_or_wrong_key(api: Api) -> None:
    checked = 0
    for route in _api_routes(api.app.routes):
        if _exempt(route.path):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods or ():
            for header in WRONG:
                headers = {"Authorization": header} if header else {}
                response = api.client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, header, response.text)
                assert response.json()["error"]["code"] == "unauthenticated"
            checked += 1
    assert checked >= 12  # guards the walk itself


def test_a_revoked_key_is_refused(api: Api) -> None:
    assert api.client.get("/v1/me", headers=api.auth("reader")).status_code == 200
    api.ctx.keys.revoke(api.key_ids["reader"])
    assert api.client.get("/v1/me", headers=api.auth("reader")).status_code == 401


def test_a_tampered_secret_is_refused(api: Api) -> None:
    token = api.tokens["admin"]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = api.client.get("/v1/me", headers={"Authorization": f"Bearer {flipped}"})
    assert response.status_code == 401


def test_health_and_metrics_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert api.client.get(path).status_code == 200, path


def test_missing_scope_is_403(api: Api) -> None:
    reader = api.auth("reader")
    assert api.client.post("/v1/uploads", headers=reader).status_code == 403
    assert api.client.post("/v1/jobs", headers=reader, json={"key": "a"}).status_code == 403
    uploader = api.auth("uploader")
    response = api.client.post("/v1/dead-letters/x/replay", headers=uploader)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_me(api: Api) -> None:
    body = api.client.get("/v1/me", headers=api.auth("uploader")).json()
    assert body == {
        "key_id": api.key_ids["uploader"],
        "name": "uploader",
        "scopes": ["upload", "read"],
    }


def test_rate_limit_per_key(tmp_path: Path) -> None:
    made, jobs = make_api(tmp_path, rate_limit="3/minute")
    try:
        with made.client:
            for _ in range(3):
                assert made.client.get("/v1/me", headers=made.auth("reader")).status_code == 200
            limited = made.client.get("/v1/me", headers=made.auth("reader"))
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["error"]["code"] == "rate_limited"
            # Another key has its own window.
            assert made.client.get("/v1/me", headers=made.auth("admin")).status_code == 200
    finally:
        jobs.close()
