"""One ``vodforge serve`` per data directory.

Two serves on one data dir would share the embedded broker's socket path and append-only file,
the SQLite job store and the object store: the second one's broker start removed the first's
socket, so the first one's workers lost their broker mid-burst. ``serve`` therefore holds an
exclusive ``flock`` on ``<data>/serve.lock`` for as long as it runs; the kernel drops it when the
process ends, however it ends (SIGKILL included), so a crash never leaves a stale lock behind.
The file holds the holder's pid for the error message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from vodforge.errors import ConfigError

LOCK_NAME = "serve.lock"


class DataDirLock:
    def __init__(self, data: Path) -> None:
        self.path = data / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``ConfigError`` naming the serve that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec: not inherited
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another vodforge serve (pid {holder}) is running on {self.path.parent}; "
                "stop it first, or give this one its own --data-dir"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the description drops the flock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
