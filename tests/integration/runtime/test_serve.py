"""``vodforge serve`` as users run it — a real process tree (serve, embedded redis-server,
worker processes, ffmpeg) — killed and restarted in the middle of jobs. Nothing may be lost,
nothing may be left running, and the outputs must be byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import SampleFactory
from vodforge.jobs import JobState, JobStore, JobView, StepState

KILL_PRESET = Path(__file__).resolve().parents[2] / "presets" / "kill.toml"
#: ``*.mov`` uploads: the same, in one chunk (a small upload's probe chains its transcode).
KILL_ONE_PRESET = KILL_PRESET.with_name("kill-one.toml")


@dataclass
class Served:
    data: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def info(self) -> dict[str, object]:
        return dict(json.loads((self.data / "serve.json").read_text()))

    @property
    def port(self) -> int:
        return int(str(self.info["port"]))

    def workers(self) -> list[psutil.Process]:
        return [
            p
            for p in psutil.Process(self.proc.pid).children()
            if p.cmdline()[-2:] == ["vodforge", "worker"]
        ]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _env(data: Path) -> dict[str, str]:
    return dict(os.environ) | {
        "VODFORGE_DATA_DIR": str(data),
        "VODFORGE_TRIGGERS": json.dumps(
            [
                {"prefix": "uploads/", "suffix": ".mov", "preset": str(KILL_ONE_PRESET)},
                {"prefix": "uploads/", "preset": str(KILL_PRESET)},
            ]
        ),
        "VODFORGE_WORKER_PROCESSES": "1",
        "VODFORGE_LONG_CONCURRENCY": "2",
        "VODFORGE_BROKER_HEARTBEAT_TIMEOUT_MS": "2000",
        "VODFORGE_STALE_STEP_SECONDS": "6",
        "VODFORGE_REAPER_INTERVAL_SECONDS": "0.5",
        "VODFORGE_SHUTDOWN_GRACE_SECONDS": "0.5",
        "VODFORGE_WATCH_SETTLE_SECONDS": "0.2",
        "VODFORGE_SECRET_KEY": "serve-test-secret-0123456789abcdef",
    }


def start_serve(
    data: Path,
    log_name: str = "serve.log",
    *,
    args: tuple[str, ...] = (),
    workers: bool = True,
    env: dict[str, str] | None = None,
) -> Served:
    data.mkdir(parents=True, exist_ok=True)
    (data / "serve.json").unlink(missing_ok=True)
    log = data.parent / log_name
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vodforge", "serve", "--port", "0", *args],
            env=_env(data) | (env or {}),
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    served = Served(data, proc, log)
    deadline = time.monotonic() + 30
    while not (data / "serve.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    while workers and not served.workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    return served


@pytest.fixture
def serve_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "var"
    yield data
    # Whatever a failed test left behind, nothing of this data dir may outlive it.
    for p in psutil.process_iter(["cmdline"]):
        if str(data) in " ".join(p.info["cmdline"] or []):
            p.kill()


def jobs_of(data: Path) -> JobStore:
    return JobStore(f"sqlite:///{data / 'vodforge.db'}")


def upload(data: Path, src: Path, name: str) -> None:
    """The watch folder: copy under a temporary name, then rename (as a careful uploader does)."""
    incoming = data / "uploads" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / f".{name}.part"
    shutil.copyfile(src, tmp)
    tmp.rename(incoming / name)


def wait_for(
    data: Path, key: str, *, until: str, timeout: float = 90.0, served: Served | None = None
) -> JobView:
    """Poll the job store until the job for ``key`` reaches ``until`` (a job state, or
    ``encoding``: some encode step, or a one-chunk job's transcode, is running)."""
    deadline = time.monotonic() + timeout
    with jobs_of(data) as store:
        while time.monotonic() < deadline:
            for job in store.list_jobs(limit=100):
                if job.key != key:
                    continue
                if until == "encoding":
                    if any(
                        (s.name.startswith("encode:") or s.name == "transcode")
                        and s.state == StepState.RUNNING
                        for s in store.steps(job.id)
                    ):
                        return job
                elif job.state == JobState(until):
                    return job
                elif job.state == JobState.FAILED:
                    raise AssertionError(f"job failed: {job.error_message}")
            time.sleep(0.05)
    log = served.log.read_text()[-4000:] if served else ""
    raise AssertionError(f"{key} never reached {until}\n{log}")


def output_hashes(data: Path, job_id: str) -> dict[str, str]:
    manifest = json.loads((data / "store" / "outputs" / job_id / "manifest.json").read_text())
    return {o["key"].split("/", 2)[2]: o["sha256"] for o in manifest["outputs"]}


def leftovers(data: Path) -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(data) in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmd[:200])
    return found


def test_serve_answers_health_readiness_and_metrics(serve_dir: Path, sample: SampleFactory) -> None:
    served = start_serve(serve_dir)
    try:
        base = f"http://127.0.0.1:{served.port}"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        upload(serve_dir, sample("basic", seconds=1, size=(160, 90)), "hello.mp4")
        wait_for(serve_dir, "uploads/hello.mp4", until="succeeded", served=served)
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200, ready.text
        metrics = httpx.get(f"{base}/metrics").text
        for name in (
            'vodforge_jobs{state="succeeded"} 1.0',
            "vodforge_queue_depth{lane=",
            "vodforge_dispatch_latency_seconds_count",
            'vodforge_ffmpeg_invocations_total{exit_code="0",step="encode"',
            "vodforge_step_seconds_bucket",
            'vodforge_events_total{outcome="created"}',
        ):
            assert name in metrics, name
    finally:
        assert served.stop() == 0
    assert leftovers(serve_dir) == []


