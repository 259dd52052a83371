"""The one place that starts ffmpeg.

``FfmpegRunner`` is the seam: ``run(call) -> CallRecord``. ``SubprocessRunner`` runs the pinned
binary in its own process group with a deadline scaled to the media's duration (on expiry the
whole group is killed), streams ``-progress`` to a callback, keeps the full stderr, measures wall
and CPU seconds (``wait4`` rusage), and turns a failure into the error tree with the evidence
attached. ``RecordingRunner`` is the test fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vodforge.errors import FfmpegEvidence
from vodforge.media.progress import Progress, ProgressParser
from vodforge.media.signatures import classify
from vodforge.media.toolchain import Toolchain

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class FfmpegCall:
    """One ffmpeg invocation, before the binary is known."""

    step: str
    label: str
    argv: tuple[str, ...]
    #: Seconds of media this call processes: scales the deadline and turns progress into %.
    media_seconds: float = 0.0


@dataclass(frozen=True)
class CallRecord:
    """What a finished call leaves in the manifest."""

    step: str
    label: str
    argv: tuple[str, ...]
    exit_code: int
    wall_seconds: float
    cpu_seconds: float
    toolchain_id: str
    started_at: float
    stderr: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "label": self.label,
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "toolchain": self.toolchain_id,
            "started_at": round(self.started_at, 3),
        }


class FfmpegRunner(Protocol):
    @property
    def toolchain_id(self) -> str: ...

    def run(self, call: FfmpegCall, on_progress: ProgressCallback | None = None) -> CallRecord: ...


@dataclass
class Deadline:
    """``base + per_media_second * media_seconds``: a film gets hours, a thumbnail a minute."""

    base: float = 120.0
    per_media_second: float = 20.0

    def for_call(self, call: FfmpegCall) -> float:
        return self.base + self.per_media_second * max(0.0, call.media_seconds)


def die_with_parent() -> None:
    """In the child between fork and exec: PR_SET_PDEATHSIG(SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
_SETPRIV = ("/usr/bin/setpriv", "/bin/setpriv")
#: Built by ``make venv`` from tools/pdeathsig.c into the venv's bin (beside the interpreter).
_SPAWN_HELPER = "vodforge-pdeathsig"


def _pdeathsig_launcher() -> Callable[[], tuple[str, ...]] | None:
    """The argv prefix (made per call) that sets PR_SET_PDEATHSIG and execs ffmpeg in place:
    vodforge's own static helper if it was built (about 0.3 ms of CPU per call, and it checks
    the parent is still there), else util-linux's setpriv (about 0.8 ms). None: neither, so
    the runner falls back to a ``preexec_fn`` (a full fork of the worker per call)."""
    helper = Path(sys.executable).parent / _SPAWN_HELPER
    if os.access(helper, os.X_OK):
        path = str(helper)
        return lambda: (path, str(os.getpid()))
    for setpriv in _SETPRIV:
        if os.access(setpriv, os.X_OK):
            prefix = (setpriv, "--pdeathsig", "KILL", "--")
            return lambda: prefix
    return None


#: How often the pump wakes with no output at all, to check the deadline and stall limit.
_PUMP_TICK = 0.5
_READ_SIZE = 65536


@dataclass
class _Pumped:
    """What reading a call's pipes found: its whole stderr, and whether it was killed."""

    stderr: str = ""
    timed_out: bool = False
    stalled: bool = False


def _pump(
    proc: subprocess.Popen[bytes],
    *,
    timeout: float,
    stall_seconds: float | None,
    on_progress: ProgressCallback | None,
) -> _Pumped:
    """Read ffmpeg's ``-progress`` (stdout) and its stderr on the calling thread, one
    ``select`` loop for both, until both reach EOF; kill the process group when the call passes
    its deadline or reports no progress block for ``stall_seconds`` (a hung decoder, a blocked
    pipe). No thread per call: a short job makes six calls, and two threads each cost more
    than the loop."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    result = _Pumped()
    started = last_progress = time.monotonic()
    parser = ProgressParser()
    pending = b""
    errors: list[bytes] = []
    killed = False
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, "out")
        selector.register(proc.stderr, selectors.EVENT_READ, "err")
        while selector.get_map():
            now = time.monotonic()
            if not killed:
                if now - started > timeout:
                    result.timed_out = True
                elif stall_seconds and now - last_progress > stall_seconds:
                    result.stalled = True
                if result.timed_out or result.stalled:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    killed = True  # go on reading: the pipes close as the group dies
            wait = _PUMP_TICK
            if not killed:
                wait = min(wait, max(0.0, started + timeout - now))
                if stall_seconds:
                    wait = min(wait, max(0.0, last_progress + stall_seconds - now))
            for key, _ in selector.select(wait + 0.001):
                data = os.read(key.fd, _READ_SIZE)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.data == "err":
                    errors.append(data)
                else:
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        progress = parser.feed(line.decode("utf-8", "replace"))
                        if progress is not None:
                            last_progress = time.monotonic()
                            if on_progress is not None:
                                on_progress(progress)
    text = b"".join(errors).decode("utf-8", "replace")
    # As text mode's universal newlines would: ffmpeg ends some lines with \r.
    result.stderr = text.replace("\r\n", "\n").replace("\r", "\n")
    return result


class SubprocessRunner:
    def __init__(
        self,
        toolchain: Toolchain,
        *,
        deadline: Deadline | None = None,
        check_drift: bool = True,
        stall_seconds: float | None = None,
        die_with_parent: bool = False,
        nice: Mapping[str, int] | None = None,
    ) -> None:
        self.toolchain = toolchain
        #: Niceness by call step (``{"encode": 10}``): long work yields the CPU to previews.
        self.nice = dict(nice or {})
        #: Linux: the kernel SIGKILLs ffmpeg if the thread that started it dies (a worker killed
        #: with SIGKILL must not leave an orphan encode running).
        self.die_with_parent = die_with_parent
        self._launcher = _pdeathsig_launcher() if die_with_parent else None
        self.deadline = deadline or Deadline()
        self.check_drift = check_drift
        #: Kill a call that reports no progress for this long (None: only the deadline applies).
        self.stall_seconds = stall_seconds

    @property
    def toolchain_id(self) -> str:
        return self.toolchain.id

    def run(self, call: FfmpegCall, on_progress: ProgressCallback | None = None) -> CallRecord:
        if self.check_drift:
            self.toolchain.verify_unchanged()
        argv = (str(self.toolchain.path), *call.argv)
        timeout = self.deadline.for_call(call)
        # The launcher (vodforge-pdeathsig or setpriv) sets PR_SET_PDEATHSIG and execs ffmpeg
        # (same pid), so Python can spawn with vfork; a preexec_fn would force a full fork.
        launch = (*self._launcher(), *argv) if self._launcher else argv
        preexec = die_with_parent if self.die_with_parent and not self._launcher else None
        started_at = time.time()
        start = time.monotonic()
        proc = subprocess.Popen(
            launch,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: a timeout kills everything it started
            preexec_fn=preexec,  # noqa: PLW1509
        )
        if niceness := self.nice.get(call.step):
            # Just after the spawn (vfork keeps no preexec hook): a few ms at normal priority.
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, proc.pid, niceness)
        pumped = _Pumped()
        rusage: Any = None
        try:
            pumped = _pump(
                proc, timeout=timeout, stall_seconds=self.stall_seconds, on_progress=on_progress
            )
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:  # interrupted (Ctrl-C, an exception in a callback)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        wall = time.monotonic() - start
        cpu = float(rusage.ru_utime + rusage.ru_stime) if rusage is not None else 0.0
        stderr = pumped.stderr
        exit_code = proc.returncode if proc.returncode is not None else -1
        record = CallRecord(
            step=call.step,
            label=call.label,
            argv=argv,
            exit_code=exit_code,
            wall_seconds=wall,
            cpu_seconds=cpu,
            toolchain_id=self.toolchain.id,
            started_at=started_at,
            stderr=stderr,
        )
        if exit_code != 0 or pumped.timed_out or pumped.stalled:
            raise_for_record(record, timed_out=pumped.timed_out, stalled=pumped.stalled)
        return record


def raise_for_record(record: CallRecord, *, timed_out: bool = False, stalled: bool = False) -> None:
    """Raise the classified error for a failed call, with full evidence attached."""
    signal_number = -record.exit_code if record.exit_code < 0 else None
    verdict = classify(
        exit_code=record.exit_code,
        signal_number=signal_number,
        stderr=record.stderr,
        timed_out=timed_out,
        stalled=stalled,
    )
    evidence = FfmpegEvidence(
        argv=record.argv,
        exit_code=record.exit_code,
        stderr=record.stderr,
        toolchain_id=record.toolchain_id,
        wall_seconds=record.wall_seconds,
        signal=signal_number,
        labels=(verdict.label,),
    )
    tail = evidence.stderr_tail(1)
    detail = f": {tail}" if tail else ""
    raise verdict.error(
        f"{record.step} {record.label}: {verdict.summary} "
        f"(exit {record.exit_code}, toolchain {record.toolchain_id}){detail}",
        evidence=evidence,
    )


class RecordingRunner:
    """Test fake: records every call; ``respond`` decides the outcome (default: success)."""

    def __init__(
        self,
        respond: Callable[[FfmpegCall], CallRecord | None] | None = None,
        toolchain_id: str = "fake-toolchain",
    ) -> None:
        self.calls: list[FfmpegCall] = []
        self._respond = respond
        self._toolchain_id = toolchain_id
        self._lock = threading.Lock()

    @property
    def toolchain_id(self) -> str:
        return self._toolchain_id

    def run(self, call: FfmpegCall, on_progress: ProgressCallback | None = None) -> CallRecord:
        with self._lock:
            self.calls.append(call)
        record = self._respond(call) if self._respond else None
        if record is None:
            record = CallRecord(
                step=call.step,
                label=call.label,
                argv=("ffmpeg", *call.argv),
                exit_code=0,
                wall_seconds=0.0,
                cpu_seconds=0.0,
                toolchain_id=self._toolchain_id,
                started_at=time.time(),
            )
        if record.exit_code != 0:
            raise_for_record(record)
        if on_progress is not None:
            on_progress(Progress(frame=0, out_seconds=call.media_seconds, speed=None, done=True))
        return record
