"""The pure parsers of ``ffmpeg -version/-encoders/-filters`` output, and drift detection.

The literal samples are cut from the pinned build (n9.0.2, imageio-ffmpeg 0.8.1), headers and
all, so a parser change that breaks on real output fails here without running ffmpeg.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from vodforge.errors import ToolchainDrift, ToolchainNotFound
from vodforge.media import toolchain as toolchain_module
from vodforge.media.toolchain import (
    REQUIRED_ENCODERS,
    FileStamp,
    Toolchain,
    load_toolchain,
    parse_encoders,
    parse_filters,
    parse_version,
)

VERSION_OUTPUT = """\
ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright (c) 2000-2026 the FFmpeg developers
built with gcc 16.2.0 (crosstool-NG 1.29.0.7_b1a94f6)
configuration: --prefix=/ffbuild/prefix --pkg-config-flags=--static --enable-gpl --enable-libx264
libavutil      61.  1.102 / 61.  1.102
libavcodec     63.  1.102 / 63.  1.102
libavformat    63.  1.102 / 63.  1.102
libavdevice    63.  1.102 / 63.  1.102
libavfilter    12.  1.102 / 12.  1.102
libswscale     10.  1.102 / 10.  1.102
libswresample   7.  1.102 /  7.  1.102

Exiting with exit code 0
"""

ENCODERS_OUTPUT = """\
Encoders:
 V..... = Video
 A..... = Audio
 S..... = Subtitle
 .F.... = Frame-level multithreading
 ..S... = Slice-level multithreading
 ...X.. = Codec is experimental
 ....B. = Supports draw_horiz_band
 .....D = Supports direct rendering method 1
 ------
 V....D a64multi             Multicolor charset for Commodore 64 (codec a64_multi)
 V....D gif                  GIF (Graphics Interchange Format)
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D libx264rgb           libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 RGB (codec h264)
 V..... libsvtav1            SVT-AV1(Scalable Video Technology for AV1) encoder (codec av1)
 VFS..D mjpeg                MJPEG (Motion JPEG)
 A....D aac                  AAC (Advanced Audio Coding)
 A....D libopus              libopus Opus (codec opus)
 S..... webvtt               WebVTT subtitle
"""

FILTERS_OUTPUT = """\
Filters:
  T.. = Timeline support
  .S. = Slice threading
  A = Audio input/output
  V = Video input/output
  N = Dynamic number and/or type of input/output
  | = Source or sink filter
  ------
 TS aap               AA->A      Apply Affine Projection algorithm to first audio stream.
 .. amix              N->A       Audio mixing.
 .. asplit            A->N       Pass on the audio input to N audio outputs.
 TS bwdif             V->V       Deinterlace the input image.
 .. libvmaf           VV->V      Calculate the VMAF between two video streams.
 .. scale             V->V       Scale the input video size and/or convert the image format.
 .. split             V->N       Pass on the input to N video outputs.
 .. concat            N->N       Concatenate audio and video streams.
 .. sine              |->A       Generate sine wave audio signal.
 .. testsrc2          |->V       Generate another test pattern.
 .. nullsink          V->|       Do absolutely nothing with the input video.
