"""Events: the S3 record shape out, every delivery envelope back in, keys decoded as S3 does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from vodforge.errors import InputError
from vodforge.storage import ObjectCreated, notification, parse_notification, to_s3_record

WHEN = datetime(2025, 3, 1, 12, 30, 45, 123000, tzinfo=UTC)


def event(key: str = "uploads/a.mp4", **changes: Any) -> ObjectCreated:
    fields: dict[str, Any] = {
        "bucket": "media",
        "key": key,
        "size": 1234,
        "etag": "abc123",
        "event_time": WHEN,
    }
    fields.update(changes)
    return ObjectCreated(**fields)


def test_record_has_the_s3_shape() -> None:
    record = to_s3_record(event("uploads/my clip.mp4"))
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["eventTime"] == "2025-03-01T12:30:45.123Z"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "media"
    obj = record["s3"]["object"]
    assert obj == {
        "key": "uploads/my+clip.mp4",
        "size": 1234,
        "eTag": "abc123",
        "sequencer": obj["sequencer"],
    }
    assert int(obj["sequencer"], 16) > 0
    json.dumps(record)  # plain JSON types only


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("uploads/my clip.mp4", "uploads/my+clip.mp4"),
        ("a+b.mp4", "a%2Bb.mp4"),
        ("100%.mp4", "100%25.mp4"),
        ("vidéo/日本.mov", "vid%C3%A9o/%E6%97%A5%E6%9C%AC.mov"),
        ("year=2025/x.mp4", "year%3D2025/x.mp4"),
        ("a b+c%d&e.mp4", "a+b%2Bc%25d%26e.mp4"),
    ],
)
def test_keys_roundtrip_through_s3_encoding(key: str, encoded: str) -> None:
    original = event(key)
    body = notification([original])
    assert body["Records"][0]["s3"]["object"]["key"] == encoded
    assert parse_notification(body) == [original]
    assert parse_notification(json.dumps(body)) == [original]
    assert parse_notification(json.dumps(body).encode()) == [original]


def test_source_and_event_name_roundtrip_and_aws_records_say_aws() -> None:
    ours = event(event_name="ObjectCreated:CompleteMultipartUpload", source="vodforge:s3-poll")
    assert parse_notification(notification([ours])) == [ours]
    record = to_s3_record(ours)
    record["userIdentity"] = {"principalId": "AWS:AIDAEXAMPLE"}
    (parsed,) = parse_notification({"Records": [record]})
    assert parsed.source == "aws:s3"


def test_aws_sample_event_with_quoted_etag_and_no_sequencer() -> None:
    body = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-west-2",
                "eventTime": "1970-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "amzn-s3-demo-bucket"},
                    "object": {"key": "HappyFace.jpg", "size": 1024, "eTag": '"d41d8cd9"'},
                },
            }
        ]
    }
    (parsed,) = parse_notification(body)
    assert parsed.key == "HappyFace.jpg"
    assert parsed.etag == "d41d8cd9"
    assert parsed.event_time == datetime(1970, 1, 1, tzinfo=UTC)


def test_only_object_created_events_are_kept() -> None:
    removed = to_s3_record(event("gone.mp4"))
    removed["eventName"] = "ObjectRemoved:Delete"
    kept = to_s3_record(event("new.mp4"))
    assert [e.key for e in parse_notification({"Records": [removed, kept]})] == ["new.mp4"]


def test_sns_envelope_and_lambda_wrappers() -> None:
    original = event("uploads/a b.mp4")
    s3_json = json.dumps(notification([original]))
    sns = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Message": s3_json,
    }
    assert parse_notification(json.dumps(sns)) == [original]
    lambda_sns = {"Records": [{"EventSource": "aws:sns", "Sns": sns}]}
    assert parse_notification(lambda_sns) == [original]
    lambda_sqs = {"Records": [{"eventSource": "aws:sqs", "body": json.dumps(sns)}]}
    assert parse_notification(lambda_sqs) == [original]


def test_test_event_is_ignored() -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-03-01T12:00:00.000Z",
        "Bucket": "media",
        "RequestId": "r",
        "HostId": "h",
    }
    assert parse_notification(test_event) == []
    sns = {"Type": "Notification", "TopicArn": "t", "Message": json.dumps(test_event)}
    assert parse_notification(sns) == []


def test_eventbridge_object_created() -> None:
    body = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2025-03-01T12:30:45Z",
        "detail": {
            "bucket": {"name": "media"},
            "object": {"key": "uploads/a b.mp4", "size": 5, "etag": "e1"},
            "reason": "PutObject",
        },
    }
    (parsed,) = parse_notification(body)
    assert (parsed.bucket, parsed.key, parsed.size, parsed.etag) == (
        "media",
        "uploads/a b.mp4",
        5,
        "e1",
    )


def _record_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    record = to_s3_record(event())
    target: dict[str, Any] = record
    for name in path[:-1]:
        target = target[name]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return {"Records": [record]}


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        "42",
        {},
        {"Records": "nope"},
        {"Records": [1]},
        {"Type": "Notification", "TopicArn": "t", "Message": 7},
        {"Type": "Notification", "TopicArn": "t", "Message": "{broken"},
        _record_with(("s3",), KeyError),
        _record_with(("s3", "object", "key"), KeyError),
        _record_with(("s3", "object", "key"), 5),
        _record_with(("s3", "object", "key"), "bad%FFutf8"),
        _record_with(("s3", "bucket", "name"), None),
        _record_with(("s3", "object", "size"), "big"),
        _record_with(("s3", "object", "size"), -1),
        _record_with(("s3", "object", "size"), True),
        _record_with(("eventTime",), "yesterday"),
        _record_with(("eventName",), None),
    ],
)
def test_malformed_raises_input_error_with_one_line(body: Any) -> None:
    with pytest.raises(InputError, match="malformed S3 notification") as caught:
        parse_notification(body)
    assert "\n" not in caught.value.message
