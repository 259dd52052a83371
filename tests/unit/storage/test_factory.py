"""open_store: one URL setting to a store; a bad URL is a ConfigError, not a surprise later."""

from __future__ import annotations

from pathlib import Path

import pytest

from vodforge.errors import ConfigError
from vodforge.storage import LocalStore, S3Store, open_store

SECRET = b"f" * 32


@pytest.mark.parametrize("url", ["", "local", "  local "])
def test_default_is_a_local_store_in_the_data_dir(tmp_path: Path, url: str) -> None:
    store = open_store(url, data_dir=tmp_path, secret=SECRET)
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "store").resolve()


def test_file_url_and_plain_path(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/my%20store", data_dir=tmp_path, secret=SECRET)
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "my store").resolve()
    plain = open_store(str(tmp_path / "plain"), data_dir=tmp_path, secret=SECRET)
    assert isinstance(plain, LocalStore)
    assert plain.root == (tmp_path / "plain").resolve()


def test_s3_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = open_store(
        "s3://media-bucket/vod/prod",
        data_dir=tmp_path,
        secret=SECRET,
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
    )
    assert isinstance(store, S3Store)
    try:
        assert (store.bucket, store.prefix) == ("media-bucket", "vod/prod/")
        assert store.bucket_key("a.mp4") == "vod/prod/a.mp4"
        assert store.relative_key("vod/prod/a.mp4") == "a.mp4"
        assert store.relative_key("vod/other/a.mp4") is None
        assert store.local_path("a.mp4") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://Bad_Bucket/x",
        "s3://ab/x",
        "s3://bucket/../x",
        "s3://bucket/x?region=eu",
        "gs://bucket/x",
        "http://example.com/store",
        "file://otherhost/srv",
        "file:relative/path",
    ],
)
def test_bad_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url, data_dir=tmp_path, secret=SECRET)
    assert "storage URL" in caught.value.message
