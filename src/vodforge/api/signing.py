"""Signed, expiring URLs of stored objects.

LocalStore: HMAC-signed ``/v1/objects/{key}?op&exp[&len]&sig`` URLs served by this API (the
store's ``UrlSigner``), plus *prefix* URLs ``/v1/signed/{exp}/{sig}/{key}`` for HLS: the
signature grants everything under a folder and sits in the path, so the playlists' relative
references (variant playlists, segments) resolve to URLs that are signed too. S3Store: real S3
presigned URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from vodforge.errors import Forbidden
from vodforge.storage import LocalStore, ObjectStore, PresignDenied, PresignedGrant, UrlSigner
from vodforge.storage.local import Op

__all__ = ["ObjectUrls", "PresignedPut"]


@dataclass(frozen=True)
class PresignedPut:
    url: str
    headers: dict[str, str]
    expires_at: datetime


class ObjectUrls:
    def __init__(
        self,
        store: ObjectStore,
        secret: bytes,
        *,
        expires_seconds: int,
        public_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._secret = secret
        self.expires_seconds = expires_seconds
        self._public = public_url.rstrip("/") if public_url else None
        self._clock = clock

    @property
    def local(self) -> bool:
        """Whether this API serves the objects itself (LocalStore) or S3 does."""
        return isinstance(self.store, LocalStore)

    def _signer(self, base_url: str) -> UrlSigner:
        base = self._public or base_url.rstrip("/")
        return UrlSigner(self._secret, base_url=f"{base}/v1", clock=self._clock, route="objects")

    def get_url(self, key: str, base_url: str) -> str:
        if not self.local:
            return self.store.presign_get(key, expires_seconds=self.expires_seconds)
        return self._signer(base_url).sign("get", key, expires_seconds=self.expires_seconds)

    def put_url(self, key: str, size: int, content_type: str | None, base_url: str) -> PresignedPut:
        expires_at = datetime.fromtimestamp(int(self._clock()) + self.expires_seconds, UTC)
        headers = {"Content-Length": str(size)}
        if content_type:
            headers["Content-Type"] = content_type
        if not self.local:
            url = self.store.presign_put(
                key, expires_seconds=self.expires_seconds, content_length=size
            )
            return PresignedPut(url, headers, expires_at)
        url = self._signer(base_url).sign(
            "put", key, expires_seconds=self.expires_seconds, content_length=size
        )
        return PresignedPut(url, headers, expires_at)

    def verify(self, path_and_query: str, op: Op) -> PresignedGrant:
        """The grant of a ``/v1/objects`` URL; ``Forbidden`` if tampered, expired or for
        another operation."""
        try:
            return self._signer("http://local").verify(path_and_query, op=op)
        except PresignDenied as exc:
            raise Forbidden(exc.one_line()) from None

    # -- prefix grants (HLS) -----------------------------------------------------------------

    def _prefix_sig(self, prefix: str, exp: int) -> str:
        message = f"prefix\nget\n{prefix}\n{exp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def prefix_url(self, prefix: str, key: str, base_url: str) -> str:
        """A URL of ``key`` whose signature grants every key under ``prefix`` (a folder)."""
        if not key.startswith(prefix) or not prefix.endswith("/"):
            raise ValueError(f"{key!r} is not under the folder {prefix!r}")
        if not self.local:
            return self.store.presign_get(key, expires_seconds=self.expires_seconds)
        exp = int(self._clock()) + self.expires_seconds
        sig = self._prefix_sig(prefix, exp)
        base = self._public or base_url.rstrip("/")
        folder = quote(prefix.rstrip("/"), safe="/")
        rest = quote(key[len(prefix) :], safe="/")
        return f"{base}/v1/signed/{exp}/{sig}/{folder}/~/{rest}"

    def verify_prefix(self, exp: int, sig: str, prefix: str) -> None:
        expected = self._prefix_sig(prefix, exp)
        if not hmac.compare_digest(expected, sig.lower()):
            raise Forbidden(f"signed URL signature does not match for {prefix[:80]!r}")
        if self._clock() > exp:
            raise Forbidden(f"signed URL for {prefix[:80]!r} expired at {exp}")
