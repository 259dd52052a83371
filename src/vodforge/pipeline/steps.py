"""The steps of a job as functions of object keys to object keys.

Each step reads its inputs from the object store, works in a worker-local scratch folder, and
writes its outputs to deterministic keys with atomic puts, so running a step twice (at-least-once
delivery, a crash, a replay) writes the same bytes to the same keys. No step knows which executor
runs it (Dramatiq actor, a test calling it directly, a Lambda handler).

Keys of job ``J``::

    work/J/chunks/c0000_720p.mp4 …   encode steps
    work/J/audio.m4a                 audio
    work/J/previews/…                previews
    work/J/stage/{hls,mp4}/…         package
    work/J/calls/<step>.json         every step's ffmpeg calls (argv, exit, wall, CPU) → manifest
    outputs/J/{hls,mp4,previews}/…   verify publishes here, manifest.json last
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vodforge.media.plan import JobPlan, plan_job
from vodforge.media.presets import load_preset
from vodforge.media.probe import probe
from vodforge.media.progress import Progress
from vodforge.media.runner import CallRecord, FfmpegCall, FfmpegRunner
from vodforge.media.toolchain import sha256_file
from vodforge.pipeline import calls, dag
from vodforge.pipeline.gate import MediaGate
from vodforge.storage import LocalStore, ObjectStore, SupportsMoveIn

ProgressSink = Callable[[float], None]

#: In a step's recorded outputs: the keys it already published under ``outputs/J/``.
PUBLISHED = "published"


@dataclass(frozen=True)
class JobRef:
    """What a step needs to know about its job: carried in every message (keys, never bytes)."""

    job_id: str
    source_key: str
    preset: str
    #: Planning inputs, fixed when the job is created so every worker derives the same plan.
    chunk_seconds: float | None = None
    plan_workers: int = 2

    @property
    def work(self) -> str:
        return f"work/{self.job_id}/"

    @property
    def outputs(self) -> str:
        return f"outputs/{self.job_id}/"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "source_key": self.source_key,
            "preset": self.preset,
            "chunk_seconds": self.chunk_seconds,
            "plan_workers": self.plan_workers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRef:
        return cls(
            job_id=str(data["job_id"]),
            source_key=str(data["source_key"]),
            preset=str(data["preset"]),
            chunk_seconds=data.get("chunk_seconds"),
            plan_workers=int(data.get("plan_workers", 2)),
        )


@dataclass
class StepContext:
    """The seams a step runs against."""

    store: ObjectStore
    runner: FfmpegRunner
    scratch: Path
    toolchain_fingerprint: dict[str, Any]
    host: str
    #: Threads per ffmpeg (x264) in a chunk encode; chunks parallelise across workers instead.
    encode_threads: int = 1
    verify_workers: int = 1
    #: A permit of it is held by a long-lane step while it runs ffmpeg (one gate per worker
    #: process; see ``pipeline.gate``). None: no limit beyond the lane's threads.
    media_gate: MediaGate | None = None


@dataclass
class StepResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    records: list[CallRecord] = field(default_factory=list)

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for r in self.records)


@dataclass(frozen=True)
class ProbeResult:
    plan: JobPlan
    specs: list[dag.StepSpec]


# ---------------------------------------------------------------------------------------------
# helpers


def _scratch(ctx: StepContext, ref: JobRef) -> Path:
    path = ctx.scratch / ref.job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _workdir(ctx: StepContext, ref: JobRef, name: str) -> Iterator[Path]:
    """A fresh private folder for one step run, removed afterwards."""
    path = _scratch(ctx, ref) / f"{name.replace(':', '_')}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: Under the scratch folder: one reusable folder per worker thread (see ``thread_slot``).
SLOTS = ".slots"


def thread_slot(ctx: StepContext) -> Path:
    """This thread's reusable scratch folder for single-step transcodes: the job's directory
    tree is made once and kept (``transcode(in_place=True)``), since each new directory costs
    0.15-0.35 ms of system time on ext4. A thread runs one step at a time, so nothing else
    writes here; the janitor removes the slots of processes that are gone. Named by host too:
    a data dir shared between hosts must not give two of them one slot."""
    return ctx.scratch / SLOTS / slot_name(socket.gethostname(), os.getpid(), threading.get_ident())


def slot_name(host: str, pid: int, thread: int) -> str:
    return f"{host}-{pid}-{thread}"


def slot_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a slot folder's name, None if it is not one."""
    host, _, rest = name.rpartition("-")
    host, _, pid = host.rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() and rest.isdigit() else None


