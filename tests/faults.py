"""A fault-injecting ffmpeg runner shared by the transcode and runtime tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

from vodforge.media.runner import (
    CallRecord,
    FfmpegCall,
    ProgressCallback,
    SubprocessRunner,
    raise_for_record,
)
from vodforge.media.toolchain import Toolchain


class FaultyRunner:
    """The real runner, except that calls matching ``when`` fail with ``stderr`` and
    ``exit_code`` — like a flaky disk (transient) or a broken encoder (permanent)."""

    def __init__(
        self,
        toolchain: Toolchain,
        *,
        when: Callable[[FfmpegCall, int], bool],
        stderr: str,
        exit_code: int = 1,
    ) -> None:
        self.real = SubprocessRunner(toolchain)
        self.when = when
        self.stderr = stderr
        self.exit_code = exit_code
        self.seen: dict[str, int] = {}
        #: The step of every call asked for, in order.
        self.steps: list[str] = []
        self.enabled = True
        self._lock = threading.Lock()

    @property
    def toolchain_id(self) -> str:
        return self.real.toolchain_id

    def run(self, call: FfmpegCall, on_progress: ProgressCallback | None = None) -> CallRecord:
        with self._lock:
            n = self.seen[call.label] = self.seen.get(call.label, 0) + 1
            self.steps.append(call.step)
        if self.enabled and self.when(call, n):
            raise_for_record(
                CallRecord(
                    step=call.step,
                    label=call.label,
                    argv=("ffmpeg", *call.argv),
                    exit_code=self.exit_code,
                    wall_seconds=0.01,
                    cpu_seconds=0.0,
                    toolchain_id=self.toolchain_id,
                    started_at=0.0,
                    stderr=self.stderr,
                )
            )
        return self.real.run(call, on_progress)
