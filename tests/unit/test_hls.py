"""Pure HLS helpers: codec strings, master playlists, media playlist arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest

from vodforge.errors import VerificationError
from vodforge.media.hls import (
    AAC_LC_CODECS,
    AudioEntry,
    VariantEntry,
    codecs_from_avcc,
    extinf_fits_target,
    fix_target_duration,
    media_playlist_summary,
    parse_media_playlist,
    peak_bitrate,
    render_master,
    segment_bitrates,
    write_master,
)


def _avcc(profile: int, constraints: int, level: int) -> bytes:
    # configurationVersion, profile, compat, level, 0xFF (lengthSizeMinusOne=3), 0xE1 (1 SPS)
    return bytes([1, profile, constraints, level, 0xFF, 0xE1, 0x00, 0x04]) + b"\x67\x64\x00\x1f"


@pytest.mark.parametrize(
    ("profile", "constraints", "level", "expected"),
    [
        (0x64, 0x00, 31, "avc1.64001f"),  # High@3.1
        (0x4D, 0x40, 30, "avc1.4d401e"),  # Main@3.0
        (0x42, 0xE0, 30, "avc1.42e01e"),  # Constrained Baseline@3.0
        (0x64, 0x00, 40, "avc1.640028"),  # High@4.0
    ],
)
def test_codecs_from_avcc(profile: int, constraints: int, level: int, expected: str) -> None:
    assert codecs_from_avcc(_avcc(profile, constraints, level)) == expected


def test_codecs_from_annexb_sps() -> None:
    annexb = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01\x67\x4d\x40\x1e\xaa\xbb"
    assert codecs_from_avcc(annexb) == "avc1.4d401e"


@pytest.mark.parametrize("junk", [b"", b"\x01\x64", b"\x00\x00\x01\x68\xee"])
def test_codecs_from_avcc_rejects_junk(junk: bytes) -> None:
    with pytest.raises(VerificationError):
        codecs_from_avcc(junk)


VARIANTS = [
    VariantEntry(
        uri="720p/index.m3u8",
        width=1280,
        height=720,
        frame_rate=Fraction(30000, 1001),
        codecs="avc1.64001f",
        peak_bps=3_000_000,
        average_bps=2_500_000,
    ),
    VariantEntry(
        uri="360p/index.m3u8",
        width=640,
        height=360,
        frame_rate=Fraction(30000, 1001),
        codecs="avc1.64001e",
        peak_bps=900_000,
        average_bps=700_000,
    ),
]
AUDIO = AudioEntry(
    uri="audio/index.m3u8",
    codecs=AAC_LC_CODECS,
    peak_bps=130_000,
    average_bps=128_000,
    channels=2,
)


def test_render_master_with_audio_parses_back() -> None:
    text = render_master(VARIANTS, AUDIO)
    assert text.startswith("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
    assert text.endswith("\n")
    parsed = m3u8.M3U8(text, strict=True)
    assert parsed.is_variant
    assert parsed.version == 7
    assert parsed.is_independent_segments

    (media,) = parsed.media
    assert media.type == "AUDIO"
    assert media.group_id == "aud"
    assert media.uri == "audio/index.m3u8"
    assert media.channels == "2"
    assert media.default == "YES"
    assert media.autoselect == "YES"
    assert media.language == "und"

    assert [p.uri for p in parsed.playlists] == ["720p/index.m3u8", "360p/index.m3u8"]
    top = parsed.playlists[0].stream_info
    assert top.bandwidth == 3_130_000
    assert top.average_bandwidth == 2_628_000
    assert top.resolution == (1280, 720)
    assert top.codecs == "avc1.64001f,mp4a.40.2"
    assert top.frame_rate == pytest.approx(29.97)
    assert top.audio == "aud"
    assert "FRAME-RATE=29.970," in text


def test_render_master_without_audio() -> None:
    text = render_master(VARIANTS[1:], None)
    assert "EXT-X-MEDIA" not in text
    assert "AUDIO=" not in text
    parsed = m3u8.M3U8(text, strict=True)
    assert parsed.media == []
    (only,) = parsed.playlists
    info = only.stream_info
    assert info.bandwidth == 900_000
    assert info.average_bandwidth == 700_000
    assert info.codecs == "avc1.64001e"
    assert info.resolution == (640, 360)
    assert info.audio is None


def test_render_master_integer_frame_rate() -> None:
    variant = VariantEntry("a/index.m3u8", 2, 2, Fraction(25), "avc1.42e00a", 1, 1)
    assert "FRAME-RATE=25.000" in render_master([variant], None)


def test_render_master_refuses_what_it_cannot_quote() -> None:
    with pytest.raises(VerificationError):
        render_master([], AUDIO)
    with pytest.raises(VerificationError):
        render_master(VARIANTS, AudioEntry('a".m3u8', AAC_LC_CODECS, 1, 1, 2))
    bad_uri = VariantEntry("x\n#EXT-X-ENDLIST", 2, 2, Fraction(25), "avc1.42e00a", 1, 1)
    with pytest.raises(VerificationError):
        render_master([bad_uri], None)


MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:4.000000,
seg_00000.m4s
#EXTINF:4.000000,
seg_00001.m4s
#EXTINF:1.500000,
seg_00002.m4s
#EXT-X-ENDLIST
"""