def source_path(ctx: StepContext, ref: JobRef) -> Path:
    """The source as a local file: in place for a local store, else downloaded once per worker."""
    local = ctx.store.local_path(ref.source_key)
    if local is not None:
        return local
    suffix = PurePosixPath(ref.source_key).suffix[:12]
    cached = _scratch(ctx, ref) / f"source{suffix}"
    if not cached.exists():
        ctx.store.get_file(ref.source_key, cached)
    return cached


def local_input(ctx: StepContext, ref: JobRef, key: str, into: Path) -> Path:
    local = ctx.store.local_path(key)
    if local is not None:
        return local
    dest = into / PurePosixPath(key).name
    ctx.store.get_file(key, dest)
    return dest


class _PlanCache:
    """The plans of this worker's recent jobs, bounded by size: a plan holds the source's
    keyframe list, so a two-hour film weighs thousands of times what a short clip does.

    Weight is counted in keyframes and chunks, and the least recently used plans go first when
    the budget is exceeded. A finished job's plan is dropped at once (``forget``), so in a
    burst the cache holds the plans of jobs still in flight: their later steps (queued behind
    every other job's probe) then find the plan instead of probing the source again."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._plans: OrderedDict[tuple[JobRef, str], tuple[JobPlan, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    @staticmethod
    def weight(plan: JobPlan) -> int:
        video = plan.info.video
        return 1 + len(plan.chunks.chunks) + (len(video.keyframes) if video else 0)

    def get(self, key: tuple[JobRef, str]) -> JobPlan | None:
        with self._lock:
            entry = self._plans.get(key)
            if entry is None:
                return None
            self._plans.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[JobRef, str], plan: JobPlan) -> None:
        weight = self.weight(plan)
        with self._lock:
            self._drop(key)
            self._plans[key] = (plan, weight)
            self._weight += weight
            while self._weight > self.budget and len(self._plans) > 1:
                _, (_, dropped) = self._plans.popitem(last=False)
                self._weight -= dropped

    def forget(self, key: tuple[JobRef, str]) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: tuple[JobRef, str]) -> None:
        """Remove ``key``'s plan and its weight, if cached (the caller holds the lock)."""
        old = self._plans.pop(key, None)
        if old is not None:
            self._weight -= old[1]

    def __len__(self) -> int:
        return len(self._plans)


#: ~100k keyframes and chunks: tens of MB at most, tens of thousands of short jobs.
_PLANS = _PlanCache(budget=100_000)


def load_plan(ctx: StepContext, ref: JobRef) -> JobPlan:
    """Probe and plan (pure and deterministic), so every worker derives the same plan. A worker
    process keeps the plans of its jobs in flight (``_PlanCache``): the steps of one job mostly
    land on the same process, and probing again (PyAV open + first-frame decode) would be most
    of a short step's cost."""
    key = (ref, ctx.store.bucket)
    cached = _PLANS.get(key)
    if cached is not None:
        return cached
    info = probe(source_path(ctx, ref))
    preset = load_preset(ref.preset)
    plan = plan_job(info, preset, workers=ref.plan_workers, chunk_seconds=ref.chunk_seconds)
    _PLANS.put(key, plan)
    return plan


def forget_plan(ctx: StepContext, ref: JobRef) -> None:
    """Drop a finished job's plan from this worker's cache."""
    _PLANS.forget((ref, ctx.store.bucket))


@contextmanager
def _media_turn(ctx: StepContext) -> Iterator[None]:
    """Hold one of the worker's encode turns (``StepContext.media_gate``), if it has any."""
    if ctx.media_gate is None:
        yield
        return
    with ctx.media_gate:
        yield


def _run(
    ctx: StepContext, call: FfmpegCall, result: StepResult, progress: ProgressSink | None
) -> None:
    def on_progress(p: Progress) -> None:
        if progress is not None and call.media_seconds > 0:
            progress(min(1.0, p.out_seconds / call.media_seconds))

    result.records.append(ctx.runner.run(call, on_progress))


