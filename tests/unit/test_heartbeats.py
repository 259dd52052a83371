"""One heartbeat thread for all running steps: silent steps are beaten, progress is written at
most once per interval, stopped steps are not beaten, and a failing write does not stop it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vodforge.runtime.heartbeats import Heartbeats


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.writes: list[tuple[str, str, float]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, job_id: str, step: str, progress: float) -> None:
        with self.lock:
            if self.fail_first:
                self.fail_first -= 1
                raise OSError("database is locked")
            self.writes.append((job_id, step, progress))


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_silent_step_is_beaten_and_a_stopped_one_is_not() -> None:
    rec = Recorder()
    beats = Heartbeats(rec, interval=0.1, tick=0.02)
    silent = beats.start("j1", "probe")
    assert _wait_for(lambda: len(rec.writes) >= 2)
    beats.stop(silent)
    time.sleep(0.05)
    count = len(rec.writes)
    time.sleep(0.3)
    assert len(rec.writes) == count
    assert {w[:2] for w in rec.writes} == {("j1", "probe")}
    assert beats.running() == 0


def test_progress_is_written_at_most_once_per_interval() -> None:
    rec = Recorder()
    beats = Heartbeats(rec, interval=10.0, tick=5.0)
    beat = beats.start("j1", "transcode")
    beats.progress(beat, 0.1)  # registration counts as the first sign of life
    assert rec.writes == []
    beat.last -= 10.0  # an interval later
    beats.progress(beat, 0.5)
    beats.progress(beat, 0.6)
    assert rec.writes == [("j1", "transcode", 0.5)]
    beats.stop(beat)


def test_one_thread_serves_every_step_and_survives_a_failing_write() -> None:
    rec = Recorder(fail_first=2)
    beats = Heartbeats(rec, interval=0.05, tick=0.01)
    before = threading.active_count()
    running = [beats.start(f"j{i}", "transcode") for i in range(20)]
    assert threading.active_count() <= before + 1
    assert _wait_for(lambda: {w[0] for w in rec.writes} == {f"j{i}" for i in range(20)})
    for beat in running:
        beats.stop(beat)
