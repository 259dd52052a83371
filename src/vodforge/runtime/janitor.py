"""Worker-side cleanup of scratch folders.

A step works in ``<data>/scratch/<job>/``; the job's last step removes it, but only on the host
where that step ran. Folders of jobs that ended elsewhere, or that a crash interrupted, are
removed here once their job is over (or unknown) and nothing has touched them for a while.
Single-step transcodes work in per-thread slots, ``<data>/scratch/.slots/<host>-<pid>-<thread>/``,
kept from job to job; this host's slots of worker processes that are gone are removed here too.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from vodforge.errors import JobNotFound
from vodforge.jobs import JobStore
from vodforge.observability.logging import get_logger
from vodforge.pipeline.steps import SLOTS, slot_owner

log = get_logger(__name__)


def sweep_scratch(
    scratch: Path,
    jobs: JobStore,
    *,
    min_age_seconds: float = 3600.0,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Remove the scratch folders of ended (or unknown) jobs untouched for ``min_age_seconds``.
    Returns the job ids whose folders went."""
    removed: list[str] = []
    if not scratch.is_dir():
        return removed
    _sweep_slots(scratch / SLOTS)
    for folder in sorted(p for p in scratch.iterdir() if p.is_dir() and p.name != SLOTS):
        try:
            age = now() - folder.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age_seconds:
            continue
        try:
            if not jobs.get_job(folder.name).terminal:
                continue
        except JobNotFound:
            pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    if removed:
        log.info("scratch swept", jobs=len(removed))
    return removed


def _sweep_slots(slots: Path) -> None:
    """Remove this host's slots of processes that no longer exist (a restarted or crashed
    worker); another host's are for its own janitor."""
    if not slots.is_dir():
        return
    host = socket.gethostname()
    for slot in slots.iterdir():
        owner = slot_owner(slot.name)
        if owner is None or owner[0] != host or psutil.pid_exists(owner[1]):
            continue
        shutil.rmtree(slot, ignore_errors=True)
        log.info("scratch slot of a gone process removed", slot=slot.name)


def run_janitor(
    scratch: Path, jobs: JobStore, stop: threading.Event, interval: float = 600.0
) -> None:
    while True:
        try:
            sweep_scratch(scratch, jobs)
        except Exception as exc:  # cleanup must never take a worker down
            log.warning("scratch sweep failed", error=repr(exc))
        if stop.wait(interval):
            return
