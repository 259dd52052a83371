"""The media gate: how many long-lane steps of one worker process run ffmpeg at once.

A long-lane step spends most of its time in ffmpeg, then verifies and publishes its outputs
(strict decodes, hashing, fsyncs) without it. With one thread per encode slot, a core sat idle
for that tail of every job. The lane therefore has a few more threads than the gate has
permits: a step takes a permit for its ffmpeg phase and gives it back before it verifies, so
the next step encodes meanwhile, and ffmpeg still never runs more steps at once than
configured.

``wanted`` is what the lane's consumer may hold: one message per permit plus one per step that
is finishing, or about to (``release_soon``: its last, short ffmpeg calls are running, so the
next message is fetched and started in time to take the permit the moment it comes back). A
message fetched beyond that would only wait here for a permit while another worker process
might be idle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["MediaGate"]


class MediaGate:
    """``permits`` steps in ffmpeg at once, out of ``threads`` long-lane threads."""

    def __init__(self, permits: int, threads: int | None = None) -> None:
        if permits < 1:
            raise ValueError("a media gate needs at least one permit")
        self.permits = permits
        self.threads = max(permits, threads if threads is not None else permits)
        self._semaphore = threading.BoundedSemaphore(permits)
        self._lock = threading.Lock()
        self._finishing: set[int] = set()
        self._listeners: list[Callable[[], None]] = []

    def acquire(self) -> None:
        """Wait for a permit (the calling thread's step is no longer finishing, if it was)."""
        self._semaphore.acquire()
        with self._lock:
            self._finishing.discard(threading.get_ident())

    def release_soon(self) -> None:
        """The calling thread's step is on its last, short ffmpeg calls (packaging): count it
        as finishing already, so the lane fetches the next message while they run."""
        if self._start_finishing():
            self._notify()

    def release(self) -> None:
        """Give the permit back: the calling thread's step now finishes without ffmpeg, and the
        listeners hear that the lane may take one more message (unless ``release_soon``
        already told them: ``wanted`` does not change again)."""
        announced = not self._start_finishing()
        self._semaphore.release()
        if not announced:
            self._notify()

    def _start_finishing(self) -> bool:
        """Count the calling thread's step as finishing; False if it already was."""
        ident = threading.get_ident()
        with self._lock:
            if ident in self._finishing:
                return False
            self._finishing.add(ident)
            return True

    def step_ended(self) -> None:
        """The calling thread's step is over (called before its message is acknowledged)."""
        with self._lock:
            self._finishing.discard(threading.get_ident())

    def wanted(self) -> int:
        """Messages the lane should hold now: the permits, plus the steps finishing."""
        with self._lock:
            return min(self.threads, self.permits + len(self._finishing))

    def on_release(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the releasing thread) whenever ``wanted`` grows: a permit
        given back or announced (``release_soon``), once per step."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def __enter__(self) -> MediaGate:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
