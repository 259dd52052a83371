"""``open_store``: one storage URL setting (``VODFORGE_STORAGE_URL``) to an ``ObjectStore``.

""  or  "local"             LocalStore at <data_dir>/store (the embedded default)
"file:///srv/vod"           LocalStore at /srv/vod
"/srv/vod", "var/store"     LocalStore at that path
"s3://bucket/prefix"        S3Store (endpoint_url for S3-compatible services)
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vodforge.errors import ConfigError, InvalidKey
from vodforge.storage.base import ObjectStore
from vodforge.storage.keys import normalize_prefix
from vodforge.storage.local import LocalStore
from vodforge.storage.s3 import S3Store

__all__ = ["open_store"]

# S3's bucket naming rules (lowercase, digits, dots, hyphens; 3-63 characters).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def open_store(
    url: str,
    *,
    data_dir: Path,
    secret: bytes,
    endpoint_url: str | None = None,
    base_url: str = "http://127.0.0.1:8080",
    region: str | None = None,
    sse: str | None = None,
) -> ObjectStore:
    """The store a storage URL names; ``ConfigError`` for a URL that names none."""
    text = url.strip()
    if text in ("", "local"):
        return LocalStore(data_dir / "store", secret=secret, base_url=base_url)
    split = urlsplit(text)
    if split.scheme == "s3":
        if split.query or split.fragment:
            raise ConfigError(f"storage URL {url!r}: S3 URLs take no query or fragment")
        if not _BUCKET.fullmatch(split.netloc):
            raise ConfigError(
                f"storage URL {url!r}: {split.netloc!r} is not a valid S3 bucket name"
            )
        try:
            prefix = normalize_prefix(unquote(split.path.lstrip("/")))
        except InvalidKey as exc:
            raise ConfigError(f"storage URL {url!r}: bad prefix: {exc.one_line()}") from None
        return S3Store(
            split.netloc, prefix=prefix, endpoint_url=endpoint_url, region=region, sse=sse
        )
    if split.scheme == "file":
        if split.netloc not in ("", "localhost") or not split.path.startswith("/"):
            raise ConfigError(f"storage URL {url!r}: file URLs need an absolute local path")
        return LocalStore(Path(unquote(split.path)), secret=secret, base_url=base_url)
    if "://" in text:
        raise ConfigError(
            f"storage URL {url!r}: unsupported scheme {split.scheme!r} (use s3:// or file://)"
        )
    return LocalStore(Path(text).expanduser(), secret=secret, base_url=base_url)
