"""The API on an S3Store (moto server over HTTP): a presigned PUT is a real S3 URL bound to
the length (a signed header); uploading through it and the bucket poll make a job owned by the
key; job outputs are S3 presigned GETs."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from vodforge.api.app import Probes, create_app
from vodforge.api.context import ApiContext
from vodforge.api.ingest import Ingest
from vodforge.api.keys import create_key
from vodforge.jobs import JobStore
from vodforge.pipeline.dag import Lane
from vodforge.runtime.dispatch import Dispatcher
from vodforge.runtime.executor import StepMessage
from vodforge.settings import Settings
from vodforge.storage import S3PollWatcher, S3Store


class Sender:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, lane: Lane, message: StepMessage, *, delay_ms: int | None = None) -> None:
        self.sent.append(message.step)


def test_presigned_s3_put_becomes_an_owned_job(
    tmp_path: Path, bucket: str, moto_endpoint: str
) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-of-32-bytes-0123456789")
    jobs = JobStore.open(settings.resolved_database_url)
    with S3Store(bucket, prefix="vod/", endpoint_url=moto_endpoint) as store:
        dispatcher = Dispatcher(
            jobs=jobs,
            sender=Sender(),
            triggers=settings.triggers,
            toolchain_id="tc",
            max_age_seconds=3600,
            plan_workers=2,
            key_of=store.relative_key,
        )
        ctx = ApiContext(settings, jobs, store, dispatcher)
        ingest = Ingest(dispatcher, ctx.keys)
        token = create_key(ctx.keys, name="s3", scopes="upload,read").token
        auth = {"Authorization": f"Bearer {token}"}
        data = b"\x00\x01video bytes" * 1000
        with TestClient(create_app(Probes(), ctx, ingest=ingest)) as client:
            grant = client.post(
                "/v1/uploads/presign", headers=auth, json={"filename": "a.mp4", "size": len(data)}
            )
            assert grant.status_code == 201, grant.text
            body = grant.json()
            assert body["url"].startswith(moto_endpoint)
            # The length is a signed header (S3 refuses another; moto does not check).
            assert "X-Amz-SignedHeaders=content-length" in body["url"]
            done = httpx.put(body["url"], content=data, headers=body["headers"])
            assert done.status_code == 200, done.text

            # A bucket without notifications: the poller sees the object, the ingest owns it.
            poller = S3PollWatcher(
                store, "uploads/", tmp_path / "poll.json", on_event=ingest.on_object_created
            )
            (event,) = poller.poll_once()
            assert store.relative_key(event.key) == body["key"]
            (job,) = jobs.list_jobs()
            assert job.key == body["key"]
            assert job.owner == body["key"].split("/")[1]
            detail = client.get(f"/v1/jobs/{job.id}", headers=auth).json()
            assert detail["state"] == "queued"
            listed = client.get("/v1/jobs", headers=auth).json()["items"]
            assert [j["id"] for j in listed] == [job.id]
            # The source's URL is an S3 presigned GET that works.
            assert httpx.get(ctx.urls.get_url(job.key, "http://unused")).content == data
    jobs.close()
