"""Certification: a conformance corpus through the real pipeline on two toolchains, compared.

``certify(candidate, stable)`` generates the corpus once (with the stable toolchain, so both read
identical sources), runs ``pipeline.transcode`` — planning, chunked encodes, packaging,
previews and its own strict verification — on each toolchain into its own folder, and compares
per clip and rung: the output decodes, frame count and duration equal stable's, PSNR and SSIM of
the candidate's rung against the stable's rung (measured by the *stable* ffmpeg's psnr/ssim
filters) above a floor, size within a tolerance; plus the encoders and filters the pipeline
needs. ``compare`` and ``capability_checks`` are pure and unit-tested on fabricated results.

Any check that fails is a regression; ``vodforge toolchain certify`` exits 1 on one, so it can
gate CI. A stable run that fails is reported (``stable_failed``) and not held against the
candidate.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vodforge.errors import VodforgeError
from vodforge.jobs import ErrorInfo
from vodforge.media.presets import Preset
from vodforge.media.probe import probe
from vodforge.media.runner import FfmpegCall, SubprocessRunner
from vodforge.media.samples import SAMPLES, make_sample
from vodforge.media.toolchain import Toolchain
from vodforge.pipeline.transcode import transcode

#: (recipe, seconds, size or None for the recipe's own) — small enough for a CI gate.
QUICK_CORPUS: tuple[tuple[str, float, tuple[int, int] | None], ...] = (
    ("basic", 1.0, (160, 120)),
    ("rotated", 1.0, None),
    ("no_audio", 1.0, (160, 120)),
)
#: The awkward cases of the issue: odd sizes, rotation, VFR, 10-bit, interlaced, no audio,
#: 59.94, sparse keyframes, long GOP.
FULL_CORPUS: tuple[tuple[str, float, tuple[int, int] | None], ...] = (
    ("hd_audio", 2.0, (320, 180)),
    ("basic", 2.0, (320, 240)),
    ("odd_size", 2.0, None),
    ("rotated", 2.0, None),
    ("vfr", 2.0, None),
    ("no_audio", 2.0, (320, 240)),
    ("one_keyframe", 2.0, None),
    ("long_gop", 4.0, None),
    ("tenbit_422", 2.0, None),
    ("interlaced", 2.0, None),
    ("ntsc_5994", 2.0, None),
)
CORPORA = {"quick": QUICK_CORPUS, "full": FULL_CORPUS}

_PSNR_RE = re.compile(r"PSNR .*average:(\S+)")
_SSIM_RE = re.compile(r"SSIM .*All:(\S+)")


@dataclass(frozen=True)
class Thresholds:
    min_psnr_db: float = 35.0
    min_ssim: float = 0.95
    max_size_delta: float = 0.10
    #: Seconds; one frame at 25 fps by default.
    duration_tolerance: float = 0.04


@dataclass(frozen=True)
class RungMeasure:
    frames: int
    duration: float
    size: int
    path: Path


@dataclass(frozen=True)
class Run:
    """One clip through the pipeline on one toolchain."""

    clip: str
    toolchain: str
    rungs: dict[str, RungMeasure] = field(default_factory=dict)
    error_label: str | None = None
    error: str | None = None
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Check:
    clip: str
    rung: str
    name: str
    stable: str
    candidate: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "rung": self.rung,
            "check": self.name,
            "stable": self.stable,
            "candidate": self.candidate,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class Report:
    candidate: str
    stable: str
    checks: tuple[Check, ...]

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "stable": self.stable,
            "ok": self.ok,
            "regressions": len(self.regressions),
            "checks": [c.to_dict() for c in self.checks],
        }


# ---------------------------------------------------------------------------------------------
# pure comparison


def capability_checks(candidate: Toolchain, stable: Toolchain) -> list[Check]:
    encoders, filters = candidate.missing()
    checks = [
        Check(
            "*",
            "*",
            "required encoders/filters",
            "present",
            "missing " + ", ".join(encoders + filters) if encoders or filters else "present",
            not (encoders or filters),
        )
    ]
    lost = sorted((stable.encoders - candidate.encoders) | (stable.filters - candidate.filters))
    checks.append(
        Check(
            "*",
            "*",
            "encoders/filters stable has (info)",
            f"{len(stable.encoders)} enc / {len(stable.filters)} flt",
            f"{len(candidate.encoders)} enc / {len(candidate.filters)} flt"
            + (f"; lacks {len(lost)}: {', '.join(lost[:8])}" if lost else ""),
            True,
        )
    )
    return checks


def compare(
    stable: Run,
    candidate: Run,
    quality: dict[str, tuple[float, float]],
    thresholds: Thresholds = Thresholds(),
) -> list[Check]:
    """Checks of one clip. ``quality``: rung → (PSNR dB, SSIM) of candidate against stable."""
    clip = stable.clip
    if not stable.ok:
        return [
            Check(
                clip,
                "*",
                "stable_failed (not held against the candidate)",
                f"{stable.error_label}: {stable.error}",
                "—",
                True,
            )
        ]
    if not candidate.ok:
        return [
            Check(
                clip,
                "*",
                "pipeline runs and verifies",
                "ok",
                f"{candidate.error_label}: {candidate.error}",
                False,
            )
        ]
    checks = []
    for rung, s in sorted(stable.rungs.items()):
        c = candidate.rungs.get(rung)
        if c is None:
            checks.append(Check(clip, rung, "rung produced", "yes", "missing", False))
            continue
        checks.append(
            Check(clip, rung, "frames", str(s.frames), str(c.frames), c.frames == s.frames)
        )
        checks.append(
            Check(
                clip,
                rung,
                "duration",
                f"{s.duration:.3f}",
                f"{c.duration:.3f}",
                abs(c.duration - s.duration) <= thresholds.duration_tolerance,
            )
        )
        delta = (c.size - s.size) / s.size if s.size else 0.0
        checks.append(
            Check(
                clip,
                rung,
                "size",
                f"{s.size}",
                f"{c.size} ({delta:+.1%})",
                abs(delta) <= thresholds.max_size_delta,
            )
        )
        psnr, ssim = quality.get(rung, (float("nan"), float("nan")))
        checks.append(
            Check(
                clip,
                rung,
                "PSNR vs stable (dB)",
                f"≥ {thresholds.min_psnr_db:g}",
                f"{psnr:.2f}",
                psnr >= thresholds.min_psnr_db,
            )
        )
        checks.append(
            Check(
                clip,
                rung,
                "SSIM vs stable",
                f"≥ {thresholds.min_ssim:g}",
                f"{ssim:.4f}",
                ssim >= thresholds.min_ssim,
            )
        )
    for rung in sorted(set(candidate.rungs) - set(stable.rungs)):
        checks.append(Check(clip, rung, "rung produced", "no", "extra", False))
    return checks


def parse_quality(psnr_stderr: str, ssim_stderr: str) -> tuple[float, float]:
    """(PSNR average dB, SSIM All) from the psnr and ssim filters' summaries (inf: identical)."""
    psnr = _PSNR_RE.search(psnr_stderr)
    ssim = _SSIM_RE.search(ssim_stderr)
    return (
        float(psnr.group(1)) if psnr else float("nan"),
        float(ssim.group(1)) if ssim else float("nan"),
    )


