"""Scratch slot names: host, pid and thread, read back whatever the host name holds."""

from __future__ import annotations

import pytest

from vodforge.pipeline.steps import slot_name, slot_owner


@pytest.mark.parametrize("host", ["vm", "worker-3", "a-b-c.example.com"])
def test_round_trip(host: str) -> None:
    assert slot_owner(slot_name(host, 4242, 139876543210)) == (host, 4242)


@pytest.mark.parametrize("name", ["", "4242-1", "host-x-1", "host-1-x", "-1-2", ".slots"])
def test_other_names_are_not_slots(name: str) -> None:
    assert slot_owner(name) is None
