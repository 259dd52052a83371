"""Synthetic MediaInfo values for planner tests (no ffmpeg, no files)."""

from __future__ import annotations

import itertools
from fractions import Fraction

from vodforge.media.mediainfo import AudioInfo, Keyframe, MediaInfo, VideoInfo


def video_info(
    *,
    width: int = 1920,
    height: int = 1080,
    rate: Fraction = Fraction(30),
    frames: int = 900,
    gop: int | None = 60,
    first_pts: Fraction = Fraction(0),
    rotation: int = 0,
    sar: Fraction = Fraction(1),
    interlaced: bool = False,
    vfr: bool = False,
    average_rate: Fraction | None = None,
    b_frame_delay: int = 2,
) -> VideoInfo:
    """A CFR stream with keyframes every ``gop`` frames (``None``: only the first)."""
    step = 1 / rate
    keyframe_indices = range(0, frames, gop) if gop else [0]
    keyframes = tuple(
        Keyframe(pts=first_pts + i * step, dts=first_pts + (i - b_frame_delay) * step)
        for i in keyframe_indices
    )
    end = first_pts + frames * step
    gaps = [b.pts - a.pts for a, b in itertools.pairwise(keyframes)]
    gaps.append(end - keyframes[-1].pts)
    return VideoInfo(
        codec="h264",
        width=width,
        height=height,
        pix_fmt="yuv420p",
        bit_depth=8,
        chroma_subsampling="420",
        sar=sar,
        rotation=rotation,
        interlaced=interlaced,
        field_order="tt" if interlaced else "progressive",
        nominal_rate=rate,
        average_rate=average_rate or rate,
        vfr=vfr,
        frame_count=frames,
        first_pts=first_pts,
        end_pts=end,
        keyframes=keyframes,
        max_keyframe_gap=max(gaps),
    )


def media_info(
    video: VideoInfo | None = None, *, audio: bool = True, audio_first: Fraction = Fraction(0)
) -> MediaInfo:
    video = video or video_info()
    return MediaInfo(
        path="/tmp/source.mp4",
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=1_000_000,
        start_time=Fraction(0),
        duration=video.duration,
        video=video,
        audio=AudioInfo(
            codec="aac",
            sample_rate=48000,
            channels=2,
            first_pts=audio_first,
            duration=video.duration,
        )
        if audio
        else None,
    )
