"""The runtime end to end on the real broker, job store, object store and ffmpeg: events become
jobs, jobs run their steps on two lanes, failures retry or dead-letter, replays finish."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import SampleFactory
from tests.faults import FaultyRunner
from tests.integration.runtime.conftest import HarnessFactory
from vodforge.errors import InvalidKey
from vodforge.jobs import JobState, StepState
from vodforge.media.toolchain import Toolchain
from vodforge.pipeline.steps import slot_name
from vodforge.runtime.control import replay_dead_letter
from vodforge.runtime.janitor import sweep_scratch
from vodforge.runtime.reaper import Reaper
from vodforge.storage import ObjectCreated


def _published(h_store_root: Path, job_id: str) -> dict[str, str]:
    manifest = json.loads((h_store_root / "outputs" / job_id / "manifest.json").read_text())
    return {o["key"].split("/", 2)[2]: o["sha256"] for o in manifest["outputs"]}


def test_upload_event_runs_the_whole_job(harness: HarnessFactory, sample: SampleFactory) -> None:
    h = harness()
    src = sample("hd_audio", seconds=3, size=(320, 180))
    h.upload(src, "uploads/talk.mp4")
    job = h.wait(h.job_for("uploads/talk.mp4").id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    steps = {s.name: s for s in h.runtime.jobs.steps(job.id)}
    assert {"probe", "audio", "previews", "package", "verify"} <= set(steps)
    assert sum(1 for n in steps if n.startswith("encode:")) >= 2
    assert all(s.state == StepState.SUCCEEDED for s in steps.values())
    lanes = {s.name.split(":")[0]: s.lane for s in steps.values()}
    assert lanes == {
        "probe": "quick",
        "encode": "long",
        "audio": "quick",
        "previews": "quick",
        "package": "long",
        "verify": "quick",
    }
    store = h.runtime.store
    keys = {o.key for o in store.list(f"outputs/{job.id}/")}
    for expected in ("hls/master.m3u8", "mp4/180p.mp4", "previews/poster.jpg", "manifest.json"):
        assert f"outputs/{job.id}/{expected}" in keys
    assert not list(store.list(f"work/{job.id}/")), "intermediates are cleaned up"
    manifest = json.loads(store.get_bytes(f"outputs/{job.id}/manifest.json"))
    assert manifest["verification"]["ok"] is True
    assert manifest["toolchain"]["id"] == h.runtime.toolchain.id if h.runtime.toolchain else True
    assert {c["step"] for c in manifest["calls"]} >= {"encode", "audio", "previews", "package"}
    for o in manifest["outputs"]:
        assert hashlib.sha256(store.get_bytes(o["key"])).hexdigest() == o["sha256"], o["key"]
    outputs = {o.key for o in h.runtime.jobs.outputs(job.id)}
    assert f"outputs/{job.id}/hls/master.m3u8" in outputs
    assert job.manifest_key == f"outputs/{job.id}/manifest.json"


def test_a_single_chunk_job_runs_as_one_step(
    harness: HarnessFactory, sample: SampleFactory
) -> None:
    h = harness()
    h.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/short.mp4")
    job = h.wait(h.job_for("uploads/short.mp4").id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    steps = {s.name: s for s in h.runtime.jobs.steps(job.id)}
    assert set(steps) == {"probe", "transcode"}
    assert steps["probe"].lane == "quick"
    assert steps["transcode"].lane == "long"
    assert (steps["transcode"].cpu_seconds or 0) > 0
    store = h.runtime.store
    manifest = json.loads(store.get_bytes(f"outputs/{job.id}/manifest.json"))
    assert manifest["verification"]["ok"] is True
    assert manifest["source"]["key"] == "uploads/short.mp4"
    assert "path" not in manifest["source"]
    # Taken from the LocalStore's etag, not read again: still the source's digest.
    source = hashlib.sha256(store.get_bytes("uploads/short.mp4")).hexdigest()
    assert manifest["source"]["sha256"] == manifest["source"]["etag"] == source
    keys = {o.key for o in store.list(f"outputs/{job.id}/")}
    assert {o["key"] for o in manifest["outputs"]} | {f"outputs/{job.id}/manifest.json"} == keys
    for o in manifest["outputs"]:
        data = store.get_bytes(o["key"])
        assert len(data) == o["size"]
        assert hashlib.sha256(data).hexdigest() == o["sha256"], o["key"]
    assert not list(store.list(f"work/{job.id}/"))
    assert not (h.settings.data_dir / "scratch" / job.id).exists()
    # It ran in its worker thread's slot, which keeps its folders and no output; the
    # intermediates under _work stay as empty files whose inodes the next job reuses.
    slots = h.settings.data_dir / "scratch" / ".slots"
    left = [p for p in slots.rglob("*") if not p.is_dir()]
    assert left
    assert all(p.parent.name == "_work" and p.stat().st_size == 0 for p in left)
    assert any(p.name == "hls" for p in slots.rglob("*"))


def test_single_step_jobs_reuse_a_slot_and_clear_leftovers(
    harness: HarnessFactory, sample: SampleFactory
) -> None:
    """A slot keeps its directories from job to job; files a crashed run left in it (a
    half-written segment, a stale chunk) are gone before the next job stages there, and
    none of them is published."""
    # One long-lane thread (no finishing thread): both jobs use the same slot.
    h = harness(long_concurrency=1, long_finishing_threads=0)
    h.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/one.mp4")
    first = h.wait(h.job_for("uploads/one.mp4").id)
    assert first.state == JobState.SUCCEEDED, first.error_message
    slots = sorted((h.settings.data_dir / "scratch" / ".slots").iterdir())
    assert len(slots) == 1
    for slot in slots:
        (slot / "hls" / "180p").mkdir(parents=True, exist_ok=True)
        (slot / "hls" / "180p" / "seg_99999.m4s").write_bytes(b"half a segment")
        (slot / "_work").mkdir(exist_ok=True)
        (slot / "_work" / "stale.mp4").write_bytes(b"stale")
    h.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/two.mp4")
    second = h.wait(h.job_for("uploads/two.mp4").id)
    assert second.state == JobState.SUCCEEDED, second.error_message
    keys = {o.key for o in h.runtime.store.list(f"outputs/{second.id}/")}
    assert not any("seg_99999" in k or "stale" in k for k in keys)
    manifest = json.loads(h.runtime.store.get_bytes(f"outputs/{second.id}/manifest.json"))
    assert {o["key"] for o in manifest["outputs"]} | {f"outputs/{second.id}/manifest.json"} == keys
    for slot in slots:
        left = [p for p in slot.rglob("*") if not p.is_dir()]
        assert all(p.parent.name == "_work" and p.stat().st_size == 0 for p in left), left


def test_long_lane_runs_ffmpeg_for_at_most_long_concurrency_steps(
    harness: HarnessFactory, sample: SampleFactory
) -> None:
    """One encode at a time plus a finishing thread: two long-lane threads take jobs (two
    slots), but no two jobs' ffmpeg calls overlap — the second waits for the media gate,
    which the first gives back before verifying."""
    h = harness(long_concurrency=1)  # long_finishing_threads: 1 (the default)
    keys = [f"uploads/gate{i}.mp4" for i in range(3)]
    for key in keys:
        h.upload(sample("basic", seconds=1, size=(160, 90)), key)
    spans = []
    for key in keys:
        job = h.wait(h.job_for(key).id)
        assert job.state == JobState.SUCCEEDED, job.error_message
        manifest = json.loads(h.runtime.store.get_bytes(f"outputs/{job.id}/manifest.json"))
        starts = [c["started_at"] for c in manifest["calls"]]
        ends = [c["started_at"] + c["wall_seconds"] for c in manifest["calls"]]
        spans.append((min(starts), max(ends)))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.002, spans  # times are rounded to the millisecond
    slots = list((h.settings.data_dir / "scratch" / ".slots").iterdir())
    assert len(slots) == 2, slots


def test_duplicate_event_maps_to_one_job(harness: HarnessFactory, sample: SampleFactory) -> None:
    h = harness(workers=False)
    src = sample("basic", seconds=1, size=(160, 90))
    info = h.upload(src, "uploads/a.mp4")
    event = ObjectCreated(
        bucket=h.runtime.store.bucket,
        key="uploads/a.mp4",
        size=info.size,
        etag=info.etag,
        event_time=info.last_modified,
    )
    again = h.runtime.dispatcher.handle(event)
    assert again.outcome == "duplicate"
    h.upload(src, "uploads/a.mp4")  # same bytes, same key: same etag
    jobs = [j for j in h.runtime.jobs.list_jobs() if j.key == "uploads/a.mp4"]
    assert len(jobs) == 1
    outcomes = [e.outcome for e in h.runtime.jobs.events()]
    assert outcomes.count("created") == 1
    assert outcomes.count("duplicate") == 2


def test_key_outside_the_store_is_refused(harness: HarnessFactory, tmp_path: Path) -> None:
    h = harness(workers=False)
    f = tmp_path / "x.mp4"
    f.write_bytes(b"x")
    with pytest.raises(InvalidKey):
        h.upload(f, "uploads/../../etc/passwd")
    assert h.runtime.jobs.list_jobs() == []


def test_transient_failure_is_retried_then_succeeds(
    harness: HarnessFactory, sample: SampleFactory, toolchain: Toolchain
) -> None:
    runner = FaultyRunner(
        toolchain,
        when=lambda call, n: call.step == "encode" and n == 1,
        stderr="av_interleaved_write_frame(): Input/output error\n",
    )
    h = harness(runner=runner)
    h.upload(sample("basic", seconds=2, size=(320, 180)), "uploads/flaky.mp4")
    job = h.wait(h.job_for("uploads/flaky.mp4").id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    encodes = [s for s in h.runtime.jobs.steps(job.id) if s.name.startswith("encode:")]
    assert all(s.attempts == 2 for s in encodes)  # every chunk failed once, then succeeded
    failed = [a for a in h.runtime.jobs.attempts(job.id) if a.outcome == "retrying"]
    assert len(failed) == len(encodes)
    assert all("Input/output error" in (a.stderr or "") for a in failed)
    assert h.runtime.jobs.list_dead_letters() == []


def test_permanent_failure_dead_letters_then_replay_succeeds(
    harness: HarnessFactory, sample: SampleFactory, toolchain: Toolchain
) -> None:
    runner = FaultyRunner(
        toolchain,
        when=lambda call, n: call.step == "package",
        stderr="[mp4 @ 0x1] Unknown encoder 'libx264'\nError selecting an encoder\n",
    )
    h = harness(runner=runner)
    h.upload(sample("basic", seconds=2, size=(320, 180)), "uploads/broken.mp4")
    job = h.wait(h.job_for("uploads/broken.mp4").id)
    assert job.state == JobState.FAILED
    assert job.failed_step == "package"
    [letter] = h.runtime.jobs.list_dead_letters()
    assert letter.job_id == job.id
    assert letter.step == "package"
    assert "Unknown encoder 'libx264'" in letter.stderr
    assert letter.argv
    assert letter.argv[0] == "ffmpeg"
    assert letter.exit_code == 1
    assert letter.toolchain_id == toolchain.id
    assert len(letter.attempts) == 1  # permanent: no retry
    assert runner.seen["package 180p"] == 1

    runner.enabled = False  # the cause is removed (a fixed toolchain)
    replay_dead_letter(h.runtime.jobs, h.runtime.dispatcher, letter.id)
    job = h.wait(job.id, states=frozenset({JobState.SUCCEEDED}))
    steps = {s.name: s for s in h.runtime.jobs.steps(job.id)}
    assert all(s.attempts == 1 for n, s in steps.items() if n.startswith("encode:")), (
        "finished steps are not redone on replay"
    )
    assert h.runtime.jobs.get_dead_letter(letter.id).state == "replayed"


def test_poison_input_dead_letters_after_max_attempts(
    harness: HarnessFactory, sample: SampleFactory, toolchain: Toolchain
) -> None:
    runner = FaultyRunner(
        toolchain,
        when=lambda call, n: call.step == "audio",
        stderr="something odd happened\n",
        exit_code=1,
    )
    h = harness(runner=runner, max_attempts=3)
    h.upload(sample("basic", seconds=1, size=(160, 90)), "uploads/poison.mp4")
    job = h.wait(h.job_for("uploads/poison.mp4").id)
    assert job.state == JobState.FAILED
    assert runner.seen["audio"] == 3
    [letter] = h.runtime.jobs.list_dead_letters()
    assert [a["outcome"] for a in letter.attempts] == ["retrying", "retrying", "failed"]


def test_corrupt_upload_fails_at_probe_with_one_line(
    harness: HarnessFactory, sample: SampleFactory
) -> None:
    h = harness()
    h.upload(sample("random_bytes"), "uploads/garbage.mp4")
    job = h.wait(h.job_for("uploads/garbage.mp4").id)
    assert job.state == JobState.FAILED
    assert job.failed_step == "probe"
    assert job.error_label
    assert job.error_label.startswith("input")
    assert job.error_message
    assert "\n" not in job.error_message
    # The worker goes on: a good job after the bad one completes.
    h.upload(sample("basic", seconds=1, size=(160, 90)), "uploads/good.mp4")
    assert h.wait(h.job_for("uploads/good.mp4").id).state == JobState.SUCCEEDED


def test_reaper_redrives_a_lost_message(harness: HarnessFactory, sample: SampleFactory) -> None:
    h = harness(workers=False)
    h.upload(sample("basic", seconds=1, size=(160, 90)), "uploads/lost.mp4")
    job = h.job_for("uploads/lost.mp4")
    h.runtime.broker.flush_all()  # the probe message is lost (a broker without persistence)
    reaper = Reaper(h.runtime.jobs, h.runtime.dispatcher, timedelta(seconds=0))
    assert reaper.sweep()["redriven"] == 1
    h.start_worker()
    assert h.wait(job.id).state == JobState.SUCCEEDED


def test_reaper_fails_jobs_past_their_max_age(
    harness: HarnessFactory, sample: SampleFactory
) -> None:
    h = harness(workers=False, job_max_age_seconds=0.05)
    h.upload(sample("basic", seconds=1, size=(160, 90)), "uploads/old.mp4")
    job = h.job_for("uploads/old.mp4")
    time.sleep(0.1)
    reaper = Reaper(h.runtime.jobs, h.runtime.dispatcher, timedelta(seconds=60))
    assert reaper.sweep()["expired"] == 1
    failed = h.runtime.jobs.get_job(job.id)
    assert failed.state == JobState.FAILED
    assert failed.error_label == "job_expired"
    assert failed.error_message is not None
    assert "max age" in failed.error_message
    [letter] = h.runtime.jobs.list_dead_letters()
    assert letter.job_id == job.id
    assert letter.worker  # every error names the host:pid that hit it


def _cli(h_settings_db: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {
        "VODFORGE_DATABASE_URL": h_settings_db,
        "VODFORGE_DATA_DIR": str(data),
    }
    return subprocess.run(
        [sys.executable, "-m", "vodforge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_jobs_and_dlq_commands(
    harness: HarnessFactory, sample: SampleFactory, tmp_path: Path
) -> None:
    h = harness()
    h.upload(sample("random_bytes"), "uploads/bad.mp4")
    job = h.wait(h.job_for("uploads/bad.mp4").id)
    db = h.settings.resolved_database_url

    listed = _cli(db, tmp_path, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job.id]

    shown = _cli(db, tmp_path, "jobs", "show", job.id)
    assert shown.returncode == 0, shown.stderr
    assert "error (input_not_media) in probe on " in " ".join(shown.stdout.split())

    letters = _cli(db, tmp_path, "dlq", "list", "--json")
    [letter] = json.loads(letters.stdout)
    assert letter["job_id"] == job.id
    assert letter["worker"]

    missing = _cli(db, tmp_path, "jobs", "show", "nope")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    no_broker = _cli(db, tmp_path / "elsewhere", "dlq", "replay", letter["id"])
    assert no_broker.returncode == 2
    assert "no broker" in no_broker.stderr


def test_janitor_sweeps_scratch_of_ended_and_unknown_jobs(
    harness: HarnessFactory, sample: SampleFactory, tmp_path: Path
) -> None:
    h = harness(workers=False)
    h.upload(sample("basic", seconds=1, size=(160, 90)), "uploads/live.mp4")
    live = h.job_for("uploads/live.mp4")
    scratch = tmp_path / "scratch"
    for name in (live.id, "0123456789abcdef01234567", "fresh-unknown"):
        (scratch / name).mkdir(parents=True)
        (scratch / name / "x").write_bytes(b"x")
    old = time.time() - 7200
    for name in (live.id, "0123456789abcdef01234567"):
        os.utime(scratch / name, (old, old))
    removed = sweep_scratch(scratch, h.runtime.jobs)
    # the queued job keeps its folder; the unknown old one goes; a fresh one stays (in use)
    assert removed == ["0123456789abcdef01234567"]
    assert (scratch / live.id).exists()
    assert (scratch / "fresh-unknown").exists()
    h.runtime.jobs.cancel_job(live.id)
    assert sweep_scratch(scratch, h.runtime.jobs) == [live.id]


def test_janitor_keeps_live_slots_and_removes_those_of_gone_processes(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = harness(workers=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    slots = tmp_path / "scratch" / ".slots"
    host = socket.gethostname()
    mine = slots / slot_name(host, os.getpid(), 1)
    gone_here = slots / slot_name(host, gone.pid, 1)
    other_host = slots / slot_name("elsewhere-7", gone.pid, 1)
    for slot in (mine, gone_here, other_host):
        (slot / "hls").mkdir(parents=True)
    old = time.time() - 7200
    os.utime(slots, (old, old))  # old as a folder: still never taken for a job's
    assert sweep_scratch(tmp_path / "scratch", h.runtime.jobs) == []
    assert (mine / "hls").is_dir()
    assert not gone_here.exists()
    assert other_host.exists()  # its pid means nothing here: its own janitor decides
