"""The ``ObjectStore`` seam: every step reads and writes objects through these methods only.

Two stores implement it: ``LocalStore`` (the embedded default, and the fake for tests) and
``S3Store``. Both take every key through ``normalize_key``, write atomically (a reader sees the
old object or the new one, never half of one), and tell subscribers about each object created.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from vodforge.errors import InputError, StorageError
from vodforge.storage.events import ObjectListener

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "ObjectTooLarge",
    "PresignDenied",
    "SupportsMoveIn",
]


class ObjectTooLarge(InputError):
    """An upload passed its ``max_bytes``; nothing was stored."""

    label = "input_too_large"


class PresignDenied(StorageError):
    """A presigned URL was tampered with, has expired, or is used for the wrong operation."""

    label = "presign_denied"


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object. ``last_modified`` is timezone-aware UTC."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """Objects by key. Keys go through ``normalize_key``; bad ones raise ``InvalidKey``.

    ``ObjectNotFound`` for a missing object, ``StorageUnavailable`` for what a retry may fix,
    ``StorageError`` for the rest.
    """

    #: The bucket named in this store's events ("local" for ``LocalStore``).
    bucket: str

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        """Store the file at ``path`` under ``key``."""
        ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key``."""
        ...

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        """Store what ``stream`` yields, in bounded memory; past ``max_bytes``: ObjectTooLarge."""
        ...

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        """Write the object to ``dest`` atomically (a temp file beside it, then a rename)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory: for manifests and playlists, not media."""
        ...

    def open_stream(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A readable binary stream of the object, closed on leaving the ``with``."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """The object's info; ``ObjectNotFound`` if absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; how many were removed."""
        ...

    def presign_get(self, key: str, *, expires_seconds: int = 3600) -> str:
        """A URL that lets its bearer download the object until it expires."""
        ...

    def presign_put(
        self, key: str, *, expires_seconds: int = 3600, content_length: int | None = None
    ) -> str:
        """A URL that lets its bearer upload the object (of exactly ``content_length`` bytes)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's real file, so ffmpeg can read it in place; None if it has none."""
        ...

    def relative_key(self, bucket_key: str) -> str | None:
        """The store key of an event's bucket key; None if it lies outside this store."""
        ...

    def subscribe(self, listener: ObjectListener) -> None:
        """Call ``listener`` with an ``ObjectCreated`` after every successful put."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


@runtime_checkable
class SupportsMoveIn(Protocol):
    """A store that can take ownership of a local file by renaming it (no copy)."""

    def move_in(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        """Move ``path`` into the store under ``key``; ``path`` no longer exists afterwards."""
        ...
