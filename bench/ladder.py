"""Benchmark: vodforge's chunked ladder against one plain ffmpeg command making the same ladder.

The plain run is what a user would type: one ffmpeg, one decode, ``split`` into the rungs that
vodforge plans for this source and preset, with byte-for-byte the same x264 arguments (taken from
``x264_args``), so the comparison isolates what vodforge adds: chunked parallel encoding, audio
once, packaging, previews and verification. Both run as child processes measured with
``os.wait4`` (CPU of the child and every descendant it waited for) and ``time.monotonic``.
A benchmark reports; it asserts no timings. It exits 1 only if vodforge failed or a rung's frame
count differs from the source's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
from rich.console import Console
from rich.table import Table

from vodforge.media.argv import x264_args
from vodforge.media.plan import JobPlan, plan_job
from vodforge.media.presets import load_preset
from vodforge.media.probe import probe
from vodforge.media.samples import make_sample
from vodforge.media.toolchain import load_toolchain
from vodforge.pipeline.transcode import default_workers

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
VODFORGE = Path(sys.executable).parent / "vodforge"
console = Console()


@dataclass(frozen=True)
class Run:
    """One measured child process: wall seconds and user+sys CPU seconds of its whole tree."""

    wall: float
    cpu: float
    exit_code: int


def measure(argv: list[str], log: Path) -> Run:
    """Run ``argv`` with stdout+stderr to ``log``; ``wait4`` gives rusage that includes every
    descendant the child reaped (vodforge's ffmpeg workers), which ``time`` alone would miss."""
    with log.open("wb") as fh:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    return Run(wall=wall, cpu=usage.ru_utime + usage.ru_stime, exit_code=code)


def source_clip(ffmpeg: Path, seconds: float, size: tuple[int, int]) -> Path:
    """The cached 1080p30+AAC source; generated once (deterministic bytes per toolchain)."""
    path = OUT / f"source_{seconds:g}s_{size[0]}x{size[1]}.mp4"
    if not path.is_file():
        console.print(f"generating {path.name} ...")
        make_sample("hd_audio", path, ffmpeg=ffmpeg, seconds=seconds, size=size)
    return path


def plain_argv(ffmpeg: Path, src: Path, plan: JobPlan, out_dir: Path) -> list[str]:
    """One decode, ``split`` into every rung, x264 settings identical to vodforge's, AAC per
    output at the preset's audio settings, faststart MP4s; no ``-threads`` (ffmpeg's defaults)."""
    rungs = plan.renditions
    spec, audio = plan.preset.video, plan.preset.audio
    labels = "".join(f"[s{i}]" for i in range(len(rungs)))
    graph = [f"[0:v:0]split={len(rungs)}{labels}"]
    graph += [
        f"[s{i}]scale={r.width}:{r.height}:flags={spec.scale_flags},setsar=1,format=yuv420p[v{i}]"
        for i, r in enumerate(rungs)
    ]
    argv = [str(ffmpeg), "-hide_banner", "-nostdin", "-y", "-i", str(src)]
    argv += ["-filter_complex", ";".join(graph)]
    for i, r in enumerate(rungs):
        argv += ["-map", f"[v{i}]", *x264_args(r, spec, plan.chunks.gop_frames)]
        if plan.has_audio:
            argv += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{audio.bitrate_kbps}k"]
            argv += ["-ac", str(audio.channels), "-ar", str(audio.sample_rate)]
        argv += ["-movflags", "+faststart", str(out_dir / f"{r.name}.mp4")]
    return argv


def psnr(
    ffmpeg: Path, encoded: Path, src: Path, size: tuple[int, int], src_size: tuple[int, int]
) -> float:
    """Average PSNR of ``encoded`` against the source, the source scaled (bicubic, as the ladder
    does) only if the rung's size differs; both restarted at t=0 so frames pair by index."""
    w, h = size
    ref = "[1:v]setpts=PTS-STARTPTS"
    if (w, h) != src_size:
        ref += f",scale={w}:{h}:flags=bicubic"
    graph = f"[0:v]setpts=PTS-STARTPTS[d];{ref}[r];[d][r]psnr"
    argv = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-i", str(encoded)]
    argv += ["-i", str(src), "-lavfi", graph, "-f", "null", "-"]
    err = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    match = re.search(r"average:(inf|[0-9.]+)", err)
    if match is None:
        raise RuntimeError(f"no PSNR in ffmpeg output:\n{err[-2000:]}")
    return float(match.group(1))


def video_stats(path: Path) -> tuple[int, int]:
    """(video packets, video bytes) by demuxing with PyAV: the frame count without decoding,
    and the video's share of an MP4 that also carries audio."""
    frames = size = 0
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                frames += 1
                size += packet.size
    return frames, size


def outputs(plan: JobPlan, mp4_dir: Path, ffmpeg: Path, src: Path) -> dict[str, Any]:
    """Per-rung MP4 size and frame count, plus the top rung's video bytes and PSNR."""
    rungs: dict[str, Any] = {}
    for r in plan.renditions:
        mp4 = mp4_dir / f"{r.name}.mp4"
        frames, vbytes = video_stats(mp4)
        rungs[r.name] = {"size": mp4.stat().st_size, "video_bytes": vbytes, "frames": frames}
    top = plan.renditions[0]
    video = plan.video
    src_size = (video.width, video.height)
    top_psnr = psnr(ffmpeg, mp4_dir / f"{top.name}.mp4", src, (top.width, top.height), src_size)
    return {"rungs": rungs, "top": top.name, "top_psnr": top_psnr}


def parse_size(text: str) -> tuple[int, int]:
    """``1920x1080`` → (1920, 1080)."""
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> int:
    """Run the pair ``--repeat`` times (alternating order so neither side always runs on a warm
    cache or a quieter machine), report medians and the median of the run-by-run ratios,
    quality, sizes and frames; write ladder.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", type=parse_size, default=(1920, 1080))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    toolchain = load_toolchain()
    ffmpeg = toolchain.path
    OUT.mkdir(parents=True, exist_ok=True)
    src = source_clip(ffmpeg, args.seconds, args.size)
    info = probe(src)
    plan = plan_job(info, load_preset(args.preset), workers=args.workers or default_workers())
    plain_dir, vf_dir = OUT / "plain", OUT / "vodforge"
    vf_argv = [str(VODFORGE), "transcode", str(src), "-o", str(vf_dir), "--preset", args.preset]
    vf_argv += ["--json"] + (["--workers", str(args.workers)] if args.workers else [])

    runs: dict[str, list[Run]] = {"plain": [], "vodforge": []}
    for i in range(args.repeat):
        for name in ("plain", "vodforge") if i % 2 == 0 else ("vodforge", "plain"):
            out_dir = plain_dir if name == "plain" else vf_dir
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True)
            argv = plain_argv(ffmpeg, src, plan, out_dir) if name == "plain" else vf_argv
            run = measure(argv, OUT / f"{name}.log")
            console.print(
                f"run {i + 1}/{args.repeat} {name}: {run.wall:.2f} s wall, "
                f"{run.cpu:.2f} s CPU, exit {run.exit_code}"
            )
            runs[name].append(run)
            if run.exit_code != 0:
                console.print(f"[red]{name} failed[/red]; see {OUT / f'{name}.log'}")
                return 1

    wall = {k: statistics.median(r.wall for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r.cpu for r in v) for k, v in runs.items()}
    # Each repeat runs the two back to back, so a pair shares the machine's state of the moment;
    # the median of the pairs' ratios is steadier than the ratio of medians taken minutes apart.
    pairs = [
        {"wall": v.wall / p.wall, "cpu": v.cpu / p.cpu}
        for p, v in zip(runs["plain"], runs["vodforge"], strict=True)
    ]
    paired = {k: statistics.median(pair[k] for pair in pairs) for k in ("wall", "cpu")}
    result = {
        "plain": outputs(plan, plain_dir, ffmpeg, src),
        "vodforge": outputs(plan, vf_dir / "mp4", ffmpeg, src),
    }
    manifest = json.loads((vf_dir / "manifest.json").read_text(encoding="utf-8"))
    steps: dict[str, Any] = manifest.get("steps", {})
    source_frames = info.video.frame_count if info.video else 0
    expected = plan.expected_frames

    table = Table(title=f"{src.name}: {source_frames} frames, preset {args.preset}")
    for column in ("rung", "size", "plain MP4", "vodforge MP4", "Δ size", "frames plain/vf"):
        table.add_column(column, justify="right")
    exact = True
    for r in plan.renditions:
        p, v = result["plain"]["rungs"][r.name], result["vodforge"]["rungs"][r.name]
        exact = exact and p["frames"] == v["frames"] == expected
        delta = 100.0 * (v["size"] - p["size"]) / p["size"]
        ok = "" if p["frames"] == v["frames"] == expected else " [red]≠[/red]"
        table.add_row(
            r.name,
            r.resolution,
            f"{p['size']:,}",
            f"{v['size']:,}",
            f"{delta:+.1f}%",
            f"{p['frames']}/{v['frames']}{ok}",
        )
    console.print(table)

    top = result["plain"]["top"]
    tp, tv = result["plain"]["rungs"][top], result["vodforge"]["rungs"][top]
    psnr_delta = result["vodforge"]["top_psnr"] - result["plain"]["top_psnr"]
    size_delta = 100.0 * (tv["size"] - tp["size"]) / tp["size"]
    vbytes_delta = 100.0 * (tv["video_bytes"] - tp["video_bytes"]) / tp["video_bytes"]
    for name in ("plain", "vodforge"):
        console.print(f"{name:>9}: wall {wall[name]:7.2f} s   CPU {cpu[name]:7.2f} s")
    console.print(f"wall ratio (vodforge/plain): {wall['vodforge'] / wall['plain']:.2f}")
    console.print(f"CPU ratio  (vodforge/plain): {cpu['vodforge'] / cpu['plain']:.2f}")
    if len(pairs) > 1:
        for k in ("wall", "cpu"):
            each = ", ".join(f"{pair[k]:.2f}" for pair in pairs)
            console.print(f"paired {k} ratios: {each}; median {paired[k]:.2f}")
    console.print(
        f"top rung {top} PSNR: plain {result['plain']['top_psnr']:.3f} dB, "
        f"vodforge {result['vodforge']['top_psnr']:.3f} dB, "
        f"delta {psnr_delta:+.3f} dB"
    )
    console.print(f"top rung size delta: {size_delta:+.2f}% (MP4), {vbytes_delta:+.2f}% (video)")
    for name in ("plain", "vodforge"):
        counts = ", ".join(f"{k}={v['frames']}" for k, v in result[name]["rungs"].items())
        console.print(f"frames {name}: {counts} (source {source_frames}, expected {expected})")
    console.print(
        "vodforge steps (CPU s / wall s): "
        + ", ".join(f"{k} {s['cpu_seconds']:.2f}/{s['wall_seconds']:.2f}" for k, s in steps.items())
    )

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "toolchain": toolchain.id,
        "args": {**vars(args), "size": list(args.size)},
        "source": {"path": str(src), "frames": source_frames, "expected_frames": expected},
        "runs": {k: [vars(r) for r in v] for k, v in runs.items()},
        "median": {"wall": wall, "cpu": cpu},
        "ratios": {"wall": wall["vodforge"] / wall["plain"], "cpu": cpu["vodforge"] / cpu["plain"]},
        "paired_ratios": {"each": pairs, "median": paired},
        "psnr_delta_db": psnr_delta,
        "top_size_delta_pct": {"mp4": size_delta, "video": vbytes_delta},
        "outputs": result,
        "vodforge_steps": steps,
        "vodforge_totals": manifest.get("totals"),
        "plain_argv": plain_argv(ffmpeg, src, plan, plain_dir),
        "frame_exact": exact,
    }
    (OUT / "ladder.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {OUT / 'ladder.json'}")
    if not exact:
        console.print("[red]a rung is not frame-exact[/red]")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
