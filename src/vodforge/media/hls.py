"""HLS master playlists and media-playlist arithmetic (RFC 8216), pure but for two small helpers.

ffmpeg's hls muxer writes one media playlist per rendition; it cannot write a master playlist that
names the exact CODECS, the peak and average bit rates of the finished segments, and one audio
group shared by every video variant. This module renders that master from typed entries, and
measures segment bit rates the way the RFC defines them, so BANDWIDTH is never a guess.

IO is limited to ``segment_bitrates``/``media_playlist_summary`` (read a playlist and stat its
segments) and ``write_master`` (one atomic write).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypedDict

import m3u8

from vodforge.errors import VerificationError

__all__ = [
    "AAC_LC_CODECS",
    "AUDIO_GROUP_ID",
    "AudioEntry",
    "MediaPlaylistSummary",
    "VariantEntry",
    "codecs_from_avcc",
    "extinf_fits_target",
    "fix_target_duration",
    "media_playlist_summary",
    "parse_media_playlist",
    "peak_bitrate",
    "render_master",
    "segment_bitrates",
    "write_master",
]

#: RFC 6381 codec string of AAC-LC (object type 0x40 = MPEG-4 audio, audio object type 2).
AAC_LC_CODECS = "mp4a.40.2"
AUDIO_GROUP_ID = "aud"
HLS_VERSION = 7

_H264_SPS_NAL_TYPE = 7


def codecs_from_avcc(extradata: bytes) -> str:
    """The RFC 6381 ``avc1.PPCCLL`` string of an H.264 stream from its decoder config.

    ``extradata`` is normally an ISO-BMFF ``avcC`` record (MP4/fMP4): bytes 1..3 are
    profile_idc, the constraint flags and level_idc. Annex B extradata (start codes, as from
    MPEG-TS) is accepted too: the same three bytes follow the SPS NAL header.
    """
    if len(extradata) >= 4 and extradata[0] == 1:
        profile, constraints, level = extradata[1], extradata[2], extradata[3]
        return f"avc1.{profile:02x}{constraints:02x}{level:02x}"
    sps = _annexb_sps(extradata)
    if sps is None:
        raise VerificationError(
            f"H.264 extradata is neither avcC nor Annex B with an SPS ({extradata[:8].hex()})"
        )
    return f"avc1.{sps[0]:02x}{sps[1]:02x}{sps[2]:02x}"


def _annexb_sps(data: bytes) -> bytes | None:
    start = 0
    while (pos := data.find(b"\x00\x00\x01", start)) != -1:
        header = pos + 3
        if header < len(data) and data[header] & 0x1F == _H264_SPS_NAL_TYPE:
            payload = data[header + 1 : header + 4]
            return payload if len(payload) == 3 else None
        start = header
    return None


@dataclass(frozen=True)
class VariantEntry:
    """One video rendition as the master playlist names it."""

    uri: str  # relative to the master, e.g. "720p/index.m3u8"
    width: int
    height: int
    frame_rate: Fraction
    codecs: str  # the video codec string only, e.g. "avc1.64001f"
    peak_bps: int
    average_bps: int


@dataclass(frozen=True)
class AudioEntry:
    """The one audio rendition every variant plays with."""

    uri: str
    codecs: str
    peak_bps: int
    average_bps: int
    channels: int
    name: str = "default"
    language: str = "und"


def _quoted(value: str, what: str) -> str:
    """An HLS quoted-string: no double quote, CR or LF inside (RFC 8216 section 4.2)."""
    if any(ch in value for ch in '"\r\n'):
        raise VerificationError(f"{what} {value!r} cannot be written into a playlist")
    return f'"{value}"'


def _uri_line(value: str) -> str:
    if not value or value.startswith("#") or any(ch in value for ch in "\r\n"):
        raise VerificationError(f"variant URI {value!r} cannot be written into a playlist")
    return value


def render_master(variants: Sequence[VariantEntry], audio: AudioEntry | None) -> str:
    """An HLS version 7 master playlist: one audio group (if any) and the variants in order.

    BANDWIDTH is the variant's peak plus the audio's peak (the RFC's "largest sum of peak
    segment bit rates of any playable combination of renditions"); AVERAGE-BANDWIDTH likewise.
    """
    if not variants:
        raise VerificationError("a master playlist needs at least one variant")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            "#EXT-X-MEDIA:TYPE=AUDIO"
            f",GROUP-ID={_quoted(AUDIO_GROUP_ID, 'group id')}"
            f",NAME={_quoted(audio.name, 'audio name')}"
            f",LANGUAGE={_quoted(audio.language, 'audio language')}"
            ",DEFAULT=YES,AUTOSELECT=YES"
            f",CHANNELS={_quoted(str(audio.channels), 'channels')}"
            f",URI={_quoted(audio.uri, 'audio URI')}"
        )
    for variant in variants:
        peak = variant.peak_bps + (audio.peak_bps if audio else 0)
        average = variant.average_bps + (audio.average_bps if audio else 0)
        codecs = f"{variant.codecs},{audio.codecs}" if audio else variant.codecs
        attributes = [
            f"BANDWIDTH={peak}",
            f"AVERAGE-BANDWIDTH={average}",
            f"RESOLUTION={variant.width}x{variant.height}",
            f"CODECS={_quoted(codecs, 'codecs')}",
            f"FRAME-RATE={float(variant.frame_rate):.3f}",
        ]
        if audio is not None:
            attributes.append(f'AUDIO="{AUDIO_GROUP_ID}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(_uri_line(variant.uri))
    return "\n".join(lines) + "\n"


def write_master(path: Path, text: str) -> None:
    """Write a playlist atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MediaPlaylistSummary(TypedDict):
    """What a media playlist says, as plain values."""

    version: int | None
    target_duration: int | None
    playlist_type: str | None  # lower case: "vod", "event" or None
    endlist: bool
    independent_segments: bool
    init_uri: str | None  # the EXT-X-MAP URI when every segment has the same one
    segment_uris: list[str]
    durations: list[float]  # EXTINF, seconds
    total_duration: float
    byteranges: bool  # any EXT-X-BYTERANGE on a segment or the map


def parse_media_playlist(text: str) -> MediaPlaylistSummary:
    """Summarise a media playlist (pure). Raises ``VerificationError`` if it is not one."""
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise VerificationError("not a playlist: the first line is not #EXTM3U")
    try:
        playlist: Any = m3u8.M3U8(text, strict=True)
    except Exception as exc:  # m3u8 raises ParseError, ValueError or a bare Exception
        raise VerificationError(f"playlist does not parse: {exc}") from exc
    if playlist.is_variant:
        raise VerificationError("a master playlist where a media playlist was expected")
    segments = list(playlist.segments)
    maps = {seg.init_section.uri for seg in segments if seg.init_section is not None}
    byteranges = any(seg.byterange for seg in segments) or any(
        seg.init_section is not None and seg.init_section.byterange for seg in segments
    )
    every_segment_mapped = all(seg.init_section is not None for seg in segments)
    durations = [float(seg.duration) for seg in segments]
    playlist_type = playlist.playlist_type
    target = playlist.target_duration
    version = playlist.version
    return MediaPlaylistSummary(
        version=int(version) if version is not None else None,
        target_duration=int(target) if target is not None else None,
        playlist_type=str(playlist_type).lower() if playlist_type else None,
        endlist=bool(playlist.is_endlist),
        independent_segments=bool(playlist.is_independent_segments),
        init_uri=str(maps.pop()) if len(maps) == 1 and every_segment_mapped else None,
        segment_uris=[str(seg.uri) for seg in segments],
        durations=durations,
        total_duration=math.fsum(durations),
        byteranges=bool(byteranges),
    )


def media_playlist_summary(path: Path) -> MediaPlaylistSummary:
    """``parse_media_playlist`` of the file at ``path``."""
    return parse_media_playlist(path.read_text(encoding="utf-8"))


def extinf_fits_target(duration: float, target_duration: int) -> bool:
    """RFC 8216 4.3.3.1: each EXTINF, rounded to the nearest integer, is <= TARGETDURATION."""
    return math.floor(duration + 0.5) <= target_duration


_TARGET_RE = re.compile(r"^#EXT-X-TARGETDURATION:(\d+)\s*$", re.MULTILINE)


def fix_target_duration(text: str, summary: MediaPlaylistSummary | None = None) -> str:
    """Raise EXT-X-TARGETDURATION to what the segments need, and to at least 1 (pure).
    ``summary``: ``text`` already parsed.

    ffmpeg's HLS muxer rounds the longest segment to the nearest integer, which gives
    ``TARGETDURATION:0`` for a clip shorter than half a second — a value players reject.
    """
    summary = summary or parse_media_playlist(text)
    needed = max(
        [1, *(math.floor(d + 0.5) for d in summary["durations"])],
    )
    match = _TARGET_RE.search(text)
    if match is None or int(match.group(1)) >= needed:
        return text
    return text[: match.start(1)] + str(needed) + text[match.end(1) :]


def peak_bitrate(durations: Sequence[float], sizes: Sequence[int], target_duration: float) -> int:
    """The RFC 8216 peak segment bit rate, in bit/s (rounded up).

    The largest bit rate of any contiguous run of segments whose total duration is between 0.5
    and 1.5 times the target duration (so a short tail segment cannot inflate it). A playlist
    too short to hold such a run falls back to its overall bit rate.
    """
    if len(durations) != len(sizes):
        raise ValueError("durations and sizes differ in length")
    low, high = 0.5 * target_duration, 1.5 * target_duration
    best = 0.0
    for start in range(len(durations)):
        seconds, total = 0.0, 0
        for end in range(start, len(durations)):
            seconds += durations[end]
            total += sizes[end]
            if seconds > high:
                break
            if seconds >= low and seconds > 0:
                best = max(best, total * 8 / seconds)
    if best == 0.0:
        seconds = math.fsum(durations)
        best = sum(sizes) * 8 / seconds if seconds > 0 else 0.0
    return math.ceil(best)


def segment_bitrates(
    playlist_path: Path, summary: MediaPlaylistSummary | None = None
) -> tuple[int, int]:
    """(peak, average) bit/s of a finished media playlist, from its segments' sizes on disk.
    ``summary``: the playlist already parsed.

    The average counts the init segment once (a player fetches it once); the peak follows
    ``peak_bitrate`` and is never below the average.
    """
    summary = summary or media_playlist_summary(playlist_path)
    if summary["byteranges"]:
        raise VerificationError(f"{playlist_path}: byte-range segments are not supported")
    if not summary["segment_uris"]:
        raise VerificationError(f"{playlist_path}: the playlist has no segments")
    base = playlist_path.parent
    try:
        sizes = [(base / uri).stat().st_size for uri in summary["segment_uris"]]
        init = (base / summary["init_uri"]).stat().st_size if summary["init_uri"] else 0
    except OSError as exc:
        raise VerificationError(f"{playlist_path}: a segment is unreadable ({exc})") from exc
    target = summary["target_duration"] or max(summary["durations"])
    peak = peak_bitrate(summary["durations"], sizes, target)
    seconds = summary["total_duration"]
    average = math.ceil((sum(sizes) + init) * 8 / seconds) if seconds > 0 else 0
    return max(peak, average), average