def _save_calls(ctx: StepContext, ref: JobRef, step: str, result: StepResult) -> None:
    body = json.dumps([r.to_dict() for r in result.records], indent=1).encode()
    ctx.store.put_bytes(f"{ref.work}calls/{step.replace(':', '_')}.json", body)


def _put_tree(ctx: StepContext, root: Path, prefix: str) -> list[str]:
    keys = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(root).as_posix()
        ctx.store.put_file(key, path)
        keys.append(key)
    return keys


def _get_tree(ctx: StepContext, prefix: str, dest: Path) -> None:
    for obj in ctx.store.list(prefix):
        target = dest / obj.key.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        ctx.store.get_file(obj.key, target)


# ---------------------------------------------------------------------------------------------
# steps


def run_probe(ctx: StepContext, ref: JobRef) -> ProbeResult:
    plan = load_plan(ctx, ref)
    chunks = len(plan.chunks.chunks)
    specs = dag.job_steps(
        chunks=chunks,
        has_audio=plan.has_audio,
        has_previews=plan.previews is not None,
        single=chunks == 1,
    )
    return ProbeResult(plan, specs)


def run_encode(
    ctx: StepContext, ref: JobRef, chunk_index: int, progress: ProgressSink | None = None
) -> StepResult:
    plan = load_plan(ctx, ref)
    chunk = plan.chunks.chunks[chunk_index]
    result = StepResult()
    with _workdir(ctx, ref, dag.encode_step(chunk_index)) as work:
        outs = [work / calls.chunk_name(chunk.index, r.name) for r in plan.renditions]
        call = calls.chunk_call(
            plan, source_path(ctx, ref), chunk, outs, threads=ctx.encode_threads
        )
        with _media_turn(ctx):
            _run(ctx, call, result, progress)
        for out in outs:
            key = f"{ref.work}chunks/{out.name}"
            result.outputs[key] = ctx.store.put_file(key, out).etag
    _save_calls(ctx, ref, dag.encode_step(chunk_index), result)
    return result


def run_audio(ctx: StepContext, ref: JobRef, progress: ProgressSink | None = None) -> StepResult:
    plan = load_plan(ctx, ref)
    result = StepResult()
    with _workdir(ctx, ref, dag.AUDIO) as work:
        out = work / "audio.m4a"
        _run(ctx, calls.audio_call(plan, source_path(ctx, ref), out), result, progress)
        key = f"{ref.work}audio.m4a"
        result.outputs[key] = ctx.store.put_file(key, out).etag
    _save_calls(ctx, ref, dag.AUDIO, result)
    return result


def run_previews(ctx: StepContext, ref: JobRef, progress: ProgressSink | None = None) -> StepResult:
    plan = load_plan(ctx, ref)
    result = StepResult()
    with _workdir(ctx, ref, dag.PREVIEWS) as work:
        previews = work / "previews"
        previews.mkdir()
        for call in calls.preview_calls(plan, source_path(ctx, ref), previews):
            _run(ctx, call, result, progress)
        calls.write_sprite_vtt(plan, previews)
        for key in _put_tree(ctx, previews, f"{ref.work}previews/"):
            result.outputs[key] = True
        # The quick outputs go out now, not after the encodes: the API's synchronous upload
        # answers with them. Verify publishes the same bytes to the same keys again (and the
        # manifest, written last, still lists only verified outputs).
        result.outputs[PUBLISHED] = _put_tree(ctx, previews, f"{ref.outputs}previews/")
    _save_calls(ctx, ref, dag.PREVIEWS, result)
    return result


def run_package(ctx: StepContext, ref: JobRef, progress: ProgressSink | None = None) -> StepResult:
    plan = load_plan(ctx, ref)
    result = StepResult()
    with _workdir(ctx, ref, dag.PACKAGE) as work:
        inputs = work / "in"
        inputs.mkdir()
        chunk_files = {
            k: local_input(ctx, ref, f"{ref.work}chunks/{p.name}", inputs)
            for k, p in calls.chunk_files(plan, Path()).items()
        }
        audio = local_input(ctx, ref, f"{ref.work}audio.m4a", inputs) if plan.has_audio else None
        stage = work / "stage"
        stage.mkdir()
        with _media_turn(ctx):
            for call in calls.package_calls(plan, chunk_files, audio, stage, work):
                _run(ctx, call, result, progress)
        calls.write_master(stage, plan)
        ctx.store.delete_prefix(f"{ref.work}stage/")  # an earlier, interrupted run's leftovers
        result.outputs["stage"] = len(_put_tree(ctx, stage, f"{ref.work}stage/"))
    _save_calls(ctx, ref, dag.PACKAGE, result)
    return result


