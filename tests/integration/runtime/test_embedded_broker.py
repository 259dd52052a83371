"""The embedded broker refuses a directory whose socket a live redis-server answers on, and
takes over one left behind by a server that is gone."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

from vodforge.errors import ConfigError
from vodforge.runtime.broker import (
    DELAY_POLL_SECONDS,
    IDLE_WAIT_SECONDS,
    NAMESPACE,
    EmbeddedRedis,
    done_key,
    idle_wait_seconds,
    make_broker,
    wake_consumer,
    wake_key,
)


def test_a_second_broker_on_a_live_socket_is_refused(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "broker")
    first.start()
    try:
        client = redis.Redis(unix_socket_path=str(first.socket))
        client.set("kept", "1")
        with pytest.raises(ConfigError, match="already running"):
            EmbeddedRedis(tmp_path / "broker").start()
        assert client.get("kept") == b"1"  # the first one's socket is still there
        client.close()
    finally:
        first.stop()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    directory.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(directory / "redis.sock"))  # bound, never listening: nobody answers
    stale.close()
    broker = EmbeddedRedis(directory)
    broker.start()
    try:
        assert redis.Redis(unix_socket_path=str(broker.socket)).ping()
    finally:
        broker.stop()


def test_a_limited_prefetch_holds_no_more_messages_than_wanted(tmp_path: Path) -> None:
    """The long lane's consumer follows the media gate's ``wanted`` (see pipeline.gate): with
    three messages waiting and room for one, it takes one; once the limit grows and it is
    woken, it takes the next — the rest stay in Redis for other workers."""
    server = EmbeddedRedis(tmp_path / "broker")
    broker = make_broker(server.start())
    try:
        broker.declare_queue("long")
        for i in range(3):
            broker.enqueue(Message("long", "step", (i,), {}, {}))
        wanted = 1
        broker.limit_prefetch("long", lambda: wanted)
        consumer = broker.consume("long", prefetch=3)
        assert consumer.prefetch == 1
        first = next(consumer)
        assert first is not None
        assert next(consumer) is None  # holds one: fetches nothing more
        assert broker.client.llen(f"{NAMESPACE}:long") == 2
        wanted = 2
        wake_consumer(broker, "long")
        second = next(consumer)
        assert second is not None
        assert {first.args, second.args} == {(0,), (1,)}
        assert broker.client.llen(f"{NAMESPACE}:long") == 1
        consumer.close()
    finally:
        broker.close()
        server.stop()


@contextmanager
def _round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the commands (or pipelines) sent to Redis inside the block: one each."""
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: object, *args: object, **kwargs: object) -> None:
        sends.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type, no-untyped-call]

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    try:
        yield sends
    finally:
        monkeypatch.undo()


def test_an_enqueue_is_one_round_trip_that_dramatiq_itself_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``do_enqueue`` runs Dramatiq's dispatch script and pushes the wake-up token in one
    pipeline: on a server whose script cache is empty (a restarted Redis) the script is loaded,
    each later enqueue is one round trip, and the messages are where Dramatiq's own consumer
    finds them, with one token each."""
    server = EmbeddedRedis(tmp_path / "broker")
    url = server.start()
    broker = make_broker(url)
    plain = RedisBroker(url=url, namespace=NAMESPACE)  # type: ignore[no-untyped-call]
    try:
        broker.declare_queue("quick")
        broker.client.script_flush()
        first = broker.enqueue(Message("quick", "step", ("job", "probe"), {}, {}))
        with _round_trips(monkeypatch) as sends:
            second = broker.enqueue(Message("quick", "step", ("job2", "probe"), {}, {}))
        assert len(sends) == 1
        # Two tokens for the first (NOSCRIPT: pushed, then again after the retried enqueue),
        # one for the second.
        assert broker.client.llen(wake_key("quick")) == 3
        plain.declare_queue("quick")
        consumer = plain.consume("quick", prefetch=2, timeout=1000)
        received = [next(consumer) for _ in range(2)]
        assert [m.message_id if m is not None else None for m in received] == [
            first.message_id,
            second.message_id,
        ]
        consumer.close()
    finally:
        plain.close()
        broker.close()
        server.stop()


def test_an_ack_is_one_round_trip_that_wakes_its_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer's ack runs Dramatiq's ack script and pushes the consumer's own wake-up
    token in one pipeline, after the message stopped counting as outstanding."""
    server = EmbeddedRedis(tmp_path / "broker")
    broker = make_broker(server.start())
    try:
        broker.declare_queue("quick")
        broker.enqueue(Message("quick", "step", ("job", "probe"), {}, {}))
        consumer = broker.consume("quick", prefetch=1)
        message = next(consumer)
        while message is None:
            message = next(consumer)
        assert consumer.outstanding_message_count == 1
        assert broker.client.hlen(f"{NAMESPACE}:quick.msgs") == 1
        with _round_trips(monkeypatch) as sends:
            consumer.ack(message)
        assert len(sends) == 1
        assert consumer.outstanding_message_count == 0
        assert broker.client.hlen(f"{NAMESPACE}:quick.msgs") == 0  # acked: Dramatiq forgot it
        assert broker.client.llen(done_key(broker.broker_id, "quick")) == 1
        # After a restarted Redis (no script cached) the ack still lands, with its token.
        broker.enqueue(Message("quick", "step", ("job2", "probe"), {}, {}))
        message = next(consumer)
        while message is None:
            message = next(consumer)
        broker.client.script_flush()
        consumer.ack(message)
        assert broker.client.hlen(f"{NAMESPACE}:quick.msgs") == 0
        assert broker.client.llen(done_key(broker.broker_id, "quick")) >= 2
        consumer.close()
    finally:
        broker.close()
        server.stop()


