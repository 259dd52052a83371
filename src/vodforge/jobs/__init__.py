"""The durable job store: jobs, steps, attempts, fan-in counters, outputs, dead letters, events.

``JobStore`` is the only way in; it returns frozen views, never ORM objects. State rules live in
``states`` (pure tables), job ids in ``ids`` (pure), the schema in ``models`` and the packaged
Alembic migrations.
"""

from vodforge.jobs.ids import job_id_for
from vodforge.jobs.states import (
    TERMINAL_JOB_STATES,
    AttemptOutcome,
    DeadLetterState,
    JobState,
    StepState,
    check_job_transition,
    check_step_transition,
)
from vodforge.jobs.store import Clock, JobStore, utc_now
from vodforge.jobs.views import (
    AttemptView,
    DeadLetterView,
    ErrorInfo,
    EventRecord,
    EventView,
    JobSpec,
    JobView,
    OutputRecord,
    PlannedSteps,
    Publication,
    StepFinish,
    StepStart,
    StepView,
)

__all__ = [
    "TERMINAL_JOB_STATES",
    "AttemptOutcome",
    "AttemptView",
    "Clock",
    "DeadLetterState",
    "DeadLetterView",
    "ErrorInfo",
    "EventRecord",
    "EventView",
    "JobSpec",
    "JobState",
    "JobStore",
    "JobView",
    "OutputRecord",
    "PlannedSteps",
    "Publication",
    "StepFinish",
    "StepStart",
    "StepState",
    "StepView",
    "check_job_transition",
    "check_step_transition",
    "job_id_for",
    "utc_now",
]