# ---------------------------------------------------------------------------------------------
# running


def run_clip(source: Path, clip: str, toolchain: Toolchain, out: Path, preset: Preset) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    try:
        result = transcode(
            source,
            out,
            preset=preset,
            runner=SubprocessRunner(toolchain),
            toolchain_fingerprint=toolchain.fingerprint(),
            workers=2,
        )
    except VodforgeError as exc:
        label = ErrorInfo.from_exception(exc, worker="certify").label
        return Run(clip, toolchain.id, error_label=label, error=exc.one_line()[:300])
    rungs = {}
    for mp4 in sorted((out / "mp4").glob("*.mp4")):
        info = probe(mp4)
        assert info.video is not None
        rungs[mp4.stem] = RungMeasure(
            frames=info.video.frame_count,
            duration=float(info.video.duration),
            size=mp4.stat().st_size,
            path=mp4,
        )
    return Run(clip, toolchain.id, rungs, wall_seconds=result.wall_seconds)


def measure_quality(judge: Toolchain, candidate: Path, stable: Path) -> tuple[float, float]:
    """PSNR and SSIM of ``candidate`` against ``stable`` by the judge (stable) ffmpeg."""
    runner = SubprocessRunner(judge)
    stderr = []
    for name in ("psnr", "ssim"):
        record = runner.run(
            FfmpegCall(
                step="certify",
                label=name,
                argv=(
                    "-hide_banner",
                    "-nostats",
                    "-i",
                    f"file:{candidate}",
                    "-i",
                    f"file:{stable}",
                    "-lavfi",
                    f"[0:v][1:v]{name}",
                    "-f",
                    "null",
                    "-",
                ),
            )
        )
        stderr.append(record.stderr)
    return parse_quality(stderr[0], stderr[1])


def certify(
    candidate: Toolchain,
    stable: Toolchain,
    *,
    workdir: Path,
    preset: Preset,
    corpus: Sequence[tuple[str, float, tuple[int, int] | None]] = QUICK_CORPUS,
    thresholds: Thresholds = Thresholds(),
) -> Report:
    checks = capability_checks(candidate, stable)
    for name, seconds, size in corpus:
        source = make_sample(
            name,
            workdir / "corpus" / f"{name}{SAMPLES[name].suffix}",
            ffmpeg=stable.path,
            seconds=seconds,
            size=size,
        )
        s = run_clip(source, name, stable, workdir / "stable" / name, preset)
        c = run_clip(source, name, candidate, workdir / "candidate" / name, preset)
        quality = {}
        if s.ok and c.ok:
            for rung, measure in s.rungs.items():
                if rung in c.rungs:
                    try:
                        quality[rung] = measure_quality(stable, c.rungs[rung].path, measure.path)
                    except VodforgeError:
                        quality[rung] = (float("nan"), float("nan"))
        checks.extend(compare(s, c, quality, thresholds))
    return Report(candidate.id, stable.id, tuple(checks))
