"""LocalStore presigned URLs: HMAC over (op, key, expiry, length); any change is refused."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from vodforge.errors import ConfigError, StorageError
from vodforge.storage import LocalStore, PresignDenied, PresignedGrant, UrlSigner

SECRET = b"k" * 32
NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(
        tmp_path / "store", secret=SECRET, base_url="https://vod.example/api/", clock=lambda: NOW
    )


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_put_url_verifies_to_its_grant(store: LocalStore) -> None:
    url = store.presign_put("uploads//my clip.mp4", expires_seconds=600, content_length=42)
    assert url.startswith("https://vod.example/api/files/uploads/my%20clip.mp4?op=put&exp=")
    grant = store.verify_presigned(url, op="put", now=NOW + 600)
    assert grant == PresignedGrant("put", "uploads/my clip.mp4", 42, int(NOW) + 600)
    # The API sees only path and query; a proxy may have stripped the /api prefix.
    parts = urlsplit(url)
    assert store.verify_presigned(f"{parts.path}?{parts.query}") == grant
    assert store.verify_presigned(f"{parts.path.removeprefix('/api')}?{parts.query}") == grant


def test_get_url_verifies(store: LocalStore) -> None:
    url = store.presign_get("vidéo/日本.mp4")
    grant = store.verify_presigned(url, op="get")
    assert (grant.op, grant.key, grant.content_length) == ("get", "vidéo/日本.mp4", None)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: with_query(url, sig="0" * 64),
        lambda url: with_query(url, sig=""),
        lambda url: url.replace("uploads/a.mp4", "uploads/b.mp4"),
        lambda url: url.replace("uploads/a.mp4", "uploads/../a.mp4"),
        lambda url: with_query(url, exp=str(int(NOW) + 10**6)),
        lambda url: with_query(url, exp="-1"),
        lambda url: with_query(url, len="43"),
        lambda url: with_query(url, len=""),
        lambda url: with_query(url, op="get"),
        lambda url: with_query(url, extra="1"),
        lambda url: url + "&sig=" + "a" * 64,
        lambda url: url.replace("/files/", "/other/"),
        lambda url: url.split("?")[0],
    ],
)
def test_tampered_urls_are_denied(store: LocalStore, tamper: object) -> None:
    url = store.presign_put("uploads/a.mp4", content_length=42)
    assert callable(tamper)
    with pytest.raises(PresignDenied) as caught:
        store.verify_presigned(tamper(url))
    assert isinstance(caught.value, StorageError)
    assert caught.value.label == "presign_denied"
    assert "\n" not in caught.value.message


def test_other_secret_is_denied(store: LocalStore) -> None:
    url = store.presign_get("k")
    other = UrlSigner(b"x" * 32, base_url="https://vod.example/api", clock=lambda: NOW)
    with pytest.raises(PresignDenied, match="signature"):
        other.verify(url)


def test_expiry_uses_the_clock(tmp_path: Path) -> None:
    now = [NOW]
    store = LocalStore(tmp_path, secret=SECRET, clock=lambda: now[0])
    url = store.presign_get("k", expires_seconds=60)
    now[0] = NOW + 60
    assert store.verify_presigned(url).key == "k"
    now[0] = NOW + 61
    with pytest.raises(PresignDenied, match="expired"):
        store.verify_presigned(url)


def test_op_mismatch_is_denied(store: LocalStore) -> None:
    with pytest.raises(PresignDenied, match="grants get, not put"):
        store.verify_presigned(store.presign_get("k"), op="put")


def test_bad_presign_arguments(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        store.presign_get("k", expires_seconds=0)
    with pytest.raises(ConfigError):
        store.presign_get("k", expires_seconds=8 * 24 * 3600)
    with pytest.raises(ConfigError):
        store.presign_put("k", content_length=-1)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        LocalStore(tmp_path, secret=b"short")
    with pytest.raises(ConfigError, match="not an http"):
        LocalStore(tmp_path, secret=SECRET, base_url="ftp://x")
