"""The one exception tree of vodforge.

Every error that leaves a vodforge function is one of these; foreign errors (subprocess, PyAV,
pydantic, OS) are mapped at the boundary where they occur. The split that matters to the runtime
is *permanent* vs *transient*: permanent errors fail the job at once and write a dead letter,
transient ones are retried with backoff.

    VodforgeError
    ├── ConfigError                 bad preset, bad setting, bad CLI argument      (permanent)
    ├── InputError                  the source itself is the problem               (permanent)
    │   ├── EmptyInput              zero bytes
    │   ├── NotMediaError           no demuxer recognises it / random bytes
    │   ├── NoVideoStream           audio-only or data-only file
    │   ├── CorruptInput            truncated or undecodable
    │   ├── UnsupportedInput        a playlist, concat script or other refused container
    │   └── InvalidKey              an object key that escapes its root / has control characters
    ├── ToolchainError              permanent *for this toolchain*                 (permanent)
    │   ├── ToolchainNotFound       the pinned binary is missing
    │   ├── ToolchainDrift          the binary no longer matches its fingerprint
    │   ├── MissingCapability       an encoder or filter the pipeline needs is absent
    │   └── ToolchainCrash          ffmpeg died of SIGSEGV/SIGABRT/SIGILL, or rejected our argv
    ├── VerificationError           an output failed verification; nothing is published
    ├── StorageError                the object store refused or lost something     (permanent)
    │   └── ObjectNotFound          no object at that key
    ├── JobError                    the job store's rules                          (permanent)
    │   ├── JobNotFound             no such job / dead letter / rollout
    │   ├── InvalidTransition       a state change the state machine forbids
    │   ├── JobExpired              the job ran past its max age
    │   └── RolloutConflict         a rollout is already running
    ├── AccessError                 the HTTP API refuses the caller                (permanent)
    │   ├── Unauthenticated         no key, a wrong or revoked key                 (401)
    │   ├── Forbidden               the key lacks the scope; a bad signed URL      (403)
    │   └── RateLimited             the key's rate limit is spent                  (429)
    └── TransientError              worth retrying                                 (transient)
        ├── FfmpegTimeout           ran past its duration-scaled deadline; group killed
        ├── FfmpegStalled           made no progress for the stall window; group killed
        ├── FfmpegKilled            killed by a signal we did not send (OOM killer, operator)
        ├── OutOfDisk               ENOSPC
        ├── FfmpegFailed            a non-zero exit we could not classify
        ├── StorageUnavailable      store timeout, refused connection or 5xx
        └── WorkerRefused           this worker cannot take it (drifted toolchain): retry elsewhere
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AccessError",
    "ConfigError",
    "CorruptInput",
    "EmptyInput",
    "FfmpegEvidence",
    "FfmpegFailed",
    "FfmpegKilled",
    "FfmpegStalled",
    "FfmpegTimeout",
    "Forbidden",
    "InputError",
    "InvalidKey",
    "InvalidTransition",
    "JobError",
    "JobExpired",
    "JobNotFound",
    "MissingCapability",
    "NoVideoStream",
    "NotMediaError",
    "ObjectNotFound",
    "OutOfDisk",
    "RateLimited",
    "RolloutConflict",
    "StorageError",
    "StorageUnavailable",
    "ToolchainCrash",
    "ToolchainDrift",
    "ToolchainError",
    "ToolchainNotFound",
    "TransientError",
    "Unauthenticated",
    "UnsupportedInput",
    "VerificationError",
    "VodforgeError",
    "WorkerRefused",
]

STDERR_TAIL_LINES = 12


@dataclass(frozen=True)
class FfmpegEvidence:
    """What a failed ffmpeg call leaves behind: enough to reproduce it and to dead-letter it."""

    argv: tuple[str, ...]
    exit_code: int | None
    stderr: str
    toolchain_id: str
    wall_seconds: float = 0.0
    signal: int | None = None
    labels: tuple[str, ...] = field(default=())

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        kept = [line for line in self.stderr.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


class VodforgeError(Exception):
    """Base of every vodforge error. ``permanent`` tells the runtime whether to retry."""

    permanent: bool = True
    #: A short machine-readable label (metrics, dead letters, rollout decisions).
    label: str = "error"

    def __init__(self, message: str, *, evidence: FfmpegEvidence | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence

    def one_line(self) -> str:
        """The message as a single line, for the CLI and API error bodies."""
        return " ".join(self.message.split())

    def __str__(self) -> str:
        if self.evidence is None:
            return self.message
        tail = self.evidence.stderr_tail()
        return f"{self.message}\n--- ffmpeg stderr (tail) ---\n{tail}" if tail else self.message


class ConfigError(VodforgeError):
    label = "config"


class InputError(VodforgeError):
    label = "input"


class EmptyInput(InputError):
    label = "input_empty"


class NotMediaError(InputError):
    label = "input_not_media"


class NoVideoStream(InputError):
    label = "input_no_video"


class CorruptInput(InputError):
    label = "input_corrupt"


class UnsupportedInput(InputError):
    label = "input_unsupported"


class InvalidKey(InputError):
    label = "input_invalid_key"


class ToolchainError(VodforgeError):
    label = "toolchain"


class ToolchainNotFound(ToolchainError):
    label = "toolchain_not_found"


class ToolchainDrift(ToolchainError):
    label = "toolchain_drift"


class MissingCapability(ToolchainError):
    label = "toolchain_missing_capability"


class ToolchainCrash(ToolchainError):
    label = "toolchain_crash"


class VerificationError(VodforgeError):
    label = "verification"


class StorageError(VodforgeError):
    label = "storage"


class ObjectNotFound(StorageError):
    label = "storage_not_found"


class JobError(VodforgeError):
    label = "job"


class JobNotFound(JobError):
    label = "job_not_found"


class InvalidTransition(JobError):
    label = "job_invalid_transition"


class JobExpired(JobError):
    label = "job_expired"


class AccessError(VodforgeError):
    label = "access"


class Unauthenticated(AccessError):
    label = "unauthenticated"


class Forbidden(AccessError):
    label = "forbidden"


class RateLimited(AccessError):
    label = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RolloutConflict(JobError):
    label = "rollout_conflict"


class TransientError(VodforgeError):
    permanent = False
    label = "transient"


class FfmpegTimeout(TransientError):
    label = "timeout"


class FfmpegKilled(TransientError):
    label = "killed"


class OutOfDisk(TransientError):
    label = "out_of_disk"


class FfmpegFailed(TransientError):
    label = "ffmpeg_failed"


class FfmpegStalled(TransientError):
    label = "stalled"


class StorageUnavailable(TransientError):
    label = "storage_unavailable"


class WorkerRefused(TransientError):
    label = "worker_refused"
