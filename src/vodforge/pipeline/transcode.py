"""One job on one machine: probe → plan → encode chunks ∥ audio ∥ previews → package → verify →
manifest → publish.

Chunks run in parallel on a thread pool (each thread drives one ffmpeg process). Everything is
written to a staging folder beside the output and moved into place only after verification
passed, so a failed or interrupted job never leaves half an output that looks finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vodforge.media.chunks import Chunk
from vodforge.media.plan import JobPlan, plan_job
from vodforge.media.pool import BoundedLane, share
from vodforge.media.presets import Preset
from vodforge.media.probe import probe
from vodforge.media.progress import Progress
from vodforge.media.runner import CallRecord, FfmpegCall, FfmpegRunner
from vodforge.media.toolchain import sha256_file
from vodforge.media.verify import (
    Check,
    SegmentDecode,
    UpstreamDecode,
    VerificationReport,
    decode_segment,
)
from vodforge.pipeline import calls
from vodforge.pipeline.gate import MediaGate

T = TypeVar("T")

#: Under an in-place slot: the job's intermediates (chunks, audio, concat lists), never published.
WORK = "_work"


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
    plan: JobPlan | None = None,
    write_manifest: bool = True,
    in_place: bool = False,
    media_gate: MediaGate | None = None,
    source_sha256: str | None = None,
    verify_workers: int | None = None,
) -> TranscodeResult:
    """``plan``: already made from this source and preset (the runtime's probe step did).
    ``write_manifest=False``: the caller publishes elsewhere and writes its own manifest; the
    outputs in the returned manifest then carry no ``sha256`` (the publisher hashes them as it
    stores them, once).

    ``in_place``: ``out_dir`` is a private folder the caller reuses job after job (a runtime
    worker's per-thread slot) and publishes from itself: the job is staged right in it, and its
    directories are kept for the next job. A crashed run's files are removed first
    (``clear_files``; the ``_work`` intermediates are only emptied, see ``empty_files``); the
    caller clears what is left once it has published or failed.
    Creating a directory costs 0.15-0.35 ms of system time on ext4, and a job makes ten.

    ``media_gate``: a permit is taken for the job's ffmpeg phase (encodes, audio, previews,
    packaging), announced as soon as only the packaging's stream copies are left, and given back
    before the verification, so a worker thread beyond the gate's permits can encode the next
    job while this one is verified and published (``pipeline.gate``).

    ``verify_workers``: threads for the verification (default ``workers``); a runtime worker,
    whose other threads have work of their own, verifies on the step's thread alone.

    ``source_sha256``: the source's digest, when the caller already has it (a LocalStore's etag
    is the object's sha256): the manifest takes it instead of reading the whole source again —
    seconds of CPU for a film, on every job."""
    observer = observer or NullObserver()
    workers = workers or default_workers()
    wall0, cpu0 = time.monotonic(), time.process_time()
    recorder = _Recorder()

    if plan is None:
        t0, c0 = time.monotonic(), time.process_time()
        info = probe(source)
        plan = plan_job(info, preset, workers=workers, chunk_seconds=chunk_seconds)
        recorder.add_inprocess("probe", time.monotonic() - t0, time.process_time() - c0)

    with contextlib.ExitStack() as staged:
        if in_place:
            # On failure the caller clears the slot, as it does after publishing from it.
            clear_files(out_dir)
            stage = out_dir
            (stage / WORK).mkdir(parents=True, exist_ok=True)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            stage = out_dir / f".vodforge-stage-{os.getpid()}-{threading.get_ident()}"
            shutil.rmtree(stage, ignore_errors=True)
            staged.callback(shutil.rmtree, stage, ignore_errors=True)
            (stage / WORK).mkdir(parents=True)
        manifest, report = _run(
            source,
            stage,
            stage / WORK,
            plan,
            runner,
            recorder,
            observer,
            workers,
            keep_dirs=in_place,
            media_gate=media_gate,
            verify_workers=verify_workers or workers,
        )
        if not in_place:
            _publish(stage, out_dir)

    wall = time.monotonic() - wall0
    cpu = (time.process_time() - cpu0) + sum(r.cpu_seconds for r in recorder.records)
    return TranscodeResult(
        out_dir=out_dir,
        plan=plan,
        manifest=_finish_manifest(
            manifest,
            out_dir,
            toolchain_fingerprint,
            recorder,
            wall,
            cpu,
            source,
            write_manifest,
            source_sha256,
        ),
        verification=report,
        wall_seconds=wall,
        cpu_seconds=cpu,
        records=list(recorder.records),
    )


class _Gate:
    """A media gate's permit (or none), taken on creation and given back at most once."""

    def __init__(self, gate: MediaGate | None) -> None:
        self._gate = gate
        if gate is not None:
            gate.acquire()

    def release_soon(self) -> None:
        if self._gate is not None:
            self._gate.release_soon()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.release()
            self._gate = None


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


def _each_call(
    runner: FfmpegRunner,
    recorder: _Recorder,
    observer: TranscodeObserver,
    ffmpeg_calls: list[FfmpegCall],
    stop: threading.Event,
) -> list[CallRecord]:
    """The calls one after another; none starts once ``stop`` is set (another part of the job
    failed), as a cancelled task would not have."""
    records = []
    for call in ffmpeg_calls:
        if stop.is_set():
            raise CancelledError
        records.append(_call(runner, recorder, observer, call))
    return records


def _run(
    source: Path,
    stage: Path,
    work: Path,
    plan: JobPlan,
    runner: FfmpegRunner,
    recorder: _Recorder,
    observer: TranscodeObserver,
    workers: int,
    *,
    keep_dirs: bool = False,
    media_gate: MediaGate | None = None,
    verify_workers: int = 1,
) -> tuple[dict[str, Any], VerificationReport]:
    """Encode, package and verify into ``stage``; return the manifest so far and the report.
    ``keep_dirs``: empty ``work`` of its files but keep the folder; ``media_gate``: held while
    this job runs ffmpeg (see ``transcode``)."""
    threads = max(1, default_workers() // workers)
    chunk_files = calls.chunk_files(plan, work)
    audio_file = work / "audio.m4a" if plan.has_audio else None
    previews_dir = stage / "previews"
    if plan.previews is not None:
        previews_dir.mkdir(parents=True, exist_ok=True)

    # Longest chunk first: less idle tail when the pool drains.
    long_calls = [
        (
            calls.chunk_call(
                plan,
                source,
                ch,
                [chunk_files[(ch.index, r.name)] for r in plan.renditions],
                threads=threads,
            ),
            ch,
        )
        for ch in sorted(plan.chunks.chunks, key=lambda c: -c.frames)
    ]
    quick_calls = ([calls.audio_call(plan, source, audio_file)] if audio_file else []) + (
        calls.preview_calls(plan, source, previews_dir)
    )
    duration = float(plan.chunks.duration)
    observer.planned(
        plan,
        {c.label: c.media_seconds for c in [c for c, _ in long_calls] + quick_calls}
        | {label: duration for label in calls.package_labels(plan)},
    )

    # Chunks get one slot per worker; the short calls (audio, previews) get a lane of their own
    # so they overlap the encodes instead of queueing behind them. Each finished chunk is
    # decoded (strictly, every frame of every rung) on the verify lane while the others are
    # still encoding, which fills the idle core of the last chunks instead of adding a tail.
    # A job of one chunk has no other encode to overlap: its frames are decoded in the MP4 the
    # verification opens anyway (one demuxer open fewer per rung), or in the HLS segments.
    decode_chunks = len(plan.chunks.chunks) > 1
    decodes: dict[tuple[int, str], Future[SegmentDecode]] = {}
    # Bounded lanes over the process's shared pool: the concurrency of per-job executors,
    # without starting and joining their threads for every job (see media.pool).
    pool, quick, checks = BoundedLane(workers), BoundedLane(1), BoundedLane(workers)
    gate = _Gate(media_gate)
    try:

        def encode(call: FfmpegCall, chunk: Chunk) -> CallRecord:
            record = _call(runner, recorder, observer, call)
            if not decode_chunks:
                return record
            for r in plan.renditions:
                path = chunk_files[(chunk.index, r.name)]
                decodes[(chunk.index, r.name)] = checks.submit(_decode_chunk, path, recorder)
            return record

        # The short calls run one after another in one task (one hand-off, not one each); a
        # failure stops the rest, as cancelling them did.
        failed = threading.Event()
        quick_futures = (
            [quick.submit(_each_call, runner, recorder, observer, quick_calls, failed)]
            if quick_calls
            else []
        )
        try:
            share(pool, [functools.partial(encode, c, ch) for c, ch in long_calls])
        except BaseException as exc:
            failed.set()
            wait(quick_futures)
            for future in quick_futures:  # the short calls come first, as they were sent
                error = future.exception()
                if error is not None and not isinstance(error, CancelledError):
                    raise error from None
            raise exc
        _gather(quick_futures)
        calls.write_sprite_vtt(plan, previews_dir)
        package = calls.package_calls(plan, chunk_files, audio_file, stage, work)
        gate.release_soon()  # stream copies only from here: let the next job get ready
        share(pool, [functools.partial(_call, runner, recorder, observer, c) for c in package])
        # Every ffmpeg call of the job is done: the next job may encode while the last chunk
        # decodes finish and the outputs are verified.
        gate.release()
        upstream, chunk_checks = _upstream(plan, decodes) if decode_chunks else ({}, [])
    finally:
        for lane in (pool, quick, checks):  # encodes first: they submit the decodes
            lane.drain()
        gate.release()  # on failure only after its calls stopped

    calls.write_master(stage, plan)
    if keep_dirs:
        empty_files(work)
    else:
        shutil.rmtree(work)

    t0, c0 = time.monotonic(), time.process_time()
    report = calls.verify_stage(
        stage, plan, max_workers=verify_workers, upstream=upstream, decode_mp4=not decode_chunks
    )
    report.checks[:0] = chunk_checks
    recorder.add_inprocess("verify", time.monotonic() - t0, time.process_time() - c0)
    observer.finished("verify", None)
    report.raise_for_failures()
    head = calls.manifest_head({"path": str(source)}, plan, report, host=socket.gethostname())
    return head, report


def _entries(root: Path) -> list[os.DirEntry[str]]:
    """The entries of ``root``; a missing ``root`` is created (and has none)."""
    try:
        return list(os.scandir(root))
    except FileNotFoundError:
        root.mkdir(parents=True, exist_ok=True)
        return []


def clear_files(root: Path) -> None:
    """Remove every file under ``root`` (symlinks included, never followed), keep the folders;
    a missing ``root`` is created. Files under a ``_work`` folder are emptied instead (see
    ``empty_files``)."""
    for entry in _entries(root):
        if entry.is_dir(follow_symlinks=False):
            if entry.name == WORK:
                empty_files(Path(entry.path))
            else:
                clear_files(Path(entry.path))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def empty_files(root: Path) -> None:
    """Truncate every regular file in ``root`` to zero bytes, keeping it (and its inode):
    the next job writes the same intermediates by name, and ffmpeg's ``O_TRUNC`` open then
    reuses the inode instead of allocating one. Deleting and recreating them made every file
    created nearby dearer: ext4 without a journal skips each inode freed in the last 60 s
    (360 s while its table block is dirty) when it allocates one (``recently_deleted``), a
    scan that grows with the rate of deletes.
    Anything else (a symlink, a stray folder) is removed; a missing ``root`` is created."""
    for entry in _entries(root):
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_size:
                    os.truncate(entry.path, 0)
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


def _decode_chunk(path: Path, recorder: _Recorder) -> SegmentDecode:
    """Strictly decode every frame of one encoded chunk (see ``verify.decode_segment``)."""
    t0, c0 = time.monotonic(), time.thread_time()
    try:
        return decode_segment(path.read_bytes(), "video")
    finally:
        recorder.add_inprocess("verify", time.monotonic() - t0, time.thread_time() - c0)


def _upstream(
    plan: JobPlan, decodes: dict[tuple[int, str], Future[SegmentDecode]]
) -> tuple[dict[str, UpstreamDecode], list[Check]]:
    """Per rung: the chunks' decoded packets in order, and a check that every chunk decoded
    strictly into exactly its planned frames."""
    upstream: dict[str, UpstreamDecode] = {}
    checks: list[Check] = []
    for r in plan.renditions:
        digests: list[bytes] = []
        frames = 0
        bad: list[str] = []
        for ch in plan.chunks.chunks:
            try:
                result = decodes[(ch.index, r.name)].result()
            except Exception as exc:
                bad.append(f"chunk {ch.index}: {' '.join(str(exc).split())[:200]}")
                continue
            if result.frames != ch.frames:
                bad.append(f"chunk {ch.index}: {result.frames} frames, planned {ch.frames}")
            digests += result.payload_digests
            frames += result.frames
        checks.append(
            Check(
                f"chunks.{r.name}.decode",
                not bad,
                "; ".join(bad)
                if bad
                else f"{len(plan.chunks.chunks)} chunks decode strictly into {frames} frames",
            )
        )
        upstream[r.name] = UpstreamDecode(digests=digests, frames=frames)
    return upstream, checks


def _gather(futures: Iterable[Future[T]]) -> list[T]:
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


def _publish(stage: Path, out_dir: Path) -> None:
    """Move verified outputs into place, replacing an earlier run's (whose manifest goes first:
    it must never describe outputs it did not see)."""
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for name in calls.PUBLISHED:
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


def output_files(out_dir: Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size) of every regular file under ``out_dir`` but the manifest,
    hidden names and the ``_work`` intermediates, sorted by path (one ``scandir`` per folder:
    pathlib's rglob costs several times as much for the same walk)."""
    found: list[tuple[str, int]] = []

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if rel != WORK:
                        walk(entry.path, rel + "/")
                elif entry.is_file(follow_symlinks=False) and rel != "manifest.json":
                    found.append((rel, entry.stat(follow_symlinks=False).st_size))

    walk(str(out_dir), "")
    return sorted(found, key=lambda item: item[0].split("/"))  # by component, as Paths sort


def _finish_manifest(
    manifest: dict[str, Any],
    out_dir: Path,
    toolchain_fingerprint: dict[str, Any],
    recorder: _Recorder,
    wall: float,
    cpu: float,
    source: Path,
    write: bool = True,
    source_sha256: str | None = None,
) -> dict[str, Any]:
    """Add what is only known after publishing (output hashes, timings, every call's argv) and
    write manifest.json last, so its presence means the outputs beside it are complete."""
    outputs = []
    for rel, size in output_files(out_dir):
        entry: dict[str, Any] = {"key": rel, "size": size}
        if write:
            entry["sha256"] = sha256_file(out_dir / rel)
        outputs.append(entry)
    manifest = dict(manifest)
    manifest["source"] = dict(manifest["source"], sha256=source_sha256 or sha256_file(source))
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
    if not write:
        return manifest
    tmp = out_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, out_dir / "manifest.json")
    return manifest
