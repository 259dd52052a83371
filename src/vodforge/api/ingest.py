"""Objects created through the API become jobs the same way as every other upload: the store's
object-created event goes to the dispatcher. What the API knows and the event does not (the
preset asked for, the owner key, a per-job webhook) is registered here first, by key.

Keys the API hands out look like ``uploads/<key_id>/<uuid>/<name>``; an event for such a key
that arrives without a registration (a presigned S3 PUT seen by polling or SQS, or after a
restart) is still owned by that key.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass

from vodforge.jobs.apikeys import ApiKeyStore
from vodforge.observability.logging import get_logger
from vodforge.runtime.dispatch import Dispatched, Dispatcher
from vodforge.storage import ObjectCreated

__all__ = ["Ingest", "Intent", "upload_key"]

log = get_logger(__name__)

_OWNED = re.compile(r"uploads/([0-9a-f]{16})/[0-9a-f]{32}/[^/]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A registration not used within this long is dropped (a presigned PUT never made).
INTENT_SECONDS = 7 * 24 * 3600


def safe_filename(name: str) -> str:
    """A filename fit for a key: ASCII letters, digits, ``._-``; no leading dots."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_name).strip("._")[:120]
    return cleaned or "upload"


def upload_key(key_id: str, filename: str) -> str:
    return f"uploads/{key_id}/{uuid.uuid4().hex}/{safe_filename(filename)}"


@dataclass
class Intent:
    owner: str
    preset: str | None
    webhook_url: str | None
    expires: float
    result: Dispatched | None = None


class Ingest:
    """The store's object-created listener in an API process: dispatches with what the API
    registered for the key (preset, owner, webhook), or plainly through the triggers."""

    def __init__(self, dispatcher: Dispatcher, keys: ApiKeyStore) -> None:
        self.dispatcher = dispatcher
        self.keys = keys
        self._intents: dict[str, Intent] = {}
        self._lock = threading.Lock()

    def expect(self, key: str, *, owner: str, preset: str | None, webhook_url: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, i in self._intents.items() if i.expires < now]:
                del self._intents[stale]
            self._intents[key] = Intent(owner, preset, webhook_url, now + INTENT_SECONDS)

    def take(self, key: str) -> Dispatched | None:
        """What the event of ``key`` dispatched (and forget the registration)."""
        with self._lock:
            intent = self._intents.pop(key, None)
        return intent.result if intent is not None else None

    def on_object_created(self, event: ObjectCreated) -> None:
        """The store listener."""
        self.dispatch(event)

    def dispatch(self, event: ObjectCreated) -> Dispatched | None:
        key = self.dispatcher.key_of(event.key) or event.key
        with self._lock:
            intent = self._intents.get(key)
        try:
            if intent is not None:
                result = self.dispatcher.handle(
                    event, preset=intent.preset, owner=intent.owner, webhook_url=intent.webhook_url
                )
                intent.result = result
                return result
            owner = None
            if (match := _OWNED.fullmatch(key)) and self.keys.get(match[1]) is not None:
                owner = match[1]
            return self.dispatcher.handle(event, owner=owner)
        except Exception as exc:
            log.warning("event not dispatched", key=event.key, error=repr(exc))
            return None