@dataclass(frozen=True)
class Published:
    manifest_key: str
    outputs: list[dict[str, Any]]
    manifest: dict[str, Any]
    #: The ffmpeg calls this run made (none when it found the job already published).
    records: list[CallRecord] = field(default_factory=list)


def _already_published(ctx: StepContext, ref: JobRef) -> Published | None:
    """A redelivered final step whose first run published (manifest.json is written last)."""
    key = f"{ref.outputs}manifest.json"
    if not ctx.store.exists(key):
        return None
    manifest = json.loads(ctx.store.get_bytes(key))
    return Published(key, list(manifest["outputs"]), manifest)


def _publish_outputs(ctx: StepContext, files: list[tuple[str, Path]]) -> list[str]:
    """Put a job's verified outputs into the store; returns their sha256s (in order), computed
    once, from the bytes stored. A LocalStore takes the files by rename (they are ours to give)
    and its etag is their sha256."""
    if isinstance(ctx.store, LocalStore):
        return [info.etag for info in ctx.store.move_in_many(files)]
    digests = []
    for key, path in files:
        digests.append(sha256_file(path))
        if isinstance(ctx.store, SupportsMoveIn):
            ctx.store.move_in(key, path)
        else:
            ctx.store.put_file(key, path)
    return digests


def _write_manifest(ctx: StepContext, ref: JobRef, manifest: dict[str, Any]) -> str:
    """manifest.json, written after every output it lists: its presence means they are all
    there. Compact JSON: json's C encoder only runs without indent."""
    key = f"{ref.outputs}manifest.json"
    ctx.store.put_bytes(
        key, json.dumps(manifest, separators=(",", ":")).encode(), content_type="application/json"
    )
    return key


class _StepProgress:
    """Transcode observer → one progress fraction for the step (weighted by media seconds)."""

    def __init__(self, sink: ProgressSink | None) -> None:
        self.sink = sink
        self.weights: dict[str, float] = {}
        self.done: dict[str, float] = {}

    def planned(self, plan: JobPlan, tasks: dict[str, float]) -> None:
        self.weights = dict(tasks)

    def progress(self, task: str, fraction: float) -> None:
        self.done[task] = fraction
        total = sum(self.weights.values()) or 1.0
        if self.sink is not None:
            self.sink(sum(w * self.done.get(t, 0.0) for t, w in self.weights.items()) / total)

    def finished(self, task: str, record: CallRecord | None) -> None:
        self.progress(task, 1.0)


