"""A worker process: Dramatiq consumers for the quick and long lanes, each with its own thread
count (a bulkhead), running steps until SIGTERM/SIGINT; then in-flight steps get a grace period
to finish and whatever is left is requeued by the broker."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Iterable

import dramatiq

from vodforge.media.runner import FfmpegRunner
from vodforge.observability.logging import configure, get_logger
from vodforge.pipeline.dag import Lane
from vodforge.runtime.actors import bind_lanes
from vodforge.runtime.app import build_runtime
from vodforge.runtime.broker import make_broker, wake_quietly
from vodforge.runtime.janitor import run_janitor
from vodforge.runtime.serve import PARENT_ENV
from vodforge.settings import Settings

log = get_logger(__name__)

#: Dramatiq's ``worker_timeout``: how often an idle worker thread wakes to see whether it should
#: stop. Messages reach it at once through its in-memory queue, and the consumers block on
#: Redis (``runtime.broker``) instead of polling with it, so it bounds only how long stopping
#: takes. At 20 ms the idle threads of both lanes woke ~250 times a second in all, each wake-up
#: taking the GIL from whichever thread was working.
THREAD_WAKE_MS = 250


def _stop_when_orphaned(stop: threading.Event) -> None:
    """A worker started by ``serve`` stops (gracefully) once serve is gone."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != int(parent):
                log.warning("serve is gone; stopping", parent=int(parent))
                stop.set()

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


def run_worker(
    settings: Settings,
    *,
    broker_url: str,
    lanes: Iterable[Lane] = tuple(Lane),
    stop: threading.Event | None = None,
    grace_seconds: float | None = None,
    runner: FfmpegRunner | None = None,
) -> None:
    """Consume ``lanes`` until ``stop`` is set (or SIGTERM/SIGINT in the main thread).
    ``runner``: a test seam (a fault-injecting runner); default the pinned toolchain's."""
    configure()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    _stop_when_orphaned(stop)
    runtime = build_runtime(settings, broker_url=broker_url, worker=True, runner=runner)
    assert runtime.executor is not None
    executor = runtime.executor
    threading.Thread(
        target=run_janitor,
        args=(executor.ctx.scratch, runtime.jobs, stop),
        daemon=True,
        name="janitor",
    ).start()
    threads = {
        Lane.QUICK: settings.quick_concurrency,
        # The media gate (see build_runtime) keeps ffmpeg to long_concurrency steps at once;
        # the extra threads finish (verify, publish) a step while the next one encodes.
        Lane.LONG: settings.resolved_long_concurrency() + settings.long_finishing_threads,
    }
    workers = []
    brokers = []
    for lane in lanes:
        # A broker per lane: a Dramatiq Worker owns its broker's middleware.
        broker = make_broker(broker_url, heartbeat_timeout_ms=settings.broker_heartbeat_timeout_ms)
        bind_lanes(
            broker,
            executor.execute,
        )
        gate = executor.ctx.media_gate
        if lane is Lane.LONG and gate is not None:
            # Hold one message per permit and one per step finishing, no more: a message held
            # beyond that would wait here for a permit while another worker might be idle.
            broker.limit_prefetch(lane.value, gate.wanted)
            gate.on_release(functools.partial(wake_quietly, broker, lane.value))
        brokers.append(broker)
        worker = dramatiq.Worker(
            broker,
            queues={lane.value},
            worker_threads=threads[lane],
            worker_timeout=THREAD_WAKE_MS,
        )
        # Hold no more messages than threads: the rest stay in Redis for other processes.
        worker.queue_prefetch = threads[lane]
        worker.start()
        workers.append(worker)
    log.info(
        "worker started",
        lanes=[lane.value for lane in lanes],
        threads={k.value: v for k, v in threads.items()},
    )
    grace = settings.shutdown_grace_seconds if grace_seconds is None else grace_seconds
    try:
        stop.wait()
    finally:
        log.info("worker stopping", grace_seconds=grace)
        for worker in workers:
            worker.stop(timeout=int(grace * 1000))
        for broker in brokers:
            broker.close()
        runtime.close()
        log.info("worker stopped")
