"""Object keys: one normal form, checked before any store touches a path or a bucket.

A key is a relative, ``/``-separated name. The same rules hold for every store, so a key that
works on the embedded ``LocalStore`` works unchanged on S3 and can never name a file outside the
store's root: no absolute paths, no ``..``, no backslashes, no control characters.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from vodforge.errors import InvalidKey

__all__ = [
    "MAX_KEY_BYTES",
    "guess_content_type",
    "join_key",
    "key_matches",
    "normalize_key",
    "normalize_prefix",
]

#: S3's limit on the UTF-8 length of a key.
MAX_KEY_BYTES = 1024

# Fixed, not ``mimetypes``: that module reads /etc/mime.types, so its answers (``.ts`` is a Qt
# translation file on many hosts) would differ from machine to machine.
_CONTENT_TYPES = {
    ".aac": "audio/aac",
    ".gif": "image/gif",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".json": "application/json",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4a": "audio/mp4",
    ".m4s": "video/iso.segment",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".mp4": "video/mp4",
    ".mpd": "application/dash+xml",
    ".png": "image/png",
    ".ts": "video/mp2t",
    ".txt": "text/plain; charset=utf-8",
    ".vtt": "text/vtt",
    ".webm": "video/webm",
    ".webp": "image/webp",
}


#: Control characters and lone surrogates: one regex scan instead of a Python loop per
#: character (every store operation checks its keys; a job touches dozens).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _check_characters(key: str, what: str) -> None:
    if (bad := _FORBIDDEN.search(key)) is not None:
        code = ord(bad.group())
        if code < 0xD800:
            raise InvalidKey(f"{what} {key!r} contains control character U+{code:04X}")
        raise InvalidKey(f"{what} {key!r} contains a lone surrogate U+{code:04X}")
    if "\\" in key:
        raise InvalidKey(f"{what} {key!r} contains a backslash; keys use '/' only")
    if key.startswith("/"):
        raise InvalidKey(f"{what} {key!r} is absolute; keys are relative")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} {key[:40]!r}... is longer than {MAX_KEY_BYTES} bytes UTF-8")


def _segments(key: str, what: str) -> list[str]:
    segments = [segment for segment in key.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise InvalidKey(f"{what} {key!r} contains a '..' segment")
    return segments


def normalize_key(key: str) -> str:
    """The normal form of ``key``; ``InvalidKey`` says what is wrong with one that has none.

    ``//`` collapses and ``./`` segments go, so ``a//./b`` and ``a/b`` name one object.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"object key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidKey("object key is empty")
    _check_characters(key, "object key")
    segments = _segments(key, "object key")
    if not segments:
        raise InvalidKey(f"object key {key!r} names no object")
    return "/".join(segments)


def normalize_prefix(prefix: str) -> str:
    """A listing prefix in normal form: like a key, but may be empty and keeps a trailing ``/``.

    The trailing slash matters: ``uploads/`` does not match ``uploads2/x``; ``uploads`` does.
    """
    if not isinstance(prefix, str):
        raise InvalidKey(f"key prefix must be a string, not {type(prefix).__name__}")
    if not prefix:
        return ""
    _check_characters(prefix, "key prefix")
    segments = _segments(prefix, "key prefix")
    if not segments:
        return ""
    joined = "/".join(segments)
    return joined + "/" if prefix.endswith("/") else joined


def join_key(*parts: str) -> str:
    """Join key parts with ``/`` and normalize; empty parts are skipped."""
    return normalize_key("/".join(part for part in parts if part))


def key_matches(key: str, prefix: str = "", suffix: str = "") -> bool:
    """Trigger rule: ``key`` starts with ``prefix`` (exactly) and ends with ``suffix`` (any case).

    Suffixes compare without case because uploads arrive as ``.MP4`` as often as ``.mp4``.
    """
    return key.startswith(prefix) and key.casefold().endswith(suffix.casefold())


def guess_content_type(key: str) -> str | None:
    """The content type a player or CDN expects for ``key``'s extension; None if unknown."""
    return _CONTENT_TYPES.get(PurePosixPath(key).suffix.lower())
