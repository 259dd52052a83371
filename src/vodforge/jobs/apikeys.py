"""API keys in the job store's database: who may call the HTTP API, with which scopes.

Only the sha256 of a key's secret is stored (the secret is 32 random bytes, so a plain hash is
as strong as a slow one); the token itself is shown once, by ``vodforge keys create``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from vodforge.errors import JobNotFound
from vodforge.jobs.models import ApiKey
from vodforge.jobs.store import JobStore
from vodforge.jobs.views import _ToDict

__all__ = ["ApiKeyStore", "ApiKeyView"]


@dataclasses.dataclass(frozen=True)
class ApiKeyView(_ToDict):
    id: str
    name: str
    secret_sha256: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    webhook_url: str | None
    webhook_secret: str
    rate_limit: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _view(k: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=k.id,
        name=k.name,
        secret_sha256=k.secret_sha256,
        scopes=tuple(k.scopes),
        created_at=k.created_at,
        revoked_at=k.revoked_at,
        webhook_url=k.webhook_url,
        webhook_secret=k.webhook_secret,
        rate_limit=k.rate_limit,
    )


class ApiKeyStore:
    """API keys, in the same database (and transactions) as the jobs they own."""

    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs

    def add(
        self,
        *,
        key_id: str,
        name: str,
        secret_sha256: str,
        scopes: Sequence[str],
        webhook_url: str | None,
        webhook_secret: str,
        rate_limit: str | None,
    ) -> ApiKeyView:
        row = ApiKey(
            id=key_id,
            name=name,
            secret_sha256=secret_sha256,
            scopes=list(scopes),
            created_at=self._jobs.now(),
            revoked_at=None,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            rate_limit=rate_limit,
        )
        with self._jobs.transaction(write=True) as s:
            s.add(row)
            s.flush()
            return _view(row)

    def get(self, key_id: str) -> ApiKeyView | None:
        with self._jobs.transaction(write=False) as s:
            row = s.get(ApiKey, key_id)
            return _view(row) if row is not None else None

    def list(self) -> list[ApiKeyView]:
        with self._jobs.transaction(write=False) as s:
            return [_view(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, key_id: str) -> ApiKeyView:
        """Revoking twice keeps the first time."""
        with self._jobs.transaction(write=True) as s:
            row = s.get(ApiKey, key_id, with_for_update=True)
            if row is None:
                raise JobNotFound(f"no API key {key_id}")
            if row.revoked_at is None:
                row.revoked_at = self._jobs.now()
            return _view(row)
