"""The job and step state machines, checked pair by pair against tables written out here."""

from __future__ import annotations

import itertools

import pytest

from vodforge.errors import InvalidTransition
from vodforge.jobs import TERMINAL_JOB_STATES, JobState, StepState
from vodforge.jobs.states import (
    ACTIVE_STEP_STATES,
    RESETTABLE_STEP_STATES,
    check_job_transition,
    check_step_reset,
    check_step_transition,
)

JOB_ALLOWED = {
    ("queued", "running"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "queued"),
    ("failed", "queued"),
    ("cancelled", "queued"),
}

STEP_ALLOWED = {
    ("pending", "queued"),
    ("pending", "running"),
    ("queued", "running"),
    ("queued", "queued"),
    ("queued", "failed"),
    ("queued", "pending"),
    ("queued", "succeeded"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "retrying"),
    ("running", "queued"),
    ("running", "running"),
    ("retrying", "queued"),
    ("retrying", "running"),
    ("retrying", "failed"),
    ("failed", "pending"),
    ("failed", "queued"),
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(JobState, JobState)))
def test_job_transitions(a: JobState, b: JobState) -> None:
    if (a.value, b.value) in JOB_ALLOWED:
        check_job_transition(a, b)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_job_transition(a, b, subject="job j1")
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"job j1: {a} -> {b} is not allowed")


@pytest.mark.parametrize(("a", "b"), list(itertools.product(StepState, StepState)))
def test_step_transitions(a: StepState, b: StepState) -> None:
    if (a.value, b.value) in STEP_ALLOWED:
        check_step_transition(a, b)
    else:
        with pytest.raises(InvalidTransition, match=f"^step: {a} -> {b} is not allowed"):
            check_step_transition(a, b)


def test_terminal_job_states() -> None:
    assert {s.value for s in TERMINAL_JOB_STATES} == {"succeeded", "failed", "cancelled"}
    with pytest.raises(InvalidTransition, match=r"nothing \(terminal\)"):
        check_job_transition(JobState.SUCCEEDED, JobState.QUEUED)


def test_step_reset_is_for_unfinished_work_only() -> None:
    assert {s.value for s in RESETTABLE_STEP_STATES} == {"failed", "retrying", "queued", "running"}
    assert {s.value for s in ACTIVE_STEP_STATES} == {"queued", "running", "retrying"}
    for state in RESETTABLE_STEP_STATES:
        check_step_reset(state)
    for state in set(StepState) - RESETTABLE_STEP_STATES:
        with pytest.raises(InvalidTransition, match="cannot be reset"):
            check_step_reset(state)


def test_states_are_plain_strings() -> None:
    assert JobState("queued") is JobState.QUEUED
    assert f"{StepState.RETRYING}" == "retrying"
