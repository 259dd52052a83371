"""A job's whole plan from a probe and a preset (pure): ladder, chunks, audio, previews."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vodforge.errors import NoVideoStream
from vodforge.media.argv import VideoFilters
from vodforge.media.chunks import ChunkPlan, auto_chunk_seconds, gop_frames_for, plan_chunks
from vodforge.media.ladder import Rendition, output_rate, plan_renditions
from vodforge.media.mediainfo import MediaInfo, VideoInfo
from vodforge.media.presets import Preset
from vodforge.media.previews import PreviewPlan, plan_previews


@dataclass(frozen=True)
class JobPlan:
    info: MediaInfo
    preset: Preset
    renditions: tuple[Rendition, ...]
    chunks: ChunkPlan
    filters: VideoFilters
    previews: PreviewPlan | None
    has_audio: bool

    @property
    def video(self) -> VideoInfo:
        assert self.info.video is not None
        return self.info.video

    @property
    def expected_frames(self) -> int:
        return self.chunks.total_frames

    def to_dict(self) -> dict[str, Any]:
        c = self.chunks
        return {
            "frame_rate": str(c.rate),
            "frames": c.total_frames,
            "duration": float(c.duration),
            "first_tick": c.first_tick,
            "gop_frames": c.gop_frames,
            "segment_seconds": float(c.segment_seconds),
            "deinterlace": self.filters.deinterlace,
            "audio": self.has_audio,
            "renditions": [
                {
                    "name": r.name,
                    "width": r.width,
                    "height": r.height,
                    "crf": r.crf,
                    "bitrate_kbps": r.bitrate_kbps,
                    "maxrate_kbps": r.maxrate_kbps,
                    "bufsize_kbps": r.bufsize_kbps,
                    "profile": r.profile,
                }
                for r in self.renditions
            ],
            "chunks": [
                {
                    "index": ch.index,
                    "start_tick": ch.start_tick,
                    "end_tick": ch.end_tick,
                    "frames": ch.frames,
                    "mode": ch.mode,
                    "seek_seconds": float(ch.seek_seconds) if ch.seek_seconds else None,
                    "preroll_seconds": float(ch.preroll_seconds),
                }
                for ch in c.chunks
            ],
            "previews_mode": self.previews.mode if self.previews else None,
        }


def plan_job(
    info: MediaInfo,
    preset: Preset,
    *,
    workers: int,
    chunk_seconds: float | None = None,
) -> JobPlan:
    if info.video is None:
        raise NoVideoStream(
            f"{info.path}: no video stream (audio-only input is not transcoded by vodforge)"
        )
    video = info.video
    rate = output_rate(video, preset.fps)
    gop = gop_frames_for(preset.packaging.segment_seconds, rate)
    target = chunk_seconds or preset.chunk_seconds
    target_seconds = (
        Fraction(target).limit_denominator(1000)
        if target
        else auto_chunk_seconds(video.duration, workers, Fraction(gop) / rate)
    )
    chunks = plan_chunks(
        video,
        container_start=info.start_time,
        rate=rate,
        gop_frames=gop,
        target_seconds=target_seconds,
    )
    previews = (
        plan_previews(info, preset.previews, output_start=chunks.start_seconds)
        if preset.previews.enabled
        else None
    )
    return JobPlan(
        info=info,
        preset=preset,
        renditions=tuple(plan_renditions(video, preset)),
        chunks=chunks,
        filters=VideoFilters.for_source(info, preset.video),
        previews=previews,
        has_audio=info.audio is not None,
    )