def run_transcode(
    ctx: StepContext,
    ref: JobRef,
    *,
    source_etag: str,
    bucket: str,
    progress: ProgressSink | None = None,
) -> Published:
    """A whole single-chunk job in one step: the one-machine transcode (encode ∥ audio ∥
    previews, package, verify) in scratch, then publish under ``outputs/J/``, manifest last."""
    if (done := _already_published(ctx, ref)) is not None:
        return done
    from vodforge.pipeline.transcode import clear_files, transcode  # noqa: PLC0415 — imports calls

    plan = load_plan(ctx, ref)
    slot = thread_slot(ctx)
    # Left clean: a LocalStore took every output by rename and the intermediates were emptied,
    # so the slot needs no second walk (the next job's start walks it anyway).
    clean = False
    try:
        result = transcode(
            source_path(ctx, ref),
            slot,
            preset=plan.preset,
            runner=ctx.runner,
            toolchain_fingerprint=ctx.toolchain_fingerprint,
            workers=ref.plan_workers,
            chunk_seconds=ref.chunk_seconds,
            observer=_StepProgress(progress),
            plan=plan,
            write_manifest=False,
            in_place=True,
            media_gate=ctx.media_gate,
            verify_workers=ctx.verify_workers,
            # A LocalStore's etag is the sha256 of the object the job was made for.
            source_sha256=source_etag if isinstance(ctx.store, LocalStore) else None,
        )
        files = [
            (ref.outputs + str(entry["key"]), result.out_dir / str(entry["key"]))
            for entry in result.manifest["outputs"]
        ]
        digests = _publish_outputs(ctx, files)
        outputs = [
            {**entry, "key": out_key, "sha256": digest, "kind": str(entry["key"]).split("/")[0]}
            for entry, (out_key, _), digest in zip(
                result.manifest["outputs"], files, digests, strict=True
            )
        ]
        manifest = dict(result.manifest)
        manifest["source"] = {
            **{k: v for k, v in manifest["source"].items() if k != "path"},
            "bucket": bucket,
            "key": ref.source_key,
            "etag": source_etag,
        }
        manifest |= {"job_id": ref.job_id, "host": ctx.host, "outputs": outputs}
        key = _write_manifest(ctx, ref, manifest)
        clean = isinstance(ctx.store, LocalStore)
    finally:
        if not clean:
            clear_files(slot)  # what a store that copies (S3) or a failure left behind
    # The job's only step after the probe: its scratch folder goes now, not at the janitor's
    # next sweep an hour later (a burst left one empty folder per job behind).
    shutil.rmtree(ctx.scratch / ref.job_id, ignore_errors=True)
    return Published(key, outputs, manifest, result.records)


def run_verify(ctx: StepContext, ref: JobRef, *, source_etag: str, bucket: str) -> Published:
    """Verify the packaged outputs, then publish them under ``outputs/J/`` with manifest.json
    written last: its presence means everything it lists is there and verified."""
    # A redelivered verify whose first run published and cleaned up before it was recorded.
    staged = any(True for _ in ctx.store.list(f"{ref.work}stage/"))
    if not staged and (done := _already_published(ctx, ref)) is not None:
        return done
    from vodforge.pipeline.transcode import output_files  # noqa: PLC0415 — imports calls

    plan = load_plan(ctx, ref)
    with _workdir(ctx, ref, dag.VERIFY) as work:
        final = work / "final"
        _get_tree(ctx, f"{ref.work}stage/", final)
        _get_tree(ctx, f"{ref.work}previews/", final / "previews")
        report = calls.verify_stage(final, plan, max_workers=ctx.verify_workers)
        report.raise_for_failures()

        records: list[dict[str, Any]] = []
        for obj in ctx.store.list(f"{ref.work}calls/"):
            records.extend(json.loads(ctx.store.get_bytes(obj.key)))
        manifest = calls.manifest_head(
            {"bucket": bucket, "key": ref.source_key, "etag": source_etag},
            plan,
            report,
            host=ctx.host,
        )
        ctx.store.delete(f"{ref.outputs}manifest.json")
        files = []
        sizes = {}
        for rel, size in output_files(final):
            out_key = ref.outputs + rel
            files.append((out_key, final / rel))
            sizes[out_key] = size
        digests = _publish_outputs(ctx, files)
        outputs = [
            {
                "key": out_key,
                "size": sizes[out_key],
                "sha256": digest,
                "kind": out_key.removeprefix(ref.outputs).split("/")[0],
            }
            for (out_key, _), digest in zip(files, digests, strict=True)
        ]
        steps: dict[str, dict[str, float]] = {}
        for r in records:
            s = steps.setdefault(
                str(r["step"]), {"wall_seconds": 0.0, "cpu_seconds": 0.0, "calls": 0}
            )
            s["wall_seconds"] += float(r["wall_seconds"])
            s["cpu_seconds"] += float(r["cpu_seconds"])
            s["calls"] += 1
        manifest |= {
            "job_id": ref.job_id,
            "toolchain": ctx.toolchain_fingerprint,
            "calls": sorted(records, key=lambda r: (r["started_at"], r["label"])),
            "steps": steps,
            "totals": {"cpu_seconds": round(sum(s["cpu_seconds"] for s in steps.values()), 3)},
            "outputs": outputs,
        }
        key = _write_manifest(ctx, ref, manifest)
    ctx.store.delete_prefix(ref.work)
    shutil.rmtree(ctx.scratch / ref.job_id, ignore_errors=True)
    return Published(key, outputs, manifest)
