"""What a probe learns about a source, as plain typed values (no IO here).

Times are exact ``Fraction`` seconds on the source's own timeline (the container's timestamps, not
shifted to zero), so chunk planning can do tick arithmetic without float drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Keyframe:
    """A keyframe of the source video: presentation and decode time in seconds."""

    pts: Fraction
    dts: Fraction


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    chroma_subsampling: str  # "420", "422", "444", "400", ...
    sar: Fraction
    rotation: int  # degrees clockwise the picture must be turned for display: 0/90/180/270
    interlaced: bool
    field_order: str  # "progressive", "tt", "bb", "tb", "bt", "unknown"
    nominal_rate: Fraction  # the rate the container/codec claims (r_frame_rate)
    average_rate: Fraction  # frames / duration
    vfr: bool
    frame_count: int
    first_pts: Fraction
    end_pts: Fraction  # presentation end: last frame's pts + its duration
    keyframes: tuple[Keyframe, ...] = field(repr=False)
    max_keyframe_gap: Fraction = Fraction(0)

    @property
    def duration(self) -> Fraction:
        return self.end_pts - self.first_pts

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: square pixels, rotation applied (not yet made even)."""
        width = round(self.width * self.sar) if self.sar > 0 else self.width
        height = self.height
        if self.rotation in (90, 270):
            width, height = height, width
        return width, height

    def summary(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "display_width": self.display_size[0],
            "display_height": self.display_size[1],
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "chroma_subsampling": self.chroma_subsampling,
            "sar": str(self.sar),
            "rotation": self.rotation,
            "interlaced": self.interlaced,
            "field_order": self.field_order,
            "nominal_rate": str(self.nominal_rate),
            "average_rate": float(round(self.average_rate, 3)),
            "vfr": self.vfr,
            "frame_count": self.frame_count,
            "first_pts": float(self.first_pts),
            "duration": float(self.duration),
            "keyframe_count": len(self.keyframes),
            "max_keyframe_gap": float(self.max_keyframe_gap),
        }


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    first_pts: Fraction
    duration: Fraction

    def summary(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "first_pts": float(self.first_pts),
            "duration": float(self.duration),
        }


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    size_bytes: int
    start_time: Fraction  # the container's start time; ffmpeg's -ss is relative to it
    duration: Fraction
    video: VideoInfo | None
    audio: AudioInfo | None
    bit_rate: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format_name,
            "size_bytes": self.size_bytes,
            "start_time": float(self.start_time),
            "duration": float(self.duration),
            "bit_rate": self.bit_rate,
            "video": self.video.summary() if self.video else None,
            "audio": self.audio.summary() if self.audio else None,
        }
