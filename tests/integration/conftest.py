"""A real moto server over HTTP for S3Store and the S3/SQS sources (no in-process patching).

One server per session on a free port; every test gets its own bucket, so tests do not see each
other's objects. Dummy credentials are set for the whole session and never leave this machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient

REGION = "us-east-1"


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials, and no real AWS config or instance metadata to fall back on."""
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(nowhere),
            "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Iterator[S3Client]:
    client = boto3.session.Session().client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def sqs_client(moto_endpoint: str) -> Iterator[SQSClient]:
    client = boto3.session.Session().client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def bucket(s3_client: S3Client) -> str:
    name = f"vodforge-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def queue_url(sqs_client: SQSClient) -> str:
    return sqs_client.create_queue(QueueName=f"events-{uuid.uuid4().hex[:12]}")["QueueUrl"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