@pytest.mark.parametrize(
    "suffix",
    [
        ".mp4",  # chunk encodes on the long lane, each its own message
        ".mov",  # one chunk, chained: the transcode runs in its probe's message
    ],
)
def test_sigkill_worker_mid_encode_loses_nothing(
    serve_dir: Path, sample: SampleFactory, suffix: str
) -> None:
    src = sample("hd_audio", seconds=4, size=(640, 360))
    chain = {"VODFORGE_CHAIN_UPLOAD_BYTES": str(16 << 20)} if suffix == ".mov" else {}
    served = start_serve(serve_dir, env=chain)
    try:
        upload(serve_dir, src, f"victim{suffix}")
        victim = wait_for(serve_dir, f"uploads/victim{suffix}", until="encoding", served=served)
        [worker] = served.workers()
        deadline = time.monotonic() + 10
        while not (ffmpegs := [c for c in worker.children() if "ffmpeg" in c.name()]):
            assert time.monotonic() < deadline, "no encode started"
            time.sleep(0.01)
        worker.kill()  # SIGKILL, mid-encode
        worker.wait(10)
        # The killed worker's ffmpeg dies with it (PR_SET_PDEATHSIG), no orphan encodes on.
        _, alive = psutil.wait_procs(ffmpegs, timeout=5)
        assert alive == []
        done = wait_for(serve_dir, f"uploads/victim{suffix}", until="succeeded", served=served)
        assert done.id == victim.id

        upload(serve_dir, src, f"reference{suffix}")  # the same bytes, never interrupted
        ref = wait_for(serve_dir, f"uploads/reference{suffix}", until="succeeded", served=served)
        with jobs_of(serve_dir) as store:
            attempts = store.attempts(victim.id)
            steps = {s.name for s in store.steps(victim.id)}
        assert any(a.outcome == "abandoned" for a in attempts), "the killed attempt is on record"
        assert ("transcode" in steps) is (suffix == ".mov")
    finally:
        assert served.stop() == 0
    assert output_hashes(serve_dir, victim.id) == output_hashes(serve_dir, ref.id)
    assert leftovers(serve_dir) == []


def test_restart_serve_mid_job_resumes(serve_dir: Path, sample: SampleFactory) -> None:
    src = sample("hd_audio", seconds=4, size=(640, 360))
    served = start_serve(serve_dir)
    upload(serve_dir, src, "interrupted.mp4")
    job = wait_for(serve_dir, "uploads/interrupted.mp4", until="encoding", served=served)
    assert served.stop(signal.SIGTERM) == 0  # Ctrl-C in the middle of the job
    assert leftovers(serve_dir) == [], "serve left processes behind"
    with jobs_of(serve_dir) as store:
        assert store.get_job(job.id).state == JobState.RUNNING

    served = start_serve(serve_dir, "serve2.log")
    try:
        done = wait_for(serve_dir, "uploads/interrupted.mp4", until="succeeded", served=served)
        upload(serve_dir, src, "reference.mp4")
        ref = wait_for(serve_dir, "uploads/reference.mp4", until="succeeded", served=served)
    finally:
        assert served.stop() == 0
    assert done.id == job.id
    assert output_hashes(serve_dir, job.id) == output_hashes(serve_dir, ref.id)
    assert leftovers(serve_dir) == []


def test_serve_no_workers_runs_the_api_alone(serve_dir: Path) -> None:
    """``serve --no-workers`` (the API host of a scaled-out setup): HTTP answers, no worker
    process is started, and readiness does not depend on one."""
    served = start_serve(serve_dir, args=("--no-workers",), workers=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
        assert served.workers() == []
    finally:
        assert served.stop() == 0


def _serve_once(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``vodforge serve ARGS`` expected to refuse at once: its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "vodforge", "serve", *args],
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_contradicting_worker_options(serve_dir: Path) -> None:
    out = _serve_once(serve_dir, "--no-workers", "--workers", "2")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --no-workers and --workers N contradict"]
    assert "Traceback" not in out.stderr


def test_second_serve_on_the_same_data_dir_is_refused(serve_dir: Path) -> None:
    """Two serves on one data dir would share the broker socket, its AOF and the job store
    (the second one's broker start removed the first one's socket). The second is refused in
    one line, and the first keeps serving; once the first is gone (even SIGKILLed, the kernel
    drops the lock) a new one starts."""
    first = start_serve(serve_dir, args=("--no-workers",), workers=False)
    try:
        second = _serve_once(serve_dir, "--port", "0", "--no-workers")
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"another vodforge serve (pid {first.proc.pid}) is running on" in lines[0]
        assert "Traceback" not in second.stderr
        with httpx.Client(base_url=f"http://127.0.0.1:{first.port}", timeout=10) as client:
            assert client.get("/readyz").status_code == 200
    finally:
        first.stop(signal.SIGKILL)
    for p in psutil.process_iter(["cmdline"]):  # the embedded broker dies with its owner
        if str(serve_dir) in " ".join(p.info["cmdline"] or []):
            p.wait(10)
    again = start_serve(serve_dir, "serve-again.log", args=("--no-workers",), workers=False)
    assert again.stop() == 0
