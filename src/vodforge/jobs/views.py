"""What goes into and comes out of the job store: frozen dataclasses, never ORM objects.

Views are snapshots taken inside the store's transaction, so a caller can keep, pickle or
serialise them (``to_dict()`` is JSON-friendly) without a session or lazy loads behind them.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any

from vodforge.errors import VodforgeError
from vodforge.jobs.states import AttemptOutcome, DeadLetterState, JobState, StepState

__all__ = [
    "EVENT_OUTCOMES",
    "AttemptView",
    "DeadLetterView",
    "ErrorInfo",
    "EventRecord",
    "EventView",
    "JobSpec",
    "JobView",
    "OutputRecord",
    "PlannedSteps",
    "Publication",
    "StepFinish",
    "StepStart",
    "StepView",
]

#: What the runtime did with an incoming storage event.
EVENT_OUTCOMES = frozenset({"created", "duplicate", "no_trigger", "rejected"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _as_dict(value)
    return value


def _as_dict(view: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(view, f.name)) for f in dataclasses.fields(view)}


class _ToDict:
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: ISO 8601 datetimes, enum values, lists for tuples."""
        return _as_dict(self)


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job to create; ``job_id`` comes from ``job_id_for`` so duplicates collapse."""

    job_id: str
    bucket: str
    key: str
    etag: str
    size: int
    preset: str
    toolchain_id: str
    max_age_seconds: float
    owner: str | None = None
    #: Where to POST the job's terminal state (the API's per-job webhook).
    webhook_url: str | None = None


@dataclasses.dataclass(frozen=True)
class EventRecord:
    """One storage event as received (``record`` is the raw S3-shaped record)."""

    bucket: str
    key: str
    etag: str
    size: int | None
    event_name: str
    event_time: datetime | None
    record: dict[str, Any]
    job_id: str | None
    outcome: str
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class OutputRecord(_ToDict):
    key: str
    size: int
    sha256: str
    kind: str


@dataclasses.dataclass(frozen=True)
class JobView(_ToDict):
    id: str
    bucket: str
    key: str
    etag: str
    size: int
    preset: str
    toolchain_id: str
    owner: str | None
    state: JobState
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    requeued_at: datetime | None
    max_age_seconds: float
    plan: dict[str, Any] | None
    error_label: str | None
    error_message: str | None
    failed_step: str | None
    manifest_key: str | None
    cpu_seconds: float
    progress: float
    webhook_url: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


@dataclasses.dataclass(frozen=True)
class StepView(_ToDict):
    job_id: str
    name: str
    lane: str
    state: StepState
    attempts: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    wall_seconds: float | None
    cpu_seconds: float | None
    worker: str | None
    progress: float
    error_label: str | None
    error_message: str | None
    outputs: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class AttemptView(_ToDict):
    id: int
    job_id: str
    step: str
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome
    error_label: str | None
    error_message: str | None
    exit_code: int | None
    stderr: str
    argv: tuple[str, ...] | None
    toolchain_id: str | None
    wall_seconds: float | None
    cpu_seconds: float | None


@dataclasses.dataclass(frozen=True)
class DeadLetterView(_ToDict):
    """A permanently failed step with everything needed to reproduce it and replay it."""

    id: str
    job_id: str
    step: str
    created_at: datetime
    error_label: str
    message: str
    argv: tuple[str, ...] | None
    exit_code: int | None
    stderr: str
    toolchain_id: str | None
    worker: str | None
    attempts: tuple[dict[str, Any], ...]
    state: DeadLetterState
    replayed_at: datetime | None
    replay_count: int


@dataclasses.dataclass(frozen=True)
class EventView(_ToDict):
    id: int
    received_at: datetime
    event_time: datetime | None
    bucket: str
    key: str
    etag: str
    size: int | None
    event_name: str
    record: dict[str, Any]
    job_id: str | None
    outcome: str
    detail: str | None


@dataclasses.dataclass(frozen=True)
class StepStart:
    """Go ahead: this is attempt number ``attempt`` of the step."""

    attempt: int
    job: JobView


@dataclasses.dataclass(frozen=True)
class StepFinish:
    """``group_complete`` is True for exactly one finisher of a fan-in group: it runs the join."""

    newly_finished: bool
    group_complete: bool
    #: Successors this call marked queued (still pending until then): the caller sends them.
    queued: tuple[str, ...] = ()
    #: The completed job, when the finish also published it.
    job: JobView | None = None


@dataclasses.dataclass(frozen=True)
class PlannedSteps:
    """What the probe adds to its job: the step graph as ``(name, lane)``, the plan, and the
    fan-in groups with their sizes."""

    steps: tuple[tuple[str, str], ...]
    plan: dict[str, Any]
    fanins: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Publication:
    """What the final step published: the job's outputs and its manifest."""

    outputs: tuple[OutputRecord, ...]
    manifest_key: str


@dataclasses.dataclass(frozen=True)
class ErrorInfo(_ToDict):
    """A failure as the job store records it (attempt rows, job error fields, dead letters)."""

    label: str
    message: str
    permanent: bool
    worker: str
    argv: tuple[str, ...] | None = None
    exit_code: int | None = None
    stderr: str = ""
    toolchain_id: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, worker: str) -> ErrorInfo:
        """Our errors carry their label, permanence and ffmpeg evidence; anything else is a bug
        of ours ("internal") and is retried, since it may be a passing condition."""
        if isinstance(exc, VodforgeError):
            evidence = exc.evidence
            # The stderr signature (unknown_encoder, moov_missing, …) is more telling than the
            # error class; metrics, dead letters and rollout decisions all use this label.
            signature = evidence.labels[0] if evidence is not None and evidence.labels else None
            return cls(
                label=signature if signature and signature != "unclassified" else exc.label,
                message=exc.one_line(),
                permanent=exc.permanent,
                worker=worker,
                argv=evidence.argv if evidence is not None else None,
                exit_code=evidence.exit_code if evidence is not None else None,
                stderr=evidence.stderr if evidence is not None else "",
                toolchain_id=evidence.toolchain_id if evidence is not None else None,
            )
        return cls(
            label="internal",
            message=f"{type(exc).__name__}: {exc}",
            permanent=False,
            worker=worker,
        )
