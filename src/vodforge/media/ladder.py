"""The ladder: which renditions a source gets, at which size and frame rate (pure).

Rules: never upscale (rungs above the source's short side are dropped, but a source smaller than
every rung still gets one rung at its own size); dimensions even (4:2:0 needs it); square pixels
(SAR folded into the width); rotation honoured (a portrait phone video gets portrait rungs);
output is always 8-bit 4:2:0 progressive at a constant frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from vodforge.errors import ConfigError
from vodforge.media.mediainfo import VideoInfo
from vodforge.media.presets import FpsPolicy, Preset, RungSpec

#: Rates a VFR source snaps to (the nearest one to its average rate).
STANDARD_RATES: tuple[Fraction, ...] = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
)


@dataclass(frozen=True)
class Rendition:
    """One concrete output rung for one source."""

    name: str
    width: int
    height: int
    crf: int | None
    bitrate_kbps: int | None
    maxrate_kbps: int | None
    bufsize_kbps: int | None
    profile: str
    level: str | None

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"


def _even(value: float) -> int:
    return max(2, int(value / 2.0 + 0.5) * 2)  # round half up, to an even number


def output_rate(video: VideoInfo, policy: FpsPolicy) -> Fraction:
    """The constant frame rate every rung is encoded at."""
    if policy.mode == "fixed" and policy.rate:
        return Fraction(policy.rate)
    if video.vfr or video.nominal_rate <= 0 or video.nominal_rate > 240:
        base = min(STANDARD_RATES, key=lambda r: abs(r - video.average_rate))
    else:
        base = video.nominal_rate
    cap = Fraction(policy.max_fps).limit_denominator(1001)
    divisor = 1
    while base / divisor > cap * Fraction(1001, 1000):  # 59.94 passes a cap of 60
        divisor += 1
    return base / divisor


def _rendition(spec: RungSpec, width: int, height: int, preset: Preset, name: str) -> Rendition:
    maxrate = spec.maxrate_kbps
    bufsize = spec.bufsize_kbps or (maxrate * 2 if maxrate else None)
    return Rendition(
        name=name,
        width=width,
        height=height,
        crf=spec.crf,
        bitrate_kbps=spec.bitrate_kbps,
        maxrate_kbps=maxrate,
        bufsize_kbps=bufsize,
        profile=spec.profile or preset.video.profile,
        level=spec.level,
    )


def plan_renditions(video: VideoInfo, preset: Preset) -> list[Rendition]:
    """The rungs of ``preset`` that fit ``video``, sized for display, top rung first."""
    display_w, display_h = video.display_size
    if display_w < 2 or display_h < 2:
        raise ConfigError(f"source picture {display_w}x{display_h} is too small to encode")
    short, long_side = min(display_w, display_h), max(display_w, display_h)
    portrait = display_h > display_w
    renditions: list[Rendition] = []
    for spec in preset.rungs:
        if spec.height > short:
            continue
        renditions.append(_sized(spec, spec.height, short, long_side, portrait, preset, spec.label))
    if not renditions:
        smallest = preset.rungs[-1]
        renditions.append(
            _sized(smallest, short, short, long_side, portrait, preset, f"{_even(short)}p")
        )
    return renditions


def _sized(
    spec: RungSpec,
    target_short: int,
    short: int,
    long_side: int,
    portrait: bool,
    preset: Preset,
    name: str,
) -> Rendition:
    new_short = _even(target_short)
    new_long = _even(long_side * target_short / short)
    width, height = (new_short, new_long) if portrait else (new_long, new_short)
    return _rendition(spec, width, height, preset, name)
