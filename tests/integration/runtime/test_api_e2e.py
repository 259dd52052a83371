"""The API on the real embedded runtime (redis-server, SQLite, LocalStore, a worker running the
pinned ffmpeg): a synchronous upload answers with poster, thumbnail and GIF URLs that download;
tampered and expired URLs are 403; the job then completes with its HLS playable by URL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SampleFactory
from tests.integration.runtime.conftest import Harness
from vodforge.api.app import Probes, create_app
from vodforge.api.context import ApiContext
from vodforge.api.ingest import Ingest
from vodforge.api.keys import create_key
from vodforge.jobs import JobState
from vodforge.runtime.app import build_runtime
from vodforge.runtime.broker import EmbeddedRedis
from vodforge.settings import Settings
from vodforge.storage import UrlSigner


def _path(url: str) -> str:
    split = urlsplit(url)
    return f"{split.path}?{split.query}" if split.query else split.path


@pytest.fixture
def served(
    tmp_path: Path, runtime_settings: Callable[..., Settings]
) -> Iterator[tuple[Harness, TestClient, str]]:
    settings = runtime_settings()
    redis = EmbeddedRedis(tmp_path / "broker")
    url = redis.start()
    runtime = build_runtime(settings, broker_url=url, worker=False)
    ctx = ApiContext(settings, runtime.jobs, runtime.store, runtime.dispatcher)
    ingest = Ingest(runtime.dispatcher, ctx.keys)
    runtime.store.subscribe(ingest.on_object_created)
    h = Harness(settings, runtime, url)
    h.start_worker()
    token = create_key(ctx.keys, name="e2e", scopes="upload,read").token
    client = TestClient(create_app(Probes(), ctx, ingest=ingest), raise_server_exceptions=False)
    try:
        with client:
            yield h, client, token
    finally:
        h.stop_workers()
        runtime.close()
        redis.stop()


def test_sync_upload_returns_downloadable_previews(
    served: tuple[Harness, TestClient, str], sample: SampleFactory
) -> None:
    h, client, token = served
    auth = {"Authorization": f"Bearer {token}"}
    src = sample("hd_audio", seconds=3, size=(320, 180))
    with src.open("rb") as f:
        response = client.post(
            "/v1/uploads?wait=60", headers=auth, files={"file": ("clip.mp4", f, "video/mp4")}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["poster_url"]
    assert body["gif_url"]
    assert len(body["thumbnail_urls"]) == 3  # as many as the tiny preset asks for
    poster = client.get(_path(body["poster_url"]))
    assert poster.status_code == 200
    assert poster.content[:3] == b"\xff\xd8\xff"
    gif = client.get(_path(body["gif_url"]))
    assert gif.status_code == 200
    assert gif.content[:6] in (b"GIF89a", b"GIF87a")
    for thumb in body["thumbnail_urls"]:
        assert client.get(_path(thumb)).status_code == 200

    tampered = _path(body["poster_url"]).replace("poster.jpg", "sprite.jpg")
    assert client.get(tampered).status_code == 403
    key = urlsplit(body["poster_url"]).path.split("/v1/objects/", 1)[1]
    expired = UrlSigner(
        h.settings.secret(),
        base_url="http://testserver/v1",
        route="objects",
        clock=lambda: time.time() - 3600,
    ).sign("get", key, expires_seconds=10)
    assert client.get(_path(expired)).status_code == 403

    job = h.wait(body["job"]["id"])
    assert job.state is JobState.SUCCEEDED
    detail = client.get(f"/v1/jobs/{job.id}", headers=auth).json()
    assert detail["cpu_seconds"] > 0
    assert all(s["worker"] for s in detail["steps"])
    assert {o["kind"] for o in detail["outputs"]} >= {"hls", "mp4", "preview", "manifest"}
    # The HLS folder grant: master, variant playlist and a segment all load by relative URL.
    master = client.get(_path(detail["hls_url"]))
    assert master.status_code == 200
    assert master.text.startswith("#EXTM3U")
    variant = next(line for line in master.text.splitlines() if line.endswith(".m3u8"))
    base = _path(detail["hls_url"]).rsplit("/", 1)[0]
    playlist = client.get(f"{base}/{variant}")
    assert playlist.status_code == 200
    bad = base.replace("/v1/signed/", "/v1/signed/1").rsplit("/~", 1)[0] + "/~/master.m3u8"
    assert client.get(bad).status_code == 403


def test_sync_upload_of_a_bad_file_is_a_422_with_the_reason(
    served: tuple[Harness, TestClient, str], tmp_path: Path
) -> None:
    """Not a video: the waiting upload answers 422 with the probe's one-line reason (and the
    failed job, which keeps the evidence); the server goes on serving."""
    _, client, token = served
    auth = {"Authorization": f"Bearer {token}"}
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 400)
    with junk.open("rb") as f:
        response = client.post(
            "/v1/uploads?wait=30", headers=auth, files={"file": ("junk.mp4", f, "video/mp4")}
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"].startswith("input")
    assert "junk.mp4" in body["error"]["message"]
    assert "\n" not in body["error"]["message"]
    assert body["job"]["state"] == "failed"
    assert client.get("/v1/jobs", headers=auth).status_code == 200
