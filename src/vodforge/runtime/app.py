"""Wiring: settings → job store, object store, toolchain, runner, broker lanes, executor,
dispatcher. One function per process role; the seams stay injectable for tests."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from pathlib import Path

from dramatiq.brokers.redis import RedisBroker

from vodforge.jobs import JobStore
from vodforge.media.runner import Deadline, FfmpegRunner, SubprocessRunner
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.pipeline.gate import MediaGate
from vodforge.pipeline.steps import StepContext
from vodforge.rollout.registry import Registry
from vodforge.rollout.service import RolloutService
from vodforge.runtime.actors import Lanes, bind_lanes
from vodforge.runtime.broker import make_broker
from vodforge.runtime.dispatch import Dispatcher
from vodforge.runtime.executor import StepExecutor, default_backoff
from vodforge.runtime.toolchains import ToolchainPool
from vodforge.settings import Settings
from vodforge.storage import ObjectStore, open_store


@dataclass
class Runtime:
    settings: Settings
    jobs: JobStore
    store: ObjectStore
    broker: RedisBroker
    lanes: Lanes
    dispatcher: Dispatcher
    toolchain: Toolchain | None
    executor: StepExecutor | None = None
    #: The toolchain registry (None when a test injected a fake runner).
    registry: Registry | None = None

    def close(self) -> None:
        self.broker.close()
        self.jobs.close()


def open_object_store(settings: Settings) -> ObjectStore:
    return open_store(
        settings.storage_url,
        data_dir=settings.data_dir,
        secret=settings.secret(),
        endpoint_url=settings.s3_endpoint_url,
        base_url=f"http://{settings.http_host}:{settings.http_port}",
    )


def build_runtime(
    settings: Settings,
    *,
    broker_url: str,
    worker: bool,
    runner: FfmpegRunner | None = None,
    toolchain: Toolchain | None = None,
    store: ObjectStore | None = None,
) -> Runtime:
    """``worker=True`` binds the lane actors to a step executor; otherwise they only send."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    jobs = JobStore.open(settings.resolved_database_url)
    store = store or open_object_store(settings)
    if toolchain is None and (worker or runner is None):
        toolchain = load_toolchain(settings.ffmpeg)
    registry: Registry | None = None
    stable_id: str | None = None
    if runner is None and toolchain is not None:
        # The configured binary is the first stable toolchain; once a rollout promoted another
        # one, the registry's stable is what new jobs run on.
        registry = Registry(jobs)
        stable_id = registry.ensure_stable(toolchain).id
    broker = make_broker(broker_url, heartbeat_timeout_ms=settings.broker_heartbeat_timeout_ms)
    executor: StepExecutor | None = None
    # The runtime's own broker only sends; worker processes bind consumers on brokers of their
    # own (one per lane), see runtime.worker.
    lanes = bind_lanes(
        broker,
        None,
    )
    toolchain_id = stable_id or (
        runner.toolchain_id if runner is not None else (toolchain.id if toolchain else "")
    )
    dispatcher = Dispatcher(
        jobs=jobs,
        sender=lanes,
        triggers=settings.triggers,
        toolchain_id=toolchain_id,
        max_age_seconds=settings.job_max_age_seconds,
        plan_workers=settings.resolved_long_concurrency() * max(1, settings.worker_processes),
        key_of=store.relative_key,
        router=RolloutService(jobs, registry).route if registry is not None else None,
        chain_upload_bytes=settings.chain_upload_bytes,
    )
    if worker:
        object_store = store
        # One per process, shared by every toolchain's context: long-lane steps running ffmpeg.
        long = settings.resolved_long_concurrency()
        media_gate = MediaGate(long, long + settings.long_finishing_threads)

        def make_context(tc: Toolchain | None, fake: FfmpegRunner | None = None) -> StepContext:
            assert tc is not None or fake is not None
            return StepContext(
                store=object_store,
                runner=fake
                or SubprocessRunner(
                    tc,  # type: ignore[arg-type]
                    deadline=Deadline(
                        settings.timeout_base_seconds, settings.timeout_per_media_second
                    ),
                    stall_seconds=settings.stall_seconds,
                    die_with_parent=True,
                    nice=dict.fromkeys(("encode", "package"), settings.long_lane_nice),
                ),
                scratch=Path(settings.data_dir) / "scratch",
                toolchain_fingerprint=tc.fingerprint() if tc else {"id": toolchain_id},
                host=socket.gethostname(),
                encode_threads=1,
                verify_workers=1,
                media_gate=media_gate,
            )

        ctx = make_context(toolchain, runner)
        pool = None
        if registry is not None and toolchain is not None:
            pool = ToolchainPool(registry, make_context)
            # This host's configured binary serves the registry entry of its build (the same
            # sha256, wherever it is installed here).
            pool.adopt(toolchain, ctx)
            pool.preload()
        executor = StepExecutor(
            jobs=jobs,
            ctx=ctx,
            sender=lanes,
            toolchain=toolchain,
            max_attempts=settings.max_attempts,
            pool=pool,
            backoff=functools.partial(
                default_backoff,
                min_ms=settings.retry_min_backoff_ms,
                max_ms=settings.retry_max_backoff_ms,
            ),
        )
    return Runtime(settings, jobs, store, broker, lanes, dispatcher, toolchain, executor, registry)
