"""Ladder, frame-rate policy and chunk plan: pure functions, no ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from tests.unit.factories import media_info, video_info
from vodforge.errors import NoVideoStream
from vodforge.media.chunks import (
    ChunkPlan,
    auto_chunk_seconds,
    gop_frames_for,
    plan_chunks,
    tick_of,
)
from vodforge.media.ladder import Rendition, output_rate, plan_renditions
from vodforge.media.plan import plan_job
from vodforge.media.presets import FpsPolicy, load_preset


def names(renditions: list[Rendition]) -> list[str]:
    return [r.name for r in renditions]


class TestLadder:
    def test_default_ladder_for_1080p(self) -> None:
        rungs = plan_renditions(video_info(), load_preset("default"))
        assert names(rungs) == ["1080p", "720p", "480p", "360p"]
        assert [(r.width, r.height) for r in rungs] == [
            (1920, 1080),
            (1280, 720),
            (854, 480),
            (640, 360),
        ]

    def test_never_upscales(self) -> None:
        rungs = plan_renditions(video_info(width=1280, height=720), load_preset("default"))
        assert names(rungs) == ["720p", "480p", "360p"]

    def test_tiny_source_gets_one_rung_at_its_own_size(self) -> None:
        rungs = plan_renditions(video_info(width=320, height=180), load_preset("default"))
        assert len(rungs) == 1
        assert (rungs[0].width, rungs[0].height) == (320, 180)

    def test_odd_dimensions_become_even(self) -> None:
        rungs = plan_renditions(video_info(width=853, height=481), load_preset("default"))
        for r in rungs:
            assert r.width % 2 == 0
            assert r.height % 2 == 0
        assert names(rungs) == ["480p", "360p"]

    def test_rotation_gives_portrait_rungs(self) -> None:
        rungs = plan_renditions(
            video_info(width=1920, height=1080, rotation=90), load_preset("default")
        )
        assert (rungs[0].width, rungs[0].height) == (1080, 1920)
        assert all(r.height > r.width for r in rungs)

    def test_anamorphic_sar_is_folded_into_width(self) -> None:
        # DV NTSC widescreen: 720x480 stored, SAR 32:27 -> 853x480 square-pixel display
        rungs = plan_renditions(
            video_info(width=720, height=480, sar=Fraction(32, 27)), load_preset("default")
        )
        assert (rungs[0].width, rungs[0].height) == (854, 480)


class TestOutputRate:
    def test_keeps_source_rate(self) -> None:
        assert output_rate(video_info(rate=Fraction(25)), FpsPolicy()) == 25

    def test_ntsc_5994_kept_under_cap_60(self) -> None:
        rate = Fraction(60000, 1001)
        assert output_rate(video_info(rate=rate), FpsPolicy()) == rate

    def test_cap_halves_5994_to_2997(self) -> None:
        got = output_rate(video_info(rate=Fraction(60000, 1001)), FpsPolicy(max_fps=30))
        assert got == Fraction(30000, 1001)

    def test_vfr_snaps_to_nearest_standard_rate(self) -> None:
        info = video_info(vfr=True, rate=Fraction(90000), average_rate=Fraction(2991, 100))
        assert output_rate(info, FpsPolicy()) == Fraction(30000, 1001)

    def test_fixed(self) -> None:
        assert output_rate(video_info(), FpsPolicy(mode="fixed", rate="24")) == 24


class TestChunkPlan:
    def plan(self, **kw: Any) -> ChunkPlan:
        info = video_info(**kw)
        return plan_chunks(
            info,
            container_start=Fraction(0),
            rate=info.nominal_rate,
            gop_frames=gop_frames_for(4.0, info.nominal_rate),
            target_seconds=Fraction(8),
        )

    def test_chunks_tile_the_whole_output_exactly(self) -> None:
        plan = self.plan()
        ticks = [t for c in plan.chunks for t in range(c.start_tick, c.end_tick)]
        assert ticks == list(range(900))
        assert plan.total_frames == 900

    def test_boundaries_on_segment_multiples_and_keyframes(self) -> None:
        plan = self.plan()
        starts = [c.start_tick for c in plan.chunks]
        assert starts == [0, 240, 480, 720]
        assert all(c.mode == "keyframe" for c in plan.chunks)
        assert all(c.preroll_seconds == 0 for c in plan.chunks)

    def test_first_chunk_does_not_seek_later_ones_seek_by_dts(self) -> None:
        plan = self.plan()
        first, second = plan.chunks[0], plan.chunks[1]
        assert first.seek_seconds is None
        # keyframe at 8.0 s has dts two frames earlier (B-frames): seeking by dts lands on it
        assert second.seek_seconds == Fraction(8) - Fraction(2, 30)

    def test_single_keyframe_falls_back_to_decode_cut(self) -> None:
        plan = self.plan(gop=None)
        assert len(plan.chunks) > 1
        for chunk in plan.chunks[1:]:
            assert chunk.mode == "decode-cut"
            assert chunk.seek_seconds is None  # decodes from the only keyframe
            assert chunk.preroll_seconds == Fraction(chunk.start_tick, 30)
        assert sum(c.frames for c in plan.chunks) == 900

    def test_sparse_keyframes_prefer_aligned_boundary_within_window(self) -> None:
        # keyframes every 10 s; segments of 4 s; target 8 s -> boundary 8 s has no keyframe but
        # is inside the window; no candidate in [4, 12] is a keyframe multiple of 4 s except none
        plan = self.plan(gop=300)
        for chunk in plan.chunks:
            assert chunk.start_tick % 120 == 0
        assert sum(c.frames for c in plan.chunks) == 900

    def test_nonzero_start_time_uses_absolute_ticks(self) -> None:
        info = video_info(first_pts=Fraction(14, 10), frames=300)
        plan = plan_chunks(
            info,
            container_start=Fraction(14, 10),
            rate=Fraction(30),
            gop_frames=120,
            target_seconds=Fraction(4),
        )
        assert plan.first_tick == 42
        assert plan.end_tick == 342
        assert plan.total_frames == 300
        assert plan.chunks[1].start_tick == 42 + 120

    def test_5994_frame_exact(self) -> None:
        rate = Fraction(60000, 1001)
        info = video_info(rate=rate, frames=1000, gop=120)
        plan = plan_chunks(
            info,
            container_start=Fraction(0),
            rate=rate,
            gop_frames=gop_frames_for(4.0, rate),
            target_seconds=Fraction(4),
        )
        assert plan.total_frames == 1000
        assert sum(c.frames for c in plan.chunks) == 1000
        assert plan.gop_frames == 240

    def test_short_clip_is_one_chunk(self) -> None:
        plan = self.plan(frames=60)
        assert len(plan.chunks) == 1

    def test_tick_rounding(self) -> None:
        assert tick_of(Fraction(1, 60), Fraction(30)) == 1  # half a tick rounds up
        assert tick_of(Fraction(1, 61), Fraction(30)) == 0

    def test_auto_chunk_seconds(self) -> None:
        assert auto_chunk_seconds(Fraction(30), 2, Fraction(4)) == Fraction(15, 2)
        assert auto_chunk_seconds(Fraction(3), 2, Fraction(4)) == Fraction(4)
        assert auto_chunk_seconds(Fraction(3600), 2, Fraction(4)) == Fraction(60)
        assert auto_chunk_seconds(Fraction(30), 1, Fraction(4)) == Fraction(30)


class TestJobPlan:
    def test_audio_only_is_refused(self) -> None:
        info = media_info()
        info = type(info)(**{**info.__dict__, "video": None})
        with pytest.raises(NoVideoStream, match="no video stream"):
            plan_job(info, load_preset("default"), workers=2)

    def test_plan_to_dict_is_json_friendly(self) -> None:
        plan = plan_job(media_info(), load_preset("default"), workers=2)
        data = plan.to_dict()
        assert data["frames"] == 900
        assert data["frame_rate"] == "30"
        assert [r["name"] for r in data["renditions"]] == ["1080p", "720p", "480p", "360p"]
        assert sum(c["frames"] for c in data["chunks"]) == 900
