"""Who is calling: a FastAPI dependency turns ``Authorization: Bearer vf_…`` into a
``Principal``, counts the request against the key's rate limit, and checks scopes.

Every route of the API depends on ``require(scope)`` except the few listed in
``UNAUTHENTICATED`` (health, metrics, docs, signed object URLs, the dashboard's files); a test
walks ``app.routes`` so a new route cannot slip through without a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vodforge.api.context import ApiContext, api_context
from vodforge.api.keys import check_token
from vodforge.errors import Forbidden, Unauthenticated
from vodforge.jobs.apikeys import ApiKeyView

__all__ = ["UNAUTHENTICATED", "Principal", "principal", "require"]

#: Paths (or path prefixes, ending in ``/``) anyone may call.
UNAUTHENTICATED = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/v1/objects/",
    "/v1/signed/",
)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `vodforge keys create`: `Authorization: Bearer vf_…`",
)


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    webhook_url: str | None

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def has(self, scope: str) -> bool:
        return self.admin or scope in self.scopes

    def sees(self, owner: str | None) -> bool:
        """A key sees the jobs it created; ``admin`` sees all."""
        return self.admin or (owner is not None and owner == self.key_id)

    @classmethod
    def of(cls, key: ApiKeyView) -> Principal:
        return cls(key.id, key.name, key.scopes, key.webhook_url)


async def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ctx: ApiContext = Depends(api_context),  # noqa: B008
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing API key: send Authorization: Bearer vf_…")
    key = await run_in_threadpool(check_token, ctx.keys, credentials.credentials)
    ctx.limiter.hit(key.id, key.rate_limit)
    who = Principal.of(key)
    request.state.principal = who
    return who


def require(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold one of ``scopes`` (``admin`` holds all)."""

    async def check(who: Principal = Depends(principal)) -> Principal:  # noqa: B008
        if not any(who.has(s) for s in scopes):
            raise Forbidden(f"this needs the {' or '.join(scopes)} scope; the key has none of it")
        return who

    return check
