"""The embedded broker refuses a directory whose socket a live redis-server answers on, and
takes over one left behind by a server that is gone."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from vodforge.errors import ConfigError
from vodforge.runtime.broker import EmbeddedRedis


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
