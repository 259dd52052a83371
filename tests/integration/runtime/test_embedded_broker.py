"""The embedded broker refuses a directory whose socket a live redis-server answers on, and
takes over one left behind by a server that is gone."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from dramatiq import Message

from vodforge.errors import ConfigError
from vodforge.runtime.broker import NAMESPACE, EmbeddedRedis, make_broker, wake_consumer


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
