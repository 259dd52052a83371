"""Canary rollouts: state in the job store, routing of new jobs, and the evaluation step.

``RolloutService`` is what the CLI, the API and the controller loop share:

- ``start`` / ``abort`` / ``recent`` / ``get``: one rollout runs at a time;
- ``route``: the toolchain a new job runs on (the dispatcher asks for every new job);
- ``evaluate``: for the running rollout, count both arms in the job store, ``canary.decide``,
  and apply it (next step, stable switched, or rolled back) with a row in the decision log;
  for a rolled-back or aborted rollout, re-run every job that failed on the candidate on the
  stable toolchain (``rerun``, given by the runtime) until none is left — no job is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select

from vodforge.errors import ConfigError, JobNotFound, RolloutConflict
from vodforge.jobs import JobState, JobStore, JobView
from vodforge.jobs.models import RegisteredToolchain, Rollout, RolloutDecision
from vodforge.observability import metrics
from vodforge.observability.logging import get_logger
from vodforge.rollout.canary import (
    Action,
    ArmStats,
    Policy,
    arm_stats,
    decide,
    routes_to_candidate,
    routing_bucket,
)
from vodforge.rollout.registry import Registry

log = get_logger(__name__)

RUNNING = "running"
# Table-level (not ORM) selects: the ORM's compile layer would cost more than the query.
_ROLLOUTS = cast(Table, Rollout.__table__).c
_TOOLCHAINS = cast(Table, RegisteredToolchain.__table__).c
_RUNNING_ROUTE = (
    select(_ROLLOUTS.steps, _ROLLOUTS.step_index, _ROLLOUTS.candidate, _ROLLOUTS.stable)
    .where(_ROLLOUTS.state == RUNNING)
    .limit(1)
)
_STABLE_ID = select(_TOOLCHAINS.id).where(_TOOLCHAINS.stable.is_(True)).limit(1)
ENDED = ("promoted", "rolled_back", "aborted")


@dataclass(frozen=True)
class DecisionView:
    at: datetime
    action: str
    reason: str
    step_index: int
    weight_percent: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "action": self.action,
            "reason": self.reason,
            "step_index": self.step_index,
            "weight_percent": self.weight_percent,
        }


@dataclass(frozen=True)
class RolloutView:
    id: str
    candidate: str
    stable: str
    policy: Policy
    step_index: int
    state: str
    started_at: datetime
    step_started_at: datetime
    ended_at: datetime | None
    counts: dict[str, Any]
    drained: bool
    decisions: tuple[DecisionView, ...]

    @property
    def weight_percent(self) -> float:
        return self.policy.steps[self.step_index] if self.state == RUNNING else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The API's ``Rollout`` shape."""
        return {
            "id": self.id,
            "candidate": self.candidate,
            "stable": self.stable,
            "steps": list(self.policy.steps),
            "step_index": self.step_index,
            "weight_percent": self.weight_percent,
            "state": self.state,
            "min_jobs": self.policy.min_jobs,
            "max_failure_rate": self.policy.max_failure_rate,
            "max_p95_regression": self.policy.max_p95_regression,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "counts": self.counts,
            "drained": self.drained,
            "decisions": [d.to_dict() for d in self.decisions],
        }


