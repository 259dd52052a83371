"""The media gate: permits for ffmpeg phases, and how many messages the long lane may hold."""

from __future__ import annotations

import threading

import pytest

from vodforge.pipeline.gate import MediaGate


def in_thread(fn: object) -> None:
    thread = threading.Thread(target=fn)  # type: ignore[arg-type]
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_wanted_is_the_permits_plus_the_steps_finishing_capped_at_the_threads() -> None:
    gate = MediaGate(2, threads=3)
    assert gate.wanted() == 2
    finished = threading.Event()

    def step() -> None:
        with gate:  # ffmpeg phase
            assert gate.wanted() == 2
        assert gate.wanted() == 3  # finishing: the lane may take one more message
        finished.set()

    in_thread(step)
    assert finished.is_set()
    assert gate.wanted() == 3  # that thread's step has not ended yet

    def other_finishing() -> None:
        gate.acquire()
        gate.release()

    in_thread(other_finishing)
    assert gate.wanted() == 3  # two steps finishing, but only three threads


def test_step_ended_forgets_only_the_calling_threads_step() -> None:
    gate = MediaGate(1, threads=2)
    gate.acquire()
    gate.release()
    assert gate.wanted() == 2
    in_thread(gate.step_ended)  # another thread's step ending changes nothing here
    assert gate.wanted() == 2
    gate.step_ended()
    assert gate.wanted() == 1


def test_a_step_waits_for_a_permit() -> None:
    gate = MediaGate(1, threads=2)
    gate.acquire()
    got = threading.Event()

    def second() -> None:
        with gate:
            got.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not got.wait(0.2)  # no permit while the first step runs ffmpeg
    gate.release()
    assert got.wait(10)
    thread.join(timeout=10)


def test_listeners_hear_every_release() -> None:
    gate = MediaGate(1)
    heard: list[int] = []
    gate.on_release(lambda: heard.append(1))
    for _ in range(3):
        with gate:
            pass
    assert heard == [1, 1, 1]
    assert gate.threads == 1
    assert gate.wanted() == 1  # no more than its threads, finishing or not


def test_no_permits_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one permit"):
        MediaGate(0)


def test_release_soon_counts_the_step_as_finishing_before_the_permit_is_back() -> None:
    """On its last, short calls a step lets the lane fetch the next message; that message's
    step still waits for the permit itself."""
    gate = MediaGate(1, threads=2)
    heard: list[str] = []
    gate.on_release(lambda: heard.append("wake"))
    gate.acquire()
    gate.release_soon()
    assert gate.wanted() == 2
    assert heard == ["wake"]
    waiting = threading.Event()

    def next_step() -> None:
        with gate:
            waiting.set()

    thread = threading.Thread(target=next_step)
    thread.start()
    assert not waiting.wait(0.2)  # fetched early, but the permit is still taken
    gate.release()
    assert waiting.wait(10)
    thread.join(timeout=10)
    # Announced once (the release after release_soon changes nothing), then the other step's.
    assert heard == ["wake", "wake"]
    gate.step_ended()
    assert gate.wanted() == 2  # the other thread's step is finishing and has not ended
