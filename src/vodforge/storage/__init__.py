"""The object-store seam: ``ObjectStore`` with ``LocalStore`` and ``S3Store``, and the events.

Steps read and write objects by key through ``ObjectStore`` only, so the same code runs on the
embedded LocalStore and on S3. ``ObjectCreated`` events (S3 record shape) start jobs; they come
from store puts and from the sources in ``watch`` (watch folder, S3 polling, SQS).
"""

from vodforge.storage.base import (
    ObjectInfo,
    ObjectStore,
    ObjectTooLarge,
    PresignDenied,
    SupportsMoveIn,
)
from vodforge.storage.events import (
    ObjectCreated,
    ObjectListener,
    notification,
    parse_notification,
    to_s3_record,
)
from vodforge.storage.factory import open_store
from vodforge.storage.keys import (
    MAX_KEY_BYTES,
    guess_content_type,
    join_key,
    key_matches,
    normalize_key,
    normalize_prefix,
)
from vodforge.storage.local import LocalStore, PresignedGrant, UrlSigner
from vodforge.storage.s3 import S3Store
from vodforge.storage.watch import S3PollWatcher, SqsNotificationSource, WatchFolder

__all__ = [
    "MAX_KEY_BYTES",
    "LocalStore",
    "ObjectCreated",
    "ObjectInfo",
    "ObjectListener",
    "ObjectStore",
    "ObjectTooLarge",
    "PresignDenied",
    "PresignedGrant",
    "S3PollWatcher",
    "S3Store",
    "SqsNotificationSource",
    "SupportsMoveIn",
    "UrlSigner",
    "WatchFolder",
    "guess_content_type",
    "join_key",
    "key_matches",
    "normalize_key",
    "normalize_prefix",
    "notification",
    "open_store",
    "parse_notification",
    "to_s3_record",
]
