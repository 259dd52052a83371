"""S3PollWatcher and SqsNotificationSource against a real (moto) endpoint over HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vodforge.storage import (
    ObjectCreated,
    S3PollWatcher,
    S3Store,
    SqsNotificationSource,
    notification,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient


@pytest.fixture
def store(bucket: str, moto_endpoint: str) -> Iterator[S3Store]:
    with S3Store(bucket, prefix="vod/", endpoint_url=moto_endpoint) as store:
        yield store


def test_poll_watcher_emits_once_per_object_and_survives_restarts(
    store: S3Store, state_dir: Path
) -> None:
    state = state_dir / "poll.json"
    store.put_bytes("uploads/a.mp4", b"a")
    store.put_bytes("other/skip.mp4", b"x")
    watcher = S3PollWatcher(store, "uploads/", state)
    (first,) = watcher.poll_once()
    assert (first.bucket, first.key, first.size) == (store.bucket, "vod/uploads/a.mp4", 1)
    assert first.source == "vodforge:s3-poll"
    assert watcher.poll_once() == []

    store.put_bytes("uploads/b b.mp4", b"b")
    assert [e.key for e in watcher.poll_once()] == ["vod/uploads/b b.mp4"]

    restarted = S3PollWatcher(store, "uploads/", state)
    assert restarted.poll_once() == []
    store.put_bytes("uploads/a.mp4", b"a changed")  # new etag: new content, new job
    assert [e.key for e in restarted.poll_once()] == ["vod/uploads/a.mp4"]
    assert sorted(json.loads(state.read_text())["seen"]) == ["uploads/a.mp4", "uploads/b b.mp4"]

    # Deleted keys are forgotten, so the same bytes uploaded again are news again.
    store.delete("uploads/b b.mp4")
    assert restarted.poll_once() == []
    store.put_bytes("uploads/b b.mp4", b"b")
    assert [e.key for e in restarted.poll_once()] == ["vod/uploads/b b.mp4"]


def test_poll_watcher_retries_what_on_event_refused(store: S3Store, state_dir: Path) -> None:
    store.put_bytes("uploads/a.mp4", b"a")
    accepted: list[ObjectCreated] = []
    fail = [True]

    def on_event(event: ObjectCreated) -> None:
        if fail[0]:
            raise RuntimeError("queue is down")
        accepted.append(event)

    watcher = S3PollWatcher(store, "uploads/", state_dir / "s.json", on_event=on_event)
    assert watcher.poll_once() == []
    fail[0] = False
    assert [e.key for e in watcher.poll_once()] == ["vod/uploads/a.mp4"]
    assert [e.key for e in accepted] == ["vod/uploads/a.mp4"]
    assert watcher.poll_once() == []


def test_poll_watcher_can_skip_what_already_exists(store: S3Store, state_dir: Path) -> None:
    store.put_bytes("uploads/old.mp4", b"old")
    watcher = S3PollWatcher(store, "uploads/", state_dir / "s.json", emit_existing=False)
    assert watcher.poll_once() == []
    store.put_bytes("uploads/new.mp4", b"new")
    assert [e.key for e in watcher.poll_once()] == ["vod/uploads/new.mp4"]


def _queue_depth(sqs_client: SQSClient, queue_url: str) -> tuple[int, int]:
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


@pytest.fixture
def source(queue_url: str, moto_endpoint: str) -> Iterator[SqsNotificationSource]:
    source = SqsNotificationSource(
        queue_url, wait_seconds=0, endpoint_url=moto_endpoint, region="us-east-1"
    )
    try:
        yield source
    finally:
        source.close()


def test_sqs_source_parses_and_deletes(
    source: SqsNotificationSource, sqs_client: SQSClient, queue_url: str
) -> None:
    event = ObjectCreated(
        bucket="media",
        key="uploads/my clip+1.mp4",
        size=10,
        etag="e1",
        event_time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        source="aws:s3",
    )
    sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(notification([event])))
    sns = {"Type": "Notification", "TopicArn": "t", "Message": json.dumps(notification([event]))}
    sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(sns))
    assert source.poll_once() == [event, event]
    assert _queue_depth(sqs_client, queue_url) == (0, 0)
    assert source.poll_once() == []


def test_sqs_source_survives_malformed_messages(
    source: SqsNotificationSource,
    sqs_client: SQSClient,
    queue_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = ObjectCreated("media", "a.mp4", 1, "e", datetime(2025, 1, 1, tzinfo=UTC))
    sqs_client.send_message(QueueUrl=queue_url, MessageBody="this is not json")
    sqs_client.send_message(QueueUrl=queue_url, MessageBody='{"Records": [{"eventName": 1}]}')
    sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(notification([good])))
    with caplog.at_level(logging.WARNING, logger="vodforge.storage.watch"):
        assert source.poll_once() == [good]
    assert source.malformed == 2
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 2
    assert _queue_depth(sqs_client, queue_url) == (0, 0)


def test_sqs_message_stays_when_on_event_fails(
    sqs_client: SQSClient, queue_url: str, moto_endpoint: str
) -> None:
    def refuse(event: ObjectCreated) -> None:
        raise RuntimeError("broker down")

    good = ObjectCreated("media", "a.mp4", 1, "e", datetime(2025, 1, 1, tzinfo=UTC))
    sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(notification([good])))
    source = SqsNotificationSource(queue_url, client=sqs_client, wait_seconds=0, on_event=refuse)
    assert source.poll_once() == []
    assert _queue_depth(sqs_client, queue_url) == (0, 1)  # in flight; SQS redelivers it
    source.close()  # the caller's client stays open


def test_bucket_notifications_through_sqs_reach_the_source(
    store: S3Store,
    s3_client: S3Client,
    sqs_client: SQSClient,
    queue_url: str,
    source: SqsNotificationSource,
) -> None:
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3_client.put_bucket_notification_configuration(
        Bucket=store.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    info = store.put_bytes("uploads/from s3+1.mp4", b"bytes")
    events = source.poll_once()
    assert [(e.bucket, e.key, e.etag, e.size) for e in events] == [
        (store.bucket, "vod/uploads/from s3+1.mp4", info.etag, 5)
    ]
    assert store.relative_key(events[0].key) == "uploads/from s3+1.mp4"
