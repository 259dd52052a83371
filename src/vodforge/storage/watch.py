"""Event sources: where ``ObjectCreated`` events come from besides the API.

Each source has ``poll_once() -> list[ObjectCreated]`` (one pass, no sleeping: what tests call)
and ``run(stop, interval)`` (the loop a runtime thread calls). Delivery is at least once: a
source hands an event on before it forgets it, and a duplicate is harmless because a job's id
is derived from bucket, key and etag.

- ``WatchFolder``: files dropped into a directory, moved into the store once they stop growing.
- ``S3PollWatcher``: lists a bucket; for S3-compatible stores that have no notifications.
- ``SqsNotificationSource``: S3 event notifications delivered through SQS (directly or via SNS).
"""

from __future__ import annotations

import json
import logging
import os
import stat as stat_mode
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from vodforge.errors import (
    ConfigError,
    InputError,
    InvalidKey,
    StorageError,
    TransientError,
    VodforgeError,
)
from vodforge.storage.base import ObjectStore, SupportsMoveIn
from vodforge.storage.events import ObjectCreated, ObjectListener, parse_notification
from vodforge.storage.keys import join_key, normalize_prefix
from vodforge.storage.s3 import map_botocore_error

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from vodforge.storage.s3 import S3Store

__all__ = ["S3PollWatcher", "SqsNotificationSource", "WatchFolder"]

log = logging.getLogger(__name__)

#: Names browsers and upload tools give files they are still writing.
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload")


def _run_loop(
    name: str, poll: Callable[[], object], stop: threading.Event, interval: float
) -> None:
    """Poll until ``stop`` is set; a failed pass is logged and the next one tried."""
    while not stop.is_set():
        try:
            poll()
        except TransientError as exc:
            log.warning("%s: poll failed, will retry: %s", name, exc.one_line())
        except Exception:
            log.exception("%s: poll failed", name)
        stop.wait(interval)


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


@dataclass
class _Sighting:
    size: int
    mtime_ns: int
    since: float
    refused: bool = False


