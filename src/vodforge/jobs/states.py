"""The state machines of jobs and steps, as pure tables.

Every state change in the job store goes through ``check_job_transition`` or
``check_step_transition``, so a rule lives in exactly one place and is unit-tested without a
database. Messages arrive at least once, so some "odd" edges are deliberate: ``running ->
running`` is a redelivery after a crashed worker (a new attempt), ``queued -> queued`` a resend.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from vodforge.errors import InvalidTransition

__all__ = [
    "ACTIVE_STEP_STATES",
    "JOB_TRANSITIONS",
    "RESETTABLE_STEP_STATES",
    "STEP_TRANSITIONS",
    "TERMINAL_JOB_STATES",
    "AttemptOutcome",
    "DeadLetterState",
    "JobState",
    "StepState",
    "check_job_transition",
    "check_step_reset",
    "check_step_transition",
]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AttemptOutcome(StrEnum):
    """How one execution of a step ended; ``abandoned`` = its worker vanished (redelivered)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    ABANDONED = "abandoned"


class DeadLetterState(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


J = JobState
S = StepState

JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    J.QUEUED: frozenset({J.RUNNING, J.FAILED, J.CANCELLED}),
    # running -> queued: put back by the reaper / a retry of the whole job.
    J.RUNNING: frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED, J.QUEUED}),
    J.FAILED: frozenset({J.QUEUED}),  # replay of a dead letter, manual retry
    J.CANCELLED: frozenset({J.QUEUED}),  # retry
    J.SUCCEEDED: frozenset(),
}

STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.QUEUED, S.RUNNING}),
    # queued -> succeeded: the reaper re-sent a slow step whose first worker then finished it.
    S.QUEUED: frozenset({S.RUNNING, S.QUEUED, S.FAILED, S.PENDING, S.SUCCEEDED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RETRYING, S.QUEUED, S.RUNNING}),
    S.RETRYING: frozenset({S.QUEUED, S.RUNNING, S.FAILED}),
    S.FAILED: frozenset({S.PENDING, S.QUEUED}),  # replay
    S.SUCCEEDED: frozenset(),
}

TERMINAL_JOB_STATES: frozenset[JobState] = frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED})

#: Steps that a live worker or a message in flight should be moving; the reaper watches these.
ACTIVE_STEP_STATES: frozenset[StepState] = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})

#: What ``requeue`` puts back to ``pending``. A reset is not a transition a worker makes: it is
#: the operator discarding in-flight work of a failed or cancelled job, so it has its own rule.
RESETTABLE_STEP_STATES: frozenset[StepState] = frozenset(
    {S.FAILED, S.RETRYING, S.QUEUED, S.RUNNING}
)


def _names(states: frozenset[JobState] | frozenset[StepState]) -> str:
    return ", ".join(sorted(states)) or "nothing (terminal)"


def check_job_transition(a: JobState, b: JobState, *, subject: str = "job") -> None:
    """Raise InvalidTransition unless a job may go from ``a`` to ``b``."""
    allowed = JOB_TRANSITIONS[a]
    if b not in allowed:
        raise InvalidTransition(
            f"{subject}: {a} -> {b} is not allowed (from {a}: {_names(allowed)})"
        )


def check_step_transition(a: StepState, b: StepState, *, subject: str = "step") -> None:
    """Raise InvalidTransition unless a step may go from ``a`` to ``b``."""
    allowed = STEP_TRANSITIONS[a]
    if b not in allowed:
        raise InvalidTransition(
            f"{subject}: {a} -> {b} is not allowed (from {a}: {_names(allowed)})"
        )


def check_step_reset(a: StepState, *, subject: str = "step") -> None:
    """Raise InvalidTransition unless ``requeue`` may put a step in state ``a`` back to pending."""
    if a not in RESETTABLE_STEP_STATES:
        raise InvalidTransition(
            f"{subject}: {a} cannot be reset to pending (only {_names(RESETTABLE_STEP_STATES)})"
        )
