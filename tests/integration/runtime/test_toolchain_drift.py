"""A binary swapped under a running worker: the worker refuses work without spending the job's
attempts, says why (log + metric), and the job completes on a healthy worker."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from prometheus_client import REGISTRY

from tests.conftest import SampleFactory
from tests.integration.runtime.conftest import HarnessFactory
from vodforge.jobs import JobState
from vodforge.media.toolchain import Toolchain


def _refusals() -> float:
    return REGISTRY.get_sample_value("vodforge_toolchain_refusals_total", {"reason": "drift"}) or 0


def _swap(path: Path, pinned: Path) -> None:
    """A silent upgrade: another binary renamed over the old one (as a package manager does).
    It even behaves the same (it execs the pinned ffmpeg) — only its bytes differ."""
    tmp = path.with_suffix(".new")
    tmp.write_text(f'#!/bin/sh\nexec "{pinned}" "$@"\n')
    tmp.chmod(0o755)
    os.replace(tmp, path)


def test_swapped_binary_is_refused_and_the_job_completes_on_a_healthy_worker(
    harness: HarnessFactory, sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    h = harness(workers=False)
    copy = tmp_path / "host-a" / "ffmpeg"
    copy.parent.mkdir()
    shutil.copy2(toolchain.path, copy)
    # Worker A runs the stable build from its own install path; worker B (later) the wheel's.
    h.start_worker(settings=h.settings.model_copy(update={"ffmpeg": copy}))
    clip = sample("basic", seconds=1, size=(160, 90))

    h.upload(clip, "uploads/before.mp4")
    before = h.wait(h.job_for("uploads/before.mp4").id)
    assert before.state is JobState.SUCCEEDED  # worker A was healthy

    _swap(copy, toolchain.path)
    refused_before = _refusals()
    h.upload(clip, "uploads/after.mp4")
    job_id = h.job_for("uploads/after.mp4").id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        refused = [a for a in h.runtime.jobs.attempts(job_id) if a.error_label == "worker_refused"]
        if len(refused) >= 3:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("worker A never refused the job")
    assert "changed" in (refused[0].error_message or "")
    assert _refusals() - refused_before >= 3
    # Refusals spend no attempt: the job waits for a healthy worker instead of dead-lettering.
    job = h.runtime.jobs.get_job(job_id)
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert all(s.attempts == 0 for s in h.runtime.jobs.steps(job_id))

    h.start_worker()  # worker B: the untouched wheel binary of the same build
    done = h.wait(job_id, timeout=60)
    assert done.state is JobState.SUCCEEDED
    assert done.toolchain_id == before.toolchain_id == toolchain.id
    assert all(s.attempts == 1 for s in h.runtime.jobs.steps(job_id))
    assert h.runtime.jobs.list_dead_letters() == []
    manifest = h.runtime.store.get_bytes(f"outputs/{job_id}/manifest.json").decode()
    assert str(toolchain.path) in manifest  # made by worker B's binary
    assert str(copy) not in manifest
