"""The ``vodforge`` command line (Typer + Rich).

Errors from the one tree become one line on stderr and an exit code; no traceback reaches a user:
2 bad input or configuration, 3 toolchain, 4 verification failed, 5 transient (worth a retry).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from vodforge import __version__
from vodforge.errors import (
    ConfigError,
    InputError,
    ToolchainError,
    TransientError,
    VerificationError,
    VodforgeError,
)
from vodforge.media.plan import JobPlan
from vodforge.media.runner import CallRecord, Deadline, SubprocessRunner
from vodforge.media.toolchain import Toolchain, load_toolchain
from vodforge.settings import Settings

app = typer.Typer(
    name="vodforge",
    help="Self-hostable video pipeline: chunked parallel ABR ladders with a pinned FFmpeg.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
toolchain_app = typer.Typer(help="The pinned ffmpeg: check and inspect it.", no_args_is_help=True)
presets_app = typer.Typer(help="Encoding presets.", no_args_is_help=True)
app.add_typer(toolchain_app, name="toolchain")
app.add_typer(presets_app, name="presets")
jobs_app = typer.Typer(help="Jobs in the job store.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(dlq_app, name="dlq")
keys_app = typer.Typer(help="API keys of the HTTP API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
rollout_app = typer.Typer(help="Canary rollouts of a new toolchain.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")

err = Console(stderr=True)
out = Console()

EXIT_CODES: tuple[tuple[type[VodforgeError], int], ...] = (
    (InputError, 2),
    (ConfigError, 2),
    (ToolchainError, 3),
    (VerificationError, 4),
    (TransientError, 5),
)

T = TypeVar("T")


def exit_code_for(exc: VodforgeError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def _guard(fn: Callable[[], T], *, as_json: bool = False) -> T:
    """Run a command body; a VodforgeError becomes one line and an exit code."""
    try:
        return fn()
    except VodforgeError as exc:
        code = exit_code_for(exc)
        if as_json:
            out.print_json(
                json.dumps({"ok": False, "error": exc.one_line(), "kind": exc.label, "exit": code})
            )
        err.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False, soft_wrap=True)
        raise typer.Exit(code) from None


def _raise(exc: VodforgeError) -> None:
    raise exc


def _toolchain(settings: Settings, ffmpeg: Path | None) -> Toolchain:
    toolchain = load_toolchain(ffmpeg or settings.ffmpeg)
    toolchain.require_capabilities()
    return toolchain


class RichObserver:
    """Rich progress bars: one per chunk/step, and an overall bar weighted by media seconds."""

    def __init__(self, progress: Progress) -> None:
        self.bars = progress
        self.tasks: dict[str, TaskID] = {}
        self.weights: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.overall: TaskID | None = None
        self._lock = threading.Lock()

    def planned(self, plan: JobPlan, tasks: dict[str, float]) -> None:
        total = sum(tasks.values()) or 1.0
        self.overall = self.bars.add_task("[bold]overall", total=total)
        for label, weight in tasks.items():
            self.weights[label] = weight
            self.done[label] = 0.0
            self.tasks[label] = self.bars.add_task(label, total=1.0)

    def progress(self, task: str, fraction: float) -> None:
        with self._lock:
            if task not in self.tasks:
                return
            self.done[task] = fraction
            self.bars.update(self.tasks[task], completed=fraction)
            self._overall()

    def finished(self, task: str, record: CallRecord | None) -> None:
        self.progress(task, 1.0)

    def _overall(self) -> None:
        if self.overall is not None:
            value = sum(self.weights[k] * self.done[k] for k in self.weights)
            self.bars.update(self.overall, completed=value)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


@app.command()
def transcode(
    source: Annotated[Path, typer.Argument(help="The video to transcode.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")],
    preset: Annotated[str | None, typer.Option(help="Built-in preset name or a TOML file.")] = None,
    chunk_seconds: Annotated[
        float | None, typer.Option(help="Target chunk length (default: automatic).", min=0.5)
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Parallel chunk encodes (default: cores).", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ffmpeg: Annotated[
        Path | None, typer.Option(help="ffmpeg binary (default: the pinned wheel's).")
    ] = None,
) -> None:
    """Transcode SOURCE into an HLS + MP4 ladder with previews and a manifest."""
    from vodforge.media.presets import load_preset  # noqa: PLC0415
    from vodforge.pipeline.transcode import default_workers  # noqa: PLC0415
    from vodforge.pipeline.transcode import transcode as run  # noqa: PLC0415

    settings = Settings()

    def body() -> None:
        chosen = load_preset(preset or settings.preset)
        toolchain = _toolchain(settings, ffmpeg)
        runner = SubprocessRunner(
            toolchain,
            deadline=Deadline(settings.timeout_base_seconds, settings.timeout_per_media_second),
        )
        n_workers = workers or settings.workers or default_workers()
        columns = (
            TextColumn("{task.description:<14}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, disable=as_json, transient=False) as progress:
            result = run(
                source,
                output,
                preset=chosen,
                runner=runner,
                toolchain_fingerprint=toolchain.fingerprint(),
                workers=n_workers,
                chunk_seconds=chunk_seconds,
                observer=RichObserver(progress),
            )
        if as_json:
            out.print_json(
                json.dumps(
                    {
                        "ok": True,
                        "output": str(result.out_dir),
                        "manifest": str(result.out_dir / "manifest.json"),
                        "frames": result.plan.expected_frames,
                        "wall_seconds": round(result.wall_seconds, 3),
                        "cpu_seconds": round(result.cpu_seconds, 3),
                        "speed_x_realtime": round(result.speed, 3),
                        "renditions": [r.name for r in result.plan.renditions],
                        "verification_ok": result.verification.ok,
                    }
                )
            )
            return
        _summary(result.manifest, result.plan, result.wall_seconds, result.speed)

    _guard(body, as_json=as_json)


def _summary(manifest: dict[str, Any], plan: JobPlan, wall: float, speed: float) -> None:
    sizes = {o["key"]: o["size"] for o in manifest["outputs"]}
    duration = float(plan.chunks.duration)
    table = Table(title=f"vodforge {__version__} — {plan.expected_frames} frames, {duration:.2f} s")
    for column in ("rung", "resolution", "MP4", "bitrate", "HLS segments"):
        table.add_column(column, justify="right" if column != "rung" else "left")
    for r in plan.renditions:
        mp4 = sizes.get(f"mp4/{r.name}.mp4")
        segments = sum(1 for k in sizes if k.startswith(f"hls/{r.name}/seg_"))
        rate = f"{mp4 * 8 / duration / 1000:.0f} kb/s" if mp4 and duration else "-"
        table.add_row(r.name, r.resolution, _human(mp4) if mp4 else "-", rate, str(segments or "-"))
    out.print(table)
    totals = manifest["totals"]
    out.print(
        f"wall {wall:.2f} s · CPU {totals['cpu_seconds']:.2f} s · speed {speed:.2f}x realtime · "
        f"verified {sum(1 for c in manifest['verification']['checks'] if c['ok'])} checks · "
        f"{manifest['toolchain']['id']}"
    )


@app.command("probe")
def probe_cmd(
    source: Annotated[Path, typer.Argument(help="The media file to probe.")],
) -> None:
    """Print what vodforge sees in SOURCE (JSON)."""
    from vodforge.media.probe import probe  # noqa: PLC0415

    info = _guard(lambda: probe(source))
    out.print_json(json.dumps(info.summary()))


@app.command()
def sample(
    output: Annotated[Path, typer.Argument(help="Where to write the clip.")],
    recipe: Annotated[str, typer.Option(help="Recipe from the test corpus.")] = "hd_audio",
    seconds: Annotated[float | None, typer.Option(min=0.1)] = None,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT")] = None,
) -> None:
    """Generate a synthetic clip with the pinned ffmpeg (lavfi sources)."""
    from vodforge.media.samples import SAMPLES, make_sample  # noqa: PLC0415

    def body() -> None:
        if recipe not in SAMPLES:
            raise ConfigError(f"unknown recipe {recipe!r}; known: {', '.join(sorted(SAMPLES))}")
        dims = None
        if size:
            try:
                w, h = (int(v) for v in size.lower().split("x"))
            except ValueError as exc:
                raise ConfigError(f"--size {size!r}: expected WIDTHxHEIGHT") from exc
            dims = (w, h)
        output.parent.mkdir(parents=True, exist_ok=True)
        toolchain = _toolchain(Settings(), None)
        make_sample(recipe, output, ffmpeg=toolchain.path, seconds=seconds, size=dims)
        err.print(f"wrote {output}")

    _guard(body)


@toolchain_app.command("check")
def toolchain_check(
    ffmpeg: Annotated[Path | None, typer.Option(help="ffmpeg binary to check.")] = None,
) -> None:
    """Fingerprint the toolchain and check it has every encoder and filter vodforge needs."""

    def body() -> None:
        toolchain = _toolchain(Settings(), ffmpeg)
        err.print(f"ok: {toolchain.id} ({toolchain.version}) at {toolchain.path}")

    _guard(body)


@toolchain_app.command("inspect")
def toolchain_inspect(
    toolchain_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="A registered toolchain (registry entry).")
    ] = None,
    ffmpeg: Annotated[Path | None, typer.Option(help="ffmpeg binary to inspect.")] = None,
) -> None:
    """Print a registry entry, or the fingerprint of a binary (JSON)."""
    if toolchain_id is not None:

        def entry() -> dict[str, Any]:
            jobs, registry = _registry(Settings())
            try:
                data: dict[str, Any] = registry.find(toolchain_id).to_dict()
                return data
            finally:
                jobs.close()

        out.print_json(json.dumps(_guard(entry)))
        return
    toolchain = _guard(lambda: load_toolchain(ffmpeg or Settings().ffmpeg))
    missing_encoders, missing_filters = toolchain.missing()
    data = toolchain.fingerprint() | {
        "missing_encoders": missing_encoders,
        "missing_filters": missing_filters,
    }
    out.print_json(json.dumps(data))


@presets_app.command("list")
def presets_list() -> None:
    """List the built-in presets."""
    from vodforge.media.presets import builtin_names, load_preset  # noqa: PLC0415

    for name in builtin_names():
        p = load_preset(name)
        out.print(f"{name:<10} {p.description}", highlight=False)


@presets_app.command("show")
def presets_show(name: Annotated[str, typer.Argument(help="Preset name or TOML path.")]) -> None:
    """Print a preset with every default filled in (JSON)."""
    from vodforge.media.presets import load_preset  # noqa: PLC0415

    preset = _guard(lambda: load_preset(name))
    out.print_json(preset.model_dump_json())


# ---------------------------------------------------------------------------------------------
# runtime


@app.command()
def serve(
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (0: API only). Default from settings.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (0: any free port).")] = None,
    host: Annotated[str | None, typer.Option(help="HTTP bind address.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API, events and reaper only (= --workers 0).")
    ] = False,
) -> None:
    """Run everything: broker, workers, watch folder, reaper and the HTTP server."""
    from vodforge.runtime.serve import serve as run_serve  # noqa: PLC0415

    if no_workers:
        if workers not in (None, 0):
            _guard(lambda: _raise(ConfigError("--no-workers and --workers N contradict")))
        workers = 0
    settings = Settings()
    update: dict[str, Any] = {}
    if port is not None:
        update["http_port"] = port
    if host is not None:
        update["http_host"] = host
    if data_dir is not None:
        update["data_dir"] = data_dir
    settings = settings.model_copy(update=update)
    _guard(lambda: _toolchain(settings, None))
    _guard(lambda: run_serve(settings, workers=workers))


@app.command()
def worker(
    lanes: Annotated[str, typer.Option(help="Lanes to consume, comma-separated.")] = "quick,long",
) -> None:
    """Run one worker process (scale out: as many as you like, on any host)."""
    from vodforge.pipeline.dag import Lane  # noqa: PLC0415
    from vodforge.runtime.worker import run_worker  # noqa: PLC0415

    settings = Settings()

    def go() -> None:
        chosen = [Lane(x.strip()) for x in lanes.split(",") if x.strip()]
        run_worker(settings, broker_url=_broker_url(settings), lanes=chosen)

    _guard(go)


def _broker_url(settings: Settings) -> str:
    if settings.broker_url:
        return settings.broker_url
    socket = (settings.data_dir / "broker" / "redis.sock").resolve()
    if socket.exists():
        return f"unix://{socket}"
    raise ConfigError(
        "no broker: start `vodforge serve` (embedded broker) or set VODFORGE_BROKER_URL"
    )


def _job_store(settings: Settings) -> Any:
    from vodforge.jobs import JobStore  # noqa: PLC0415

    return JobStore.open(settings.resolved_database_url)


def _sender_runtime(settings: Settings) -> Any:
    from vodforge.runtime.app import build_runtime  # noqa: PLC0415

    return build_runtime(settings, broker_url=_broker_url(settings), worker=False)


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Jobs: state, progress, duration, toolchain."""
    from vodforge.jobs import JobState  # noqa: PLC0415

    def go() -> None:
        try:
            wanted = JobState(state) if state else None
        except ValueError:
            raise ConfigError(
                f"unknown state {state!r}: one of {', '.join(s.value for s in JobState)}"
            ) from None
        store = _job_store(Settings())
        try:
            jobs = store.list_jobs(state=wanted, limit=limit)
        finally:
            store.close()
        if as_json:
            out.print_json(json.dumps([j.to_dict() for j in jobs]))
            return
        table = Table("job", "state", "progress", "seconds", "preset", "key", "toolchain")
        for j in jobs:
            end = j.finished_at or j.updated_at
            table.add_row(
                j.id,
                str(j.state),
                f"{100 * (j.progress or 0):.0f}%",
                f"{(end - j.created_at).total_seconds():.1f}",
                j.preset,
                j.key,
                j.toolchain_id,
            )
        out.print(table)

    _guard(go)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """One job: steps, attempts, outputs, errors."""

    def go() -> None:
        store = _job_store(Settings())
        try:
            job = store.get_job(job_id)
            steps = store.steps(job_id)
            attempts = store.attempts(job_id)
            outputs = store.outputs(job_id)
        finally:
            store.close()
        body = {
            "job": job.to_dict(),
            "steps": [s.to_dict() for s in steps],
            "attempts": [a.to_dict() for a in attempts],
            "outputs": [o.to_dict() for o in outputs],
        }
        if as_json:
            out.print_json(json.dumps(body))
            return
        out.print(f"[bold]{job.id}[/] {job.state}  {job.bucket}/{job.key}  preset {job.preset}")
        if job.error_message:
            where = next(
                (a.worker for a in reversed(attempts) if a.step == job.failed_step and a.worker),
                "?",
            )
            out.print(
                f"[red]error[/] ({job.error_label}) in {job.failed_step} on {where}: "
                f"{job.error_message}",
                highlight=False,
            )
        table = Table("step", "lane", "state", "attempts", "wall s", "cpu s", "worker")
        for s in steps:
            table.add_row(
                s.name,
                s.lane,
                str(s.state),
                str(s.attempts),
                f"{s.wall_seconds or 0:.2f}",
                f"{s.cpu_seconds or 0:.2f}",
                s.worker or "",
            )
        out.print(table)
        out.print(f"{len(outputs)} outputs; manifest: {job.manifest_key or '-'}")

    _guard(go)


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Run a failed or cancelled job again from its first unfinished step."""
    from vodforge.runtime.control import retry_job  # noqa: PLC0415

    def go() -> None:
        rt = _sender_runtime(Settings())
        try:
            sent = retry_job(rt.jobs, rt.dispatcher, job_id)
        finally:
            rt.close()
        out.print(f"{job_id}: re-sent {', '.join(sent) or 'nothing'}")

    _guard(go)


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a job: steps not yet started are skipped."""

    def go() -> None:
        store = _job_store(Settings())
        try:
            job = store.cancel_job(job_id)
        finally:
            store.close()
        out.print(f"{job.id}: {job.state}")

    _guard(go)


