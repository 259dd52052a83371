"""The scaled-out backends, for real: PostgreSQL as job store, the Redis server on 6379 as broker,
S3 (a moto server over HTTP) as object store — and a burst of 100 jobs on the embedded ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis

from tests.conftest import SampleFactory
from tests.integration.runtime.conftest import HarnessFactory
from vodforge.jobs import JobState

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_BASE = "redis://127.0.0.1:6379"
#: Databases the tests may lease (0 holds the leases).
REDIS_DBS = range(8, 16)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL, dropped afterwards."""
    schema = f"vf_rt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A database of the machine's Redis server to itself (emptied before and after): a lease
    in db 0 keeps two test runs on one machine (other checkouts, CI) off the same queues."""
    lease_client = redis.Redis.from_url(f"{REDIS_BASE}/0")
    token = uuid.uuid4().hex
    db = next(
        (
            d
            for d in REDIS_DBS
            if lease_client.set(f"vodforge-test-lease:{d}", token, nx=True, ex=900)
        ),
        None,
    )
    if db is None:
        lease_client.close()
        pytest.fail(f"all Redis test databases {REDIS_DBS} are leased by other test runs")
    url = f"{REDIS_BASE}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if lease_client.get(f"vodforge-test-lease:{db}") == token.encode():
            lease_client.delete(f"vodforge-test-lease:{db}")
        lease_client.close()


def test_postgres_job_store_and_redis_server_broker(
    harness: HarnessFactory, sample: SampleFactory, pg_schema_url: str, redis_url: str
) -> None:
    h = harness(database_url=pg_schema_url, broker_url=redis_url)
    assert h.runtime.jobs.backend == "postgresql"
    h.upload(sample("hd_audio", seconds=2, size=(320, 180)), "uploads/pg.mp4")
    job = h.wait(h.job_for("uploads/pg.mp4").id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert h.runtime.jobs.outputs(job.id)


def test_s3_object_store(
    harness: HarnessFactory,
    sample: SampleFactory,
    moto_endpoint: str,
    s3_client: S3Client,
    bucket: str,
) -> None:
    h = harness(storage_url=f"s3://{bucket}/vod", s3_endpoint_url=moto_endpoint)
    h.upload(sample("hd_audio", seconds=2, size=(320, 180)), "uploads/s3.mp4")
    job = h.wait(h.job_for("uploads/s3.mp4").id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert job.bucket == bucket
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"vod/outputs/{job.id}/manifest.json" in keys
    assert f"vod/outputs/{job.id}/hls/master.m3u8" in keys
    assert not [k for k in keys if k.startswith(f"vod/work/{job.id}/")]


def test_a_burst_of_100_jobs_all_complete(harness: HarnessFactory, sample: SampleFactory) -> None:
    h = harness(quick_concurrency=2, long_concurrency=2)
    src = sample("basic", seconds=1, size=(64, 36))
    keys = [f"uploads/burst/{i:03d}.mp4" for i in range(100)]
    for key in keys:  # queued at once
        h.upload(src, key)
    jobs = {key: h.job_for(key).id for key in keys}
    assert len(set(jobs.values())) == 100
    states = [h.wait(job_id, timeout=300).state for job_id in jobs.values()]
    assert states.count(JobState.SUCCEEDED) == 100
    assert h.runtime.jobs.list_dead_letters() == []
