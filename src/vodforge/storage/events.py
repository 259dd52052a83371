"""``ObjectCreated``: the one event that starts a job, in and out of the AWS S3 record shape.

Every source (LocalStore puts, the watch folder, S3 polling, S3 notifications through SQS or
SNS, a Lambda trigger) ends up as the same frozen ``ObjectCreated``. Events travel in the S3
notification shape so a vodforge worker and an AWS Lambda handler read the same JSON.

``ObjectCreated.key`` is the key *in the bucket*, as S3 would report it; a store with a prefix
maps it back with ``store.relative_key``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from vodforge.errors import InputError

__all__ = [
    "ObjectCreated",
    "ObjectListener",
    "notification",
    "parse_notification",
    "to_s3_record",
]

log = logging.getLogger(__name__)

#: Our sources are written into ``userIdentity.principalId`` with this prefix, so a record that
#: went out through ``to_s3_record`` comes back with the same ``source``.
_SOURCE_PREFIX = "vodforge:"
_S3_SOURCE = "aws:s3"


@dataclass(frozen=True)
class ObjectCreated:
    """An object now exists at ``bucket``/``key`` with this size and etag."""

    bucket: str
    key: str
    size: int
    etag: str
    event_time: datetime
    event_name: str = "ObjectCreated:Put"
    source: str = "vodforge:local"


ObjectListener = Callable[[ObjectCreated], None]


class Listeners:
    """The subscribers of one store. A listener's exception reaches the caller of the put.

    The object is already stored by then; re-running the put re-emits the event with the same
    etag, and the job id is derived from the etag, so a retry is safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[ObjectListener] = []

    def add(self, listener: ObjectListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(self, event: ObjectCreated) -> None:
        with self._lock:
            listeners = list(self._listeners)
        failure: BaseException | None = None
        for listener in listeners:
            try:
                listener(event)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


def _iso_z(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_key(key: str) -> str:
    """A key as S3 writes it into a notification: form-encoded, ``/`` kept, space as ``+``."""
    return quote_plus(key, safe="/")


def to_s3_record(event: ObjectCreated) -> dict[str, Any]:
    """One entry of an S3 notification's ``Records``, as AWS would send it."""
    moment = event.event_time
    nanos = int(moment.timestamp() * 1_000_000) * 1000
    return {
        "eventVersion": "2.1",
        "eventSource": _S3_SOURCE,
        "awsRegion": "",
        "eventTime": _iso_z(moment),
        "eventName": event.event_name,
        "userIdentity": {"principalId": event.source},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "vodforge",
            "bucket": {"name": event.bucket, "arn": f"arn:aws:s3:::{event.bucket}"},
            "object": {
                "key": encode_key(event.key),
                "size": event.size,
                "eTag": event.etag,
                # S3's sequencer orders events per key; time in hex does the same for ours.
                "sequencer": f"{nanos:016X}",
            },
        },
    }


def notification(events: Iterable[ObjectCreated]) -> dict[str, Any]:
    """An S3 notification body carrying ``events``."""
    return {"Records": [to_s3_record(event) for event in events]}


def _malformed(why: str) -> InputError:
    return InputError(f"malformed S3 notification: {why}")


def _field(mapping: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = mapping.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _malformed(f"{where}.{name} is missing or not a {kind.__name__}")
    return value


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _malformed(f"eventTime {text[:40]!r} is not ISO 8601") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_s3_record(record: Mapping[str, Any]) -> ObjectCreated | None:
    name = _field(record, "eventName", str, "record")
    if not name.startswith("ObjectCreated:"):
        return None
    s3 = _field(record, "s3", dict, "record")
    bucket = _field(_field(s3, "bucket", dict, "s3"), "name", str, "s3.bucket")
    obj = _field(s3, "object", dict, "s3")
    try:
        key = unquote_plus(_field(obj, "key", str, "s3.object"), errors="strict")
    except UnicodeDecodeError:
        raise _malformed("s3.object.key is not percent-encoded UTF-8") from None
    size = obj.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _malformed("s3.object.size is not a non-negative integer")
    etag = obj.get("eTag", "")
    if not isinstance(etag, str):
        raise _malformed("s3.object.eTag is not a string")
    principal = record.get("userIdentity", {})
    principal = principal.get("principalId") if isinstance(principal, dict) else None
    source = (
        principal
        if isinstance(principal, str) and principal.startswith(_SOURCE_PREFIX)
        else _S3_SOURCE
    )
    return ObjectCreated(
        bucket=bucket,
        key=key,
        size=size,
        etag=etag.strip('"'),
        event_time=_parse_time(_field(record, "eventTime", str, "record")),
        event_name=name,
        source=source,
    )


def _parse_eventbridge(body: Mapping[str, Any]) -> list[ObjectCreated]:
    detail = _field(body, "detail", dict, "event")
    bucket = _field(_field(detail, "bucket", dict, "detail"), "name", str, "detail.bucket")
    obj = _field(detail, "object", dict, "detail")
    size = obj.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _malformed("detail.object.size is not a non-negative integer")
    reason = detail.get("reason", "PutObject")
    return [
        ObjectCreated(
            bucket=bucket,
            key=_field(obj, "key", str, "detail.object"),  # EventBridge keys are not encoded
            size=size,
            etag=str(obj.get("etag", "")).strip('"'),
            event_time=_parse_time(_field(body, "time", str, "event")),
            event_name=f"ObjectCreated:{reason}",
            source=_S3_SOURCE,
        )
    ]


def _parse(body: Any, depth: int) -> list[ObjectCreated]:
    if depth > 4:
        raise _malformed("envelopes nested too deeply")
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise _malformed(f"not JSON ({exc.msg} at offset {exc.pos})") from None
        except UnicodeDecodeError:
            raise _malformed("not UTF-8 text") from None
    if not isinstance(body, Mapping):
        raise _malformed(f"expected a JSON object, got {type(body).__name__}")
    if body.get("Event") == "s3:TestEvent":
        return []
    if body.get("Type") == "Notification" or ("Message" in body and "TopicArn" in body):
        return _parse(_field(body, "Message", str, "SNS envelope"), depth + 1)
    if body.get("source") == "aws.s3" and "detail" in body:
        if body.get("detail-type") != "Object Created":
            return []
        return _parse_eventbridge(body)
    records = body.get("Records")
    if not isinstance(records, list):
        raise _malformed("no Records list, SNS Message or S3 test event")
    events: list[ObjectCreated] = []
    for record in records:
        if not isinstance(record, dict):
            raise _malformed("a record is not a JSON object")
        if isinstance(record.get("Sns"), dict):  # SNS -> Lambda
            events.extend(_parse(_field(record["Sns"], "Message", str, "Sns"), depth + 1))
        elif record.get("eventSource") == "aws:sqs":  # SQS -> Lambda
            events.extend(_parse(_field(record, "body", str, "SQS record"), depth + 1))
        else:
            event = _parse_s3_record(record)
            if event is not None:
                events.append(event)
    return events


def parse_notification(body: Mapping[str, Any] | str | bytes) -> list[ObjectCreated]:
    """The ``ObjectCreated`` events in an S3 notification body, with keys decoded.

    Accepts the S3 shape, the SNS envelope (S3 JSON in ``Message``), Lambda's SNS and SQS
    records, and EventBridge's "Object Created". The S3 test event and non-create events yield
    nothing; anything else raises ``InputError``.
    """
    return _parse(body, 0)