@dlq_app.command("list")
def dlq_list(
    all_letters: Annotated[bool, typer.Option("--all", help="Include replayed ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Dead letters: the job, the step, the error and its stderr."""

    def go() -> None:
        store = _job_store(Settings())
        try:
            letters = store.list_dead_letters(state=None if all_letters else "open", limit=500)
        finally:
            store.close()
        if as_json:
            out.print_json(json.dumps([d.to_dict() for d in letters]))
            return
        table = Table("id", "job", "step", "label", "worker", "message", "state")
        for d in letters:
            table.add_row(
                d.id, d.job_id, d.step, d.error_label, d.worker, d.message[:120], str(d.state)
            )
        out.print(table)

    _guard(go)


@dlq_app.command("replay")
def dlq_replay(letter_id: Annotated[str, typer.Argument(help="Dead letter id.")]) -> None:
    """Re-run the dead-lettered job from the step that failed."""
    from vodforge.runtime.control import replay_dead_letter  # noqa: PLC0415

    def go() -> None:
        rt = _sender_runtime(Settings())
        try:
            letter = replay_dead_letter(rt.jobs, rt.dispatcher, letter_id)
        finally:
            rt.close()
        out.print(f"replayed {letter.id}: job {letter.job_id} re-queued")

    _guard(go)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scope: Annotated[str, typer.Option(help="Comma-separated: upload, read, admin.")] = "read",
    webhook_url: Annotated[
        str | None, typer.Option(help="POST this key's jobs' terminal states here.")
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="Requests allowed, e.g. 600/minute (default: setting).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    from vodforge.api.keys import create_key  # noqa: PLC0415
    from vodforge.jobs.apikeys import ApiKeyStore  # noqa: PLC0415

    def go() -> None:
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # keys come before the first serve
        store = _job_store(settings)
        try:
            made = create_key(
                ApiKeyStore(store),
                name=name,
                scopes=scope,
                webhook_url=webhook_url,
                rate_limit=rate_limit,
            )
        finally:
            store.close()
        if as_json:
            body = {
                "key": made.token,
                "key_id": made.key.id,
                "scopes": list(made.key.scopes),
                "webhook_secret": made.key.webhook_secret,
            }
            out.print_json(json.dumps(body))
            return
        out.print(made.token, highlight=False, soft_wrap=True)
        err.print(
            f"key {made.key.id} ({','.join(made.key.scopes)}); webhook signing secret: "
            f"{made.key.webhook_secret}\nthe key is shown only now: keep it safe",
            highlight=False,
        )

    _guard(go)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """API keys (never their secrets)."""
    from vodforge.jobs.apikeys import ApiKeyStore  # noqa: PLC0415

    def go() -> None:
        store = _job_store(Settings())
        try:
            keys = ApiKeyStore(store).list()
        finally:
            store.close()
        rows = [
            {
                "key_id": k.id,
                "name": k.name,
                "scopes": list(k.scopes),
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                "webhook_url": k.webhook_url,
                "rate_limit": k.rate_limit,
            }
            for k in keys
        ]
        if as_json:
            out.print_json(json.dumps(rows))
            return
        table = Table("key id", "name", "scopes", "created", "revoked", "webhook", "rate limit")
        for r in rows:
            table.add_row(
                str(r["key_id"]),
                str(r["name"]),
                ",".join(r["scopes"] or []),
                str(r["created_at"])[:19],
                str(r["revoked_at"] or "")[:19],
                str(r["webhook_url"] or ""),
                str(r["rate_limit"] or "default"),
            )
        out.print(table)

    _guard(go)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (the part after vf_).")],
) -> None:
    """Revoke a key: every request with it gets 401 from now on."""
    from vodforge.jobs.apikeys import ApiKeyStore  # noqa: PLC0415

    def go() -> None:
        store = _job_store(Settings())
        try:
            key = ApiKeyStore(store).revoke(key_id)
        finally:
            store.close()
        out.print(f"revoked {key.id} ({key.name})")

    _guard(go)


# ---------------------------------------------------------------------------------------------
# toolchain registry, certification and canary rollouts (vodforge.rollout)

#: ``toolchain certify`` found a regression (distinct from the error exit codes).
EXIT_REGRESSION = 1


def _registry(settings: Settings) -> tuple[Any, Any]:
    """The job store and the toolchain registry; the configured binary is the first stable."""
    from vodforge.jobs import JobStore  # noqa: PLC0415
    from vodforge.rollout.registry import Registry  # noqa: PLC0415

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    jobs = JobStore.open(settings.resolved_database_url)
    registry = Registry(jobs)
    try:
        if registry.stable() is None:
            registry.ensure_stable(load_toolchain(settings.ffmpeg))
    except BaseException:
        jobs.close()
        raise
    return jobs, registry


@toolchain_app.command("list")
def toolchain_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Registered toolchains: id, version, source, sha256, path; stable first."""

    def go() -> None:
        jobs, registry = _registry(Settings())
        try:
            entries = registry.entries()
        finally:
            jobs.close()
        if as_json:
            out.print_json(json.dumps({"items": [e.to_dict() for e in entries]}))
            return
        table = Table("id", "stable", "version", "source", "sha256", "libvmaf", "path")
        for e in entries:
            table.add_row(
                e.id,
                "yes" if e.stable else "",
                e.release,
                e.source,
                e.sha256[:12],
                "yes" if e.libvmaf else "no",
                str(e.path),
            )
        out.print(table)

    _guard(go)


@toolchain_app.command("add")
def toolchain_add(
    path: Annotated[Path, typer.Argument(help="The ffmpeg binary.")],
    source: Annotated[str, typer.Option(help="debian | path | imageio-ffmpeg")] = "path",
) -> None:
    """Fingerprint a binary and register it (idempotent); it runs jobs only once a rollout
    routes them to it."""

    def go() -> None:
        toolchain = load_toolchain(path, source=source)
        jobs, registry = _registry(Settings())
        try:
            entry = registry.add(toolchain)
        finally:
            jobs.close()
        encoders, filters = toolchain.missing()
        lacks = ", ".join(encoders + filters)
        note = f" (lacks {lacks}: it cannot run vodforge jobs)" if lacks else ""
        out.print(f"{entry.id} ({entry.version}, {entry.source}) at {entry.path}{note}")

    _guard(go)


@toolchain_app.command("verify")
def toolchain_verify(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Every registered binary still matches its fingerprint, has what vodforge needs, and its
    version is in the allowed-versions policy (VODFORGE_ALLOWED_VERSIONS). Exit 3 otherwise."""

    def go() -> list[Any]:
        settings = Settings()
        jobs, registry = _registry(settings)
        try:
            return list(registry.verify(settings.allowed_versions))
        finally:
            jobs.close()

    results = _guard(go)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ok": all(r.ok for r in results),
                    "items": [
                        {"id": r.id, "stable": r.stable, "problems": list(r.problems)}
                        for r in results
                    ],
                }
            )
        )
    else:
        for r in results:
            mark = "ok" if r.ok else "FAIL"
            line = f"{mark:<4} {r.id}{' (stable)' if r.stable else ''}"
            out.print(line + ("" if r.ok else ": " + "; ".join(r.problems)), highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(3)


@toolchain_app.command("certify")
def toolchain_certify(
    candidate: Annotated[str, typer.Argument(help="Registered id or path of the candidate.")],
    against: Annotated[
        str | None, typer.Option(help="Registered id or path of the reference (default: stable).")
    ] = None,
    corpus: Annotated[
        str, typer.Option(help="quick (3 clips of 1 s) | full (11 cases).")
    ] = "quick",
    preset: Annotated[str, typer.Option(help="Preset name or TOML path.")] = "default",
    min_psnr: Annotated[float, typer.Option(help="PSNR floor vs the reference, dB.")] = 35.0,
    min_ssim: Annotated[float, typer.Option(help="SSIM floor vs the reference.")] = 0.95,
    max_size_delta: Annotated[float, typer.Option(help="Size tolerance (0.1 = ±10 %).")] = 0.10,
    workdir: Annotated[Path | None, typer.Option(help="Keep outputs here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Run the conformance corpus through the pipeline on both toolchains and compare every
    output. Exit 1 on any regression (a CI gate), 0 when the candidate matches."""
    import tempfile  # noqa: PLC0415

    from vodforge.media.presets import load_preset  # noqa: PLC0415
    from vodforge.rollout.certify import CORPORA, Thresholds, certify  # noqa: PLC0415

    def resolve(registry: Any, ref: str) -> Toolchain:
        from vodforge.errors import ToolchainNotFound  # noqa: PLC0415

        try:
            return registry.load(registry.find(ref).id)  # type: ignore[no-any-return]
        except ToolchainNotFound:
            if Path(ref).exists():
                return load_toolchain(ref, source="path")
            raise

    def go() -> Any:
        if corpus not in CORPORA:
            raise ConfigError(f"--corpus {corpus!r}: one of {', '.join(CORPORA)}")
        chosen = load_preset(preset)
        jobs, registry = _registry(Settings())
        try:
            cand = resolve(registry, candidate)
            ref = resolve(registry, against) if against else registry.load(registry.stable().id)
        finally:
            jobs.close()
        with tempfile.TemporaryDirectory(prefix="vodforge-certify-") as tmp:
            return certify(
                cand,
                ref,
                workdir=workdir or Path(tmp),
                preset=chosen,
                corpus=CORPORA[corpus],
                thresholds=Thresholds(min_psnr, min_ssim, max_size_delta),
            )

    report = _guard(go, as_json=as_json)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        table = Table(
            "clip",
            "rung",
            "check",
            "stable",
            "candidate",
            "",
            title=f"{report.candidate} against {report.stable}",
        )
        for c in report.checks:
            table.add_row(
                c.clip,
                c.rung,
                c.name,
                c.stable,
                c.candidate,
                "[green]ok[/]" if c.ok else "[bold red]REGRESSION[/]",
            )
        out.print(table)
        verdict = "certified" if report.ok else f"{len(report.regressions)} regression(s)"
        out.print(f"{report.candidate}: {verdict}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_REGRESSION)


def _rollouts(settings: Settings) -> tuple[Any, Any]:
    from vodforge.rollout.service import RolloutService  # noqa: PLC0415

    jobs, registry = _registry(settings)
    return jobs, RolloutService(jobs, registry)


def _print_rollout(rollout: Any) -> None:
    r = rollout.to_dict()
    out.print(
        f"rollout {r['id']}: {r['candidate']} against {r['stable']} — {r['state']}, step "
        f"{r['step_index'] + 1}/{len(r['steps'])} at {r['weight_percent']:g}%",
        highlight=False,
    )
    table = Table("arm", "jobs", "failed", "failure rate", "in flight", "p95 s", "labels")
    for arm in ("candidate", "stable"):
        c = r["counts"].get(arm)
        if c:
            p95 = c["p95_seconds"]
            table.add_row(
                arm,
                str(c["jobs"]),
                str(c["failed"]),
                f"{c['failure_rate']:.1%}",
                str(c["in_flight"]),
                f"{p95:.2f}" if p95 is not None else "—",
                ", ".join(f"{k}×{v}" for k, v in c["labels"].items()),
            )
    out.print(table)
    for d in r["decisions"]:
        out.print(f"  {d['at']}  {d['reason']}", highlight=False)


@rollout_app.command("start")
def rollout_start(
    candidate: Annotated[str, typer.Argument(help="Registered toolchain id (or its path).")],
    steps: Annotated[str, typer.Option(help="Weight steps in percent.")] = "1,10,50,100",
    min_jobs: Annotated[int, typer.Option(help="Finished candidate jobs per step.")] = 20,
    max_failure_rate: Annotated[str, typer.Option(help="e.g. 0.1%")] = "0.1%",
    max_p95_regression: Annotated[str, typer.Option(help="e.g. 20%")] = "20%",
) -> None:
    """Route a growing share of new jobs to CANDIDATE; `serve` promotes or rolls it back."""
    from vodforge.rollout.canary import Policy, parse_fraction, parse_steps  # noqa: PLC0415

    def go() -> None:
        policy = Policy(
            parse_steps(steps),
            min_jobs,
            parse_fraction(max_failure_rate),
            parse_fraction(max_p95_regression),
        )
        jobs, service = _rollouts(Settings())
        try:
            _print_rollout(service.start(candidate, policy))
        finally:
            jobs.close()

    _guard(go)


@rollout_app.command("status")
def rollout_status(
    rollout_id: Annotated[str | None, typer.Argument(help="Default: the latest.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Step, weight, counts and rates per arm, and the decision log."""

    def go() -> Any:
        jobs, service = _rollouts(Settings())
        try:
            if rollout_id:
                return service.get(rollout_id)
            latest = service.recent(1)
            if not latest:
                raise ConfigError("no rollout yet (vodforge rollout start CANDIDATE)")
            return latest[0]
        finally:
            jobs.close()

    rollout = _guard(go, as_json=as_json)
    if as_json:
        out.print_json(json.dumps(rollout.to_dict()))
    else:
        _print_rollout(rollout)


@rollout_app.command("abort")
def rollout_abort(
    rollout_id: Annotated[str | None, typer.Argument(help="Default: the running one.")] = None,
) -> None:
    """Stop routing to the candidate; jobs that failed on it are re-run on stable."""

    def go() -> None:
        jobs, service = _rollouts(Settings())
        try:
            target = rollout_id or (r.id if (r := service.running()) else None)
            if target is None:
                raise ConfigError("no rollout is running")
            _print_rollout(service.abort(target))
        finally:
            jobs.close()

    _guard(go)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(f"vodforge {__version__}")
        raise typer.Exit(0)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