class RolloutService:
    def __init__(self, jobs: JobStore, registry: Registry) -> None:
        self.jobs = jobs
        self.registry = registry

    # -- control ----------------------------------------------------------------------------

    def start(self, candidate: str, policy: Policy) -> RolloutView:
        entry = self.registry.find(candidate)
        stable = self.registry.stable()
        if stable is None:
            raise ConfigError("no stable toolchain registered (start `vodforge serve` once)")
        if entry.id == stable.id:
            raise ConfigError(f"{entry.id} is already the stable toolchain")
        rollout_id = uuid.uuid4().hex[:16]
        now = self.jobs.now()
        with self.jobs.transaction(write=True) as s:
            if s.scalars(select(Rollout.id).where(Rollout.state == RUNNING)).first():
                raise RolloutConflict("a rollout is already running (abort it first)")
            s.add(
                Rollout(
                    id=rollout_id,
                    candidate=entry.id,
                    stable=stable.id,
                    steps=list(policy.steps),
                    step_index=0,
                    min_jobs=policy.min_jobs,
                    max_failure_rate=policy.max_failure_rate,
                    max_p95_regression=policy.max_p95_regression,
                    state=RUNNING,
                    started_at=now,
                    step_started_at=now,
                    ended_at=None,
                    counts={},
                    drained=False,
                )
            )
            s.flush()
            _log(
                s,
                rollout_id,
                "start",
                f"{entry.id} against stable {stable.id} at {policy.steps[0]:g}%",
                0,
                policy.steps[0],
                now,
            )
        log.info("rollout started", rollout=rollout_id, candidate=entry.id, stable=stable.id)
        return self.get(rollout_id)

    def abort(self, rollout_id: str) -> RolloutView:
        """Stop routing to the candidate; jobs that failed on it are re-run on stable."""
        now = self.jobs.now()
        with self.jobs.transaction(write=True) as s:
            row = _row(s, rollout_id, lock=True)
            if row.state == RUNNING:
                row.state = "aborted"
                row.ended_at = now
                _log(s, row.id, "abort", "aborted by an operator", row.step_index, 0.0, now)
                metrics.ROLLOUT_DECISIONS.labels("abort", "none").inc()
        return self.get(rollout_id)

    # -- reads ------------------------------------------------------------------------------

    def get(self, rollout_id: str) -> RolloutView:
        with self.jobs.transaction(write=False) as s:
            return _view(s, _row(s, rollout_id))

    def recent(self, limit: int = 50) -> list[RolloutView]:
        with self.jobs.transaction(write=False) as s:
            rows = s.scalars(
                select(Rollout).order_by(Rollout.started_at.desc(), Rollout.id).limit(limit)
            )
            return [_view(s, r) for r in rows]

    def running(self) -> RolloutView | None:
        with self.jobs.transaction(write=False) as s:
            row = s.scalars(select(Rollout).where(Rollout.state == RUNNING).limit(1)).first()
            return _view(s, row) if row is not None else None

    def route(self, bucket: str, key: str, etag: str, preset: str) -> str | None:
        """The toolchain of a new job: the running rollout's candidate for its weight's share
        of uploads, else stable. None: no registry entry at all (the caller's default).

        Every upload asks, so it is one read transaction of two prebuilt column selects, on
        the job store's direct path."""
        with self.jobs.direct(write=False) as s:
            row = s.execute(_RUNNING_ROUTE).first()
            if row is not None:
                weight = float(row.steps[row.step_index])
                chosen = routes_to_candidate(routing_bucket(bucket, key, etag, preset), weight)
                return str(row.candidate if chosen else row.stable)
            stable = s.scalar(_STABLE_ID)
            return str(stable) if stable is not None else None

    # -- the controller's step --------------------------------------------------------------

    def evaluate(self, rerun: Callable[[JobView, str], None]) -> list[Action]:
        """One pass: decide the running rollout, drain ended ones. Returns the actions taken."""
        actions: list[Action] = []
        current = self.running()
        if current is not None:
            actions.append(self._decide(current))
        with self.jobs.transaction(write=False) as s:
            undrained = [
                r.id
                for r in s.scalars(
                    select(Rollout).where(
                        Rollout.state.in_(["rolled_back", "aborted"]),
                        Rollout.drained.is_(False),
                    )
                )
            ]
        for rollout_id in undrained:
            self._drain(self.get(rollout_id), rerun)
        return actions

    def stats(self, rollout: RolloutView) -> tuple[ArmStats, ArmStats]:
        candidate = arm_stats(
            self.jobs.jobs_since(rollout.step_started_at, toolchains=[rollout.candidate])
        )
        stable = arm_stats(self.jobs.jobs_since(rollout.started_at, toolchains=[rollout.stable]))
        return candidate, stable

    def _decide(self, rollout: RolloutView) -> Action:
        candidate, stable = self.stats(rollout)
        decision = decide(rollout.policy, rollout.step_index, candidate, stable)
        now = self.jobs.now()
        counts = {"candidate": candidate.to_dict(), "stable": stable.to_dict()}
        with self.jobs.transaction(write=True) as s:
            row = _row(s, rollout.id, lock=True)
            if row.state != RUNNING or row.step_index != rollout.step_index:
                return "hold"  # someone else decided meanwhile (abort, another controller)
            row.counts = counts
            weight = float(row.steps[row.step_index])
            if decision.action == "hold":
                last = s.scalars(
                    select(RolloutDecision)
                    .where(RolloutDecision.rollout_id == row.id)
                    .order_by(RolloutDecision.id.desc())
                    .limit(1)
                ).first()
                # One hold per step in the log, not one per pass.
                if last is None or last.action != "hold" or last.step_index != row.step_index:
                    _log(s, row.id, "hold", decision.reason, row.step_index, weight, now)
                return "hold"
            _log(s, row.id, decision.action, decision.reason, row.step_index, weight, now)
            if decision.action == "rollback":
                row.state = "rolled_back"
                row.ended_at = now
            elif decision.final:
                row.state = "promoted"
                row.ended_at = now
                # In the same transaction: nobody sees "promoted" with the old stable.
                self.registry.set_stable(rollout.candidate, session=s)
            else:
                row.step_index += 1
                row.step_started_at = now
        metrics.ROLLOUT_DECISIONS.labels(decision.action, decision.label or "none").inc()
        log.info(
            "rollout decision",
            rollout=rollout.id,
            action=decision.action,
            reason=decision.reason,
        )
        return decision.action

    def _drain(self, rollout: RolloutView, rerun: Callable[[JobView, str], None]) -> None:
        """Re-run on stable every job that failed on the candidate since the rollout began;
        done once no candidate job of the rollout is left running."""
        jobs = self.jobs.jobs_since(rollout.started_at, toolchains=[rollout.candidate])
        for job in jobs:
            if job.state is JobState.FAILED:
                rerun(job, rollout.stable)
                log.warning(
                    "job re-run on stable after rollback",
                    job_id=job.id,
                    rollout=rollout.id,
                    label=job.error_label,
                )
        if all(j.terminal and j.state is not JobState.FAILED for j in jobs):
            with self.jobs.transaction(write=True) as s:
                _row(s, rollout.id, lock=True).drained = True


