"""Benchmark: the embedded runtime — dispatch latency, and burst throughput against a plain pool.

Everything runs as ``vodforge serve`` would run it on one machine: the embedded redis-server
(``EmbeddedRedis``) as broker, SQLite (WAL) as job store, a LocalStore, and real
``python -m vodforge worker`` subprocesses (``--workers``, default 1 like serve) started with the
environment serve gives its workers (broker URL, data dir, database URL, triggers as JSON, lane
concurrencies — the long lane's ``--long`` encodes at once plus ``--finishing`` threads that
verify and publish meanwhile — parent pid) — not in-process worker threads. This process plays
serve's sender role: ``build_runtime(worker=False)`` with the store's object-created events going to
``Dispatcher.handle``, so ``store.put_file("uploads/…")`` is an upload that creates a job and
sends its probe step.

1. Dispatch latency, on an idle system: a tiny clip is uploaded under a new key, the job runs to
   the end, a short gap, the next one. Latency = the probe step's ``started_at`` (job store,
   written by the worker) minus the moment the event reached the dispatcher (our listener, right
   before ``Dispatcher.handle``); "upload → start" counts from just before the put (the
   LocalStore's write and fsyncs included). p50/p95/p99 against the bar (p50 ≤ 20 ms,
   p99 ≤ 100 ms).
2. Burst throughput: ``--jobs`` short clips (bench/presets/burst.toml: one 240p rung, poster,
   thumbnails, sprite, GIF, HLS + MP4) uploaded in a tight loop; wall = first upload → last job
   finished (job store), jobs/min. Then the baseline: the same ffmpeg commands — built per clip
   by the same planning code the steps use (``probe`` + ``plan_job`` + ``pipeline.calls``) into a
   scratch dir, and checked equal, path for path modulo directories, to the argv each job's
   manifest recorded — run by a plain thread pool of subprocesses (``--pool`` slots, default one
   per core), each clip's calls in dependency order (media calls, then packaging). The burst is
   split into ``--rounds`` (default 2) run runtime then plain, then plain then runtime, …: this
   machine's speed drifts by 10-25 % over minutes, and with one runtime phase followed by one
   plain phase that drift decided the ratio (0.79 to 0.93 over five runs); alternating cancels a
   linear drift. Totals are summed over the rounds; each round's ratio is printed too. The
   baseline clock covers only the ffmpeg runs (planning is timed separately), so the ratio
   charges the runtime with everything else: broker, job store, repeated probes, uploads to the
   store, verification and publishing (and the few files the steps write in Python — master
   playlist, sprite WebVTT — which the baseline skips).

Files: the run's data dir (``--data``) is fresh; a previous run's is renamed aside at the start
and deleted only at the end, after everything was measured. Deleting thousands of files makes
creating files nearby dearer for minutes on ext4 without a journal (the inode allocator skips
every inode freed in the last 60 s, 360 s while its table block is dirty, one lookup each):
an rmtree right before the burst made the runtime's file creation several times dearer, and
the runtime, which writes more files per clip (store, manifest, playlists), paid more of it.
A run started within 6 minutes of the previous one's cleanup says so. Between phases the bench
runs ``sync`` on no side's clock (``settle``): the pool never fsyncs its outputs, and the kernel
would otherwise write them back during the next runtime round.

CPU: the worker's own and its reaped children's (ffmpeg) from /proc, redis-server's from /proc,
this process's from getrusage; the pool's ffmpeg from ``os.wait4``. A benchmark reports; it
asserts no timings. It exits 1 only on a functional failure (a job failed, a baseline call
failed, the worker died, a timeout). Writes bench/out/runtime.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vodforge.jobs import JobState, JobView, StepView
from vodforge.media.plan import plan_job
from vodforge.media.presets import load_preset
from vodforge.media.probe import probe
from vodforge.media.runner import FfmpegCall
from vodforge.media.samples import make_sample
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.observability.logging import configure
from vodforge.pipeline import calls
from vodforge.runtime.app import Runtime, build_runtime
from vodforge.runtime.broker import EmbeddedRedis
from vodforge.settings import Settings, Trigger
from vodforge.storage import ObjectCreated

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PRESET = HERE / "presets" / "burst.toml"
DATA = OUT / "runtime-data"
#: When the last run deleted its data (see the module docstring).
CLEANUP_STAMP = OUT / ".runtime-cleanup"
#: How long a mass delete slows file creation on journal-less ext4 (RECENTCY_DIRTY).
CLEANUP_SHADOW_SECONDS = 360
#: The pid a worker started by serve must not outlive (see runtime.worker).
PARENT_ENV = "VODFORGE_PARENT_PID"
SECRET = "bench-runtime-secret-0123456789abcdef"
BAR_P50_MS = 20.0
BAR_P99_MS = 100.0
BAR_RATIO = 0.9
LAMBDA_CONTEXT = "AWS Lambda Python cold-start init alone is ~70-140 ms"
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
CLK_TCK = os.sysconf("SC_CLK_TCK")
console = Console()


class BenchError(Exception):
    """A functional failure: the benchmark cannot report numbers that mean anything."""


# ---------------------------------------------------------------------------------------------
# small helpers


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """n, mean, min, p50, p95, p99, max (linear interpolation between order statistics)."""
    data = sorted(values)
    if not data:
        return {"n": 0}

    def q(p: float) -> float:
        pos = p / 100 * (len(data) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(data) - 1)
        return data[lo] + (data[hi] - data[lo]) * (pos - lo)

    return {
        "n": len(data),
        "mean": sum(data) / len(data),
        "min": data[0],
        "p50": q(50),
        "p95": q(95),
        "p99": q(99),
        "max": data[-1],
    }


def file_creation_us(folder: Path, files: int = 200) -> float:
    """Mean CPU microseconds to create an empty file in ``folder`` (made here; the files stay
    until the data dir goes: deleting them would slow the very runs this measures)."""
    folder.mkdir(parents=True)
    started = time.process_time()
    for i in range(files):
        os.close(os.open(folder / f"f{i:04d}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    return 1e6 * (time.process_time() - started) / files


def settle() -> float:
    """``sync``: write back every dirty page now; returns the seconds it took.

    Called between phases, on no side's clock. The runtime fsyncs what it publishes; the pool
    leaves its outputs dirty, and the kernel writes them back within ~30 s, so with
    alternating rounds part of the pool's writeback landed in the next runtime round (small on
    this project's VM: the sync after a pool round takes ~0.05 s). The seconds are reported per
    side; the pool's own writeback is charged to no one (a plain pool does not make its
    outputs durable)."""
    started = time.monotonic()
    os.sync()
    return time.monotonic() - started


def set_aside(data: Path) -> None:
    """Rename a previous run's data dir out of the way (deleted by ``clean_up`` at the end)."""
    if data.exists():
        data.rename(data.with_name(f".{data.name}.old-{time.time_ns()}"))


