"""One job on one machine: probe → plan → encode chunks ∥ audio ∥ previews → package → verify →
manifest → publish.

Chunks run in parallel on a thread pool (each thread drives one ffmpeg process). Everything is
written to a staging folder beside the output and moved into place only after verification
passed, so a failed or interrupted job never leaves half an output that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import av

from vodforge import __version__
from vodforge.errors import VodforgeError
from vodforge.media import argv as ffargv
from vodforge.media.hls import (
    AudioEntry,
    VariantEntry,
    codecs_from_avcc,
    render_master,
    segment_bitrates,
)
from vodforge.media.plan import JobPlan, plan_job
from vodforge.media.presets import Preset
from vodforge.media.previews import render_sprite_vtt
from vodforge.media.probe import probe
from vodforge.media.progress import Progress
from vodforge.media.runner import CallRecord, FfmpegCall, FfmpegRunner
from vodforge.media.toolchain import sha256_file
from vodforge.media.verify import VerificationReport, verify_outputs

AAC_LC = "mp4a.40.2"
PUBLISHED = ("hls", "mp4", "previews")


class TranscodeObserver(Protocol):
    """Progress sink (the CLI's Rich bars; the runtime's job store)."""

    def planned(self, plan: JobPlan, tasks: dict[str, float]) -> None: ...

    def progress(self, task: str, fraction: float) -> None: ...

    def finished(self, task: str, record: CallRecord | None) -> None: ...


class NullObserver:
    def planned(self, plan: JobPlan, tasks: dict[str, float]) -> None:
        pass

    def progress(self, task: str, fraction: float) -> None:
        pass

    def finished(self, task: str, record: CallRecord | None) -> None:
        pass


@dataclass
class StepTimes:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu
        self.calls += 1


@dataclass
class TranscodeResult:
    out_dir: Path
    plan: JobPlan
    manifest: dict[str, Any]
    verification: VerificationReport
    wall_seconds: float
    cpu_seconds: float
    records: list[CallRecord] = field(default_factory=list)

    @property
    def speed(self) -> float:
        return float(self.plan.chunks.duration) / self.wall_seconds if self.wall_seconds else 0.0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


class _Recorder:
    """Collects call records and per-step times from many threads."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.steps: dict[str, StepTimes] = {}
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)
            self.steps.setdefault(record.step, StepTimes()).add(
                record.wall_seconds, record.cpu_seconds
            )

    def add_inprocess(self, step: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.steps.setdefault(step, StepTimes()).add(wall, cpu)


def transcode(
    source: Path,
    out_dir: Path,
    *,
    preset: Preset,
    runner: FfmpegRunner,
    toolchain_fingerprint: dict[str, Any],
    workers: int | None = None,
    chunk_seconds: float | None = None,
    observer: TranscodeObserver | None = None,
) -> TranscodeResult:
    observer = observer or NullObserver()
    workers = workers or default_workers()
    wall0, cpu0 = time.monotonic(), time.process_time()
    recorder = _Recorder()

    t0, c0 = time.monotonic(), time.process_time()
    info = probe(source)
    plan = plan_job(info, preset, workers=workers, chunk_seconds=chunk_seconds)
    recorder.add_inprocess("probe", time.monotonic() - t0, time.process_time() - c0)

    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / f".vodforge-stage-{os.getpid()}-{threading.get_ident()}"
    work = stage / "_work"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        (work / "chunks").mkdir(parents=True)
        manifest, report = _run(source, stage, work, plan, runner, recorder, observer, workers)
        _publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    wall = time.monotonic() - wall0
    cpu = (time.process_time() - cpu0) + sum(r.cpu_seconds for r in recorder.records)
    return TranscodeResult(
        out_dir=out_dir,
        plan=plan,
        manifest=_finish_manifest(
            manifest, out_dir, toolchain_fingerprint, recorder, wall, cpu, source
        ),
        verification=report,
        wall_seconds=wall,
        cpu_seconds=cpu,
        records=list(recorder.records),
    )


def _call(
    runner: FfmpegRunner,
    recorder: _Recorder,
    observer: TranscodeObserver,
    call: FfmpegCall,
) -> CallRecord:
    def on_progress(p: Progress) -> None:
        if call.media_seconds > 0:
            observer.progress(call.label, min(1.0, p.out_seconds / call.media_seconds))

    record = runner.run(call, on_progress)
    recorder.add(record)
    observer.finished(call.label, record)
    return record


def _run(
    source: Path,
    stage: Path,
    work: Path,
    plan: JobPlan,
    runner: FfmpegRunner,
    recorder: _Recorder,
    observer: TranscodeObserver,
    workers: int,
) -> tuple[dict[str, Any], VerificationReport]:
    """Encode, package and verify into ``stage``; return the manifest so far and the report."""
    chunks = plan.chunks
    packaging = plan.preset.packaging
    threads = max(1, default_workers() // workers)
    chunk_files = {
        (ch.index, r.name): work / "chunks" / f"c{ch.index:04d}_{r.name}.mp4"
        for ch in chunks.chunks
        for r in plan.renditions
    }
    audio_file = work / "audio.m4a" if plan.has_audio else None

    calls: list[FfmpegCall] = []
    for ch in sorted(chunks.chunks, key=lambda c: -c.frames):  # longest first: less idle tail
        outs = [chunk_files[(ch.index, r.name)] for r in plan.renditions]
        calls.append(
            FfmpegCall(
                step="encode",
                label=f"chunk {ch.index + 1}/{len(chunks.chunks)}",
                argv=tuple(
                    ffargv.chunk_encode_argv(
                        source,
                        chunks,
                        ch,
                        plan.renditions,
                        outs,
                        filters=plan.filters,
                        spec=plan.preset.video,
                        threads=threads,
                    )
                ),
                media_seconds=float(chunks.chunk_duration(ch)),
            )
        )
    if audio_file is not None:
        calls.append(
            FfmpegCall(
                step="audio",
                label="audio",
                argv=tuple(
                    ffargv.audio_encode_argv(
                        source, plan.info, chunks, plan.preset.audio, audio_file
                    )
                ),
                media_seconds=float(chunks.duration),
            )
        )
    previews_dir = stage / "previews"
    if plan.previews is not None:
        previews_dir.mkdir(parents=True)
        calls.append(
            FfmpegCall(
                step="previews",
                label="previews",
                argv=tuple(ffargv.previews_argv(source, plan.previews, previews_dir)),
                media_seconds=float(chunks.duration),
            )
        )
        calls.append(
            FfmpegCall(
                step="previews",
                label="gif",
                argv=tuple(ffargv.gif_argv(source, plan.previews, previews_dir / "preview.gif")),
                media_seconds=float(plan.previews.gif_seconds),
            )
        )
    package_labels = [f"package {r.name}" for r in plan.renditions]
    if audio_file is not None and packaging.hls:
        package_labels.append("package audio")
    observer.planned(
        plan,
        {c.label: c.media_seconds for c in calls}
        | {label: float(chunks.duration) for label in package_labels},
    )

    # Chunks get one slot per worker; the short calls (audio, previews) get a lane of their own
    # so they overlap the encodes instead of queueing behind them.
    long_calls = [c for c in calls if c.step == "encode"]
    quick_calls = [c for c in calls if c.step != "encode"]
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vodforge-long") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="vodforge-quick") as quick,
    ):
        _gather(
            [quick.submit(_call, runner, recorder, observer, c) for c in quick_calls]
            + [pool.submit(_call, runner, recorder, observer, c) for c in long_calls]
        )

        if plan.previews is not None:
            (previews_dir / "sprite.vtt").write_text(
                render_sprite_vtt(plan.previews), encoding="utf-8"
            )

        package: list[FfmpegCall] = []
        for r in plan.renditions:
            script = work / f"{r.name}.ffconcat"
            script.write_text(
                ffargv.concat_list(
                    chunks, [chunk_files[(ch.index, r.name)] for ch in chunks.chunks]
                ),
                encoding="utf-8",
            )
            mp4_out = stage / "mp4" / f"{r.name}.mp4" if packaging.mp4 else None
            hls_out = stage / "hls" / r.name / "index.m3u8" if packaging.hls else None
            for target in (mp4_out, hls_out):
                if target is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
            package.append(
                FfmpegCall(
                    step="package",
                    label=f"package {r.name}",
                    argv=tuple(
                        ffargv.package_rung_argv(
                            script,
                            audio_file,
                            mp4_out=mp4_out,
                            hls_playlist=hls_out,
                            segment_seconds=chunks.segment_seconds,
                        )
                    ),
                    media_seconds=float(chunks.duration),
                )
            )
        if audio_file is not None and packaging.hls:
            audio_playlist = stage / "hls" / "audio" / "index.m3u8"
            audio_playlist.parent.mkdir(parents=True, exist_ok=True)
            package.append(
                FfmpegCall(
                    step="package",
                    label="package audio",
                    argv=tuple(
                        ffargv.package_audio_argv(
                            audio_file, audio_playlist, chunks.segment_seconds
                        )
                    ),
                    media_seconds=float(chunks.duration),
                )
            )
        _gather(pool.submit(_call, runner, recorder, observer, c) for c in package)

    if packaging.hls:
        _write_master(stage, plan)
    shutil.rmtree(work)

    t0, c0 = time.monotonic(), time.process_time()
    report = verify_outputs(
        stage,
        rungs=[r.name for r in plan.renditions],
        expected_frames=plan.expected_frames,
        frame_rate=chunks.rate,
        has_audio=plan.has_audio,
        hls=packaging.hls,
        mp4=packaging.mp4,
        max_workers=workers,
    )
    recorder.add_inprocess("verify", time.monotonic() - t0, time.process_time() - c0)
    observer.finished("verify", None)
    report.raise_for_failures()

    manifest = {
        "vodforge": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "source": {"path": str(source), **plan.info.summary()},
        "preset": plan.preset.model_dump(mode="json"),
        "plan": plan.to_dict(),
        "verification": report.to_dict(),
    }
    return manifest, report


def _gather(futures: Iterable[Future[CallRecord]]) -> list[CallRecord]:
    """Wait for all; re-raise the first failure (by submission order) after cancelling the rest."""
    pending = list(futures)
    done, _ = wait(pending, return_when="FIRST_EXCEPTION")
    if any(f.exception() for f in done):
        for f in pending:
            f.cancel()
        wait(pending)
        for f in pending:
            if not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
    return [f.result() for f in pending]


def _video_codecs(init_or_mp4: Path) -> str:
    with av.open(str(init_or_mp4)) as container:
        extradata = container.streams.video[0].codec_context.extradata
    if not extradata:
        raise VodforgeError(f"{init_or_mp4.name}: no avcC in the encoded stream")
    return codecs_from_avcc(bytes(extradata))


def _write_master(stage: Path, plan: JobPlan) -> None:
    hls = stage / "hls"
    audio = None
    if plan.has_audio:
        peak, avg = segment_bitrates(hls / "audio" / "index.m3u8")
        audio = AudioEntry(
            uri="audio/index.m3u8",
            codecs=AAC_LC,
            peak_bps=peak,
            average_bps=avg,
            channels=plan.preset.audio.channels,
        )
    variants = []
    for r in plan.renditions:
        playlist = hls / r.name / "index.m3u8"
        peak, avg = segment_bitrates(playlist)
        variants.append(
            VariantEntry(
                uri=f"{r.name}/index.m3u8",
                width=r.width,
                height=r.height,
                frame_rate=plan.chunks.rate,
                codecs=_video_codecs(playlist.parent / "init.mp4"),
                peak_bps=peak,
                average_bps=avg,
            )
        )
    (hls / "master.m3u8").write_text(render_master(variants, audio), encoding="utf-8")


def _publish(stage: Path, out_dir: Path) -> None:
    """Move verified outputs into place, replacing an earlier run's (whose manifest goes first:
    it must never describe outputs it did not see)."""
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for name in PUBLISHED:
        src = stage / name
        if not src.exists():
            continue
        dst = out_dir / name
        if dst.is_dir():
            old = out_dir / f".{name}.old-{os.getpid()}"
            dst.rename(old)
            src.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)


