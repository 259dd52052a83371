"""The chunk plan: where a source is cut for parallel encoding (pure).

Output frames are *ticks* of the constant output rate R on the source's own timeline: tick k is
shown at k/R seconds. The whole output is ticks ``[first_tick, end_tick)``; chunk i encodes ticks
``[start_tick, end_tick)`` with ``fps=R`` followed by ``trim`` on those tick numbers, so the
concatenated chunks have exactly ``end_tick - first_tick`` frames whatever the source's frame
timing (CFR, VFR, 59.94, ...).

Boundaries fall on multiples of the GOP (= HLS segment) length counted from the first tick, so
every chunk starts with the IDR its first segment needs and keyframes of all rungs stay aligned.
Among the allowed boundaries near the target length, one where the source has a keyframe is
preferred: decoding then starts exactly there. Where the source's keyframes are sparse (a 60 s
GOP, a single keyframe), the boundary is cut anyway: the chunk seeks to the last keyframe before
it and decodes the pre-roll without encoding it ("decode-cut"), so chunks still run in parallel.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from vodforge.errors import ConfigError
from vodforge.media.mediainfo import Keyframe, VideoInfo

ChunkMode = Literal["keyframe", "decode-cut"]


@dataclass(frozen=True)
class Chunk:
    index: int
    start_tick: int
    end_tick: int
    #: The source keyframe decoding starts from, and ``-ss`` for it relative to the container's
    #: start time (None: decode from the beginning, no seek).
    seek_keyframe: Keyframe
    seek_seconds: Fraction | None
    mode: ChunkMode
    #: Seconds of source decoded before the first encoded frame (0 for keyframe-aligned chunks).
    preroll_seconds: Fraction

    @property
    def frames(self) -> int:
        return self.end_tick - self.start_tick


@dataclass(frozen=True)
class ChunkPlan:
    rate: Fraction
    first_tick: int
    end_tick: int
    gop_frames: int
    chunks: tuple[Chunk, ...]

    @property
    def total_frames(self) -> int:
        return self.end_tick - self.first_tick

    @property
    def start_seconds(self) -> Fraction:
        return self.first_tick / self.rate

    @property
    def duration(self) -> Fraction:
        return self.total_frames / self.rate

    @property
    def segment_seconds(self) -> Fraction:
        return self.gop_frames / self.rate

    def chunk_duration(self, chunk: Chunk) -> Fraction:
        return chunk.frames / self.rate


def tick_of(seconds: Fraction, rate: Fraction) -> int:
    """The output tick a source timestamp rounds to (round half up, like ``fps``'s default)."""
    return math.floor(seconds * rate + Fraction(1, 2))


def gop_frames_for(segment_seconds: float, rate: Fraction) -> int:
    return max(1, round(Fraction(segment_seconds).limit_denominator(1000) * rate))


def auto_chunk_seconds(duration: Fraction, workers: int, segment_seconds: Fraction) -> Fraction:
    """Enough chunks to keep ``workers`` busy with some slack for uneven chunks (2 per worker),
    never shorter than one segment, never longer than 60 s."""
    if workers <= 1:
        return max(duration, segment_seconds)
    target = duration / (2 * workers)
    return min(max(target, segment_seconds), Fraction(60))


def plan_chunks(
    video: VideoInfo,
    *,
    container_start: Fraction,
    rate: Fraction,
    gop_frames: int,
    target_seconds: Fraction,
) -> ChunkPlan:
    if rate <= 0:
        raise ConfigError("output frame rate must be positive")
    first = tick_of(video.first_pts, rate)
    end = max(tick_of(video.end_pts, rate), first + 1)
    keyframe_ticks = {tick_of(k.pts, rate) for k in video.keyframes}
    target = max(gop_frames, round(target_seconds * rate / gop_frames) * gop_frames)

    boundaries = [first]
    while end - boundaries[-1] >= target + target // 2:
        start = boundaries[-1]
        ideal = start + target
        lo = max(start + gop_frames, ideal - target // 2)
        hi = min(ideal + target // 2, end - gop_frames)
        candidates = [
            b for b in range(_ceil_to(lo, first, gop_frames), hi + 1, gop_frames) if b > start
        ]
        if not candidates:
            break
        aligned = [b for b in candidates if b in keyframe_ticks]
        pool = aligned or candidates
        boundaries.append(min(pool, key=lambda b: (abs(b - ideal), b)))
    boundaries.append(end)

    chunks = []
    for index, (start, stop) in enumerate(itertools.pairwise(boundaries)):
        keyframe = _seek_keyframe(video.keyframes, start, rate)
        is_first_keyframe = keyframe == video.keyframes[0]
        seek = None if is_first_keyframe else max(Fraction(0), keyframe.dts - container_start)
        preroll = max(Fraction(0), start / rate - keyframe.pts)
        mode: ChunkMode = "keyframe" if tick_of(keyframe.pts, rate) == start else "decode-cut"
        chunks.append(
            Chunk(
                index=index,
                start_tick=start,
                end_tick=stop,
                seek_keyframe=keyframe,
                seek_seconds=seek,
                mode=mode,
                preroll_seconds=preroll,
            )
        )
    return ChunkPlan(
        rate=rate, first_tick=first, end_tick=end, gop_frames=gop_frames, chunks=tuple(chunks)
    )


def _ceil_to(value: int, origin: int, step: int) -> int:
    return origin + -(-(value - origin) // step) * step


def _seek_keyframe(keyframes: tuple[Keyframe, ...], start_tick: int, rate: Fraction) -> Keyframe:
    """The last keyframe whose frame is shown at or before ``start_tick``.

    The frame ``fps`` shows at tick s is the last source frame rounding to a tick <= s; a keyframe
    that itself rounds to <= s is at or before it, so decoding from there reaches it.
    """
    chosen = keyframes[0]
    for keyframe in keyframes:
        if tick_of(keyframe.pts, rate) <= start_tick:
            chosen = keyframe
        else:
            break
    return chosen