def clean_up(data: Path) -> None:
    """Delete the run's data dir and any set aside, and note when (``seconds_since_cleanup``)."""
    for path in [data, *data.parent.glob(f".{data.name}.old-*")]:
        shutil.rmtree(path, ignore_errors=True)
    CLEANUP_STAMP.write_text(f"{time.time()}\n", encoding="utf-8")


def seconds_since_cleanup() -> float | None:
    try:
        return time.time() - float(CLEANUP_STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def parse_size(text: str) -> tuple[int, int]:
    """``320x240`` → (320, 240)."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class ProcCpu:
    """CPU seconds of a live process: its own threads, and the children it has reaped."""

    own: float
    children: float

    def __sub__(self, other: ProcCpu) -> ProcCpu:
        return ProcCpu(self.own - other.own, self.children - other.children)


def proc_cpu(pid: int) -> ProcCpu:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ProcCpu((utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK)


def clip(ffmpeg: Path, seconds: float, size: tuple[int, int]) -> Path:
    """A cached "basic" sample (H.264 + AAC, 30 fps, 2 s GOP); generated once."""
    path = OUT / f"clip_{seconds:g}s_{size[0]}x{size[1]}.mp4"
    if not path.is_file():
        console.print(f"generating {path.name} ...")
        make_sample("basic", path, ffmpeg=ffmpeg, seconds=seconds, size=size)
    return path


_DIR = re.compile(r"/(?:[^/\s',;]+/)+")


def normalized(argv: Iterable[str]) -> tuple[str, ...]:
    """An argv with every directory part of every path replaced: equal for the same command
    run in another scratch dir (file names, options and filter graphs must all match)."""
    return tuple(_DIR.sub("<dir>/", a) for a in argv)


# ---------------------------------------------------------------------------------------------
# the embedded system


@dataclass
class WorkerProcess:
    """One ``vodforge worker`` subprocess, as ``serve``'s supervisor starts it."""

    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu(self) -> ProcCpu:
        return proc_cpu(self.proc.pid)

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return 0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while "worker started" not in self.tail(1_000_000):
            if not self.alive():
                raise BenchError(f"worker exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"worker not ready after {timeout:g} s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                console.print("[yellow]worker did not stop in time; killing it[/yellow]")
                self.proc.kill()
                self.proc.wait()


@dataclass
class System:
    """Broker + sender runtime (dispatcher) + workers; ``close`` stops what was started."""

    settings: Settings
    data: Path
    toolchain: Toolchain
    redis: EmbeddedRedis | None = None
    runtime: Runtime | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    #: Per uploaded key: when our listener got the event, and the job it created.
    received: dict[str, float] = field(default_factory=dict)
    job_ids: dict[str, str] = field(default_factory=dict)

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    def check_workers(self) -> None:
        for w in self.workers:
            if not w.alive():
                raise BenchError(f"worker {w.proc.pid} died:\n{w.tail()}")

    def workers_cpu(self) -> ProcCpu:
        total = ProcCpu(0.0, 0.0)
        for w in self.workers:
            cpu = w.cpu()
            total = ProcCpu(total.own + cpu.own, total.children + cpu.children)
        return total

    def worker_warnings(self) -> int:
        lines = (line for w in self.workers for line in w.tail(50_000_000).splitlines())
        return sum(1 for line in lines if '"level": "warning"' in line)

    def start(self) -> None:
        self.redis = EmbeddedRedis(self.data / "broker")
        url = self.redis.start()
        self.runtime = build_runtime(
            self.settings, broker_url=url, worker=False, toolchain=self.toolchain
        )
        dispatcher = self.runtime.dispatcher

        def on_event(event: ObjectCreated) -> None:
            self.received[event.key] = time.time()
            result = dispatcher.handle(event)
            if result.job_id is None:
                raise BenchError(f"{event.key}: no job ({result.outcome})")
            self.job_ids[event.key] = result.job_id

        self.runtime.store.subscribe(on_event)
        s = self.settings
        env = dict(os.environ) | {
            "VODFORGE_BROKER_URL": url,
            "VODFORGE_DATA_DIR": str(self.data),
            "VODFORGE_DATABASE_URL": s.resolved_database_url,
            "VODFORGE_TRIGGERS": json.dumps([t.model_dump() for t in s.triggers]),
            "VODFORGE_QUICK_CONCURRENCY": str(s.quick_concurrency),
            "VODFORGE_LONG_CONCURRENCY": str(s.resolved_long_concurrency()),
            "VODFORGE_LONG_FINISHING_THREADS": str(s.long_finishing_threads),
            "VODFORGE_SECRET_KEY": SECRET,
            "VODFORGE_SHUTDOWN_GRACE_SECONDS": "10",
            PARENT_ENV: str(os.getpid()),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for i in range(max(1, s.worker_processes)):
            log = self.data / f"worker{i}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vodforge", "worker"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=fh,
                )
            self.workers.append(WorkerProcess(proc, log))
        for w in self.workers:
            w.wait_ready(timeout=120)

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            w.stop()
        if self.runtime is not None:
            self.runtime.close()
        if self.redis is not None:
            self.redis.stop()

    def redis_cpu(self) -> ProcCpu:
        assert self.redis is not None
        assert self.redis.proc is not None
        return proc_cpu(self.redis.proc.pid)

    def upload(self, key: str, path: Path) -> tuple[float, str]:
        """(time just before the put, job id)."""
        t_put = time.time()
        self.rt.store.put_file(key, path)
        return t_put, self.job_ids[key]

    def wait_job(self, job_id: str, timeout: float, interval: float = 0.01) -> JobView:
        deadline = time.monotonic() + timeout
        while True:
            job = self.rt.jobs.get_job(job_id)
            if job.state in TERMINAL:
                return job
            self.check_workers()
            if time.monotonic() > deadline:
                raise BenchError(f"job {job_id} still {job.state} after {timeout:g} s")
            time.sleep(interval)

    def steps(self, job_id: str) -> dict[str, StepView]:
        return {s.name: s for s in self.rt.jobs.steps(job_id)}


def describe_failure(system: System, job: JobView) -> str:
    return (
        f"job {job.id} ({job.key}) {job.state}: step {job.failed_step}: "
        f"{job.error_label}: {job.error_message}"
    )


# ---------------------------------------------------------------------------------------------
# 1. dispatch latency


def measure_latency(
    system: System, tiny: Path, events: int, gap: float, timeout: float
) -> dict[str, Any]:
    """Sequential on an idle system: upload, the job runs to the end, gap, next."""
    rows: list[dict[str, float]] = []
    for i in range(events):
        key = f"uploads/latency/{i:05d}.mp4"
        t_put, job_id = system.upload(key, tiny)
        t_returned = time.time()
        t_event = system.received[key]
        time.sleep(0.02)
        job = system.wait_job(job_id, timeout)
        if job.state != JobState.SUCCEEDED:
            raise BenchError(describe_failure(system, job))
        step = system.steps(job_id)["probe"]
        assert step.started_at is not None
        assert step.enqueued_at is not None
        started = step.started_at.timestamp()
        queued = step.enqueued_at.timestamp()
        finished = job.finished_at.timestamp() if job.finished_at else float("nan")
        rows.append(
            {
                "event_to_start_ms": 1000 * (started - t_event),
                "upload_to_start_ms": 1000 * (started - t_put),
                "store_put_ms": 1000 * (t_event - t_put),
                "event_to_queued_ms": 1000 * (queued - t_event),
                "queued_to_start_ms": 1000 * (started - queued),
                "dispatch_call_ms": 1000 * (t_returned - t_event),
                "job_seconds": finished - t_event,
            }
        )
        if (i + 1) % 25 == 0 or i + 1 == events:
            last = sorted(r["event_to_start_ms"] for r in rows)
            console.print(
                f"  latency {i + 1}/{events}: median so far {last[len(last) // 2]:.1f} ms"
            )
        time.sleep(gap)
    metrics = {name: percentiles(r[name] for r in rows) for name in rows[0]} if rows else {}
    return {"samples": rows, "stats": metrics}


# ---------------------------------------------------------------------------------------------
# 2. burst on the runtime


def run_burst(
    system: System, source: Path, jobs: int, timeout: float, *, prefix: str = ""
) -> dict[str, Any]:
    keys = [f"uploads/burst/{prefix}{i:05d}.mp4" for i in range(jobs)]
    before_counts = system.rt.jobs.count_by_state()
    worker0, redis0, self0 = system.workers_cpu(), system.redis_cpu(), self_cpu()
    load0 = loadavg()
    put_times: dict[str, float] = {}
    t_first = time.time()
    m0 = time.monotonic()
    for key in keys:
        put_times[key], _ = system.upload(key, source)
    submit_seconds = time.monotonic() - m0
    console.print(f"  submitted {jobs} uploads in {submit_seconds:.2f} s")

    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while True:
        counts = system.rt.jobs.count_by_state()
        delta = {s: counts[s] - before_counts[s] for s in JobState}
        if delta[JobState.FAILED] or delta[JobState.CANCELLED]:
            ended = [system.rt.jobs.get_job(system.job_ids[k]) for k in keys]
            failed = [j for j in ended if j.state in TERMINAL - {JobState.SUCCEEDED}]
            raise BenchError(
                f"{len(failed)} burst job(s) failed:\n"
                + "\n".join(describe_failure(system, j) for j in failed[:10])
            )
        if delta[JobState.SUCCEEDED] >= jobs:
            break
        system.check_workers()
        if time.monotonic() > deadline:
            raise BenchError(f"burst: {delta[JobState.SUCCEEDED]}/{jobs} done after {timeout:g} s")
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            console.print(f"  burst: {delta[JobState.SUCCEEDED]}/{jobs} succeeded")
        time.sleep(0.25)
    worker_cpu = system.workers_cpu() - worker0
    redis_cpu = system.redis_cpu() - redis0
    sender_cpu = self_cpu() - self0
    load1 = loadavg()

    views = {k: system.rt.jobs.get_job(system.job_ids[k]) for k in keys}
    finished = [v.finished_at.timestamp() for v in views.values() if v.finished_at]
    wall = max(finished) - t_first

    # Per job and per step, from the job store; ffmpeg calls from the manifests.
    under_load: list[float] = []
    job_seconds: list[float] = []
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    ffmpeg_wall: dict[str, list[float]] = {}
    retries = 0
    ffmpeg_cpu = 0.0
    call_cpu: dict[str, list[float]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for key, job in views.items():
        steps = system.steps(job.id)
        probe_step = steps["probe"]
        assert probe_step.started_at is not None
        under_load.append(1000 * (probe_step.started_at.timestamp() - put_times[key]))
        if job.finished_at is not None:
            job_seconds.append(job.finished_at.timestamp() - put_times[key])
        for name, s in steps.items():
            kind = name.split(":", 1)[0]
            retries += max(0, s.attempts - 1)
            if s.enqueued_at and s.started_at:
                waits.setdefault(kind, []).append(
                    1000 * (s.started_at - s.enqueued_at).total_seconds()
                )
            if s.started_at and s.finished_at:
                runs.setdefault(kind, []).append(
                    1000 * (s.finished_at - s.started_at).total_seconds()
                )
        manifest = json.loads(system.rt.store.get_bytes(f"outputs/{job.id}/manifest.json"))
        manifests[key] = manifest
        # The calls' own rusage: the manifest's totals of a single-step transcode also count the
        # worker process's Python CPU while the step ran (other jobs' threads included).
        ffmpeg_cpu += sum(float(call["cpu_seconds"]) for call in manifest["calls"])
        for call in manifest["calls"]:
            call_cpu.setdefault(str(call["label"]), []).append(float(call["cpu_seconds"]))
        for kind, agg in manifest["steps"].items():
            ffmpeg_wall.setdefault(kind, []).append(1000 * float(agg["wall_seconds"]))
    steps_table = {
        kind: {
            "queue_wait_ms": percentiles(waits.get(kind, [])),
            "step_ms": percentiles(runs.get(kind, [])),
            "ffmpeg_ms_mean": (
                sum(ffmpeg_wall[kind]) / len(ffmpeg_wall[kind]) if kind in ffmpeg_wall else 0.0
            ),
        }
        for kind in sorted(set(waits) | set(runs), key=_step_order)
    }
    total_cpu = worker_cpu.own + worker_cpu.children + redis_cpu.own + sender_cpu
    samples = {
        "under_load": under_load,
        "job_seconds": job_seconds,
        "waits": waits,
        "runs": runs,
        "ffmpeg_wall": ffmpeg_wall,
    }
    return {
        "_samples": samples,
        "jobs": jobs,
        "submit_seconds": submit_seconds,
        "wall_seconds": wall,
        "jobs_per_min": 60 * jobs / wall,
        "cpu_seconds": {
            "total": total_cpu,
            "worker_python": worker_cpu.own,
            "worker_children_ffmpeg": worker_cpu.children,
            "ffmpeg_from_manifests": ffmpeg_cpu,
            "redis": redis_cpu.own,
            "sender_and_bench": sender_cpu,
        },
        "dispatch_under_burst_ms": percentiles(under_load),
        "job_seconds_from_upload": percentiles(job_seconds),
        "retries": retries,
        "steps": steps_table,
        "loadavg": {"before": load0, "after": load1},
        "call_cpu": call_cpu,
        "_manifests": manifests,
    }


def _merged_calls(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Mean CPU milliseconds of each ffmpeg call, by label, over all rounds."""
    merged: dict[str, list[float]] = {}
    for r in rounds:
        for label, values in r["call_cpu"].items():
            merged.setdefault(label, []).extend(values)
    return {label: 1000 * statistics.fmean(values) for label, values in merged.items()}


def _summed_cpu(rounds: list[dict[str, Any]]) -> dict[str, float]:
    cpu: dict[str, float] = {}
    for r in rounds:
        for k, v in r["cpu_seconds"].items():
            cpu[k] = cpu.get(k, 0.0) + v
    return cpu


def job_call_cpu_ms(burst: dict[str, Any], plain: dict[str, Any]) -> tuple[float, float]:
    """Mean CPU of all the ffmpeg calls of a job that both sides ran: (runtime, pool)."""
    ours, theirs = burst["call_cpu_ms"], plain["call_cpu_ms"]
    both = set(ours) & set(theirs)
    return sum(ours[label] for label in both), sum(theirs[label] for label in both)


def ffmpeg_cost_ratio(burst: dict[str, Any], plain: dict[str, Any]) -> float:
    """Mean CPU of the same ffmpeg calls, runtime over pool (the "all calls of a job" row)."""
    runtime, pool = job_call_cpu_ms(burst, plain)
    return runtime / pool if pool else 1.0


def ratio_at_parity(ratio: float, cpu: dict[str, float], ffmpeg_ratio: float) -> float:
    """The ratio had the runtime's ffmpeg calls cost what the pool's did, the rest unchanged.

    The same argv cost the two sides different CPU from run to run (0.87-1.09x, alternating
    rounds notwithstanding: this VM's speed moves by the minute), and that alone moved the
    measured ratio from 0.80 to 1.09. The runtime is CPU-bound in a burst (its cores are busy
    ~1.97 of 2 between the first and last job), so its wall scales with its CPU per job; with
    its ffmpeg at the pool's cost that CPU would be ``total - ffmpeg + ffmpeg / ffmpeg_ratio``.
    An estimate, printed beside the measured ratio (the bar's), never instead of it."""
    total, ffmpeg = cpu["total"], cpu["worker_children_ffmpeg"]
    at_parity = total - ffmpeg + ffmpeg / ffmpeg_ratio
    return ratio * total / at_parity if at_parity > 0 else ratio


def overhead_share(cpu: dict[str, float]) -> float:
    """The runtime's CPU that is not ffmpeg (worker Python, redis, the dispatching process) per
    second of its ffmpeg CPU: the figure the code can move. It held within 0.19-0.20 over runs
    whose measured ratio went from 0.80 to 1.06, because it does not depend on how fast the VM
    ran each side's ffmpeg or how busy it let the pool keep its cores."""
    ffmpeg = cpu["worker_children_ffmpeg"]
    return (cpu["total"] - ffmpeg) / ffmpeg if ffmpeg > 0 else float("nan")


def merge_bursts(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of the runtime's burst as one: totals summed, percentiles over all samples."""
    jobs = sum(r["jobs"] for r in rounds)
    wall = sum(r["wall_seconds"] for r in rounds)
    cpu = _summed_cpu(rounds)
    samples: dict[str, Any] = {"under_load": [], "job_seconds": [], "waits": {}, "runs": {}}
    ffmpeg_wall: dict[str, list[float]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for r in rounds:
        samples["under_load"] += r["_samples"]["under_load"]
        samples["job_seconds"] += r["_samples"]["job_seconds"]
        for name in ("waits", "runs"):
            for kind, values in r["_samples"][name].items():
                samples[name].setdefault(kind, []).extend(values)
        for kind, values in r["_samples"]["ffmpeg_wall"].items():
            ffmpeg_wall.setdefault(kind, []).extend(values)
        manifests |= r["_manifests"]
    waits, runs = samples["waits"], samples["runs"]
    return {
        "jobs": jobs,
        "rounds": len(rounds),
        "submit_seconds": sum(r["submit_seconds"] for r in rounds),
        "wall_seconds": wall,
        "jobs_per_min": 60 * jobs / wall,
        "cpu_seconds": cpu,
        "dispatch_under_burst_ms": percentiles(samples["under_load"]),
        "job_seconds_from_upload": percentiles(samples["job_seconds"]),
        "retries": sum(r["retries"] for r in rounds),
        "steps": {
            kind: {
                "queue_wait_ms": percentiles(waits.get(kind, [])),
                "step_ms": percentiles(runs.get(kind, [])),
                "ffmpeg_ms_mean": (
                    sum(ffmpeg_wall[kind]) / len(ffmpeg_wall[kind]) if kind in ffmpeg_wall else 0.0
                ),
            }
            for kind in sorted(set(waits) | set(runs), key=_step_order)
        },
        "loadavg": {
            "before": rounds[0]["loadavg"]["before"],
            "after": rounds[-1]["loadavg"]["after"],
        },
        "per_round_jobs_per_min": [r["jobs_per_min"] for r in rounds],
        "call_cpu_ms": _merged_calls(rounds),
        "_manifests": manifests,
    }


def merge_plain(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = sum(r["jobs"] for r in rounds)
    wall = sum(r["wall_seconds"] for r in rounds)
    cpu = _summed_cpu(rounds)
    return {
        "jobs": jobs,
        "slots": rounds[0]["slots"],
        "wall_seconds": wall,
        "jobs_per_min": 60 * jobs / wall,
        "cpu_seconds": cpu,
        "loadavg": {
            "before": rounds[0]["loadavg"]["before"],
            "after": rounds[-1]["loadavg"]["after"],
        },
        "per_round_jobs_per_min": [r["jobs_per_min"] for r in rounds],
        "call_cpu_ms": _merged_calls(rounds),
    }


def _step_order(kind: str) -> int:
    order = ["probe", "encode", "audio", "previews", "package", "verify"]
    return order.index(kind) if kind in order else len(order)


# ---------------------------------------------------------------------------------------------
# 2b. the same ffmpeg commands on a plain pool


@dataclass(frozen=True)
class ClipCalls:
    key: str
    media: list[FfmpegCall]
    package: list[FfmpegCall]


def plain_calls(key: str, source: Path, work: Path, preset: str, plan_workers: int) -> ClipCalls:
    """What the steps of one job run, from the same planning code, into ``work``."""
    plan = plan_job(probe(source), load_preset(preset), workers=plan_workers)
    chunks = work / "chunks"
    stage = work / "stage"
    previews = stage / "previews"
    for d in (chunks, stage, previews):
        d.mkdir(parents=True, exist_ok=True)
    files = calls.chunk_files(plan, chunks)
    media = [
        calls.chunk_call(
            plan, source, ch, [files[(ch.index, r.name)] for r in plan.renditions], threads=1
        )
        for ch in plan.chunks.chunks
    ]
    audio = work / "audio.m4a" if plan.has_audio else None
    if audio is not None:
        media.append(calls.audio_call(plan, source, audio))
    media += calls.preview_calls(plan, source, previews)
    package = calls.package_calls(plan, files, audio, stage, work)
    return ClipCalls(key, media, package)


def check_argv(
    ffmpeg: Path, clips: list[ClipCalls], manifests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Every job's recorded calls equal the baseline's for its clip, modulo directories."""
    mismatched: list[dict[str, Any]] = []
    for c in clips:
        ours = sorted(
            (call.label, normalized((str(ffmpeg), *call.argv))) for call in c.media + c.package
        )
        theirs = sorted((str(r["label"]), normalized(r["argv"])) for r in manifests[c.key]["calls"])
        if ours != theirs:
            mismatched.append(
                {
                    "key": c.key,
                    "only_plain": [list(x[1]) for x in ours if x not in theirs][:3],
                    "only_runtime": [list(x[1]) for x in theirs if x not in ours][:3],
                }
            )
    return {
        "clips": len(clips),
        "calls_per_clip": len(clips[0].media) + len(clips[0].package) if clips else 0,
        "identical": len(clips) - len(mismatched),
        "mismatched": mismatched[:5],
    }


@dataclass
class Pool:
    """A plain thread pool of ffmpeg subprocesses; remembers the live ones to kill on abort."""

    ffmpeg: Path
    slots: int
    live: set[subprocess.Popen[bytes]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    #: CPU seconds of every call, by its label (``chunk 1/1``, ``previews``, …).
    by_label: dict[str, list[float]] = field(default_factory=dict)

    def run_one(self, call: FfmpegCall) -> tuple[float, int, str]:
        """(CPU seconds, exit code, stderr tail)."""
        proc = subprocess.Popen(
            [str(self.ffmpeg), *call.argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with self.lock:
            self.live.add(proc)
        try:
            assert proc.stderr is not None
            err = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = code = os.waitstatus_to_exitcode(status)
        finally:
            if proc.stderr is not None:
                proc.stderr.close()
            with self.lock:
                self.live.discard(proc)
        return usage.ru_utime + usage.ru_stime, code, err.decode(errors="replace")[-1500:]

    def run_clip(self, clip: ClipCalls) -> tuple[float, str | None]:
        """Media calls, then packaging, one after the other: (CPU seconds, failure or None)."""
        cpu = 0.0
        for call in clip.media + clip.package:
            if self.stop.is_set():
                return cpu, "aborted"
            used, code, err = self.run_one(call)
            with self.lock:
                self.by_label.setdefault(call.label, []).append(used)
            cpu += used
            if code != 0:
                return cpu, f"{clip.key}: {call.label} exited {code}: {err}"
        return cpu, None

    def kill_all(self) -> None:
        self.stop.set()
        with self.lock:
            procs = list(self.live)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    def run(self, clips: list[ClipCalls]) -> dict[str, Any]:
        self0, load0 = self_cpu(), loadavg()
        self.by_label = {}
        executor = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="plain")
        m0 = time.monotonic()
        try:
            futures: list[Future[tuple[float, str | None]]] = [
                executor.submit(self.run_clip, c) for c in clips
            ]
            results = [f.result() for f in futures]
        except BaseException:
            self.kill_all()
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        wall = time.monotonic() - m0
        executor.shutdown()
        failures = [err for _, err in results if err]
        if failures:
            raise BenchError(
                f"{len(failures)} baseline clip(s) failed:\n" + "\n".join(failures[:5])
            )
        ffmpeg_cpu = sum(cpu for cpu, _ in results)
        own = self_cpu() - self0
        return {
            "jobs": len(clips),
            "slots": self.slots,
            "wall_seconds": wall,
            "jobs_per_min": 60 * len(clips) / wall,
            "cpu_seconds": {"total": ffmpeg_cpu + own, "ffmpeg": ffmpeg_cpu, "pool_python": own},
            "loadavg": {"before": load0, "after": loadavg()},
            "call_cpu": {label: list(v) for label, v in self.by_label.items()},
        }


# ---------------------------------------------------------------------------------------------
# report


def ms(value: float) -> str:
    return f"{value:.1f}"


def latency_table(lat: dict[str, Any], burst_dispatch: dict[str, float] | None) -> Table:
    stats = lat["stats"]
    table = Table(title=f"dispatch latency, idle system ({stats['event_to_start_ms']['n']} events)")
    for column in ("ms", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="right" if column != "ms" else "left")
    rows = [
        ("event → probe step started", "event_to_start_ms"),
        ("  event → probe marked queued (dispatcher)", "event_to_queued_ms"),
        ("  queued → started (broker + worker)", "queued_to_start_ms"),
        ("upload → probe started (incl. store put)", "upload_to_start_ms"),
        ("  store put (write + fsync) → event", "store_put_ms"),
        ("Dispatcher.handle call", "dispatch_call_ms"),
    ]
    for label, name in rows:
        s = stats[name]
        table.add_row(label, ms(s["p50"]), ms(s["p95"]), ms(s["p99"]), ms(s["max"]))
    if burst_dispatch:
        s = burst_dispatch
        table.add_row(
            "[dim]under the burst: upload → probe started[/dim]",
            ms(s["p50"]),
            ms(s["p95"]),
            ms(s["p99"]),
            ms(s["max"]),
        )
    return table


def throughput_table(burst: dict[str, Any], plain: dict[str, Any], threads: str) -> Table:
    table = Table(title=f"burst: {burst['jobs']} clips, preset burst (1 rung + previews)")
    for column in ("", "wall s", "jobs/min", "CPU s total", "ffmpeg CPU s", "CPU s/job"):
        table.add_column(column, justify="right" if column else "left")
    rc, pc = burst["cpu_seconds"], plain["cpu_seconds"]
    table.add_row(
        f"runtime ({threads})",
        f"{burst['wall_seconds']:.2f}",
        f"{burst['jobs_per_min']:.1f}",
        f"{rc['total']:.1f}",
        f"{rc['ffmpeg_from_manifests']:.1f}",
        f"{rc['total'] / burst['jobs']:.3f}",
    )
    table.add_row(
        f"plain pool ({plain['slots']} slots)",
        f"{plain['wall_seconds']:.2f}",
        f"{plain['jobs_per_min']:.1f}",
        f"{pc['total']:.1f}",
        f"{pc['ffmpeg']:.1f}",
        f"{pc['total'] / plain['jobs']:.3f}",
    )
    return table


def calls_table(burst: dict[str, Any], plain: dict[str, Any]) -> Table:
    """Mean CPU of each ffmpeg call on both sides: the same argv, run with different company
    (the runtime runs more processes at once than the pool's slots)."""
    table = Table(title="ffmpeg CPU per call (ms, mean): the same commands on both sides")
    for column in ("call", "runtime", "plain", "runtime/plain"):
        table.add_column(column, justify="right" if column != "call" else "left")
    ours, theirs = burst["call_cpu_ms"], plain["call_cpu_ms"]
    both = sorted(set(ours) & set(theirs))
    for label in both:
        a, b = ours[label], theirs[label]
        table.add_row(label, ms(a), ms(b), f"{a / b:.3f}" if b else "-")
    a, b = job_call_cpu_ms(burst, plain)
    table.add_row("all calls of a job", ms(a), ms(b), f"{a / b:.3f}" if b else "-")
    return table


def steps_table(burst: dict[str, Any]) -> Table:
    table = Table(title="runtime steps during the burst (job store; ffmpeg wall from manifests)")
    for column in ("step", "n", "queue wait p50", "queue wait p95", "step p50", "ffmpeg mean"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for kind, s in burst["steps"].items():
        w, r = s["queue_wait_ms"], s["step_ms"]
        table.add_row(
            kind,
            str(r.get("n", 0)),
            ms(w.get("p50", 0.0)),
            ms(w.get("p95", 0.0)),
            ms(r.get("p50", 0.0)),
            ms(s["ffmpeg_ms_mean"]),
        )
    return table


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=200, help="dispatch-latency events")
    ap.add_argument("--jobs", type=int, default=200, help="clips in the burst")
    ap.add_argument("--clip-seconds", type=float, default=2.0, help="burst clip length")
    ap.add_argument("--clip-size", type=parse_size, default=(320, 240))
    ap.add_argument("--gap-ms", type=float, default=30.0, help="idle gap between latency events")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (serve's default 1)")
    ap.add_argument("--quick", type=int, default=2, help="worker threads on the quick lane")
    ap.add_argument(
        "--long", type=int, default=None, help="long-lane encodes at once (default: cores)"
    )
    ap.add_argument(
        "--finishing",
        type=int,
        default=Settings.model_fields["long_finishing_threads"].default,
        help="long-lane threads beyond --long that verify and publish while others encode",
    )
    ap.add_argument("--pool", type=int, default=None, help="baseline slots (default: cores)")
    ap.add_argument("--timeout", type=float, default=None, help="burst timeout, seconds")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="split the burst into rounds run runtime/plain, plain/runtime, … (drift cancels)",
    )
    ap.add_argument("--data", type=Path, default=DATA, help=f"the run's data dir ({DATA})")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    args = ap.parse_args()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    cores = len(os.sched_getaffinity(0))
    long_threads = args.long or cores
    slots = args.pool or cores
    toolchain = load_toolchain()
    ffmpeg = toolchain.path
    OUT.mkdir(parents=True, exist_ok=True)
    tiny = clip(ffmpeg, 0.5, (64, 64))
    burst_clip = clip(ffmpeg, args.clip_seconds, args.clip_size)
    data = args.data.resolve()
    since_cleanup = seconds_since_cleanup()
    if since_cleanup is not None and since_cleanup < CLEANUP_SHADOW_SECONDS:
        console.print(
            f"[yellow]the previous run deleted its data {since_cleanup:.0f} s ago: creating "
            f"files is slower for up to {CLEANUP_SHADOW_SECONDS} s after a mass delete on "
            "ext4 without a journal; expect lower numbers[/yellow]"
        )
    set_aside(data)
    data.mkdir(parents=True)
    create_us = file_creation_us(data / ".fs-probe")
    console.print(
        f"creating a file here costs {create_us:.0f} µs of CPU (ext4 without a journal: ~20 in "
        "untouched folders, 100-900 beside a recent mass delete)"
    )

    # The sender's log lines (one per event, as serve writes them) go to a file, not the table.
    configure()
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "vodforge" and isinstance(handler, logging.StreamHandler):
            handler.setStream((data / "sender.log").open("a", encoding="utf-8"))

    settings = Settings(
        data_dir=data,
        triggers=[Trigger(prefix="uploads/", preset=str(PRESET))],
        quick_concurrency=args.quick,
        long_concurrency=long_threads,
        long_finishing_threads=args.finishing,
        worker_processes=args.workers,
        secret_key=SECRET,
    )
    threads = f"{args.workers}x quick {args.quick} + long {long_threads}+{args.finishing}"
    system = System(settings, data, toolchain)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": cores,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "ffmpeg": toolchain.version,
            "toolchain": toolchain.id,
            "loadavg_at_start": loadavg(),
            "seconds_since_previous_cleanup": since_cleanup,
            "file_creation_us": create_us,
        },
        "args": {
            **vars(args),
            "clip_size": list(args.clip_size),
            "long": long_threads,
            "data": str(data),
        },
        "runtime": {
            "workers": f"{args.workers} x `python -m vodforge worker` subprocess",
            "quick_threads": args.quick,
            "long_threads": long_threads + args.finishing,
            "long_encodes_at_once": long_threads,
            "broker": "embedded redis-server (unix socket, AOF everysec)",
            "job_store": "SQLite (WAL)",
            "store": "LocalStore",
            "preset": str(PRESET.relative_to(HERE.parent)),
        },
        "bars": {"p50_ms": BAR_P50_MS, "p99_ms": BAR_P99_MS, "ratio": BAR_RATIO},
        "context": LAMBDA_CONTEXT,
    }
    code = 0
    try:
        console.print(f"starting the embedded broker and a worker ({threads} threads) in {data}")
        system.start()
        console.print("warming up (3 jobs, not counted) ...")
        warm = []
        for i in range(3):
            key = f"uploads/warmup/{i}.mp4"
            _, job_id = system.upload(key, tiny)
            job = system.wait_job(job_id, 120)
            if job.state != JobState.SUCCEEDED:
                raise BenchError(describe_failure(system, job))
            started = system.steps(job_id)["probe"].started_at
            assert started is not None
            warm.append(1000 * (started.timestamp() - system.received[key]))
        report["warmup_event_to_start_ms"] = warm

        console.print(f"dispatch latency: {args.events} events, one at a time ...")
        lat = measure_latency(system, tiny, args.events, args.gap_ms / 1000, timeout=120)
        report["latency"] = lat

        timeout = args.timeout or 300 + 10 * args.jobs
        rounds = max(1, min(args.rounds, args.jobs))
        sizes = [args.jobs // rounds + (1 if r < args.jobs % rounds else 0) for r in range(rounds)]
        pool = Pool(ffmpeg, slots)
        plain_root = data / "plain"
        burst_rounds: list[dict[str, Any]] = []
        plain_rounds: list[dict[str, Any]] = []
        clips: list[ClipCalls] = []
        plan_seconds = 0.0
        #: Seconds ``sync`` took after each kind of phase (see ``settle``).
        writeback = {"setup": 0.0, "runtime": 0.0, "plain": 0.0}
        previous = "setup"
        # The machine's speed drifts over minutes (it is shared): alternate which side goes
        # first (runtime, plain | plain, runtime | …) so a slow phase hits both alike.
        for r, size in enumerate(sizes):
            prefix = f"r{r}-"
            t0 = time.monotonic()
            sources = plain_root / "sources"
            sources.mkdir(parents=True, exist_ok=True)
            round_clips = []
            for i in range(size):
                # The same bytes under the upload's file name (argv compare modulo dirs).
                source = sources / f"{prefix}{i:05d}.mp4"
                if not source.exists():
                    os.link(burst_clip, source)
                round_clips.append(
                    plain_calls(
                        f"uploads/burst/{prefix}{i:05d}.mp4",
                        source,
                        plain_root / f"{prefix}{i:05d}",
                        str(PRESET),
                        system.rt.dispatcher.plan_workers,
                    )
                )
            plan_seconds += time.monotonic() - t0
            clips += round_clips
            order = ("runtime", "plain") if r % 2 == 0 else ("plain", "runtime")
            for side in order:
                # What the previous phase left dirty goes to disk now, on no side's clock.
                writeback[previous] += settle()
                previous = side
                if side == "runtime":
                    console.print(f"round {r + 1}/{rounds}: runtime, burst of {size} clips ...")
                    burst_rounds.append(run_burst(system, burst_clip, size, timeout, prefix=prefix))
                else:
                    console.print(f"round {r + 1}/{rounds}: plain pool of {slots}, {size} clips")
                    plain_rounds.append(pool.run(round_clips))
            console.print(
                f"  round {r + 1}: runtime {burst_rounds[-1]['jobs_per_min']:.1f} jobs/min, "
                f"plain {plain_rounds[-1]['jobs_per_min']:.1f} jobs/min, ratio "
                f"{burst_rounds[-1]['jobs_per_min'] / plain_rounds[-1]['jobs_per_min']:.2f}"
            )
            per_job = {k: 1000 * v / size for k, v in burst_rounds[-1]["cpu_seconds"].items()}
            console.print(
                "  runtime CPU per job: "
                + ", ".join(f"{k} {v:.0f} ms" for k, v in per_job.items())
                + f"; plain pool {1000 * plain_rounds[-1]['cpu_seconds']['total'] / size:.0f} ms"
            )
        writeback[previous] += settle()
        burst = merge_bursts(burst_rounds)
        plain = merge_plain(plain_rounds)
        manifests = burst.pop("_manifests")
        worker_threads = sum(w.threads() for w in system.workers)
        argv_check = check_argv(ffmpeg, clips, manifests)
        console.print(
            f"  {argv_check['identical']}/{argv_check['clips']} clips: the same "
            f"{argv_check['calls_per_clip']} ffmpeg calls as the runtime ran (modulo dirs)"
        )
        plain["planning_seconds_not_counted"] = plan_seconds
        plain["argv_check"] = argv_check
        ratio = burst["jobs_per_min"] / plain["jobs_per_min"]
        cpu_ratio = burst["cpu_seconds"]["total"] / plain["cpu_seconds"]["total"]
        round_ratios = [
            r / p
            for r, p in zip(
                burst["per_round_jobs_per_min"], plain["per_round_jobs_per_min"], strict=True
            )
        ]
        # Cores kept busy: the ratio is about (plain CPU / runtime CPU) x (runtime busy / plain
        # busy); the two factors say whether a gap is overhead or idle time.
        busy = {
            "runtime": burst["cpu_seconds"]["total"] / burst["wall_seconds"],
            "plain": plain["cpu_seconds"]["total"] / plain["wall_seconds"],
        }
        burst["worker_os_threads"] = worker_threads
        ffmpeg_ratio = ffmpeg_cost_ratio(burst, plain)
        parity = ratio_at_parity(ratio, burst["cpu_seconds"], ffmpeg_ratio)
        overhead = overhead_share(burst["cpu_seconds"])
        report["burst"] = {
            "runtime": burst,
            "plain_pool": plain,
            "ratio": ratio,
            "per_round_ratios": round_ratios,
            "median_round_ratio": statistics.median(round_ratios),
            "cpu_ratio_runtime_over_plain": cpu_ratio,
            "cores_busy": busy,
            "ffmpeg_cost_runtime_over_plain": ffmpeg_ratio,
            "ratio_at_equal_ffmpeg_cost_estimate": parity,
            "non_ffmpeg_cpu_per_ffmpeg_cpu": overhead,
            "sync_seconds_after": writeback,
        }
        report["worker_log_warnings"] = system.worker_warnings()

        console.print(latency_table(lat, burst["dispatch_under_burst_ms"]))
        s = lat["stats"]["event_to_start_ms"]
        ok50 = "[green]meets[/green]" if s["p50"] <= BAR_P50_MS else "[red]misses[/red]"
        ok99 = "[green]meets[/green]" if s["p99"] <= BAR_P99_MS else "[red]misses[/red]"
        console.print(
            f"event → first step: p50 {s['p50']:.1f} ms ({ok50} ≤ {BAR_P50_MS:g} ms), "
            f"p99 {s['p99']:.1f} ms ({ok99} ≤ {BAR_P99_MS:g} ms); "
            f"idle job end to end p50 {lat['stats']['job_seconds']['p50']:.2f} s. "
            f"Context: {LAMBDA_CONTEXT}."
        )
        console.print(throughput_table(burst, plain, threads))
        console.print(steps_table(burst))
        console.print(calls_table(burst, plain))
        okr = "[green]meets[/green]" if ratio >= BAR_RATIO else "[red]misses[/red]"
        console.print(
            f"throughput ratio runtime/plain: {ratio:.3f} ({okr} ≥ {BAR_RATIO}); median of the "
            f"rounds' ratios {statistics.median(round_ratios):.3f} "
            f"({', '.join(f'{x:.2f}' for x in round_ratios)}); "
            f"CPU runtime/plain {cpu_ratio:.3f}; cores busy: runtime {busy['runtime']:.2f}, "
            f"plain {busy['plain']:.2f}; runtime CPU: "
            f"worker python {burst['cpu_seconds']['worker_python']:.1f} s, "
            f"ffmpeg {burst['cpu_seconds']['worker_children_ffmpeg']:.1f} s, "
            f"redis {burst['cpu_seconds']['redis']:.1f} s, "
            f"sender {burst['cpu_seconds']['sender_and_bench']:.1f} s; "
            f"step retries {burst['retries']}, worker warnings {report['worker_log_warnings']}; "
            f"sync between phases (no clock): after the runtime's rounds "
            f"{writeback['runtime']:.2f} s, after the pool's {writeback['plain']:.2f} s"
        )
        console.print(
            f"the same ffmpeg calls cost the runtime {ffmpeg_ratio:.3f}x what they cost the "
            f"pool; had they cost the same, the ratio would be about {parity:.3f} (an estimate "
            "that takes this VM's run-to-run speed out of the comparison; the bar is on the "
            "measured ratio)"
        )
        console.print(
            f"the runtime's CPU besides ffmpeg (worker Python, redis, dispatching) is "
            f"{overhead:.3f} of its ffmpeg CPU (the share the code can move; 0.9 needs it at "
            "0.11 with both sides' cores equally busy, ~0.15 at the usual 1.93 against 1.86)"
        )
        console.print(
            f"[dim]load average at start {report['machine']['loadavg_at_start']}, "
            f"now {loadavg()} — the machine may be shared[/dim]"
        )
    except BenchError as exc:
        console.print(f"[red]functional failure:[/red] {exc}")
        report["failure"] = str(exc)
        code = 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130
    finally:
        system.close()
        if args.keep or code:
            console.print(f"kept {data} (worker.log, sender.log, store, job store)")
        else:
            clean_up(data)
    report["machine"]["loadavg_at_end"] = loadavg()
    (OUT / "runtime.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {OUT / 'runtime.json'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
