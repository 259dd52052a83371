"""End to end: transcode generated media covering the awkward cases of real uploads.

Every transcode verifies its own outputs before publishing (frame counts, durations, A/V offset,
every HLS segment decoding, playlists parsing, faststart); these tests add independent checks on
top: frame counts read back with PyAV, the ladder shape, the manifest, the previews.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import m3u8
import pytest

from tests.conftest import SampleFactory
from tests.faults import FaultyRunner
from vodforge.errors import VodforgeError
from vodforge.media.hls import parse_media_playlist
from vodforge.media.presets import load_preset
from vodforge.media.probe import probe
from vodforge.media.runner import (
    CallRecord,
    FfmpegCall,
    ProgressCallback,
    SubprocessRunner,
)
from vodforge.media.toolchain import Toolchain
from vodforge.pipeline import calls
from vodforge.pipeline.gate import MediaGate
from vodforge.pipeline.transcode import TranscodeResult, transcode

TINY = Path(__file__).parents[1] / "presets" / "tiny.toml"


def run(source: Path, out: Path, toolchain: Toolchain, preset: str = str(TINY)) -> TranscodeResult:
    return transcode(
        source,
        out,
        preset=load_preset(preset),
        runner=SubprocessRunner(toolchain),
        toolchain_fingerprint=toolchain.fingerprint(),
        workers=2,
    )


def video_packets(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size)


def check_common(result: TranscodeResult) -> dict[str, Any]:
    out = result.out_dir
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    assert manifest["verification"]["ok"] is True
    assert all(check["ok"] for check in manifest["verification"]["checks"])
    frames = result.plan.expected_frames
    for r in result.plan.renditions:
        assert video_packets(out / "mp4" / f"{r.name}.mp4") == frames
        playlist = m3u8.load(str(out / "hls" / r.name / "index.m3u8"))
        assert playlist.is_endlist
        assert len(playlist.segments) >= 1
    master = m3u8.load(str(out / "hls" / "master.m3u8"))
    assert [p.uri for p in master.playlists] == [
        f"{r.name}/index.m3u8" for r in result.plan.renditions
    ]
    for variant in master.playlists:
        info = variant.stream_info
        assert info.bandwidth > 0
        assert info.average_bandwidth > 0
        assert info.codecs.startswith("avc1.")
        assert info.resolution is not None
        assert info.frame_rate is not None
    previews = out / "previews"
    for name in ("poster.jpg", "sprite.jpg", "sprite.vtt", "preview.gif", "thumb_001.jpg"):
        assert (previews / name).stat().st_size > 0, name
    assert (previews / "sprite.vtt").read_text().startswith("WEBVTT")
    # manifest: toolchain, every call's argv, outputs with hashes, per-step timings
    assert manifest["toolchain"]["sha256"]
    assert manifest["calls"]
    assert all(call["exit_code"] == 0 and call["argv"] for call in manifest["calls"])
    keys = {o["key"] for o in manifest["outputs"]}
    assert "hls/master.m3u8" in keys
    assert all(len(o["sha256"]) == 64 for o in manifest["outputs"])
    assert {"encode", "package", "verify"} <= set(manifest["steps"])
    assert not list(out.glob(".vodforge-stage-*"))
    # Every frame of every rung strictly decoded exactly once: chunk by chunk after encoding,
    # or (a job of one chunk) in the MP4 the verification opens anyway.
    verification = manifest["verification"]
    assert verification["frames_decoded"] == frames * len(result.plan.renditions)
    where = "mp4.{}.decode" if len(result.plan.chunks.chunks) == 1 else "chunks.{}.decode"
    names = {check["name"] for check in verification["checks"]}
    assert {where.format(r.name) for r in result.plan.renditions} <= names
    return manifest


@pytest.mark.parametrize(
    "name",
    [
        "basic",
        "odd_size",
        "rotated",
        "vfr",
        "no_audio",
        "one_keyframe",
        "long_gop",
        "tenbit_422",
        "interlaced",
        "ntsc_5994",
    ],
)
def test_awkward_sources_are_frame_exact(
    name: str, sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    source = sample(name)
    info = probe(source)
    result = run(source, tmp_path / "out", toolchain)
    manifest = check_common(result)
    assert info.video is not None
    if not info.video.vfr:
        # CFR source, fps kept: every source frame becomes exactly one output frame
        assert result.plan.expected_frames == info.video.frame_count
    has_audio = info.audio is not None
    assert (result.out_dir / "hls" / "audio" / "index.m3u8").exists() is has_audio
    with av.open(str(result.out_dir / "mp4" / f"{result.plan.renditions[0].name}.mp4")) as mp4:
        assert len(mp4.streams.audio) == int(has_audio)
        video = mp4.streams.video[0]
        assert video.codec_context.pix_fmt == "yuv420p"  # 10-bit 4:2:2 comes out 8-bit 4:2:0
        display_w, display_h = info.video.display_size
        assert (video.codec_context.width > video.codec_context.height) == (display_w > display_h)
    assert manifest["plan"]["frames"] == result.plan.expected_frames


def test_sub_second_clip(sample: SampleFactory, toolchain: Toolchain, tmp_path: Path) -> None:
    """Shorter than half a segment: one frame-exact chunk, and playlists players accept."""
    source = sample("basic", seconds=0.4, size=(160, 90))
    result = run(source, tmp_path / "out", toolchain)
    check_common(result)
    for playlist in (result.out_dir / "hls").glob("*/index.m3u8"):
        target = parse_media_playlist(playlist.read_text())["target_duration"]
        assert target is not None
        assert target >= 1


def test_rotated_phone_video_comes_out_portrait(
    sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    result = run(sample("rotated"), tmp_path / "out", toolchain)
    top = result.plan.renditions[0]
    assert (top.width, top.height) == (180, 320)
    with av.open(str(result.out_dir / "previews" / "poster.jpg")) as poster:
        frame = next(poster.decode(video=0))
        assert frame.height > frame.width


def test_sparse_keyframes_still_parallelise(
    sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    result = run(sample("one_keyframe"), tmp_path / "out", toolchain)
    chunks = result.plan.chunks.chunks
    assert len(chunks) > 1
    assert {c.mode for c in chunks[1:]} == {"decode-cut"}
    assert result.plan.previews is not None
    assert result.plan.previews.mode == "frames"


def test_default_ladder_on_1080p_with_audio(
    sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    source = sample("hd_audio", seconds=2.0)
    result = run(source, tmp_path / "out", toolchain, preset="default")
    check_common(result)
    assert [r.name for r in result.plan.renditions] == ["1080p", "720p", "480p", "360p"]
    master = (result.out_dir / "hls" / "master.m3u8").read_text()
    assert "RESOLUTION=1920x1080" in master
    assert 'AUDIO="aud"' in master
    assert "mp4a.40.2" in master


def test_same_input_same_bytes(sample: SampleFactory, toolchain: Toolchain, tmp_path: Path) -> None:
    """A step that runs twice (retry, replay) must produce the same bytes."""
    source = sample("basic")
    first = check_common(run(source, tmp_path / "a", toolchain))
    second = check_common(run(source, tmp_path / "b", toolchain))
    digests = {o["key"]: o["sha256"] for o in first["outputs"]}
    assert digests == {o["key"]: o["sha256"] for o in second["outputs"]}


class _TrackingRunner:
    """The real runner, noting which job has ffmpeg running (shared across the jobs' runners)."""

    def __init__(self, inner: SubprocessRunner, job: str, book: _Book) -> None:
        self.inner, self.job, self.book = inner, job, book

    @property
    def toolchain_id(self) -> str:
        return self.inner.toolchain_id

    def run(self, call: FfmpegCall, on_progress: ProgressCallback | None = None) -> CallRecord:
        self.book.started(self.job)
        try:
            return self.inner.run(call, on_progress)
        finally:
            self.book.stopped(self.job)


class _Book:
    def __init__(self, jobs: list[str]) -> None:
        self.lock = threading.Lock()
        self.running = dict.fromkeys(jobs, 0)
        self.first_call = {job: threading.Event() for job in jobs}
        self.overlaps: list[str] = []

    def started(self, job: str) -> None:
        with self.lock:
            self.running[job] += 1
            others = [j for j, n in self.running.items() if n and j != job]
            if others:
                self.overlaps.append(f"{job} started a call while {others} ran one")
        self.first_call[job].set()

    def stopped(self, job: str) -> None:
        with self.lock:
            self.running[job] -= 1


def test_media_gate_keeps_ffmpeg_to_its_permits_and_frees_them_before_verifying(
    sample: SampleFactory, toolchain: Toolchain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs on a gate of one permit (a worker with one encode slot and a finishing thread):
    their ffmpeg calls never overlap, and the second job's ffmpeg starts while the first one is
    still verifying — which would wait forever if the gate were held through verification."""
    gate = MediaGate(1, threads=2)
    jobs = ["a", "b"]
    book = _Book(jobs)
    waited: dict[str, bool] = {}
    real_verify = calls.verify_stage

    def verify_stage(stage: Path, *args: Any, **kwargs: Any) -> Any:
        job = stage.parent.name
        (other,) = [j for j in jobs if j != job]
        waited[job] = book.first_call[other].wait(timeout=60)
        return real_verify(stage, *args, **kwargs)

    monkeypatch.setattr(calls, "verify_stage", verify_stage)
    source = sample("basic", seconds=1, size=(160, 90))

    def one(job: str) -> TranscodeResult:
        return transcode(
            source,
            tmp_path / job / "out",
            preset=load_preset(str(TINY)),
            runner=_TrackingRunner(SubprocessRunner(toolchain), job, book),
            toolchain_fingerprint=toolchain.fingerprint(),
            workers=1,
            in_place=True,
            media_gate=gate,
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, jobs))
    assert book.overlaps == []
    assert waited == {"a": True, "b": True}
    assert all(r.verification.ok for r in results)
    # Both steps are finishing (permit given back, not ended): the lane may hold two messages.
    assert gate.wanted() == 2


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vodforge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_cli_transcode_json(sample: SampleFactory, tmp_path: Path) -> None:
    proc = cli(
        "transcode",
        str(sample("basic")),
        "-o",
        str(tmp_path / "o"),
        "--preset",
        str(TINY),
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert data["verification_ok"] is True
    assert data["renditions"] == ["180p", "96p"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty", "file is empty"),
        ("random_bytes", "not a media file"),
        ("truncated", "truncated"),
        ("truncated_tail", "moov atom missing"),
        ("audio_only", "no video stream"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    name: str, message: str, sample: SampleFactory, tmp_path: Path
) -> None:
    proc = cli("transcode", str(sample(name)), "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_cli_missing_file_and_bad_preset(tmp_path: Path) -> None:
    proc = cli("transcode", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no such file" in proc.stderr
    proc = cli("transcode", "x.mp4", "-o", "o", "--preset", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown preset" in proc.stderr


def test_a_failed_encode_stops_the_short_calls_not_yet_started(
    sample: SampleFactory, toolchain: Toolchain, tmp_path: Path
) -> None:
    """The encode runs on the job's own thread while the short calls (audio, previews, GIF) run
    one after another on a helper: when the encode fails, the short calls not yet started never
    start, the encode's error is what the job fails with, and nothing is published."""
    runner = FaultyRunner(
        toolchain, when=lambda call, _: call.step == "encode", stderr="Unknown encoder 'libx264'"
    )
    with pytest.raises(VodforgeError, match="Unknown encoder"):
        transcode(
            sample("hd_audio", seconds=1, size=(320, 180)),
            tmp_path / "out",
            preset=load_preset(str(TINY)),
            runner=runner,
            toolchain_fingerprint=toolchain.fingerprint(),
            workers=2,
        )
    short = [step for step in runner.steps if step != "encode"]
    assert len(short) <= 1, runner.steps  # at most the one already running when it failed
    assert not (tmp_path / "out" / "manifest.json").exists()