def _finish_manifest(
    manifest: dict[str, Any],
    out_dir: Path,
    toolchain_fingerprint: dict[str, Any],
    recorder: _Recorder,
    wall: float,
    cpu: float,
    source: Path,
) -> dict[str, Any]:
    """Add what is only known after publishing (output hashes, timings, every call's argv) and
    write manifest.json last, so its presence means the outputs beside it are complete."""
    outputs = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(out_dir).as_posix()
        if rel == "manifest.json" or rel.startswith("."):
            continue
        outputs.append({"key": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    manifest = dict(manifest)
    manifest["source"] = dict(manifest["source"], sha256=sha256_file(source))
    manifest["toolchain"] = toolchain_fingerprint
    manifest["calls"] = [
        r.to_dict() for r in sorted(recorder.records, key=lambda r: (r.started_at, r.label))
    ]
    manifest["steps"] = {
        name: {"wall_seconds": round(s.wall, 3), "cpu_seconds": round(s.cpu, 3), "calls": s.calls}
        for name, s in recorder.steps.items()
    }
    manifest["totals"] = {
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "speed_x_realtime": round(manifest["plan"]["duration"] / wall, 3) if wall else None,
    }
    manifest["outputs"] = outputs
    tmp = out_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, out_dir / "manifest.json")
    return manifest
