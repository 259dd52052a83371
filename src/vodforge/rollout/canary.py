"""Canary decisions (pure): per-arm counts, rates and p95 + a policy → promote, hold or rollback.

A rollout walks a candidate toolchain through weight steps (``1,10,50,100`` percent of new
jobs). At each step the candidate's window is the jobs created on it since the step began; the
stable arm is every job created on stable since the rollout began (at 100 % stable gets no new
jobs, so its baseline must reach further back). Only finished jobs count; failures blamed on
the source (``moov_missing``, ``input_corrupt``…) are not the toolchain's and do not count.

- rollback at once when the candidate's failures already exceed the allowed rate of the whole
  window (``failed / max(finished, min_jobs) > max_failure_rate``), even before ``min_jobs``;
- hold until ``min_jobs`` candidate jobs finished in this step;
- rollback when the candidate's p95 job duration exceeds stable's by more than
  ``max_p95_regression`` (skipped, and said so, while stable has no finished job);
- else promote to the next step, or — at the last step — make the candidate stable.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vodforge.errors import ConfigError
from vodforge.jobs import JobState, JobView
from vodforge.media.signatures import blames_input

Action = Literal["start", "promote", "hold", "rollback", "abort"]


@dataclass(frozen=True)
class Policy:
    steps: tuple[float, ...]
    min_jobs: int
    #: Fractions: 0.001 is 0.1 %, 0.2 is 20 %.
    max_failure_rate: float
    max_p95_regression: float

    def __post_init__(self) -> None:
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ConfigError(f"rollout steps must be percentages in (0, 100]: {self.steps}")
        if list(self.steps) != sorted(set(self.steps)):
            raise ConfigError(f"rollout steps must increase: {self.steps}")
        if self.min_jobs < 1:
            raise ConfigError(f"--min-jobs must be at least 1, not {self.min_jobs}")
        if not 0 <= self.max_failure_rate <= 1:
            raise ConfigError(f"--max-failure-rate must be 0–100 %, not {self.max_failure_rate}")
        if self.max_p95_regression < 0:
            raise ConfigError("--max-p95-regression must not be negative")


def parse_steps(text: str) -> tuple[float, ...]:
    """``"1,10,50,100"`` → ``(1.0, 10.0, 50.0, 100.0)``."""
    try:
        return tuple(float(part.strip().rstrip("%")) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"rollout steps {text!r}: expected percentages like 1,10,50,100") from exc


def parse_fraction(text: str | float) -> float:
    """``"0.1%"`` → 0.001; ``"20%"`` → 0.2; a bare number is a fraction (0.2 → 0.2)."""
    if isinstance(text, float | int):
        return float(text)
    raw = text.strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError as exc:
        raise ConfigError(f"{text!r}: expected a percentage like 0.1% or a fraction") from exc


def percent(value: float) -> str:
    return f"{value * 100:.3g}%"


@dataclass(frozen=True)
class ArmStats:
    """One arm of a rollout: finished jobs, counted failures, p95 wall seconds, labels seen."""

    jobs: int = 0
    failed: int = 0
    in_flight: int = 0
    p95_seconds: float | None = None
    labels: tuple[tuple[str, int], ...] = field(default=())

    @property
    def failure_rate(self) -> float:
        return self.failed / self.jobs if self.jobs else 0.0

    @property
    def top_label(self) -> str | None:
        return self.labels[0][0] if self.labels else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "failure_rate": self.failure_rate,
            "p95_seconds": self.p95_seconds,
            "labels": dict(self.labels),
        }


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def arm_stats(jobs: Iterable[JobView]) -> ArmStats:
    finished = failed = in_flight = 0
    durations: list[float] = []
    labels: Counter[str] = Counter()
    for job in jobs:
        if job.state is JobState.SUCCEEDED:
            finished += 1
            if job.finished_at is not None:
                begin = job.started_at or job.created_at
                durations.append((job.finished_at - begin).total_seconds())
        elif job.state is JobState.FAILED:
            if blames_input(job.error_label):
                continue  # the source's fault: it would fail on any toolchain
            finished += 1
            failed += 1
            labels[job.error_label or "unknown"] += 1
        elif job.state is not JobState.CANCELLED:
            in_flight += 1
    return ArmStats(
        jobs=finished,
        failed=failed,
        in_flight=in_flight,
        p95_seconds=p95(durations),
        labels=tuple(labels.most_common()),
    )


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    #: The error label behind a rollback (metrics), if any.
    label: str | None = None
    #: A promote at the last step: the candidate becomes stable.
    final: bool = False


def decide(policy: Policy, step_index: int, candidate: ArmStats, stable: ArmStats) -> Decision:
    weight = policy.steps[step_index]
    cand = candidate
    window = max(cand.jobs, policy.min_jobs)
    if cand.failed and cand.failed / window > policy.max_failure_rate:
        labels = ", ".join(f"{name}×{n}" if n > 1 else name for name, n in cand.labels)
        return Decision(
            "rollback",
            f"candidate failure rate {percent(cand.failure_rate)} ({cand.failed}/{cand.jobs}, "
            f"label={labels}) > {percent(policy.max_failure_rate)} at {weight:g}%",
            label=cand.top_label,
        )
    if cand.jobs < policy.min_jobs:
        return Decision(
            "hold",
            f"waiting for {policy.min_jobs} finished candidate jobs at {weight:g}% "
            f"({cand.jobs} so far, {cand.in_flight} in flight)",
        )
    p95_note = ""
    if cand.p95_seconds is not None and stable.p95_seconds is not None:
        limit = stable.p95_seconds * (1 + policy.max_p95_regression)
        if cand.p95_seconds > limit:
            return Decision(
                "rollback",
                f"candidate p95 {cand.p95_seconds:.2f} s > stable p95 "
                f"{stable.p95_seconds:.2f} s + {percent(policy.max_p95_regression)}",
                label="p95_regression",
            )
        p95_note = f", p95 {cand.p95_seconds:.2f} s vs stable {stable.p95_seconds:.2f} s"
    elif stable.p95_seconds is None:
        p95_note = ", p95 not compared (no finished stable job yet)"
    summary = (
        f"{cand.jobs} candidate jobs at {weight:g}%, failure rate "
        f"{percent(cand.failure_rate)} ≤ {percent(policy.max_failure_rate)}{p95_note}"
    )
    if step_index + 1 >= len(policy.steps):
        return Decision("promote", f"promoted to stable: {summary}", final=True)
    return Decision("promote", f"to {policy.steps[step_index + 1]:g}%: {summary}")


def routing_bucket(bucket: str, key: str, etag: str, preset: str) -> float:
    """Where an event falls in [0, 100): the same upload always falls in the same place, so a
    duplicate event routes like the first, and a job on the candidate at a low weight stays
    on it as the weight grows."""
    digest = hashlib.sha256(f"{bucket}\0{key}\0{etag}\0{preset}".encode()).hexdigest()
    return (int(digest[:8], 16) % 10_000) / 100


def routes_to_candidate(bucket_value: float, weight_percent: float) -> bool:
    return bucket_value < weight_percent