def test_parse_media_playlist() -> None:
    summary = parse_media_playlist(MEDIA)
    assert summary["version"] == 7
    assert summary["target_duration"] == 4
    assert summary["playlist_type"] == "vod"
    assert summary["endlist"] is True
    assert summary["independent_segments"] is True
    assert summary["init_uri"] == "init.mp4"
    assert summary["segment_uris"] == ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"]
    assert summary["durations"] == [4.0, 4.0, 1.5]
    assert summary["total_duration"] == pytest.approx(9.5)
    assert summary["byteranges"] is False


@pytest.mark.parametrize("text", ["", "hello\n", render_master(VARIANTS, None)])
def test_parse_media_playlist_rejects(text: str) -> None:
    with pytest.raises(VerificationError):
        parse_media_playlist(text)


def test_extinf_rounding_follows_the_rfc() -> None:
    assert extinf_fits_target(4.0, 4)
    assert extinf_fits_target(4.499, 4)
    assert not extinf_fits_target(4.5, 4)  # rounds half up, not to even
    assert not extinf_fits_target(5.0, 4)


def test_peak_bitrate_ignores_a_short_tail_alone() -> None:
    # 1 s tail with a big size would be 8 Mbit/s on its own; as a run with its neighbour it
    # is (500k + 1M) * 8 / 5 s.
    durations = [4.0, 4.0, 1.0]
    sizes = [400_000, 500_000, 1_000_000]
    assert peak_bitrate(durations, sizes, 4) == 2_400_000


def test_peak_bitrate_short_playlist_falls_back_to_overall() -> None:
    assert peak_bitrate([0.5], [1000], 4) == 16_000


def _write_rendition(root: Path) -> Path:
    (root / "init.mp4").write_bytes(b"\0" * 500)
    for index, size in enumerate((400_000, 500_000, 100_000)):
        (root / f"seg_{index:05d}.m4s").write_bytes(b"\0" * size)
    playlist = root / "index.m3u8"
    playlist.write_text(MEDIA)
    return playlist


def test_segment_bitrates(tmp_path: Path) -> None:
    playlist = _write_rendition(tmp_path)
    peak, average = segment_bitrates(playlist)
    assert peak == 1_000_000  # 500000 bytes in 4 s
    assert average == math.ceil((1_000_000 + 500) * 8 / 9.5)
    assert media_playlist_summary(playlist)["init_uri"] == "init.mp4"


def test_segment_bitrates_missing_segment(tmp_path: Path) -> None:
    playlist = _write_rendition(tmp_path)
    (tmp_path / "seg_00001.m4s").unlink()
    with pytest.raises(VerificationError, match="unreadable"):
        segment_bitrates(playlist)


def test_write_master_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "hls" / "master.m3u8"
    write_master(target, "#EXTM3U\n")
    write_master(target, render_master(VARIANTS, AUDIO))
    assert target.read_text().count("#EXT-X-STREAM-INF") == 2
    assert [p.name for p in target.parent.iterdir()] == ["master.m3u8"]


def _playlist(target: int, durations: list[float]) -> str:
    body = "".join(f"#EXTINF:{d:.6f},\nseg_{i:05d}.m4s\n" for i, d in enumerate(durations))
    return (
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        f"#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="init.mp4"\n' + body + "#EXT-X-ENDLIST\n"
    )


@pytest.mark.parametrize(
    ("target", "durations", "expected"),
    [
        (0, [0.4], 1),  # a sub-second clip: ffmpeg writes 0, players need >= 1
        (0, [0.5], 1),
        (4, [4.0, 4.0, 2.0], 4),  # already right: untouched
        (4, [4.0, 4.6], 5),  # a long last segment rounds up to 5
        (6, [4.0], 6),  # never lowered
    ],
)
def test_fix_target_duration(target: int, durations: list[float], expected: int) -> None:
    fixed = fix_target_duration(_playlist(target, durations))
    summary = parse_media_playlist(fixed)
    assert summary["target_duration"] == expected
    assert summary["durations"] == pytest.approx(durations)
    if expected == target:
        assert fixed == _playlist(target, durations)
