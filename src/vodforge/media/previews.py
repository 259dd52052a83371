"""Preview planning: poster, thumbnails, sprite sheet + WebVTT track, GIF (pure).

Previews come from the source, not from an encoded rung, so they can be made in the quick lane
while the ladder is still encoding. When the source's keyframes are dense, only keyframes are
decoded (``-skip_frame nokey``) and every picture is snapped to a keyframe: a sprite of a 30 s
1080p clip then costs a dozen decoded frames instead of 900. Sparse-keyframe sources fall back to
decoding every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from vodforge.media.mediainfo import MediaInfo
from vodforge.media.presets import PreviewSpec

#: Keyframe-only decoding is used when no keyframe gap exceeds this many seconds (or the sprite
#: interval, if that is longer).
KEYFRAME_MODE_MAX_GAP = Fraction(5, 2)
#: Select targets in keyframe mode sit this far before the keyframe, so rounding never skips it.
_EPSILON = Fraction(1, 2000)

PreviewMode = Literal["keyframes", "frames"]


@dataclass(frozen=True)
class PreviewPlan:
    mode: PreviewMode
    deinterlace: bool
    #: All times are absolute source timestamps (ffmpeg runs with -copyts) in seconds.
    poster: Fraction | None
    poster_size: tuple[int, int]
    thumbnails: tuple[Fraction, ...]
    thumbnail_size: tuple[int, int]
    sprite_tiles: tuple[Fraction, ...]
    sprite_columns: int
    tile_size: tuple[int, int]
    #: Where each sprite tile's cue starts and ends, relative to the output's first frame.
    cue_bounds: tuple[tuple[Fraction, Fraction], ...]
    gif_seek: Fraction | None
    gif_seconds: Fraction
    gif_fps: int
    gif_size: tuple[int, int]

    @property
    def sprite_rows(self) -> int:
        return max(1, math.ceil(len(self.sprite_tiles) / self.sprite_columns))


def _even(value: float) -> int:
    return max(2, int(value / 2.0 + 0.5) * 2)  # round half up, to an even number


def _size_for_width(display: tuple[int, int], width: int) -> tuple[int, int]:
    dw, dh = display
    w = _even(min(width, dw))
    return w, _even(dh * w / dw)


def plan_previews(info: MediaInfo, spec: PreviewSpec, *, output_start: Fraction) -> PreviewPlan:
    assert info.video is not None
    video = info.video
    display = video.display_size
    first, end = video.first_pts, video.end_pts
    duration = max(end - first, Fraction(1, 1000))
    interval = max(Fraction(spec.sprite_interval_seconds), duration / spec.sprite_max_tiles)
    interval = Fraction(interval).limit_denominator(1000)

    keyframes = [k.pts for k in video.keyframes]
    poster_target = first + duration * Fraction(spec.poster_at).limit_denominator(1000)
    thumb_targets = [
        first + duration * Fraction(2 * i + 1, 2 * spec.thumbnails) for i in range(spec.thumbnails)
    ]
    dense = video.max_keyframe_gap <= max(KEYFRAME_MODE_MAX_GAP, interval)
    # Keyframe mode (decode keyframes only) picks distinct keyframes; a short clip with fewer
    # keyframes than thumbnails asked for decodes every frame instead, so it gets all of them.
    enough = len(_snap_distinct(thumb_targets, keyframes)) == len(thumb_targets)
    mode: PreviewMode = "keyframes" if dense and len(keyframes) > 1 and enough else "frames"

    tile_targets: list[Fraction] = []
    t = first
    while t < end and len(tile_targets) < spec.sprite_max_tiles:
        tile_targets.append(t)
        t += interval

    if mode == "keyframes":
        poster = _snap(poster_target, keyframes)
        thumbs = _snap_distinct(thumb_targets, keyframes)
        tiles = _snap_distinct(tile_targets, keyframes)
        to_select = [k - _EPSILON for k in (poster, *thumbs, *tiles)]
        poster_sel, rest = to_select[0], to_select[1:]
        thumbs_sel, tiles_sel = rest[: len(thumbs)], rest[len(thumbs) :]
        cue_starts = tiles
    else:
        poster_sel = poster_target
        thumbs_sel = thumb_targets
        tiles_sel = tile_targets
        cue_starts = tile_targets

    bounds = []
    for i, start in enumerate(cue_starts):
        stop = cue_starts[i + 1] if i + 1 < len(cue_starts) else end
        lo = max(Fraction(0), (first if i == 0 else start) - output_start)
        bounds.append((lo, max(lo, stop - output_start)))

    gif_len = min(Fraction(spec.gif_seconds).limit_denominator(1000), duration)
    gif_start = first + (duration - gif_len) * Fraction(spec.gif_at).limit_denominator(1000)
    gif_seek = gif_start - info.start_time
    return PreviewPlan(
        mode=mode,
        deinterlace=video.interlaced,
        poster=poster_sel if spec.enabled else None,
        poster_size=_size_for_width(display, spec.poster_width),
        thumbnails=tuple(thumbs_sel) if spec.enabled else (),
        thumbnail_size=_size_for_width(display, spec.thumbnail_width),
        sprite_tiles=tuple(tiles_sel) if spec.enabled else (),
        sprite_columns=min(spec.sprite_columns, max(1, len(tiles_sel))),
        tile_size=_size_for_width(display, spec.sprite_tile_width),
        cue_bounds=tuple(bounds) if spec.enabled else (),
        gif_seek=gif_seek if gif_seek > 0 else None,
        gif_seconds=gif_len,
        gif_fps=spec.gif_fps,
        gif_size=_size_for_width(display, spec.gif_width),
    )


def _snap(target: Fraction, keyframes: list[Fraction]) -> Fraction:
    return min(keyframes, key=lambda k: (abs(k - target), k))


def _snap_distinct(targets: list[Fraction], keyframes: list[Fraction]) -> list[Fraction]:
    """Each target's nearest keyframe, each keyframe used at most once, order kept."""
    chosen: list[Fraction] = []
    for target in targets:
        options = [k for k in keyframes if not chosen or k > chosen[-1]]
        if not options:
            break
        chosen.append(_snap(target, options))
    return chosen


def _timestamp(value: Fraction) -> str:
    millis = round(value * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def render_sprite_vtt(plan: PreviewPlan, image: str = "sprite.jpg") -> str:
    """A WebVTT thumbnail track: one cue per tile, pointing into the sprite with #xywh."""
    w, h = plan.tile_size
    lines = ["WEBVTT", ""]
    for i, (start, stop) in enumerate(plan.cue_bounds):
        col, row = i % plan.sprite_columns, i // plan.sprite_columns
        lines.append(f"{_timestamp(start)} --> {_timestamp(stop)}")
        lines.append(f"{image}#xywh={col * w},{row * h},{w},{h}")
        lines.append("")
    return "\n".join(lines)
