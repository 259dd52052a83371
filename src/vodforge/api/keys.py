"""API key tokens: ``vf_<key_id>_<secret>``, created, parsed and checked.

The secret is 32 random bytes (url-safe base64), so storing its sha256 is enough: there is
nothing to brute-force. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import limits

from vodforge.errors import ConfigError, Unauthenticated
from vodforge.jobs.apikeys import ApiKeyStore, ApiKeyView

__all__ = ["SCOPES", "NewKey", "check_token", "create_key", "parse_scopes", "parse_token"]

SCOPES = ("upload", "read", "admin")
_TOKEN = re.compile(r"vf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class NewKey:
    token: str
    key: ApiKeyView


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token.strip())
    return (match[1], match[2]) if match else None


def parse_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}; got {','.join(scopes)!r}")
    return scopes


def check_rate_limit(value: str) -> str:
    try:
        limits.parse(value)
    except ValueError:
        raise ConfigError(f"rate limit {value!r} is not like '600/minute'") from None
    return value


def check_webhook_url(value: str) -> str:
    split = urlsplit(value)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ConfigError(f"webhook URL {value[:200]!r} is not an http(s) URL")
    return value


def create_key(
    keys: ApiKeyStore,
    *,
    name: str,
    scopes: str | Iterable[str],
    webhook_url: str | None = None,
    rate_limit: str | None = None,
) -> NewKey:
    """Create a key; the token is returned once and never stored."""
    if not name.strip() or len(name) > 128:
        raise ConfigError("key name must be 1..128 characters")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    view = keys.add(
        key_id=key_id,
        name=name.strip(),
        secret_sha256=hash_secret(secret),
        scopes=parse_scopes(scopes),
        webhook_url=check_webhook_url(webhook_url) if webhook_url else None,
        webhook_secret=secrets.token_hex(32),
        rate_limit=check_rate_limit(rate_limit) if rate_limit else None,
    )
    return NewKey(f"vf_{key_id}_{secret}", view)


def check_token(keys: ApiKeyStore, token: str) -> ApiKeyView:
    """The active key of a token; ``Unauthenticated`` for a malformed, unknown, wrong or
    revoked one (all the same answer, so nothing leaks about which)."""
    parsed = parse_token(token)
    key = keys.get(parsed[0]) if parsed else None
    secret = parsed[1] if parsed else ""
    expected = key.secret_sha256 if key else "0" * 64
    matches = hmac.compare_digest(hash_secret(secret), expected)
    if key is None or not matches or not key.active:
        raise Unauthenticated("invalid or revoked API key")
    return key