def _row(s: Any, rollout_id: str, *, lock: bool = False) -> Rollout:
    row: Rollout | None = s.get(Rollout, rollout_id, with_for_update=lock or None)
    if row is None:
        raise JobNotFound(f"no rollout {rollout_id}")
    return row


def _log(
    s: Any,
    rollout_id: str,
    action: str,
    reason: str,
    step_index: int,
    weight: float,
    at: datetime,
) -> None:
    s.add(
        RolloutDecision(
            rollout_id=rollout_id,
            at=at,
            action=action,
            reason=f"{action}: {reason}",
            step_index=step_index,
            weight_percent=weight,
        )
    )


def _view(s: Any, row: Rollout) -> RolloutView:
    decisions = s.scalars(
        select(RolloutDecision)
        .where(RolloutDecision.rollout_id == row.id)
        .order_by(RolloutDecision.id)
    )
    return RolloutView(
        id=row.id,
        candidate=row.candidate,
        stable=row.stable,
        policy=Policy(
            steps=tuple(float(x) for x in row.steps),
            min_jobs=row.min_jobs,
            max_failure_rate=row.max_failure_rate,
            max_p95_regression=row.max_p95_regression,
        ),
        step_index=row.step_index,
        state=row.state,
        started_at=row.started_at,
        step_started_at=row.step_started_at,
        ended_at=row.ended_at,
        counts=dict(row.counts or {}),
        drained=bool(row.drained),
        decisions=tuple(
            DecisionView(d.at, d.action, d.reason, d.step_index, d.weight_percent)
            for d in decisions
        ),
    )