class WatchFolder:
    """Moves settled files from ``incoming`` into ``store`` at ``key_prefix`` + relative path.

    A file is settled when its size and mtime have not changed for ``settle_seconds`` across
    polls: an upload still in progress keeps changing them. The store's put emits the event.
    """

    def __init__(
        self,
        incoming: Path,
        store: ObjectStore,
        *,
        key_prefix: str = "uploads/",
        settle_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self.key_prefix = normalize_prefix(key_prefix)
        except InvalidKey as exc:
            raise ConfigError(f"watch folder key prefix: {exc.one_line()}") from None
        incoming.mkdir(parents=True, exist_ok=True)
        self.incoming = incoming
        self._store = store
        self._settle = settle_seconds
        self._clock = clock
        self._sightings: dict[str, _Sighting] = {}
        # The events of our own puts, caught in this thread as the store emits them.
        self._caught = threading.local()
        store.subscribe(self._catch)

    def _catch(self, event: ObjectCreated) -> None:
        caught: list[ObjectCreated] | None = getattr(self._caught, "events", None)
        if caught is not None:
            caught.append(event)

    def _files(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        for dirpath, dirnames, filenames in os.walk(self.incoming):
            dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
            for name in sorted(filenames):
                if _ignored(name):
                    continue
                path = Path(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat_mode.S_ISREG(st.st_mode):  # not symlinks, fifos or sockets
                    yield path.relative_to(self.incoming).as_posix(), path, st

    def poll_once(self) -> list[ObjectCreated]:
        """One pass: note changed files, move settled ones; the events of the moves."""
        now = self._clock()
        events: list[ObjectCreated] = []
        present: set[str] = set()
        for rel, path, st in self._files():
            present.add(rel)
            seen = self._sightings.get(rel)
            if seen is None or (seen.size, seen.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._sightings[rel] = _Sighting(st.st_size, st.st_mtime_ns, since=now)
                continue
            if seen.refused or now - seen.since < self._settle:
                continue
            try:
                events.extend(self._move(rel, path))
            except TransientError as exc:
                log.warning("watch folder: %s not moved, will retry: %s", rel, exc.one_line())
                continue
            except (VodforgeError, OSError) as exc:
                why = exc.one_line() if isinstance(exc, VodforgeError) else str(exc)
                log.warning("watch folder: skipping %s until it changes: %s", rel, why)
                seen.refused = True
                continue
            del self._sightings[rel]
        for gone in self._sightings.keys() - present:
            del self._sightings[gone]
        return events

    def _move(self, rel: str, path: Path) -> list[ObjectCreated]:
        key = join_key(self.key_prefix, rel)
        self._caught.events = []
        try:
            if isinstance(self._store, SupportsMoveIn):
                self._store.move_in(key, path)
            else:
                self._store.put_file(key, path)
                path.unlink(missing_ok=True)
            caught: list[ObjectCreated] = self._caught.events
            return caught
        finally:
            self._caught.events = None

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        _run_loop(f"watch folder {self.incoming}", self.poll_once, stop, interval)


def _write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class S3PollWatcher:
    """Emits ``ObjectCreated`` for keys under ``prefix`` that are new or have a new etag.

    What it has emitted is kept in ``state_path`` (JSON, written atomically), so a restart does
    not emit again. A key is only recorded once ``on_event`` accepted its event. With
    ``emit_existing=False`` a first run records what is already there without emitting it.
    """

    def __init__(
        self,
        store: S3Store,
        prefix: str,
        state_path: Path,
        *,
        on_event: ObjectListener | None = None,
        emit_existing: bool = True,
    ) -> None:
        self._store = store
        self.prefix = normalize_prefix(prefix)
        self.state_path = state_path
        self._on_event = on_event
        self._emit_existing = emit_existing
        self._seen: dict[str, str] | None = None

    def _load(self) -> dict[str, str] | None:
        try:
            state = json.loads(self.state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("s3 poll: state %s unreadable, starting afresh: %s", self.state_path, exc)
            return None
        seen = state.get("seen") if isinstance(state, dict) else None
        if not isinstance(seen, dict):
            log.warning("s3 poll: state %s has no 'seen' map, starting afresh", self.state_path)
            return None
        return {str(key): str(etag) for key, etag in seen.items()}

    def poll_once(self) -> list[ObjectCreated]:
        """One listing; the events emitted (and accepted by ``on_event``, if given)."""
        if self._seen is None:
            loaded = self._load()
            if loaded is None and not self._emit_existing:
                self._seen = {info.key: info.etag for info in self._store.list(self.prefix)}
                self._save(self._seen)
                return []
            self._seen = loaded or {}
        seen = self._seen
        current: dict[str, str] = {}
        events: list[ObjectCreated] = []
        for info in self._store.list(self.prefix):
            if seen.get(info.key) == info.etag:
                current[info.key] = info.etag
                continue
            event = ObjectCreated(
                bucket=self._store.bucket,
                key=self._store.bucket_key(info.key),
                size=info.size,
                etag=info.etag,
                event_time=info.last_modified,
                source="vodforge:s3-poll",
            )
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception as exc:
                    log.warning("s3 poll: %s not accepted, will emit again: %s", info.key, exc)
                    if info.key in seen:
                        current[info.key] = seen[info.key]
                    continue
            current[info.key] = info.etag
            events.append(event)
        # Keys deleted since are forgotten, so a re-upload of the same bytes is news again.
        if current != seen:
            self._save(current)
            self._seen = current
        return events

    def _save(self, seen: dict[str, str]) -> None:
        state = {
            "version": 1,
            "bucket": self._store.bucket,
            "prefix": self._store.prefix + self.prefix,
            "seen": seen,
        }
        try:
            _write_json_atomic(self.state_path, state)
        except OSError as exc:
            raise StorageError(f"s3 poll: cannot write state {self.state_path}: {exc}") from exc

    def run(self, stop: threading.Event, interval: float = 10.0) -> None:
        _run_loop(f"s3 poll s3://{self._store.bucket}", self.poll_once, stop, interval)


class SqsNotificationSource:
    """S3 notifications from an SQS queue: raw S3 JSON or an SNS envelope around it.

    A message is deleted once its events were handed on (to ``on_event`` when given, else to
    the caller of ``poll_once``); if ``on_event`` fails the message stays and SQS redelivers
    it. A malformed message is logged, counted in ``malformed`` and deleted, so one bad message
    cannot block the queue.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: SQSClient | None = None,
        wait_seconds: int = 1,
        max_messages: int = 10,
        on_event: ObjectListener | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if not 0 <= wait_seconds <= 20:
            raise ConfigError(f"SQS wait must be 0..20 seconds, got {wait_seconds}")
        self.queue_url = queue_url
        self._wait = wait_seconds
        self._max = max(1, min(max_messages, 10))
        self._on_event = on_event
        self._owns_client = client is None
        self._client: SQSClient = client or boto3.session.Session().client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                connect_timeout=5,
                read_timeout=wait_seconds + 30,
                retries={"mode": "standard", "max_attempts": 5},
            ),
        )
        self.malformed = 0

    def _mapped(self, op: str, exc: Exception) -> Exception:
        return map_botocore_error(f"sqs {op} {self.queue_url}", exc) or exc

    def _delete(self, message: MessageTypeDef) -> None:
        try:
            self._client.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except Exception as exc:
            # Not fatal: the message comes back and is handled again, which is harmless.
            mapped = self._mapped("delete", exc)
            if not isinstance(mapped, VodforgeError):
                raise
            log.warning("sqs: cannot delete message %s: %s", message.get("MessageId"), mapped)

    def poll_once(self) -> list[ObjectCreated]:
        """Receive once (long-polling up to ``wait_seconds``); the events handed on."""
        try:
            response = self._client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self._max,
                WaitTimeSeconds=self._wait,
            )
        except Exception as exc:
            mapped = self._mapped("receive", exc)
            if mapped is exc:
                raise
            raise mapped from exc
        events: list[ObjectCreated] = []
        for message in response.get("Messages", []):
            try:
                parsed = parse_notification(message.get("Body", ""))
            except InputError as exc:
                self.malformed += 1
                log.warning(
                    "sqs: deleting malformed message %s: %s",
                    message.get("MessageId"),
                    exc.one_line(),
                )
                self._delete(message)
                continue
            if self._on_event is not None:
                try:
                    for event in parsed:
                        self._on_event(event)
                except Exception as exc:
                    log.warning(
                        "sqs: message %s not accepted, left for redelivery: %s",
                        message.get("MessageId"),
                        exc,
                    )
                    continue
            events.extend(parsed)
            self._delete(message)
        return events

    def run(self, stop: threading.Event, interval: float = 0.0) -> None:
        """Loop; the long poll (``wait_seconds``) is the wait, so ``interval`` can stay 0."""
        _run_loop(f"sqs {self.queue_url}", self.poll_once, stop, interval)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
