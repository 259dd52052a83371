"""LocalStore: objects as files under one root, for the embedded runtime and for tests.

Writes go to a hidden temp file in the destination's directory, are fsynced, then renamed into
place, so a reader (or a crash) sees the old object or the new one, never a torn one. Etags are
the sha256 of the content, computed while writing and kept in ``root/.meta/<key>.json`` with the
inode, size and mtime they describe; ``stat`` recomputes a missing or stale one. Presigned URLs
are HMAC-SHA256 over (op, key, expiry, length) and checked with ``UrlSigner.verify``.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import stat as stat_mode
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from vodforge.errors import (
    ConfigError,
    InputError,
    InvalidKey,
    ObjectNotFound,
    OutOfDisk,
    StorageError,
)
from vodforge.storage.base import ObjectInfo, ObjectTooLarge, PresignDenied
from vodforge.storage.events import Listeners, ObjectCreated, ObjectListener
from vodforge.storage.keys import guess_content_type, normalize_key, normalize_prefix

__all__ = ["MAX_PRESIGN_SECONDS", "LocalStore", "PresignedGrant", "UrlSigner"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: S3's own ceiling for presigned URLs (SigV4: seven days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
#: Shorter HMAC keys make presigned URLs guessable.
MIN_SECRET_BYTES = 16

_META = ".meta"
_TMP_MARK = ".tmp-"
_NUMBER = re.compile(r"[0-9]{1,15}")

Op = Literal["get", "put"]


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and _TMP_MARK in name


def _temp_name(dest: Path) -> str:
    return f".{dest.name[:100]}{_TMP_MARK}"


def _utc(mtime_ns: int) -> datetime:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry lives in the directory, not the file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


T = TypeVar("T")

_SYNC_POOL: ThreadPoolExecutor | None = None
_SYNC_POOL_LOCK = threading.Lock()


def _sync_pool() -> ThreadPoolExecutor:
    global _SYNC_POOL  # noqa: PLW0603 — one small pool per process, made on first use
    with _SYNC_POOL_LOCK:
        if _SYNC_POOL is None:
            _SYNC_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
        return _SYNC_POOL


#: Concurrent streams of fsyncs when publishing many files: the calling thread runs one, the
#: shared pool the others.
SYNC_STREAMS = 4


def _concurrently(fn: Callable[[T], object], items: Sequence[T]) -> None:
    """``fn`` over ``items`` in up to ``SYNC_STREAMS`` concurrent streams (inline for one):
    concurrent fsyncs on one filesystem share journal commits instead of queueing one after
    another, and a few streams get that without a thread hand-off per file (a job publishes
    ~20 files and directories; each hand-off is two context switches). A stream stops at its
    first error, which is raised once every stream has stopped."""
    if len(items) <= 1:
        _each(fn, items)
        return
    streams = [items[i::SYNC_STREAMS] for i in range(min(SYNC_STREAMS, len(items)))]
    others = [_sync_pool().submit(_each, fn, stream) for stream in streams[1:]]
    error: BaseException | None = None
    try:
        _each(fn, streams[0])
    except BaseException as exc:  # re-raised below, once the other streams are done
        error = exc
    for future in others:
        failure = future.exception()
        if error is None:
            error = failure
    if error is not None:
        raise error


def _each(fn: Callable[[T], object], items: Sequence[T]) -> None:
    for item in items:
        fn(item)


def _open_owned(path: Path) -> BinaryIO:
    """Open a file handed to the store, never following a symlink in its place."""
    try:
        return open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _check_regular(source: BinaryIO, path: Path) -> None:
    if not stat_mode.S_ISREG(os.fstat(source.fileno()).st_mode):
        raise InputError(f"cannot move {path} into the store: not a regular file")


def _digest_and_seal(source: BinaryIO) -> str:
    """The sha256 of an open file (read from the start) and its mode set to 0644."""
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK):
        digest.update(chunk)
    with suppress(PermissionError):
        os.fchmod(source.fileno(), 0o644)
    return digest.hexdigest()


def _unlink_quietly(path: Path | str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True)
class PresignedGrant:
    """What a verified presigned URL allows: one op on one key (a put of exactly N bytes)."""

    op: Op
    key: str
    content_length: int | None
    expires_at: int


class UrlSigner:
    """HMAC presigned URLs for the API's ``/<route>/<key>`` route (``files`` by default; the
    HTTP API serves ``/v1/objects``).

    Separate from the store so the API process can verify URLs with the secret alone.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        base_url: str = "http://127.0.0.1:8080",
        clock: Callable[[], float] = time.time,
        route: str = "files",
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"presign secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
            )
        split = urlsplit(base_url)
        if split.scheme not in ("http", "https") or not split.netloc or split.query:
            raise ConfigError(f"presign base URL {base_url!r} is not an http(s) URL")
        self._secret = secret
        self._base = base_url.rstrip("/")
        self._base_path = split.path.rstrip("/")
        self._clock = clock
        self._route = route.strip("/")

    def _signature(self, op: str, key: str, exp: str, length: str) -> str:
        message = f"{op}\n{key}\n{exp}\n{length}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(
        self,
        op: Op,
        key: str,
        *,
        expires_seconds: int = 3600,
        content_length: int | None = None,
    ) -> str:
        """A URL granting ``op`` on the (already normalized) ``key`` for ``expires_seconds``."""
        if not 0 < expires_seconds <= MAX_PRESIGN_SECONDS:
            raise ConfigError(
                f"presign expiry must be 1..{MAX_PRESIGN_SECONDS} seconds, got {expires_seconds}"
            )
        if content_length is not None and content_length < 0:
            raise ConfigError(f"presign content length must be >= 0, got {content_length}")
        exp = str(int(self._clock()) + expires_seconds)
        length = "" if content_length is None else str(content_length)
        query = {"op": op, "exp": exp}
        if length:
            query["len"] = length
        query["sig"] = self._signature(op, key, exp, length)
        return f"{self._base}/{self._route}/{quote(key, safe='/')}?{urlencode(query)}"

    def verify(self, url: str, *, op: Op | None = None, now: float | None = None) -> PresignedGrant:
        """The grant of a URL (full, or path and query) we signed; ``PresignDenied`` otherwise."""
        split = urlsplit(url)
        path = split.path
        route = f"/{self._route}/"
        for base in (f"{self._base_path}{route}", route):
            if path.startswith(base):
                quoted = path[len(base) :]
                break
        else:
            raise PresignDenied(f"presigned URL path {path[:80]!r} is not under {route}")
        try:
            key = unquote(quoted, errors="strict")
            params = parse_qs(split.query, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise PresignDenied("presigned URL is malformed") from None
        if any(len(values) != 1 for values in params.values()):
            raise PresignDenied("presigned URL repeats a query parameter")
        given = {name: values[0] for name, values in params.items()}
        if set(given) - {"op", "exp", "len", "sig"}:
            raise PresignDenied("presigned URL has unexpected query parameters")
        grant_op, exp, length, sig = (given.get(n, "") for n in ("op", "exp", "len", "sig"))
        if grant_op not in ("get", "put") or not _NUMBER.fullmatch(exp) or not sig:
            raise PresignDenied("presigned URL lacks a valid op, exp or sig")
        if length and not _NUMBER.fullmatch(length):
            raise PresignDenied("presigned URL has an invalid len")
        expected = self._signature(grant_op, key, exp, length)
        if not hmac.compare_digest(expected, sig.lower()):
            raise PresignDenied(f"presigned URL signature does not match for key {key[:80]!r}")
        moment = self._clock() if now is None else now
        if moment > int(exp):
            raise PresignDenied(f"presigned URL for key {key[:80]!r} expired at {exp}")
        if op is not None and grant_op != op:
            raise PresignDenied(f"presigned URL grants {grant_op}, not {op}")
        return PresignedGrant(
            op="get" if grant_op == "get" else "put",
            key=key,
            content_length=int(length) if length else None,
            expires_at=int(exp),
        )


class LocalStore:
    """Objects as files under ``root``; ``bucket`` names the store in events."""

    def __init__(
        self,
        root: Path,
        *,
        bucket: str = "local",
        secret: bytes,
        base_url: str = "http://127.0.0.1:8080",
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve(strict=True)
        except OSError as exc:
            raise StorageError(f"local store root {root} is unusable: {exc.strerror}") from exc
        self.bucket = bucket
        self._meta_root = self.root / _META
        self._signer = UrlSigner(secret, base_url=base_url, clock=clock)
        self._clock = clock
        self._listeners = Listeners()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, bucket={self.bucket!r})"

    # -- keys and paths -------------------------------------------------------------------------

    def _resolve(self, key: str) -> tuple[str, Path]:
        """The normalized key and its path, refusing reserved names and escapes via symlinks."""
        key = normalize_key(key)
        parts = key.split("/")
        if parts[0] == _META or any(_is_temp_name(part) for part in parts):
            raise InvalidKey(f"object key {key!r} uses a name LocalStore reserves")
        path = self.root.joinpath(*parts)
        # Fast path: lstat only the components below the (already resolved) root; the full
        # resolve below runs only when one of them is a symlink.
        current = str(self.root)
        for part in parts:
            current = f"{current}/{part}"
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                return key, path  # nothing exists from here on: no symlink to follow
            except OSError:
                break
            if stat_mode.S_ISLNK(mode):
                break
        else:
            return key, path
        try:
            real = path.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loop
            raise InvalidKey(f"object key {key!r} does not resolve: {exc}") from None
        if real != path:
            inside = real.is_relative_to(self.root) and real != self.root
            if not inside or real.relative_to(self.root).parts[0] == _META:
                raise InvalidKey(f"object key {key!r} resolves outside the store root")
        return key, path

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / f"{key}.json"

    @contextmanager
    def _fs_errors(self, op: str, key: str) -> Iterator[None]:
        """Map OS errors to the tree: ENOSPC is transient (OutOfDisk), the rest StorageError."""
        try:
            yield
        except OSError as exc:
            where = f"local store {op} {key!r}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfDisk(f"{where}: out of disk space under {self.root}") from exc
            raise StorageError(f"{where} failed: {exc.strerror or exc}") from exc

    # -- metadata sidecars ----------------------------------------------------------------------

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        return meta

    def _write_meta(self, key: str, st: os.stat_result, etag: str, ctype: str | None) -> None:
        """Best effort: a lost sidecar costs one rehash in ``stat``, never an object."""
        meta = {
            "size": st.st_size,
            "etag": etag,
            "content_type": ctype,
            "ino": st.st_ino,
            "mtime_ns": st.st_mtime_ns,
        }
        path = self._meta_path(key)
        body = json.dumps(meta).encode()
        try:
            tmp = path.parent / f"{_temp_name(path)}{secrets.token_hex(6)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                try:
                    os.write(fd, body)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        except OSError as exc:
            log.warning("local store: cannot write metadata for %r: %s", key, exc.strerror)

    def _describe(self, key: str, file: BinaryIO) -> ObjectInfo:
        """Info for an open object file; rehash (and repair the sidecar) if the sidecar is stale."""
        st = os.fstat(file.fileno())
        meta = self._read_meta(key)
        fresh = meta is not None and all(
            meta.get(name) == getattr(st, f"st_{name}") for name in ("size", "ino", "mtime_ns")
        )
        content_type = meta.get("content_type") if meta is not None else guess_content_type(key)
        if not isinstance(content_type, str):
            content_type = None
        etag = meta.get("etag") if meta is not None and fresh else None
        if not isinstance(etag, str):
            digest = hashlib.sha256()
            file.seek(0)
            while chunk := file.read(CHUNK):
                digest.update(chunk)
            etag = digest.hexdigest()
            self._write_meta(key, st, etag, content_type)
        return ObjectInfo(key, st.st_size, etag, _utc(st.st_mtime_ns), content_type)

    @contextmanager
    def _open_object(self, key: str) -> Iterator[tuple[str, Path, BinaryIO]]:
        """The object's file, open for reading; ``ObjectNotFound`` unless it is a regular file."""
        key, path = self._resolve(key)
        with self._fs_errors("read", key):
            try:
                file = path.open("rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ObjectNotFound(f"no object {key!r} in local store {self.root}") from None
            with file:
                if not stat_mode.S_ISREG(os.fstat(file.fileno()).st_mode):
                    raise ObjectNotFound(f"no object {key!r} in local store {self.root}")
                yield key, path, file

    # -- writes ---------------------------------------------------------------------------------

    def _mkstemp(self, dest: Path) -> tuple[int, str]:
        # A concurrent delete may remove the emptied directory between mkdir and mkstemp.
        for attempt in range(3):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                return tempfile.mkstemp(dir=dest.parent, prefix=_temp_name(dest))
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write(
        self,
        key: str,
        read: Callable[[int], bytes],
        content_type: str | None,
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        key, dest = self._resolve(key)
        content_type = content_type or guess_content_type(key)
        with self._fs_errors("put", key):
            fd, tmp = self._mkstemp(dest)
            try:
                with os.fdopen(fd, "wb") as out:
                    digest = hashlib.sha256()
                    size = 0
                    while True:
                        try:
                            chunk = read(CHUNK)
                        except OSError as exc:
                            raise InputError(
                                f"cannot read the upload for {key!r}: {exc.strerror or exc}"
                            ) from exc
                        if not chunk:
                            break
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise ObjectTooLarge(
                                f"upload for {key!r} is larger than {max_bytes} bytes"
                            )
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fchmod(out.fileno(), 0o644)
                    os.fsync(out.fileno())
                    st = os.fstat(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            _fsync_dir(dest.parent)
        return self._created(key, st, digest.hexdigest(), content_type)

    def _created(
        self, key: str, st: os.stat_result, etag: str, content_type: str | None
    ) -> ObjectInfo:
        self._write_meta(key, st, etag, content_type)
        info = ObjectInfo(key, st.st_size, etag, _utc(st.st_mtime_ns), content_type)
        self._emit_created(info)
        return info

    def _emit_created(self, info: ObjectInfo) -> None:
        event = ObjectCreated(
            bucket=self.bucket,
            key=info.key,
            size=info.size,
            etag=info.etag,
            event_time=datetime.fromtimestamp(self._clock(), UTC),
        )
        self._listeners.emit(event)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        view = memoryview(data)
        offset = 0

        def read(size: int) -> bytes:
            nonlocal offset
            chunk = bytes(view[offset : offset + size])
            offset += len(chunk)
            return chunk

        return self._write(key, read, content_type)

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        return self._write(key, stream.read, content_type, max_bytes)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        try:
            source = path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
        with source:
            return self._write(key, source.read, content_type)

    def move_in_many(self, items: Sequence[tuple[str, Path]]) -> list[ObjectInfo]:
        """``move_in`` for a set of files the caller owns outright (a job's outputs, made in
        its private scratch folder), returning their infos in the order given: each is hashed
        and fsynced in place, then renamed straight to its key; the fsyncs of the files, and
        then of their directories, run concurrently so they share journal commits instead of
        queueing one after another.

        Sidecars are not written here: ``stat`` rehashes an object without one (once) and
        writes it then. Publishing is the hot path of every job, and its etags go into the
        manifest and the job store anyway."""
        prepared: list[tuple[str, Path, Path, BinaryIO, str]] = []
        try:
            for raw_key, path in items:
                key, dest = self._resolve(raw_key)
                source = _open_owned(path)
                prepared.append((key, dest, path, source, ""))
                with self._fs_errors("move in", key):
                    _check_regular(source, path)
                    prepared[-1] = (key, dest, path, source, _digest_and_seal(source))
            with self._fs_errors("move in", prepared[0][0] if prepared else ""):
                _concurrently(os.fsync, [p[3].fileno() for p in prepared])
            infos = []
            for key, dest, path, source, etag in prepared:
                with self._fs_errors("move in", key):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(path, dest)
                    except OSError as exc:
                        if exc.errno != errno.EXDEV:
                            raise
                        source.seek(0)
                        infos.append(self._write(key, source.read, guess_content_type(key)))
                        os.unlink(path)
                        continue
                    st = os.fstat(source.fileno())
                info = ObjectInfo(
                    key, st.st_size, etag, _utc(st.st_mtime_ns), guess_content_type(key)
                )
                self._emit_created(info)
                infos.append(info)
            with self._fs_errors("move in", "directories"):
                _concurrently(_fsync_dir, sorted({dest.parent for _, dest, _, _, _ in prepared}))
            return infos
        finally:
            for _, _, _, source, _ in prepared:
                source.close()

    def move_in(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Take ownership of ``path`` by renaming it into the store (a copy across filesystems).

        The file is opened before the rename so the etag is computed from the very inode that
        lands in the store, and an unreadable file stays where it was.
        """
        key, dest = self._resolve(key)
        content_type = content_type or guess_content_type(key)
        source = _open_owned(path)
        with source, self._fs_errors("move in", key):
            _check_regular(source, path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f"{_temp_name(dest)}{secrets.token_hex(6)}"
            try:
                os.rename(path, tmp)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                info = self._write(key, source.read, content_type)
                os.unlink(path)
                return info
            try:
                etag = _digest_and_seal(source)
                os.fsync(source.fileno())
                st = os.fstat(source.fileno())
                os.replace(tmp, dest)
            except BaseException:
                try:
                    os.rename(tmp, path)
                except OSError:
                    _unlink_quietly(tmp)
                raise
            _fsync_dir(dest.parent)
        return self._created(key, st, etag, content_type)

    # -- reads ----------------------------------------------------------------------------------

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        """Hardlink the object to ``dest`` (copy across devices); treat ``dest`` as read-only."""
        with self._open_object(key) as (name, path, source), self._fs_errors("get", name):
            info = self._describe(name, source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f"{_temp_name(dest)}{secrets.token_hex(6)}"
            try:
                linked = False
                with suppress(OSError):
                    os.link(path, tmp)
                    # The object may have been replaced since we opened it; then copy instead.
                    linked = os.stat(tmp).st_ino == os.fstat(source.fileno()).st_ino
                    if not linked:
                        os.unlink(tmp)
                if not linked:
                    source.seek(0)
                    with open(tmp, "xb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                        out.flush()
                        os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                _unlink_quietly(tmp)
                raise
        return info

    def get_bytes(self, key: str) -> bytes:
        with self._open_object(key) as (name, _, source), self._fs_errors("read", name):
            return source.read()

    @contextmanager
    def open_stream(self, key: str) -> Iterator[BinaryIO]:
        with self._open_object(key) as (_, _, source):
            yield source

    def stat(self, key: str) -> ObjectInfo:
        with self._open_object(key) as (name, _, source), self._fs_errors("stat", name):
            return self._describe(name, source)

    def exists(self, key: str) -> bool:
        _, path = self._resolve(key)
        return path.is_file()

    def local_path(self, key: str) -> Path | None:
        """The object's real file, for ffmpeg to read in place. Never write to it."""
        key, path = self._resolve(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in local store {self.root}")
        return path.resolve()

    def relative_key(self, bucket_key: str) -> str | None:
        try:
            return normalize_key(bucket_key)
        except InvalidKey:
            return None

    # -- listing and deleting -------------------------------------------------------------------

    def _keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted (code point order = S3's UTF-8 order)."""
        prefix = normalize_prefix(prefix)
        start_dir = prefix.rpartition("/")[0]
        start = self.root.joinpath(*start_dir.split("/")) if start_dir else self.root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else f"{rel}/"
            dirnames[:] = [
                name
                for name in dirnames
                if not (base == "" and name == _META)
                and not _is_temp_name(name)
                and (f"{base}{name}/".startswith(prefix) or prefix.startswith(f"{base}{name}/"))
            ]
            keys.extend(
                f"{base}{name}"
                for name in filenames
                if not _is_temp_name(name) and f"{base}{name}".startswith(prefix)
            )
        keys.sort()
        return keys

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self._keys(prefix):
            try:
                yield self.stat(key)
            except (ObjectNotFound, InvalidKey):
                continue  # deleted meanwhile, or a hand-placed file no key can name

    def delete(self, key: str) -> None:
        key, path = self._resolve(key)
        with self._fs_errors("delete", key):
            if path.is_dir():
                return  # a "directory" is a prefix, not an object
            with suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(path)
            meta = self._meta_path(key)
            _unlink_quietly(meta)
            # S3 has no directories: drop the ones this delete emptied, so listings stay tidy.
            for top, leaf in ((self.root, path), (self._meta_root, meta)):
                for parent in leaf.parents:
                    if parent == top or not parent.is_relative_to(top):
                        break
                    try:
                        parent.rmdir()
                    except OSError:
                        break

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        for key in self._keys(prefix):
            try:
                self._resolve(key)
            except InvalidKey:
                continue
            self.delete(key)
            count += 1
        return count

    # -- presigned URLs, events -----------------------------------------------------------------

    def presign_get(self, key: str, *, expires_seconds: int = 3600) -> str:
        key, _ = self._resolve(key)
        return self._signer.sign("get", key, expires_seconds=expires_seconds)

    def presign_put(
        self, key: str, *, expires_seconds: int = 3600, content_length: int | None = None
    ) -> str:
        key, _ = self._resolve(key)
        return self._signer.sign(
            "put", key, expires_seconds=expires_seconds, content_length=content_length
        )

    def verify_presigned(
        self, url: str, *, op: Op | None = None, now: float | None = None
    ) -> PresignedGrant:
        """The grant of a URL from ``presign_*``; ``PresignDenied`` if tampered or expired."""
        grant = self._signer.verify(url, op=op, now=now)
        try:
            self._resolve(grant.key)
        except InvalidKey as exc:
            raise PresignDenied(f"presigned URL names an invalid key: {exc.one_line()}") from None
        return grant

    def subscribe(self, listener: ObjectListener) -> None:
        self._listeners.add(listener)

    def close(self) -> None:
        """Nothing to release; here so callers can close any store."""
