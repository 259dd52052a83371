"""Golden tests: probe every recipe of the generated corpus and check what it must report.

The expectations are written against ``MediaInfo.summary()`` so a failure prints a readable
diff. Every recipe in ``SAMPLES`` must have an entry here: a new recipe comes with its truth.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from tests.conftest import SampleFactory
from vodforge.errors import (
    ConfigError,
    CorruptInput,
    EmptyInput,
    InputError,
    MissingCapability,
    NotMediaError,
    ToolchainCrash,
    UnsupportedInput,
)
from vodforge.media.probe import probe
from vodforge.media.samples import SAMPLES, SampleSpec, make_sample, sample_argv
from vodforge.media.toolchain import Toolchain

AAC_STEREO = {"codec": "aac", "channels": 2, "sample_rate": 48000}


def _video(**overrides: Any) -> dict[str, Any]:
    """Expected ``VideoInfo.summary()`` entries of a plain 320x180 30 fps H.264 clip."""
    base: dict[str, Any] = {
        "codec": "h264",
        "width": 320,
        "height": 180,
        "display_width": 320,
        "display_height": 180,
        "pix_fmt": "yuv420p",
        "bit_depth": 8,
        "chroma_subsampling": "420",
        "sar": "1",
        "rotation": 0,
        "interlaced": False,
        "nominal_rate": "30",
        "vfr": False,
        "first_pts": 0.0,
    }
    return base | overrides


#: name -> (expected video summary subset or None, expected audio summary subset or None)
EXPECTED: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {
    "hd_audio": (
        _video(
            width=1920,
            height=1080,
            display_width=1920,
            display_height=1080,
            frame_count=90,
            duration=3.0,
            keyframe_count=2,
            max_keyframe_gap=2.0,
        ),
        AAC_STEREO | {"duration": 3.0},
    ),
    "basic": (
        _video(frame_count=120, duration=4.0, keyframe_count=2, max_keyframe_gap=2.0),
        AAC_STEREO | {"duration": 4.0},
    ),
    "odd_size": (
        _video(
            codec="mpeg4",
            width=853,
            height=481,
            display_width=853,
            display_height=481,
            frame_count=60,
            duration=2.0,
        ),
        AAC_STEREO,
    ),
    "rotated": (
        _video(
            width=640,
            height=360,
            display_width=360,
            display_height=640,
            rotation=90,
            frame_count=60,
            duration=2.0,
        ),
        AAC_STEREO,
    ),
    "vfr": (
        # 90 frames at 30 fps, frames 4-6 of every 10 dropped: 63 left over the same 3 s.
        _video(vfr=True, frame_count=63, duration=pytest.approx(3.0, abs=0.002)),
        AAC_STEREO,
    ),
    "no_audio": (_video(frame_count=60, duration=2.0, keyframe_count=1), None),
    "audio_only": (None, AAC_STEREO | {"duration": 2.0}),
    "one_keyframe": (
        _video(frame_count=120, duration=4.0, keyframe_count=1, max_keyframe_gap=4.0),
        AAC_STEREO,
    ),
    "long_gop": (
        _video(frame_count=120, duration=4.0, keyframe_count=1, max_keyframe_gap=4.0),
        AAC_STEREO,
    ),
    "tenbit_422": (
        _video(
            pix_fmt="yuv422p10le",
            bit_depth=10,
            chroma_subsampling="422",
            frame_count=60,
            duration=2.0,
        ),
        AAC_STEREO,
    ),
    "interlaced": (
        _video(
            width=352,
            height=288,
            display_width=352,
            display_height=288,
            interlaced=True,
            field_order="tt",
            nominal_rate="25",
            frame_count=50,  # full frame rate: not halved by the `interlace` filter
            duration=2.0,
        ),
        AAC_STEREO,
    ),
    "ntsc_5994": (
        _video(
            nominal_rate="60000/1001",
            frame_count=120,
            duration=pytest.approx(2.002),
            average_rate=pytest.approx(59.94, abs=0.001),
        ),
        AAC_STEREO,
    ),
}

ERRORS: dict[str, type[InputError]] = {
    "truncated": CorruptInput,
    "truncated_tail": CorruptInput,
    "random_bytes": NotMediaError,
    "empty": EmptyInput,
}


def _subset(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {key: actual.get(key) for key in expected}


def test_every_recipe_has_an_expectation() -> None:
    assert set(EXPECTED) | set(ERRORS) == set(SAMPLES)
    assert not set(EXPECTED) & set(ERRORS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_reports_recipe(sample: SampleFactory, name: str) -> None:
    want_video, want_audio = EXPECTED[name]
    info = probe(sample(name))
    summary = info.summary()
    if want_video is None:
        assert info.video is None
    else:
        assert summary["video"] is not None
        assert _subset(summary["video"], want_video) == want_video
    if want_audio is None:
        assert info.audio is None
    else:
        assert summary["audio"] is not None
        assert _subset(summary["audio"], want_audio) == want_audio


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_probe_refuses_broken_recipe(sample: SampleFactory, name: str) -> None:
    path = sample(name)
    with pytest.raises(InputError) as caught:
        probe(path)
    assert type(caught.value) is ERRORS[name]
    assert SAMPLES[name].expected_error is ERRORS[name]
    assert path.name in caught.value.one_line()


def test_truncated_keeps_its_index_and_loses_frames(sample: SampleFactory) -> None:
    with pytest.raises(CorruptInput, match=r"index lists 60 video frames"):
        probe(sample("truncated"))


def test_truncated_tail_lost_its_index(sample: SampleFactory) -> None:
    with pytest.raises(CorruptInput, match="moov atom missing"):
        probe(sample("truncated_tail"))


def test_one_keyframe_has_exactly_one(sample: SampleFactory) -> None:
    video = probe(sample("one_keyframe")).video
    assert video is not None
    assert [k.pts for k in video.keyframes] == [Fraction(0)]
    assert video.max_keyframe_gap == video.duration


def test_keyframes_every_two_seconds_like_a_camera(sample: SampleFactory) -> None:
    video = probe(sample("hd_audio", seconds=6, size=(640, 360))).video
    assert video is not None
    assert [k.pts for k in video.keyframes] == [Fraction(0), Fraction(2), Fraction(4)]
    # B-frames: decode order runs ahead of presentation, and no keyframe is displayed late.
    assert all(k.dts <= k.pts for k in video.keyframes)


def test_ntsc_rate_is_exact(sample: SampleFactory) -> None:
    video = probe(sample("ntsc_5994")).video
    assert video is not None
    assert video.nominal_rate == Fraction(60000, 1001)
    assert video.duration == Fraction(120 * 1001, 60000)


def test_rotation_is_clockwise_and_display_is_portrait(sample: SampleFactory) -> None:
    # ffmpeg's -display_rotation is counter-clockwise; probe reports clockwise degrees, so the
    # recipe's -90 (what a phone held upright records) comes back as 90.
    video = probe(sample("rotated")).video
    assert video is not None
    assert (video.width, video.height) == (640, 360)
    assert video.rotation == 90
    width, height = video.display_size
    assert height > width


# -- the corpus itself ---------------------------------------------------------------------


def test_samples_are_deterministic(toolchain: Toolchain, tmp_path: Path) -> None:
    first = make_sample("no_audio", tmp_path / "a.mp4", ffmpeg=toolchain.path, seconds=1)
    second = make_sample("no_audio", tmp_path / "b.mp4", ffmpeg=toolchain.path, seconds=1)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_failed_generation_leaves_nothing(toolchain: Toolchain, tmp_path: Path) -> None:
    spec = SampleSpec(name="broken", description="", suffix=".mp4", video_codec="no_such_enc")
    with pytest.raises(MissingCapability) as caught:
        make_sample(spec, tmp_path / "broken.mp4", ffmpeg=toolchain.path)
    assert caught.value.evidence is not None
    assert "no_such_enc" in str(caught.value)
    assert list(tmp_path.iterdir()) == []

    spec = SampleSpec(name="bad", description="", suffix=".mp4", video_args=("-bogus", "1"))
    with pytest.raises(ToolchainCrash):
        make_sample(spec, tmp_path / "bad.mp4", ffmpeg=toolchain.path)
    assert list(tmp_path.iterdir()) == []


def test_sample_argv_is_pure_and_addresses_files_as_urls(tmp_path: Path) -> None:
    argv = sample_argv("hd_audio", tmp_path / "x.mp4", seconds=30)
    assert argv[-1] == f"file:{tmp_path / 'x.mp4'}"
    assert "duration=30" in " ".join(argv)
    assert argv[argv.index("-g") + 1] == "60"  # 2 s at 30 fps
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("name", "size"),
    [("nonexistent", None), ("basic", (853, 480)), ("tenbit_422", (321, 180))],
)
def test_sample_argv_refuses_what_cannot_be_made(
    tmp_path: Path, name: str, size: tuple[int, int] | None
) -> None:
    with pytest.raises(ConfigError):
        sample_argv(name, tmp_path / "x.mp4", size=size)


def test_odd_size_can_be_resized_and_stays_odd(sample: SampleFactory) -> None:
    video = probe(sample("odd_size", size=(101, 77))).video
    assert video is not None
    assert (video.width, video.height, video.sar) == (101, 77, Fraction(1))


# -- sources that would make ffmpeg open other files ----------------------------------------


@dataclass
class Canary:
    """A FIFO that notices being opened: a writer blocks on it until some reader opens it."""

    path: Path
    opened: threading.Event

    def was_opened(self) -> bool:
        return self.opened.wait(0.2)


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Canary]:
    path = tmp_path / "canary.ts"
    os.mkfifo(path)
    opened = threading.Event()

    def wait_for_reader() -> None:
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            return
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=wait_for_reader, daemon=True)
    thread.start()
    yield Canary(path, opened)
    # Release the writer if nobody opened the FIFO, then let the thread finish.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.close(fd)
    thread.join(5)


def _playlist(target: Path) -> str:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
        "#EXTINF:2.0,\n/etc/passwd\n"
        f"#EXTINF:2.0,\nfile:{target}\n"
        f"#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n"
    )


def _concat(target: Path) -> str:
    return f"ffconcat version 1.0\nfile '/etc/passwd'\nfile '{target}'\n"


def _bare_concat(target: Path) -> str:
    return f"file '{target}'\nfile '/etc/passwd'\n"


@pytest.mark.parametrize(
    ("filename", "render", "reason"),
    [
        ("upload.m3u8", _playlist, "HLS playlist"),
        ("upload.mp4", _playlist, "HLS playlist"),
        ("list.ffconcat", _concat, "concat script"),
        ("upload.mov", _concat, "concat script"),
        ("list.txt", _bare_concat, "concat script"),
    ],
)
def test_playlists_and_scripts_are_refused_unread(
    tmp_path: Path, canary: Canary, filename: str, render: Any, reason: str
) -> None:
    source = tmp_path / filename
    source.write_text(render(canary.path))
    with pytest.raises(UnsupportedInput, match=reason):
        probe(source)
    assert not canary.was_opened(), "probe let the demuxer open a file named by the upload"


def test_canary_notices_an_unrestricted_open(tmp_path: Path, canary: Canary) -> None:
    """Positive control: without vodforge's whitelists, ffmpeg does open the named file."""
    script = tmp_path / "list.ffconcat"
    script.write_text(_concat(canary.path).replace("file '/etc/passwd'\n", ""))
    with pytest.raises(av.error.FFmpegError):
        av.open(str(script), format="concat", options={"safe": "0"})
    assert canary.was_opened()
