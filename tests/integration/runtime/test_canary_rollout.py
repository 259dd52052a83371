"""Canary rollouts through the real runtime (embedded redis, SQLite, pinned ffmpeg): a broken
candidate is rolled back automatically and every job it failed completes on stable; a healthy
candidate is promoted step by step to stable."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SampleFactory
from tests.integration.runtime.conftest import TINY, Harness, HarnessFactory
from vodforge.jobs import JobState
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.rollout.canary import Policy, routing_bucket
from vodforge.rollout.registry import Registry
from vodforge.rollout.service import RolloutService, RolloutView
from vodforge.runtime.rollouts import RolloutController


def broken_wrapper(directory: Path, pinned: Path) -> Path:
    """A toolchain that looks healthy (the pinned ffmpeg answers -version, -encoders and
    -filters) but fails every real call like an ABI break: exit 1, 'Unknown encoder'."""
    path = directory / "ffmpeg-broken"
    path.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -version|-encoders|-filters) '
        f'exec "{pinned}" "$@";; esac; done\n'
        "echo \"[vost#0:0/libx264] Unknown encoder 'libx264'\" >&2\n"
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


class Canary:
    """The rollout service and controller loop of a harness, and keys routed where we want."""

    def __init__(self, h: Harness, clip: Path) -> None:
        self.h = h
        assert h.runtime.registry is not None
        self.registry: Registry = h.runtime.registry
        self.service = RolloutService(h.runtime.jobs, self.registry)
        self.controller = RolloutController(self.service, h.runtime.jobs, h.runtime.dispatcher)
        self.clip = clip
        # The clip's etag and the store's bucket, from an upload no trigger matches.
        info = h.upload(clip, "other/etag.mp4")
        self.etag = info.etag
        self.bucket = h.runtime.jobs.events(1)[0].bucket
        self._names = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.controller.run, args=(self._stop, 0.05))

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def key(self, *, below: float = 100.0, at_least: float = 0.0) -> str:
        """A fresh upload key whose routing bucket is in [at_least, below)."""
        while True:
            key = f"uploads/clip{next(self._names):05d}.mp4"
            bucket = routing_bucket(self.bucket, key, self.etag, str(TINY))
            if at_least <= bucket < below:
                return key

    def upload(self, key: str) -> str:
        self.h.upload(self.clip, key)
        return self.h.job_for(key).id

    def wait_rollout(self, rollout_id: str, until: str, timeout: float = 60.0) -> RolloutView:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rollout = self.service.get(rollout_id)
            if until in (rollout.state, f"step{rollout.step_index}"):
                return rollout
            time.sleep(0.05)
        raise AssertionError(f"rollout never reached {until}: {self.service.get(rollout_id)}")


@pytest.fixture
def canary(harness: HarnessFactory, sample: SampleFactory) -> Iterator[Canary]:
    h = harness()
    with Canary(h, sample("basic", seconds=1, size=(160, 90))) as c:
        yield c


def test_broken_canary_is_rolled_back_and_no_job_is_lost(
    canary: Canary, toolchain: Toolchain, tmp_path: Path
) -> None:
    stable = canary.registry.stable()
    assert stable is not None
    broken = canary.registry.add(load_toolchain(broken_wrapper(tmp_path, toolchain.path)))
    rollout = canary.service.start(
        broken.id, Policy((10, 100), min_jobs=2, max_failure_rate=0.001, max_p95_regression=0.2)
    )
    on_candidate = [canary.upload(canary.key(below=10)) for _ in range(2)]
    on_stable = [canary.upload(canary.key(at_least=10)) for _ in range(2)]
    assert {canary.h.runtime.jobs.get_job(j).toolchain_id for j in on_candidate} <= {
        broken.id,
        stable.id,  # the second one may arrive after the rollback
    }
    assert canary.h.runtime.jobs.get_job(on_candidate[0]).toolchain_id == broken.id

    ended = canary.wait_rollout(rollout.id, "rolled_back")
    rollback = [d for d in ended.decisions if d.action == "rollback"]
    assert len(rollback) == 1
    assert "candidate failure rate 100%" in rollback[0].reason
    assert "label=unknown_encoder" in rollback[0].reason
    assert ended.weight_percent == 0

    # The rollback is decided first, then its failed jobs are re-run on stable (the same pass of
    # the controller, a moment later): wait for them to succeed, not for any end state — a job
    # still failed from the canary is exactly the moment before its re-run.
    for job_id in on_candidate + on_stable:
        done = canary.h.wait(job_id, timeout=60, states=frozenset({JobState.SUCCEEDED}))
        assert done.state is JobState.SUCCEEDED, done
        assert done.toolchain_id == stable.id
    first = canary.h.runtime.jobs.attempts(on_candidate[0])
    assert any(a.error_label == "unknown_encoder" for a in first)  # it did fail on the canary
    assert canary.h.runtime.jobs.list_dead_letters(state="open") == []
    replayed = canary.h.runtime.jobs.list_dead_letters(state="replayed")
    assert on_candidate[0] in {d.job_id for d in replayed}
    assert canary.registry.stable() == stable
    deadline = time.monotonic() + 30
    while not canary.service.get(rollout.id).drained and time.monotonic() < deadline:
        time.sleep(0.05)
    assert canary.service.get(rollout.id).drained  # every affected job re-run and finished
    deadline = time.monotonic() + 10
    while not canary.service.get(rollout.id).drained:
        assert time.monotonic() < deadline, "rollout never drained"
        time.sleep(0.05)


def test_healthy_canary_is_promoted_to_stable(
    canary: Canary, toolchain: Toolchain, tmp_path: Path
) -> None:
    copy = tmp_path / "ffmpeg-copy"
    shutil.copy2(toolchain.path, copy)
    stable = canary.registry.stable()
    assert stable is not None
    candidate = canary.registry.add(load_toolchain(copy))
    assert candidate.id != stable.id  # the same build at another path is its own entry
    assert candidate.sha256 == stable.sha256
    # p95 is not what this test is about: a generous bound keeps it free of timing noise.
    policy = Policy((1, 10, 50, 100), min_jobs=1, max_failure_rate=0.001, max_p95_regression=10)
    rollout = canary.service.start(candidate.id, policy)
    baseline = canary.upload(canary.key(at_least=1))
    assert canary.h.wait(baseline).toolchain_id == stable.id
    candidate_jobs = []
    for index, weight in enumerate(policy.steps):
        canary.wait_rollout(rollout.id, f"step{index}")
        candidate_jobs.append(canary.upload(canary.key(below=weight)))
    ended = canary.wait_rollout(rollout.id, "promoted")
    assert [d.action for d in ended.decisions if d.action != "hold"] == [
        "start",
        "promote",
        "promote",
        "promote",
        "promote",
    ]
    assert "promoted to stable" in ended.decisions[-1].reason
    for job_id in candidate_jobs:
        done = canary.h.wait(job_id)
        assert done.state is JobState.SUCCEEDED
        assert done.toolchain_id == candidate.id
        manifest = canary.h.runtime.store.get_bytes(f"outputs/{job_id}/manifest.json")
        assert str(copy) in manifest.decode()
    new_stable = canary.registry.stable()
    assert new_stable is not None
    assert new_stable.id == candidate.id
    # New jobs now run on the promoted toolchain.
    after = canary.upload(canary.key())
    assert canary.h.runtime.jobs.get_job(after).toolchain_id == candidate.id
