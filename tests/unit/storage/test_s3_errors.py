"""The one boundary where botocore's errors become vodforge's: permanent vs transient."""

from __future__ import annotations

from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from vodforge.errors import (
    ObjectNotFound,
    OutOfDisk,
    StorageError,
    StorageUnavailable,
    VodforgeError,
)
from vodforge.storage.s3 import map_botocore_error

WHERE = "s3 get s3://media/k"


def client_error(code: str, status: int, message: str = "") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("NoSuchKey", 404, "The specified key does not exist."), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("ServiceUnavailable", 503), StorageUnavailable),
        (client_error("SlowDown", 503), StorageUnavailable),
        (client_error("ThrottlingException", 400), StorageUnavailable),
        (client_error("RequestTimeout", 400), StorageUnavailable),
        (client_error("PreconditionFailed", 412), StorageUnavailable),
        (client_error("AccessDenied", 403, "Access\nDenied"), StorageError),
        (client_error("NoSuchBucket", 404), StorageError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
        (ConnectTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (ReadTimeoutError(endpoint_url="http://x"), StorageUnavailable),
        (ResponseStreamingError(error="reset"), StorageUnavailable),
        (NoCredentialsError(), StorageError),
        (OSError(28, "No space left on device"), OutOfDisk),
        (PermissionError(13, "Permission denied"), StorageError),
    ],
)
def test_mapping(exc: Exception, kind: type[VodforgeError]) -> None:
    mapped = map_botocore_error(WHERE, exc)
    assert type(mapped) is kind
    assert mapped.message.startswith(WHERE)
    assert "\n" not in mapped.message


def test_upload_failed_keeps_the_client_error_class() -> None:
    # boto3's upload_file raises this inside ``except ClientError``, keeping it as the context.
    outer = S3UploadFailedError("Failed to upload f to media/k: An error occurred (SlowDown)")
    outer.__context__ = client_error("SlowDown", 503)
    assert isinstance(map_botocore_error(WHERE, outer), StorageUnavailable)
    assert type(map_botocore_error(WHERE, S3UploadFailedError("other"))) is StorageError


def test_foreign_errors_are_not_ours_to_map() -> None:
    assert map_botocore_error(WHERE, ValueError("bug")) is None
    assert map_botocore_error(WHERE, KeyError("k")) is None