"""


# -- parse_version -----------------------------------------------------------------------------


def test_parse_version_of_the_pinned_build() -> None:
    assert parse_version(VERSION_OUTPUT) == ("n9.0.2-17-g2a571b6068-20260930", "9.0.2")


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        ("ffmpeg version 7.1 Copyright (c) 2000-2024", ("7.1", "7.1")),
        ("ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023", ("6.1.1-3ubuntu5", "6.1.1")),
        ("ffmpeg version n7.0.2-static https://johnvansickle.com", ("n7.0.2-static", "7.0.2")),
        # A git snapshot has no release number: the whole string stands in for it.
        ("ffmpeg version N-117654-g1a2b3c4d5e-20241101", ("N-117654-g1a2b3c4d5e-20241101",) * 2),
    ],
)
def test_parse_version_variants(first_line: str, expected: tuple[str, str]) -> None:
    assert parse_version(first_line + "\nbuilt with gcc\n") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "ffprobe version n9.0.2 Copyright (c) 2007-2026 the FFmpeg developers\n",
        "Usage: something else\n",
    ],
)
def test_parse_version_refuses_what_is_not_ffmpeg(text: str) -> None:
    with pytest.raises(ToolchainNotFound, match="not an ffmpeg binary"):
        parse_version(text)


# -- parse_encoders / parse_filters ------------------------------------------------------------


def test_parse_encoders_reads_only_the_list() -> None:
    assert parse_encoders(ENCODERS_OUTPUT) == {
        "a64multi",
        "gif",
        "libx264",
        "libx264rgb",
        "libsvtav1",
        "mjpeg",
        "aac",
        "libopus",
        "webvtt",
    }


def test_parse_encoders_ignores_the_legend() -> None:
    legend_only = ENCODERS_OUTPUT.split(" ------", maxsplit=1)[0]
    assert parse_encoders(legend_only) == frozenset()
    assert "=" not in parse_encoders(ENCODERS_OUTPUT)


def test_parse_encoders_covers_what_the_pipeline_needs() -> None:
    assert parse_encoders(ENCODERS_OUTPUT) >= REQUIRED_ENCODERS


def test_parse_filters_reads_sources_sinks_and_dynamic_filters() -> None:
    assert parse_filters(FILTERS_OUTPUT) == {
        "aap",
        "amix",
        "asplit",
        "bwdif",
        "libvmaf",
        "scale",
        "split",
        "concat",
        "sine",
        "testsrc2",
        "nullsink",
    }


def test_parse_filters_ignores_the_legend() -> None:
    legend_only = FILTERS_OUTPUT.split(" ------", maxsplit=1)[0]
    assert parse_filters(legend_only) == frozenset()


def test_parse_filters_of_the_older_three_flag_layout() -> None:
    # ffmpeg <= 6 printed a third flag column ("C" = command support).
    older = (
        " TSC scale             V->V       Scale the input video size.\n"
        " ... split             V->N       Pass on the input to N video outputs.\n"
    )
    assert parse_filters(older) == {"scale", "split"}


def test_parsers_are_empty_on_empty_input() -> None:
    assert parse_encoders("") == frozenset()
    assert parse_filters("") == frozenset()


# -- load_toolchain and drift ------------------------------------------------------------------


def _fake_binary(path: Path, banner: str) -> Path:
    path.write_text(f"#!/bin/sh\necho '{banner}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "banner",
    [
        "ffprobe version n9.0.2 Copyright (c) 2007-2026 the FFmpeg developers",
        "usage: not-ffmpeg [options]",
    ],
)
def test_load_toolchain_refuses_a_binary_that_is_not_ffmpeg(tmp_path: Path, banner: str) -> None:
    fake = _fake_binary(tmp_path / "ffmpeg", banner)
    with pytest.raises(ToolchainNotFound, match="not an ffmpeg binary"):
        load_toolchain(fake)


def test_load_toolchain_refuses_missing_and_non_executable(tmp_path: Path) -> None:
    with pytest.raises(ToolchainNotFound, match="not found"):
        load_toolchain(tmp_path / "nope")
    plain = tmp_path / "ffmpeg"
    plain.write_bytes(b"\x7fELF")
    with pytest.raises(ToolchainNotFound, match="not executable"):
        load_toolchain(plain)


@pytest.fixture(scope="module")
def fingerprinted_copy(tmp_path_factory: pytest.TempPathFactory) -> Toolchain:
    """The pinned binary copied to a scratch directory and fingerprinted there, once."""
    real = load_toolchain()
    copy = tmp_path_factory.mktemp("toolchain") / real.path.name
    shutil.copy2(real.path, copy)
    toolchain = load_toolchain(copy)
    assert toolchain.sha256 == real.sha256
    assert toolchain.version == real.version
    return toolchain


@pytest.fixture
def own_copy(fingerprinted_copy: Toolchain, tmp_path: Path) -> Toolchain:
    """A private copy for one test to damage, with the fingerprint of the pinned bytes."""
    path = tmp_path / fingerprinted_copy.path.name
    shutil.copy2(fingerprinted_copy.path, path)
    return replace(fingerprinted_copy, path=path, stamp=FileStamp.of(path))


def test_verify_unchanged_passes_on_an_untouched_binary(fingerprinted_copy: Toolchain) -> None:
    fingerprinted_copy.verify_unchanged()


def test_verify_unchanged_tolerates_a_touch_without_change(own_copy: Toolchain) -> None:
    stat = own_copy.path.stat()
    os.utime(own_copy.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    own_copy.verify_unchanged()  # the stamp moved, so it rehashes: same bytes, no drift


def test_verify_unchanged_detects_a_modified_binary(own_copy: Toolchain) -> None:
    with own_copy.path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ToolchainDrift, match="changed under this worker"):
        own_copy.verify_unchanged()


def test_verify_unchanged_detects_a_removed_binary(own_copy: Toolchain) -> None:
    own_copy.path.unlink()
    with pytest.raises(ToolchainDrift, match="is gone"):
        own_copy.verify_unchanged()


def test_a_touch_is_rehashed_once_and_later_changes_still_caught(
    own_copy: Toolchain, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = own_copy.path.stat()
    os.utime(own_copy.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    hashed: list[Path] = []
    real = toolchain_module.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(toolchain_module, "sha256_file", counting)
    own_copy.verify_unchanged()
    own_copy.verify_unchanged()
    assert len(hashed) == 1  # the matching new stamp is remembered
    with own_copy.path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ToolchainDrift):
        own_copy.verify_unchanged()
