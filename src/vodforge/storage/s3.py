"""S3Store: the ``ObjectStore`` on S3 or an S3-compatible service (MinIO, Ceph, R2), via boto3.

Large files go up and down in parallel multipart transfers (``TransferConfig``); streams are
uploaded part by part, never held whole in memory. botocore's errors are mapped to the vodforge
tree in one place (``_errors``): a missing object is ``ObjectNotFound``; 5xx, throttling,
timeouts and refused connections are ``StorageUnavailable`` (retried); the rest ``StorageError``.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from vodforge.errors import (
    ConfigError,
    InputError,
    InvalidKey,
    ObjectNotFound,
    OutOfDisk,
    StorageError,
    StorageUnavailable,
    VodforgeError,
)
from vodforge.storage.base import ObjectInfo, ObjectTooLarge
from vodforge.storage.events import Listeners, ObjectCreated, ObjectListener
from vodforge.storage.keys import guess_content_type, normalize_key, normalize_prefix
from vodforge.storage.local import MAX_PRESIGN_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Store", "default_client_config", "map_botocore_error"]

log = logging.getLogger(__name__)

MiB = 1 << 20
#: S3's smallest allowed part (all but the last).
MIN_PART_BYTES = 5 * MiB
_SSE_MODES = ("AES256", "aws:kms")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        # The object changed between two reads of one download: reading again fixes it.
        "PreconditionFailed",
        "412",
    }
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _map_client_error(where: str, exc: ClientError) -> VodforgeError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = _one_line(f"{where}: {code or status} {error.get('Message', '')}")
    if code == "NoSuchBucket":
        return StorageError(f"{text} (the bucket does not exist)")
    if code in _NOT_FOUND_CODES or status == 404:
        return ObjectNotFound(text)
    if status >= 500 or code in _TRANSIENT_CODES or (code.isdigit() and int(code) >= 500):
        return StorageUnavailable(text)
    return StorageError(text)


def map_botocore_error(where: str, exc: Exception) -> VodforgeError | None:
    """The vodforge error for a boto3/botocore (or local file) error; None for anything else."""
    if isinstance(exc, ClientError):
        return _map_client_error(where, exc)
    if isinstance(exc, S3UploadFailedError):
        # boto3 wraps the ClientError of upload_file and keeps it only as the context.
        cause = exc.__context__
        if isinstance(cause, ClientError):
            return _map_client_error(where, cause)
        return StorageError(_one_line(f"{where}: {exc}"))
    if isinstance(exc, RetriesExceededError):
        last = getattr(exc, "last_exception", None) or exc
        return StorageUnavailable(_one_line(f"{where}: {last}"))
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return StorageUnavailable(_one_line(f"{where}: {exc}"))
    if isinstance(exc, BotoCoreError):
        return StorageError(_one_line(f"{where}: {exc}"))
    if isinstance(exc, OSError):  # our side of a download: the local file
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return OutOfDisk(_one_line(f"{where}: out of local disk space"))
        return StorageError(_one_line(f"{where}: {exc.strerror or exc}"))
    return None


def default_client_config(
    *,
    endpoint_url: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 5,
) -> Config:
    """botocore settings: SigV4, standard retries, path-style addressing for custom endpoints."""
    return Config(
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )


class _Reader(io.RawIOBase):
    """A raw stream over a read function: caps the bytes (``max_bytes``) and maps read errors.

    Not seekable, so s3transfer streams it part by part instead of buffering it whole.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        on_error: Callable[[Exception], VodforgeError],
        max_bytes: int | None = None,
        too_large: str = "",
        close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._read = read
        self._on_error = on_error
        self._max_bytes = max_bytes
        self._too_large = too_large
        self._close = close
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._read(len(view))
        except VodforgeError:
            raise
        except Exception as exc:
            raise self._on_error(exc) from exc
        count = len(data)
        self._count += count
        if self._max_bytes is not None and self._count > self._max_bytes:
            raise ObjectTooLarge(self._too_large)
        view[:count] = data
        return count

    def close(self) -> None:
        if not self.closed and self._close is not None:
            self._close()
        super().close()


