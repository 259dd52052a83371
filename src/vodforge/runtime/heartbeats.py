"""Heartbeats of the steps a worker process is running: one thread for all of them.

A running step writes a heartbeat (and its progress) to the job store at most every
``interval`` seconds, so the reaper can tell a live step from one whose worker died. Progress
callbacks write when they come; a step without progress output (a probe, a silent ffmpeg) is
beaten by the ticker thread. One thread per process instead of one per step (a short job had
two), and not on the shared work pool: a bounded pool filled with heartbeat loops would have no
thread left for the work they are waiting on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vodforge.observability.logging import get_logger

log = get_logger(__name__)

Write = Callable[[str, str, float], None]


@dataclass(eq=False)
class Beat:
    """One running step's heartbeat state."""

    job_id: str
    step: str
    fraction: float = 0.0
    #: When the step last wrote a sign of life (registration: start_step just did).
    last: float = field(default_factory=time.monotonic)


class Heartbeats:
    def __init__(self, write: Write, *, interval: float, tick: float = 0.5) -> None:
        """``write(job_id, step, progress)`` records one heartbeat."""
        self._write = write
        self.interval = interval
        self.tick = min(tick, interval)
        self._beats: set[Beat] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, job_id: str, step: str) -> Beat:
        beat = Beat(job_id, step)
        with self._lock:
            self._beats.add(beat)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeats")
                self._thread.start()
        return beat

    def stop(self, beat: Beat) -> None:
        with self._lock:
            self._beats.discard(beat)

    def progress(self, beat: Beat, fraction: float) -> None:
        """Record progress; write it if the step has not written for ``interval``."""
        beat.fraction = fraction
        if self._due(beat):
            self._write(beat.job_id, beat.step, fraction)

    def running(self) -> int:
        with self._lock:
            return len(self._beats)

    def _due(self, beat: Beat) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - beat.last < self.interval:
                return False
            beat.last = now
            return True

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            with self._lock:
                beats = list(self._beats)
            for beat in beats:
                if beat in self._beats and self._due(beat):
                    try:
                        self._write(beat.job_id, beat.step, beat.fraction)
                    except Exception as exc:  # a missed beat is not the step's failure
                        log.warning("heartbeat not recorded", error=repr(exc), step=beat.step)
