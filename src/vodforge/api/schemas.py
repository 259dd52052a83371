"""Response and request bodies of the HTTP API v1 (``docs/api-contract.md``), as pydantic
models so the OpenAPI document is exact."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Model):
    code: str
    message: str


class ErrorResponse(_Model):
    error: ErrorBody


class ErrorOut(_Model):
    type: str
    message: str
    step: str | None
    worker: str | None
    exit_code: int | None
    stderr_tail: str


class JobSummary(_Model):
    id: str
    state: str
    preset: str
    key: str
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    toolchain: str
    error: ErrorOut | None
    poster_url: str | None


class SourceOut(_Model):
    bucket: str
    key: str
    etag: str
    size: int


class StepOut(_Model):
    name: str
    lane: str
    state: str
    progress: float
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    cpu_seconds: float | None
    wall_seconds: float | None
    error: ErrorOut | None


class OutputOut(_Model):
    key: str
    kind: str
    size: int
    sha256: str
    url: str


class DeliveryOut(_Model):
    url: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


class Job(JobSummary):
    source: SourceOut
    steps: list[StepOut]
    outputs: list[OutputOut]
    cpu_seconds: float
    wall_seconds: float | None
    webhooks: list[DeliveryOut]
    hls_url: str | None


class JobPage(_Model):
    items: list[JobSummary]
    next_cursor: str | None


class UploadResult(_Model):
    job: Job
    source_url: str | None
    poster_url: str | None
    thumbnail_urls: list[str]
    gif_url: str | None
    sprite_url: str | None
    vtt_url: str | None


class PresignRequest(_Model):
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1, description="exact byte size of the upload (an empty file is refused)")
    content_type: str | None = Field(default=None, max_length=255)
    preset: str | None = Field(default=None, min_length=1, max_length=255)
    webhook_url: str | None = Field(default=None, max_length=2048)


class PresignResponse(_Model):
    key: str
    url: str
    method: Literal["PUT"]
    headers: dict[str, str]
    expires_at: datetime


class JobCreate(_Model):
    key: str = Field(min_length=1, max_length=1024)
    preset: str | None = Field(default=None, min_length=1, max_length=255)
    webhook_url: str | None = Field(default=None, max_length=2048)


class DeadLetterOut(_Model):
    id: str
    job_id: str
    step: str
    state: str
    error: ErrorOut
    argv: list[str]
    stderr: str
    toolchain: str | None
    attempts: list[dict[str, object]]
    created_at: datetime
    replayed_at: datetime | None


class DeadLetterPage(_Model):
    items: list[DeadLetterOut]


class Me(_Model):
    key_id: str
    name: str
    scopes: list[str]


class MinuteCount(_Model):
    t: datetime
    count: int


class RatePoint(_Model):
    t: datetime
    rate: float


class StepP95(_Model):
    toolchain: str
    step: str
    p95_seconds: float
    n: int


class Stats(_Model):
    jobs_per_minute: list[MinuteCount]
    failure_rate: list[RatePoint]
    step_p95: list[StepP95]
    by_state: dict[str, int]