class S3Store:
    """Objects in ``bucket`` under ``prefix``; the client is ours to close unless passed in."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int | None = None,
        max_concurrency: int = 4,
        client: S3Client | None = None,
    ) -> None:
        if sse is not None and sse not in _SSE_MODES:
            raise ConfigError(f"S3 server-side encryption must be one of {_SSE_MODES}, not {sse!r}")
        if kms_key_id is not None and sse != "aws:kms":
            raise ConfigError("an S3 KMS key id needs sse='aws:kms'")
        try:
            store_prefix = normalize_prefix(prefix)
        except InvalidKey as exc:
            raise ConfigError(f"S3 prefix: {exc.one_line()}") from None
        self.bucket = bucket
        #: Always empty or ending in "/", so prefix "a" never sees "ab/...".
        if store_prefix and not store_prefix.endswith("/"):
            store_prefix += "/"
        self.prefix = store_prefix
        self._sse = sse
        self._kms_key_id = kms_key_id
        self._owns_client = client is None
        self._client: S3Client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=default_client_config(endpoint_url=endpoint_url),
        )
        self.multipart_threshold = max(multipart_threshold, MIN_PART_BYTES)
        self._transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=max(
                multipart_chunksize or self.multipart_threshold, MIN_PART_BYTES
            ),
            max_concurrency=max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        self._listeners = Listeners()

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> S3Client:
        """The boto3 client, for what the store does not wrap (bucket setup, tests)."""
        return self._client

    # -- keys and errors ------------------------------------------------------------------------

    def bucket_key(self, key: str) -> str:
        """The key in the bucket: this store's prefix + the normalized ``key``."""
        return self.prefix + normalize_key(key)

    def relative_key(self, bucket_key: str) -> str | None:
        if not bucket_key.startswith(self.prefix):
            return None
        try:
            key = normalize_key(bucket_key[len(self.prefix) :])
        except InvalidKey:
            return None
        return key if key == bucket_key[len(self.prefix) :] else None

    @contextmanager
    def _errors(self, op: str, bucket_key: str) -> Iterator[None]:
        """The one boundary where boto3/botocore errors become vodforge errors."""
        try:
            yield
        except VodforgeError:
            raise
        except Exception as exc:
            mapped = map_botocore_error(f"s3 {op} s3://{self.bucket}/{bucket_key}", exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _info(self, key: str, head: Any) -> ObjectInfo:
        modified = head["LastModified"]
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=str(head["ETag"]).strip('"'),
            last_modified=modified.astimezone(UTC) if isinstance(modified, datetime) else modified,
            content_type=head.get("ContentType"),
        )

    def _extra_args(self, key: str, content_type: str | None) -> dict[str, str]:
        extra: dict[str, str] = {}
        content_type = content_type or guess_content_type(key)
        if content_type:
            extra["ContentType"] = content_type
        if self._sse:
            extra["ServerSideEncryption"] = self._sse
        if self._kms_key_id:
            extra["SSEKMSKeyId"] = self._kms_key_id
        return extra

    # -- writes ---------------------------------------------------------------------------------

    def _created(self, key: str, bucket_key: str) -> ObjectInfo:
        with self._errors("head", bucket_key):
            info = self._info(key, self._client.head_object(Bucket=self.bucket, Key=bucket_key))
        multipart = "-" in info.etag
        self._listeners.emit(
            ObjectCreated(
                bucket=self.bucket,
                key=bucket_key,
                size=info.size,
                etag=info.etag,
                event_time=info.last_modified,
                event_name="ObjectCreated:CompleteMultipartUpload"
                if multipart
                else "ObjectCreated:Put",
                source="vodforge:s3",
            )
        )
        return info

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> ObjectInfo:
        bucket_key = self.bucket_key(key)
        if not path.is_file():
            raise InputError(f"cannot read {path}: not a regular file")
        with self._errors("put", bucket_key):
            self._client.upload_file(
                str(path),
                self.bucket,
                bucket_key,
                ExtraArgs=self._extra_args(bucket_key, content_type),
                Config=self._transfer,
            )
        return self._created(normalize_key(key), bucket_key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        bucket_key = self.bucket_key(key)
        extra: dict[str, Any] = self._extra_args(bucket_key, content_type)
        with self._errors("put", bucket_key):
            self._client.put_object(Bucket=self.bucket, Key=bucket_key, Body=data, **extra)
        return self._created(normalize_key(key), bucket_key)

    def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        *,
        content_type: str | None = None,
        max_bytes: int | None = None,
    ) -> ObjectInfo:
        """Upload part by part; past ``max_bytes`` the multipart upload is aborted."""
        bucket_key = self.bucket_key(key)

        def unreadable(exc: Exception) -> VodforgeError:
            return InputError(_one_line(f"cannot read the upload for {bucket_key!r}: {exc}"))

        reader = io.BufferedReader(
            _Reader(
                stream.read,
                on_error=unreadable,
                max_bytes=max_bytes,
                too_large=f"upload for {bucket_key!r} is larger than {max_bytes} bytes",
            ),
            buffer_size=MiB,
        )
        with reader, self._errors("put", bucket_key):
            self._client.upload_fileobj(
                reader,
                self.bucket,
                bucket_key,
                ExtraArgs=self._extra_args(bucket_key, content_type),
                Config=self._transfer,
            )
        return self._created(normalize_key(key), bucket_key)

    # -- reads ----------------------------------------------------------------------------------

    def get_file(self, key: str, dest: Path) -> ObjectInfo:
        """Download to a temp file beside ``dest``, then rename; large objects in parallel parts."""
        bucket_key = self.bucket_key(key)
        key = normalize_key(key)
        with self._errors("get", bucket_key):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".{dest.name[:100]}.tmp-{secrets.token_hex(6)}"
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=bucket_key)
                if int(head["ContentLength"]) < self.multipart_threshold:
                    # One GET, pinned to the etag we report.
                    response = self._client.get_object(
                        Bucket=self.bucket, Key=bucket_key, IfMatch=head["ETag"]
                    )
                    with closing(response["Body"]) as body, open(tmp, "xb") as out:
                        for chunk in body.iter_chunks(MiB):
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                else:
                    self._client.download_file(
                        self.bucket, bucket_key, str(tmp), Config=self._transfer
                    )
                    again = self._client.head_object(Bucket=self.bucket, Key=bucket_key)
                    if again["ETag"] != head["ETag"]:
                        raise StorageUnavailable(
                            f"s3 get s3://{self.bucket}/{bucket_key}: changed while downloading"
                        )
                os.replace(tmp, dest)
            except BaseException:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return self._info(key, head)

    def get_bytes(self, key: str) -> bytes:
        bucket_key = self.bucket_key(key)
        with self._errors("get", bucket_key):
            response = self._client.get_object(Bucket=self.bucket, Key=bucket_key)
            with closing(response["Body"]) as body:
                return body.read()

    @contextmanager
    def open_stream(self, key: str) -> Iterator[BinaryIO]:
        bucket_key = self.bucket_key(key)
        with self._errors("get", bucket_key):
            response = self._client.get_object(Bucket=self.bucket, Key=bucket_key)
        body = response["Body"]

        def broken(exc: Exception) -> VodforgeError:
            where = f"s3 read s3://{self.bucket}/{bucket_key}"
            return map_botocore_error(where, exc) or StorageError(_one_line(f"{where}: {exc}"))

        with io.BufferedReader(
            _Reader(body.read, on_error=broken, close=body.close), buffer_size=MiB
        ) as reader:
            yield reader

    def stat(self, key: str) -> ObjectInfo:
        bucket_key = self.bucket_key(key)
        with self._errors("head", bucket_key):
            head = self._client.head_object(Bucket=self.bucket, Key=bucket_key)
        return self._info(normalize_key(key), head)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        normalize_key(key)
        return None

    # -- listing and deleting -------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in S3's (UTF-8 byte) order, minus keys no store key names."""
        list_prefix = self.prefix + normalize_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", list_prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
                for entry in page.get("Contents", []):
                    key = self.relative_key(entry["Key"])
                    if key is None:
                        log.debug("s3 list: skipping %r, not a valid store key", entry["Key"])
                        continue
                    yield ObjectInfo(
                        key=key,
                        size=int(entry["Size"]),
                        etag=entry["ETag"].strip('"'),
                        last_modified=entry["LastModified"].astimezone(UTC),
                        content_type=None,
                    )

    def delete(self, key: str) -> None:
        bucket_key = self.bucket_key(key)
        with self._errors("delete", bucket_key):
            self._client.delete_object(Bucket=self.bucket, Key=bucket_key)

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.bucket_key(info.key) for info in self.list(prefix)]
        where = self.prefix + normalize_prefix(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with self._errors("delete", where):
                response = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            failed = response.get("Errors", [])
            if failed:
                first = failed[0]
                raise StorageError(
                    _one_line(
                        f"s3 delete s3://{self.bucket}/{first.get('Key')}: {first.get('Code')} "
                        f"{first.get('Message', '')} ({len(failed)} keys failed)"
                    )
                )
        return len(keys)

    # -- presigned URLs, events -----------------------------------------------------------------

    def _presign(self, method: str, params: dict[str, Any], expires_seconds: int) -> str:
        if not 0 < expires_seconds <= MAX_PRESIGN_SECONDS:
            raise ConfigError(
                f"presign expiry must be 1..{MAX_PRESIGN_SECONDS} seconds, got {expires_seconds}"
            )
        with self._errors("presign", str(params["Key"])):
            return self._client.generate_presigned_url(
                method, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_seconds
            )

    def presign_get(self, key: str, *, expires_seconds: int = 3600) -> str:
        return self._presign("get_object", {"Key": self.bucket_key(key)}, expires_seconds)

    def presign_put(
        self, key: str, *, expires_seconds: int = 3600, content_length: int | None = None
    ) -> str:
        """A PUT URL. SSE is not signed into it: give the bucket a default encryption instead."""
        params: dict[str, Any] = {"Key": self.bucket_key(key)}
        if content_length is not None:
            if content_length < 0:
                raise ConfigError(f"presign content length must be >= 0, got {content_length}")
            params["ContentLength"] = content_length
        return self._presign("put_object", params, expires_seconds)

    def subscribe(self, listener: ObjectListener) -> None:
        self._listeners.add(listener)

    def close(self) -> None:
        """Close the client's connection pool (only if this store created the client)."""
        if self._owns_client:
            self._client.close()