def test_idle_wait_keeps_heartbeats_well_within_their_timeout() -> None:
    assert idle_wait_seconds(15_000) == IDLE_WAIT_SECONDS == 1.0
    assert idle_wait_seconds(2_000) == pytest.approx(0.2)
    assert idle_wait_seconds(1_000) == DELAY_POLL_SECONDS


def test_an_idle_consumer_waits_long_unless_it_holds_delayed_messages(tmp_path: Path) -> None:
    """Idle polls cost worker CPU (a Lua fetch and a BLPOP each), so an idle consumer blocks for
    ``idle_wait``; but a delay queue's consumer whose worker holds a delayed message (a retry
    waiting out its backoff) polls every ``DELAY_POLL_SECONDS``, since the worker moves a message
    that came due only between polls."""
    server = EmbeddedRedis(tmp_path / "broker")
    broker = make_broker(server.start())
    waits: list[tuple[str, float]] = []
    blpop = broker.client.blpop

    def spy(keys: list[str], timeout: float) -> object:
        waits.append((keys[0].split(":")[1].split(".done")[0], timeout))
        return blpop(keys, timeout=0.01)

    broker.client.blpop = spy  # type: ignore[method-assign]
    try:
        broker.declare_queue("long")
        quick = broker.consume("quick", prefetch=1)
        delayed = broker.consume("long.DQ", prefetch=4)
        assert next(quick) is None
        assert next(delayed) is None
        assert waits == [("quick", broker.idle_wait), ("long.DQ", broker.idle_wait)]
        broker.enqueue(Message("long", "step", (1,), {}, {}), delay=60_000)
        held = next(delayed)
        assert held is not None
        assert "eta" in held.options
        waits.clear()
        assert next(delayed) is None
        assert waits == [("long.DQ", DELAY_POLL_SECONDS)]
        quick.close()
        delayed.close()
    finally:
        broker.close()
        server.stop()


def test_a_worker_shutting_down_wakes_its_idle_consumers(tmp_path: Path) -> None:
    """An idle consumer blocks for ``idle_wait``; a worker that begins to stop wakes it (and it
    polls briefly from then on), so stopping a worker or ``serve`` does not wait out the idle
    wait of each of its consumers."""
    server = EmbeddedRedis(tmp_path / "broker")
    broker = make_broker(server.start())
    broker.idle_wait = 30.0  # far beyond the test's patience: only the wake-up can end the wait
    try:
        broker.declare_queue("quick")
        consumer = broker.consume("quick", prefetch=1)
        returned = threading.Event()

        def consume() -> None:
            assert next(consumer) is None
            returned.set()

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        time.sleep(0.3)  # let it block in its BLPOP
        assert not returned.is_set()
        broker.emit_before("worker_shutdown", None)
        assert returned.wait(10.0), "the idle consumer was not woken by the shutdown"
        assert broker.stopping
        thread.join(5.0)
        consumer.close()
    finally:
        broker.close()
        server.stop()
