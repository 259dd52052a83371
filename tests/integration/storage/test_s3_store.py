"""S3Store against a real (moto) S3 endpoint over HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest
from botocore.config import Config

from vodforge.errors import ObjectNotFound, StorageError, StorageUnavailable
from vodforge.storage import ObjectCreated, ObjectStore, ObjectTooLarge, S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MiB = 1 << 20


@pytest.fixture
def store(bucket: str, moto_endpoint: str) -> Iterator[S3Store]:
    with S3Store(bucket, endpoint_url=moto_endpoint, region="us-east-1") as store:
        yield store


def test_is_an_object_store(store: S3Store) -> None:
    assert isinstance(store, ObjectStore)
    assert store.local_path("a") is None


def test_roundtrip(store: S3Store, tmp_path: Path) -> None:
    heard: list[ObjectCreated] = []
    store.subscribe(heard.append)
    data = b"hello s3" * 1000
    info = store.put_bytes("uploads//my clip+1.mp4", data)
    assert info.key == "uploads/my clip+1.mp4"
    assert info.size == len(data)
    assert info.etag == hashlib.md5(data).hexdigest()  # S3's single-part etag
    assert info.content_type == "video/mp4"
    assert info.last_modified.tzinfo is not None
    assert store.stat("uploads/my clip+1.mp4") == info
    assert store.exists("uploads/my clip+1.mp4")
    assert not store.exists("uploads/other.mp4")
    assert store.get_bytes("uploads/my clip+1.mp4") == data
    with store.open_stream("uploads/my clip+1.mp4") as stream:
        assert stream.read(5) == b"hello"
        assert stream.read() == data[5:]
    with store.open_stream("uploads/my clip+1.mp4") as stream:
        assert stream.read(1) == b"h"  # left unread: closing drops the connection cleanly

    dest = tmp_path / "dl" / "clip.mp4"
    assert store.get_file("uploads/my clip+1.mp4", dest).etag == info.etag
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["clip.mp4"]

    source = tmp_path / "f.m3u8"
    source.write_bytes(b"#EXTM3U\n")
    assert store.put_file("p/master.m3u8", source).content_type == "application/vnd.apple.mpegurl"
    store.put_stream("p/s.bin", io.BytesIO(b"streamed"), content_type="application/x-test")
    assert store.stat("p/s.bin").content_type == "application/x-test"

    assert [i.key for i in store.list()] == ["p/master.m3u8", "p/s.bin", "uploads/my clip+1.mp4"]
    assert [i.key for i in store.list("p/")] == ["p/master.m3u8", "p/s.bin"]
    assert [e.key for e in heard] == ["uploads/my clip+1.mp4", "p/master.m3u8", "p/s.bin"]
    assert heard[0].source == "vodforge:s3"
    assert heard[0].bucket == store.bucket

    store.delete("uploads/my clip+1.mp4")
    store.delete("uploads/my clip+1.mp4")  # idempotent
    assert store.delete_prefix("p/") == 2
    assert list(store.list()) == []


def test_prefix_isolation(bucket: str, moto_endpoint: str, s3_client: S3Client) -> None:
    s3_client.put_object(Bucket=bucket, Key="ab/outside", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="a//not-normal", Body=b"x")
    with (
        S3Store(bucket, prefix="a", endpoint_url=moto_endpoint) as a,
        S3Store(bucket, prefix="b/", endpoint_url=moto_endpoint) as b,
    ):
        heard: list[ObjectCreated] = []
        a.subscribe(heard.append)
        a.put_bytes("k", b"from a")
        b.put_bytes("k", b"from b")
        assert a.get_bytes("k") == b"from a"
        assert b.get_bytes("k") == b"from b"
        assert [i.key for i in a.list()] == ["k"]
        assert [i.key for i in b.list()] == ["k"]
        # Events carry the key in the bucket; the store maps it back.
        assert heard[0].key == "a/k"
        assert a.relative_key(heard[0].key) == "k"
        assert b.relative_key(heard[0].key) is None
        assert a.delete_prefix("") == 1
        assert [i.key for i in b.list()] == ["k"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["a//not-normal", "ab/outside", "b/k"]


def test_multipart_upload_and_download(bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
    data = os.urandom(MiB) * 20
    source = tmp_path / "big.mp4"
    source.write_bytes(data)
    heard: list[ObjectCreated] = []
    with S3Store(bucket, endpoint_url=moto_endpoint, multipart_threshold=5 * MiB) as store:
        store.subscribe(heard.append)
        info = store.put_file("big.mp4", source)
        assert info.size == len(data)
        assert info.etag.endswith("-4")  # four 5 MiB parts
        assert heard[0].event_name == "ObjectCreated:CompleteMultipartUpload"

        dest = tmp_path / "back.mp4"
        assert store.get_file("big.mp4", dest) == info
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()

        streamed = store.put_stream("streamed.mp4", io.BytesIO(data))
        assert streamed.etag.endswith("-4")


def test_stream_over_max_bytes_leaves_nothing(
    bucket: str, moto_endpoint: str, s3_client: S3Client
) -> None:
    heard: list[ObjectCreated] = []
    with S3Store(bucket, endpoint_url=moto_endpoint, multipart_threshold=5 * MiB) as store:
        store.subscribe(heard.append)
        with pytest.raises(ObjectTooLarge):
            store.put_stream("small", io.BytesIO(b"x" * 100), max_bytes=99)
        with pytest.raises(ObjectTooLarge):  # fails after parts were uploaded
            store.put_stream("big", io.BytesIO(b"x" * (12 * MiB)), max_bytes=11 * MiB)
        assert list(store.list()) == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert heard == []


def test_sse_aes256(bucket: str, moto_endpoint: str, s3_client: S3Client, tmp_path: Path) -> None:
    with S3Store(bucket, endpoint_url=moto_endpoint, sse="AES256") as store:
        store.put_bytes("enc/a", b"secret")
        source = tmp_path / "b"
        source.write_bytes(b"secret too")
        store.put_file("enc/b", source)
    for key in ("enc/a", "enc/b"):
        assert s3_client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_missing_object_and_bucket(store: S3Store, moto_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match=f"s3://{store.bucket}/nope"):
        store.stat("nope")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope")
    with pytest.raises(ObjectNotFound), store.open_stream("nope"):
        pass
    with pytest.raises(ObjectNotFound):
        store.get_file("nope", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    with S3Store("no-such-bucket-here", endpoint_url=moto_endpoint) as missing:
        with pytest.raises(StorageError, match="bucket does not exist") as caught:
            missing.put_bytes("k", b"x")
        assert not isinstance(caught.value, ObjectNotFound)
        with pytest.raises(StorageError, match="NoSuchBucket"):
            missing.put_file("k", _file(tmp_path))


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(b"x")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(
            connect_timeout=0.5,
            read_timeout=0.5,
            retries={"mode": "standard", "total_max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )
    try:
        store = S3Store("bucket", client=client)
        with pytest.raises(StorageUnavailable, match=r"s3 head s3://bucket/k: Could not connect"):
            store.stat("k")
        with pytest.raises(StorageUnavailable) as caught:
            store.put_bytes("k", b"x")
        assert not caught.value.permanent
        with pytest.raises(StorageUnavailable):
            store.put_file("k", _file(tmp_path))
        with pytest.raises(StorageUnavailable):
            list(store.list())
        store.close()  # not ours: the caller's client stays open
        assert client.meta.endpoint_url == endpoint
    finally:
        client.close()


def test_presigned_put_then_get(store: S3Store) -> None:
    data = b"uploaded through a presigned URL"
    put_url = store.presign_put("uploads/p s.mp4", content_length=len(data), expires_seconds=60)
    with httpx.Client() as http:
        response = http.put(put_url, content=data)
        assert response.status_code == 200, response.text
        assert store.get_bytes("uploads/p s.mp4") == data
        got = http.get(store.presign_get("uploads/p s.mp4"))
        assert got.status_code == 200
        assert got.content == data
