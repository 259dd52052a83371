"""Prometheus metrics (prometheus-client).

Workers are separate processes, so ``serve`` runs prometheus-client in multiprocess mode: every
process writes its samples to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates them.
Gauges that describe shared state (jobs by state, queue depth per lane) are read live from the
job store and the broker at scrape time by ``StateCollector`` instead of being pushed.

| metric | type | labels |
|---|---|---|
| vodforge_ffmpeg_invocations_total | counter | step, toolchain, exit_code |
| vodforge_ffmpeg_seconds | histogram | step, toolchain |
| vodforge_step_seconds | histogram | step, outcome |
| vodforge_job_seconds | histogram | outcome |
| vodforge_step_retries_total | counter | step, label |
| vodforge_dead_letters_total | counter | step, label |
| vodforge_dispatch_latency_seconds | histogram | — (event received → first step started) |
| vodforge_events_total | counter | outcome (created, duplicate, no_trigger, rejected) |
| vodforge_toolchain_refusals_total | counter | reason (drift, …) |
| vodforge_toolchain_healthy | gauge | toolchain (1: this worker's binary matches the registry) |
| vodforge_rollout_decisions_total | counter | action (promote, hold, rollback, abort), label |
| vodforge_jobs | gauge | state (live from the job store) |
| vodforge_queue_depth | gauge | lane (live from the broker) |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from vodforge.observability.multiproc import MULTIPROC_ENV

_DURATION_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

FFMPEG_INVOCATIONS = Counter(
    "vodforge_ffmpeg_invocations_total",
    "ffmpeg calls by step, toolchain and exit code",
    ["step", "toolchain", "exit_code"],
)
FFMPEG_SECONDS = Histogram(
    "vodforge_ffmpeg_seconds",
    "Wall seconds of each ffmpeg call",
    ["step", "toolchain"],
    buckets=_DURATION_BUCKETS,
)
STEP_SECONDS = Histogram(
    "vodforge_step_seconds",
    "Wall seconds of each step attempt",
    ["step", "outcome"],
    buckets=_DURATION_BUCKETS,
)
JOB_SECONDS = Histogram(
    "vodforge_job_seconds",
    "Seconds from job creation to its end",
    ["outcome"],
    buckets=_DURATION_BUCKETS,
)
STEP_RETRIES = Counter(
    "vodforge_step_retries_total", "Step attempts that failed and were retried", ["step", "label"]
)
DEAD_LETTERS = Counter(
    "vodforge_dead_letters_total", "Jobs that ended in the dead-letter queue", ["step", "label"]
)
DISPATCH_LATENCY = Histogram(
    "vodforge_dispatch_latency_seconds",
    "From an object-created event being received to the job's first step starting",
    buckets=_LATENCY_BUCKETS,
)
EVENTS = Counter("vodforge_events_total", "Object-created events by outcome", ["outcome"])
TOOLCHAIN_REFUSALS = Counter(
    "vodforge_toolchain_refusals_total",
    "Steps a worker refused because its toolchain no longer matches the pin",
    ["reason"],
)
TOOLCHAIN_HEALTHY = Gauge(
    "vodforge_toolchain_healthy",
    "1 while the worker's binary of this toolchain matches the registry, 0 once it drifted",
    ["toolchain"],
    multiprocess_mode="min",
)
ROLLOUT_DECISIONS = Counter(
    "vodforge_rollout_decisions_total",
    "Canary rollout decisions by action and the error label that drove them (or none)",
    ["action", "label"],
)


class StateCollector(Collector):
    """Scrape-time gauges from callables (the job store's counts, the broker's queue lengths)."""

    def __init__(
        self,
        jobs_by_state: Callable[[], Mapping[str, int]],
        queue_depth: Callable[[], Mapping[str, int]],
    ) -> None:
        self._jobs = jobs_by_state
        self._queues = queue_depth

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("vodforge_jobs", "Jobs by state", labels=["state"])
        for state, n in sorted(self._jobs().items()):
            jobs.add_metric([state], n)
        yield jobs
        depth = GaugeMetricFamily(
            "vodforge_queue_depth", "Messages waiting per lane", labels=["lane"]
        )
        for lane, n in sorted(self._queues().items()):
            depth.add_metric([lane], n)
        yield depth


def render(extra: Collector | None = None) -> tuple[bytes, str]:
    """The /metrics body: every process's samples (multiprocess mode) or this one's."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY  # noqa: PLC0415

        registry = REGISTRY
    if extra is not None:
        registry.register(extra)
        try:
            return generate_latest(registry), CONTENT_TYPE_LATEST
        finally:
            registry.unregister(extra)
    return generate_latest(registry), CONTENT_TYPE_LATEST
