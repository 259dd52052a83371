"""Canary decisions on fabricated arm statistics (no runtime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vodforge.errors import ConfigError
from vodforge.jobs import JobState, JobView
from vodforge.rollout.canary import (
    ArmStats,
    Policy,
    arm_stats,
    decide,
    p95,
    parse_fraction,
    parse_steps,
    routes_to_candidate,
    routing_bucket,
)

POLICY = Policy((1, 10, 50, 100), min_jobs=3, max_failure_rate=0.001, max_p95_regression=0.2)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def job(state: JobState, seconds: float = 1.0, label: str | None = None) -> JobView:
    return JobView(
        id="j",
        bucket="b",
        key="k",
        etag="e",
        size=1,
        preset="p",
        toolchain_id="t",
        owner=None,
        state=state,
        created_at=T0,
        updated_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds),
        requeued_at=None,
        max_age_seconds=60,
        plan=None,
        error_label=label,
        error_message=None,
        failed_step=None,
        manifest_key=None,
        cpu_seconds=0,
        progress=0,
    )


def test_parsing() -> None:
    assert parse_steps("1,10,50,100") == (1, 10, 50, 100)
    assert parse_fraction("0.1%") == pytest.approx(0.001)
    assert parse_fraction("20%") == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        parse_steps("1,ten")
    with pytest.raises(ConfigError):
        Policy((10, 1), min_jobs=1, max_failure_rate=0, max_p95_regression=0)
    with pytest.raises(ConfigError):
        Policy((1, 200), min_jobs=1, max_failure_rate=0, max_p95_regression=0)


def test_arm_stats_counts_finished_jobs_and_ignores_input_failures() -> None:
    stats = arm_stats(
        [
            job(JobState.SUCCEEDED, 1.0),
            job(JobState.SUCCEEDED, 3.0),
            job(JobState.FAILED, label="unknown_encoder"),
            job(JobState.FAILED, label="moov_missing"),  # the upload's fault
            job(JobState.RUNNING),
            job(JobState.CANCELLED),
        ]
    )
    assert (stats.jobs, stats.failed, stats.in_flight) == (3, 1, 1)
    assert stats.labels == (("unknown_encoder", 1),)
    assert stats.p95_seconds == 3.0


def test_p95_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([5.0]) == 5.0


def test_rollback_as_soon_as_failures_exceed_the_window() -> None:
    bad = ArmStats(jobs=1, failed=1, labels=(("unknown_encoder", 1),))
    d = decide(POLICY, 1, bad, ArmStats(jobs=5, p95_seconds=1.0))
    assert d.action == "rollback"
    assert d.label == "unknown_encoder"
    assert "candidate failure rate 100% (1/1, label=unknown_encoder) > 0.1% at 10%" in d.reason


def test_tolerated_failure_rate_is_not_a_rollback() -> None:
    loose = Policy((50, 100), min_jobs=10, max_failure_rate=0.2, max_p95_regression=0.2)
    ok = ArmStats(jobs=10, failed=1, p95_seconds=1.0, labels=(("timeout", 1),))
    assert decide(loose, 0, ok, ArmStats(jobs=10, p95_seconds=1.0)).action == "promote"


def test_hold_until_min_jobs() -> None:
    d = decide(POLICY, 0, ArmStats(jobs=2, in_flight=1), ArmStats(jobs=9, p95_seconds=1.0))
    assert d.action == "hold"
    assert "2 so far, 1 in flight" in d.reason


def test_p95_regression_rolls_back_and_within_bound_promotes() -> None:
    stable = ArmStats(jobs=10, p95_seconds=10.0)
    slow = decide(POLICY, 2, ArmStats(jobs=3, p95_seconds=12.5), stable)
    assert slow.action == "rollback"
    assert slow.label == "p95_regression"
    fine = decide(POLICY, 2, ArmStats(jobs=3, p95_seconds=11.9), stable)
    assert fine.action == "promote"
    assert not fine.final
    assert fine.reason.startswith("to 100%")


def test_last_step_promotes_to_stable_and_missing_baseline_is_said() -> None:
    d = decide(POLICY, 3, ArmStats(jobs=3, p95_seconds=1.0), ArmStats())
    assert d.action == "promote"
    assert d.final
    assert "no finished stable job" in d.reason


def test_routing_is_deterministic_and_monotonic_in_weight() -> None:
    buckets = [routing_bucket("b", f"k{i}", "etag", "default") for i in range(2000)]
    assert buckets == [routing_bucket("b", f"k{i}", "etag", "default") for i in range(2000)]
    share10 = sum(routes_to_candidate(b, 10) for b in buckets) / len(buckets)
    assert 0.07 < share10 < 0.13
    for b in buckets:
        if routes_to_candidate(b, 1):
            assert routes_to_candidate(b, 10)
    assert not any(routes_to_candidate(b, 0) for b in buckets)
    assert all(routes_to_candidate(b, 100) for b in buckets)
