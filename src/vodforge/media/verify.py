"""Verify a job's outputs before anything is published.

The outputs are checked with PyAV, a libav build independent of the ffmpeg binary that made them,
and with the ``m3u8`` parser players' tooling uses. Every HLS segment is decoded *on its own*
(init segment + that segment, nothing else) with the decoder made strict, because that is how a
player that switches rungs mid-stream meets it. Progressive MP4s are stream copies of the same
encode, so every video packet of a rung's HLS segments is matched, by hash, against the same
rung's MP4. That catches damage a decoder cannot: about half of random byte flips inside an
H.264 slice decode without any error (H.264 carries no checksum), but none survive the packet
comparison. Every frame is strictly decoded exactly once — in the HLS segments, in the MP4
(``decode_mp4``; the segments are then only opened alone and started), or right after encoding
(``UpstreamDecode``) — and the other copies are proven equal to it packet for packet. Audio
segments are decoded as one stream after their init (one demuxer open, not one per segment).

Each fact is a named ``Check``; the ``VerificationReport`` goes into manifest.json whole, and
``raise_for_failures`` turns it into a ``VerificationError`` naming every failed check.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

import av
import av.error
import m3u8

from vodforge.errors import VerificationError
from vodforge.media.hls import (
    AUDIO_GROUP_ID,
    MediaPlaylistSummary,
    extinf_fits_target,
    parse_media_playlist,
)
from vodforge.media.pool import BoundedLane, share

__all__ = [
    "STRICT_DECODER_OPTIONS",
    "Box",
    "Check",
    "SegmentDecode",
    "UpstreamDecode",
    "VerificationReport",
    "decode_segment",
    "top_level_boxes",
    "verify_outputs",
]

#: Decoder options that turn concealed damage into errors: CRC and bitstream checks, buffer
#: overreads, and ``explode`` (abort the packet on the first error instead of concealing it).
STRICT_DECODER_OPTIONS: dict[str, str] = {
    "err_detect": "crccheck+bitstream+buffer+explode",
    # The deblocking filter only smooths pixels the check never looks at; every syntax element is
    # still entropy-decoded and every reference resolved, so a damaged bitstream still fails.
    # Skipping it takes ~16% off the verify decode.
    "skip_loop_filter": "all",
}
#: Samples per AAC-LC frame; also the encoder delay (priming) of every AAC-LC encoder.
AAC_FRAME_SAMPLES = 1024
#: Bytes of the per-packet BLAKE2b digest used to match HLS packets against the MP4's.
PACKET_DIGEST_SIZE = 16
#: How many problems a check's detail spells out before it says "and N more".
DETAIL_ITEMS = 5

MediaKind = Literal["video", "audio"]


@dataclass(frozen=True)
class Check:
    """One verified fact: ``name`` like ``hls.720p.frames``, ``detail`` like ``300 == 300``."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class VerificationReport:
    """All checks of one job's outputs. Empty is not ok: nothing verified is nothing published."""

    checks: list[Check] = field(default_factory=list)
    frames_decoded: int = 0
    decode_seconds: float = 0.0  # summed over segments (CPU-ish time, not wall time)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [check.to_dict() for check in self.checks],
            "failures": [check.name for check in self.failures()],
            "frames_decoded": self.frames_decoded,
            "decode_seconds": round(self.decode_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }

    def raise_for_failures(self) -> None:
        """Raise ``VerificationError`` with one line per failed check; return if all passed."""
        if not self.checks:
            raise VerificationError("verification ran no checks; refusing to publish")
        failed = self.failures()
        if failed:
            lines = [f"{check.name}: {' '.join(check.detail.split())}" for check in failed]
            raise VerificationError(
                f"{len(failed)} of {len(self.checks)} verification checks failed:\n"
                + "\n".join(lines)
            )


@dataclass
class _Partial:
    """The checks of one unit of work (a rung, the audio, an MP4) and what its decoding cost."""

    checks: list[Check] = field(default_factory=list)
    frames_decoded: int = 0
    decode_seconds: float = 0.0
    #: Digest of every video packet in decode order (HLS: over all segments; MP4: the file).
    packet_digests: list[bytes] | None = None

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:DETAIL_ITEMS])
    more = len(items) - DETAIL_ITEMS
    return f"{shown} and {more} more" if more > 0 else shown


def _seconds(value: Fraction | float) -> str:
    return f"{float(value):.3f} s"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        where = str(exc.filename).removesuffix("()") if exc.filename else ""
        return f"{exc.strerror} ({where})" if where else str(exc.strerror)
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# ISO-BMFF top-level boxes (faststart)


@dataclass(frozen=True)
class Box:
    type: str
    offset: int
    size: int  # whole box, header included


def _iter_boxes(fh: BinaryIO, file_size: int) -> Iterator[Box]:
    offset = 0
    while offset + 8 <= file_size:
        fh.seek(offset)
        header = fh.read(8)
        if len(header) < 8:
            return
        size, raw_type = struct.unpack(">I4s", header)
        box_type = raw_type.decode("latin-1")
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return
            (size,) = struct.unpack(">Q", large)
        elif size == 0:
            size = file_size - offset
        if size < 8:
            raise ValueError(f"box {box_type!r} at offset {offset} has impossible size {size}")
        yield Box(box_type, offset, size)
        offset += size


def top_level_boxes(path: Path) -> list[Box]:
    """The top-level ISO-BMFF boxes of a file, read from their headers only (size32 + type,
    size 1 = a 64-bit largesize follows, size 0 = to the end of the file)."""
    with path.open("rb") as fh:
        return list(_iter_boxes(fh, path.stat().st_size))


# ---------------------------------------------------------------------------------------------
# Decoding one segment


@dataclass
class SegmentDecode:
    """What decoding one self-contained fMP4 segment found."""

    frames: int = 0
    samples: int = 0
    first_packet_pts: Fraction | None = None  # seconds
    packet_digests: list[bytes] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    sample_rate: int = 0
    codec: str = ""
    packets: int = 0
    first_is_keyframe: bool = False
    extradata: bytes = b""
    #: Digests over each video packet's NAL units except SPS/PPS: the concat packaging repeats
    #: the parameter sets in-band in the first keyframe, which changes no picture.
    payload_digests: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class UpstreamDecode:
    """A rung's packets as they were strictly decoded right after encoding (chunk by chunk,
    overlapping the other encodes): the HLS segments must carry exactly these packets.
    ``digests`` are ``SegmentDecode.payload_digests`` (parameter sets excluded)."""

    digests: list[bytes]
    frames: int


def _packet_digest(packet: av.Packet[Any]) -> bytes:
    return hashlib.blake2b(memoryview(packet), digest_size=PACKET_DIGEST_SIZE).digest()


#: H.264 NAL unit types of the sequence and picture parameter sets.
_PARAMETER_SET_NALS = frozenset({7, 8})


def _avcc_length_size(extradata: bytes) -> int | None:
    """NAL length prefix size from an avcC record; None if the stream is not length-prefixed."""
    if len(extradata) >= 5 and extradata[0] == 1:
        return (extradata[4] & 0x03) + 1
    return None


def _payload_digest(data: bytes, length_size: int | None) -> bytes:
    """Digest of a length-prefixed H.264 packet without its SPS/PPS NAL units (whole packet if
    it cannot be split)."""
    digest = hashlib.blake2b(digest_size=PACKET_DIGEST_SIZE)
    if length_size is None:
        digest.update(data)
        return digest.digest()
    i = 0
    while i + length_size <= len(data):
        n = int.from_bytes(data[i : i + length_size], "big")
        end = i + length_size + n
        if n == 0 or end > len(data):
            digest.update(data[i:])
            break
        if data[i + length_size] & 0x1F not in _PARAMETER_SET_NALS:
            digest.update(data[i:end])
        i = end
    return digest.digest()


def decode_segment(
    data: bytes,
    kind: MediaKind,
    *,
    decode_frames: int | None = None,
    payload_digests: bool = True,
) -> SegmentDecode:
    """Decode one self-contained MP4 byte string (init + segment, or a whole file), strictly.

    The decoder runs with ``STRICT_DECODER_OPTIONS`` on a single thread; each video packet's
    digest is recorded for the packet match against the MP4. ``decode_frames``: stop decoding
    after that many frames (the rest is only demuxed and hashed) — used when the packets were
    already decoded upstream and only the segment's standalone start needs proving.
    ``payload_digests``: see ``read_stream``.

    Raises ``av.error.FFmpegError`` on a decode error and ``ValueError`` on a frame the decoder
    flagged corrupt.
    """
    result = SegmentDecode()
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        if not streams:
            raise ValueError(f"no {kind} stream")
        read_stream(
            container,
            streams[0],
            kind,
            result,
            decode_frames=decode_frames,
            payload_digests=payload_digests,
        )
    return result


def read_stream(
    container: av.container.InputContainer,
    stream: av.VideoStream | av.AudioStream,
    kind: MediaKind,
    result: SegmentDecode,
    *,
    decode_frames: int | None = None,
    payload_digests: bool = True,
) -> list[int]:
    """Demux ``stream`` of an open ``container`` to its end into ``result``: every packet
    counted (and hashed if it is video: only video packets are matched against the MP4's), and
    decoded strictly up to ``decode_frames`` frames (all if None, none if 0).
    ``payload_digests``: also hash each video packet's NAL units without its parameter sets
    (``UpstreamDecode``). Returns the byte position of each counted packet (-1 where the
    demuxer knows none). Raises as ``decode_segment`` does; ``result`` then holds what was read
    up to the failure."""
    context = stream.codec_context
    result.codec = context.name
    # One thread per decoder: rungs already decode in parallel, and frame threads would only
    # add CPU (thread handoff) to a check that runs on every job.
    context.thread_count = 1
    context.options = dict(STRICT_DECODER_OPTIONS)
    result.extradata = bytes(context.extradata or b"")
    length_size = _avcc_length_size(result.extradata) if kind == "video" else None
    video = kind == "video"
    hash_payloads = payload_digests and video
    positions: list[int] = []
    for packet in container.demux(stream):
        if (
            result.first_packet_pts is None
            and packet.pts is not None
            and packet.time_base is not None
        ):
            result.first_packet_pts = packet.pts * packet.time_base
        if packet.size > 0:
            if result.packets == 0:
                result.first_is_keyframe = packet.is_keyframe
            result.packets += 1
            positions.append(-1 if packet.pos is None else packet.pos)
            if video:
                result.packet_digests.append(_packet_digest(packet))
            if hash_payloads:
                result.payload_digests.append(_payload_digest(bytes(packet), length_size))
        if decode_frames is not None and result.frames >= decode_frames:
            continue
        for frame in packet.decode():
            if not isinstance(frame, av.VideoFrame | av.AudioFrame):
                continue
            if frame.is_corrupt:
                raise ValueError(f"frame {result.frames} (pts {frame.pts}) is corrupt")
            result.frames += 1
            if isinstance(frame, av.VideoFrame):
                result.sizes.add((frame.width, frame.height))
            else:
                result.samples += frame.samples
                result.sample_rate = frame.sample_rate
    return positions


# ---------------------------------------------------------------------------------------------
# Playlists


def _safe_relative(uri: str) -> bool:
    """A segment URI that stays inside its rendition's directory."""
    if not uri or "://" in uri or uri.startswith(("/", "\\")) or "?" in uri:
        return False
    return ".." not in PurePosixPath(uri).parts


def _check_master(
    hls_dir: Path, rungs: Sequence[str], has_audio: bool, out: _Partial
) -> dict[str, tuple[int, int]]:
    """Master playlist checks; returns each rung's RESOLUTION for the decode checks."""
    path = hls_dir / "master.m3u8"
    try:
        text = path.read_text(encoding="utf-8")
        if not text.lstrip("\ufeff").startswith("#EXTM3U"):
            raise ValueError("the first line is not #EXTM3U")
        master: Any = m3u8.M3U8(text, strict=True)
        if not master.is_variant:
            raise ValueError("a media playlist, not a master")
    except Exception as exc:  # OSError, m3u8's ParseError/ValueError/bare Exception
        out.add("hls.master.parses", False, f"{path.name}: {_reason(exc)}")
        return {}
    variants = list(master.playlists)
    out.add("hls.master.parses", True, f"{len(variants)} variants")

    by_uri = {str(variant.uri): variant for variant in variants}
    wanted = {f"{rung}/index.m3u8": rung for rung in rungs}
    missing = [uri for uri in wanted if uri not in by_uri]
    unexpected = [uri for uri in by_uri if uri not in wanted]
    problems = [f"missing {uri}" for uri in missing] + [f"unverified {uri}" for uri in unexpected]
    out.add(
        "hls.master.rungs",
        not problems,
        _listed(problems) if problems else f"lists {', '.join(rungs)}",
    )

    resolutions: dict[str, tuple[int, int]] = {}
    incomplete: list[str] = []
    for uri, variant in by_uri.items():
        info = variant.stream_info
        absent = [
            attr.upper()
            for attr in ("bandwidth", "resolution", "codecs")
            if not getattr(info, attr, None)
        ]
        if absent:
            incomplete.append(f"{uri} lacks {'/'.join(absent)}")
        if info.resolution and uri in wanted:
            width, height = info.resolution
            resolutions[wanted[uri]] = (int(width), int(height))
    out.add(
        "hls.master.attributes",
        not incomplete,
        _listed(incomplete) if incomplete else "every variant has BANDWIDTH, RESOLUTION, CODECS",
    )

    audio_media = [media for media in master.media if str(media.type).upper() == "AUDIO"]
    if has_audio:
        problems = []
        groups = {str(media.group_id) for media in audio_media if media.uri}
        if AUDIO_GROUP_ID not in groups:
            problems.append(f'no EXT-X-MEDIA TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP_ID}" with a URI')
        problems += [
            f'{uri} has AUDIO="{variant.stream_info.audio}"'
            for uri, variant in by_uri.items()
            if variant.stream_info.audio != AUDIO_GROUP_ID
        ]
        problems += [
            f"{uri} CODECS lack mp4a"
            for uri, variant in by_uri.items()
            if "mp4a" not in str(variant.stream_info.codecs or "")
        ]
        out.add(
            "hls.master.audio",
            not problems,
            _listed(problems) if problems else f'group "{AUDIO_GROUP_ID}" on every variant',
        )
    else:
        stray = [str(media.uri) for media in audio_media] + [
            uri for uri, variant in by_uri.items() if variant.stream_info.audio
        ]
        out.add(
            "hls.master.audio",
            not stray,
            f"audio where the source has none: {_listed(stray)}" if stray else "no audio group",
        )
    return resolutions


def _check_media_playlist(
    prefix: str, playlist_path: Path, out: _Partial
) -> MediaPlaylistSummary | None:
    """Parse/structure/EXTINF/existence checks; the summary if decoding can go on."""
    try:
        summary = parse_media_playlist(playlist_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, VerificationError) as exc:
        out.add(f"{prefix}.playlist", False, f"{playlist_path.name}: {_reason(exc)}")
        return None
    problems = []
    if summary["playlist_type"] != "vod":
        problems.append(f"PLAYLIST-TYPE is {summary['playlist_type'] or 'absent'}, not VOD")
    if not summary["endlist"]:
        problems.append("no EXT-X-ENDLIST")
    if summary["init_uri"] is None:
        problems.append("no single EXT-X-MAP init segment")
    if not summary["segment_uris"]:
        problems.append("no segments")
    if summary["byteranges"]:
        problems.append("byte-range segments (vodforge never writes them)")
    if summary["target_duration"] is None:
        problems.append("no EXT-X-TARGETDURATION")
    uris = [*summary["segment_uris"], *([summary["init_uri"]] if summary["init_uri"] else [])]
    escaping = [uri for uri in uris if not _safe_relative(uri)]
    if escaping:
        problems.append(f"URIs outside the rendition directory: {_listed(escaping)}")
    count = len(summary["segment_uris"])
    ok = out.add(
        f"{prefix}.playlist",
        not problems,
        "; ".join(problems)
        if problems
        else f"VOD, ENDLIST, EXT-X-MAP {summary['init_uri']}, {count} segments",
    )
    if not ok and (escaping or summary["init_uri"] is None or summary["byteranges"]):
        return None

    target = summary["target_duration"]
    if target is not None:
        long = [
            f"{uri} {duration:.3f} s"
            for uri, duration in zip(summary["segment_uris"], summary["durations"], strict=True)
            if not extinf_fits_target(duration, target)
        ]
        longest = max(summary["durations"], default=0.0)
        out.add(
            f"{prefix}.target_duration",
            not long,
            f"over TARGETDURATION {target}: {_listed(long)}"
            if long
            else f"max EXTINF {longest:.3f} s rounds to <= {target}",
        )

    base = playlist_path.parent
    missing = [
        uri for uri in uris if not (base / uri).is_file() or (base / uri).stat().st_size == 0
    ]
    out.add(
        f"{prefix}.segments_exist",
        not missing,
        f"missing or empty: {_listed(missing)}" if missing else f"{len(uris)} files present",
    )
    return summary


def _decode_rendition(
    prefix: str,
    base: Path,
    summary: MediaPlaylistSummary,
    kind: MediaKind,
    out: _Partial,
    upstream: UpstreamDecode | None = None,
    *,
    started_only: bool = False,
) -> list[SegmentDecode] | None:
    """Decode a rendition's segments; the ``.decode`` check. None if the init is unreadable.

    Video: each segment is opened on its own with its init segment and decoded strictly. With
    ``upstream`` (every packet already strictly decoded right after encoding) or
    ``started_only`` (every packet strictly decoded in the rung's MP4, which the HLS packets
    must then match: ``matches_mp4``), a segment is decoded only up to its first frame —
    proving it starts with an IDR a player can start from — and its packets are hashed; with
    ``upstream`` the check then requires the segments to carry exactly the upstream-decoded
    packets.

    Audio: the init and every segment in order are decoded as one stream (one demuxer open
    instead of one per segment: a film has hundreds), and each segment must hold packets of
    its own (attributed by byte position). AAC frames carry no dependency a segment boundary
    could break, so a segment that decodes in the stream decodes alone. On a failure each
    segment is decoded alone to name the one at fault. Returns one ``SegmentDecode`` for the
    whole stream then."""
    init_uri = summary["init_uri"]
    assert init_uri is not None  # _check_media_playlist returned None otherwise
    try:
        init = (base / init_uri).read_bytes()
    except OSError as exc:
        out.add(f"{prefix}.decode", False, f"init segment unreadable: {_reason(exc)}")
        return None
    uris = summary["segment_uris"]
    segments: list[bytes | None] = []
    bad: list[str] = []
    for uri in uris:
        try:
            segments.append((base / uri).read_bytes())
        except OSError as exc:
            bad.append(f"{uri}: unreadable ({exc.strerror or type(exc).__name__})")
            segments.append(None)
    if kind == "audio" and not bad:
        whole = _decode_as_one(init, segments, uris, out)
        if whole is not None:
            frames = whole.frames
            out.add(
                f"{prefix}.decode",
                True,
                f"{len(uris)} segments decode ({frames} audio frames; as one stream after the "
                "init, each segment holding its own)",
            )
            return [whole]
    first_only = upstream is not None or started_only
    decoded: list[SegmentDecode] = []
    for uri, data in zip(uris, segments, strict=True):
        if data is None:
            decoded.append(SegmentDecode())
            continue
        started = time.perf_counter()
        try:
            result = decode_segment(
                init + data,
                kind,
                decode_frames=1 if first_only else None,
                payload_digests=upstream is not None,
            )
            if result.frames == 0:
                raise ValueError(f"no {kind} frame decoded")
            if first_only:
                if not result.first_is_keyframe:
                    raise ValueError("does not start with a keyframe")
                result.frames = result.packets  # one packet per frame; all decoded elsewhere
        except Exception as exc:  # any failure to decode is this check's failure, not a crash
            bad.append(f"{uri}: {_reason(exc)}")
            decoded.append(SegmentDecode())
        else:
            decoded.append(result)
        finally:
            out.decode_seconds += time.perf_counter() - started
    frames = sum(result.frames for result in decoded)
    if kind == "video":
        out.packet_digests = [digest for result in decoded for digest in result.packet_digests]
    if first_only:
        if upstream is None:  # matched to the MP4's packets by ``matches_mp4``
            proof = "are checked against the MP4's, decoded frame by frame"
        else:
            digests = [d for result in decoded for d in result.payload_digests]
            if not bad and digests != upstream.digests:
                first = next(
                    (
                        i
                        for i, (a, b) in enumerate(zip(digests, upstream.digests, strict=False))
                        if a != b
                    ),
                    min(len(digests), len(upstream.digests)),
                )
                bad.append(
                    f"packet {first} differs from the decoded encode ({len(digests)} packets, "
                    f"{len(upstream.digests)} decoded)"
                )
            out.frames_decoded += upstream.frames
            proof = f"are the {upstream.frames} frames strictly decoded after encoding"
        out.add(
            f"{prefix}.decode",
            not bad,
            f"{len(bad)} of {len(decoded)} segments fail: {_listed(bad)}"
            if bad
            else f"{len(decoded)} segments open alone and start with a decodable IDR; their "
            f"{frames} packets {proof}",
        )
        return decoded
    if kind == "video":
        out.frames_decoded += frames
    out.add(
        f"{prefix}.decode",
        not bad,
        f"{len(bad)} of {len(decoded)} segments fail to decode alone: {_listed(bad)}"
        if bad
        else f"{len(decoded)} segments decode alone ({frames} {kind} frames)",
    )
    return decoded


def _decode_as_one(
    init: bytes, segments: Sequence[bytes | None], uris: Sequence[str], out: _Partial
) -> SegmentDecode | None:
    """Decode the init and ``segments`` as one audio stream (see ``_decode_rendition``); None
    if that fails or a segment holds no packet of its own (the caller then decodes each alone
    and names it)."""
    started = time.perf_counter()
    data = b"".join([init, *(s or b"" for s in segments)])
    bounds = [len(init)]
    for segment in segments:
        bounds.append(bounds[-1] + len(segment or b""))
    result = SegmentDecode()
    try:
        with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
            if not container.streams.audio:
                return None
            positions = read_stream(container, container.streams.audio[0], "audio", result)
    except Exception:  # narrowed down segment by segment by the caller
        return None
    finally:
        out.decode_seconds += time.perf_counter() - started
    held = [0] * len(uris)
    for pos in positions:
        index = bisect.bisect_right(bounds, pos) - 1
        if 0 <= index < len(held):
            held[index] += 1
    if result.frames == 0 or not all(held):
        return None
    return result


def _verify_hls_rung(
    hls_dir: Path,
    rung: str,
    *,
    expected_frames: int,
    frame_rate: Fraction,
    resolution: tuple[int, int] | None,
    upstream: UpstreamDecode | None = None,
    started_only: bool = False,
) -> _Partial:
    out = _Partial()
    prefix = f"hls.{rung}"
    summary = _check_media_playlist(prefix, hls_dir / rung / "index.m3u8", out)
    if summary is None:
        return out
    decoded = _decode_rendition(
        prefix, hls_dir / rung, summary, "video", out, upstream, started_only=started_only
    )
    if decoded is None:
        return out

    sizes = set().union(*(result.sizes for result in decoded))
    if resolution is not None:
        wrong = sorted(size for size in sizes if size != resolution)
        out.add(
            f"{prefix}.resolution",
            not wrong,
            f"decoded {_listed([f'{w}x{h}' for w, h in wrong])} "
            f"!= RESOLUTION {resolution[0]}x{resolution[1]}"
            if wrong
            else f"{resolution[0]}x{resolution[1]}",
        )

    frames = sum(result.frames for result in decoded)
    out.add(
        f"{prefix}.frames",
        frames == expected_frames,
        f"{frames} {'==' if frames == expected_frames else '!='} {expected_frames}",
    )
    expected = Fraction(expected_frames) / frame_rate
    tolerance = 1 / frame_rate
    duration = summary["total_duration"]
    out.add(
        f"{prefix}.duration",
        abs(Fraction(duration) - expected) <= tolerance,
        f"EXTINF sum {_seconds(duration)} vs {_seconds(expected)} "
        f"(tolerance {_seconds(tolerance)})",
    )
    return out


def _verify_hls_audio(hls_dir: Path, *, expected_frames: int, frame_rate: Fraction) -> _Partial:
    out = _Partial()
    prefix = "hls.audio"
    summary = _check_media_playlist(prefix, hls_dir / "audio" / "index.m3u8", out)
    if summary is None:
        return out
    decoded = _decode_rendition(prefix, hls_dir / "audio", summary, "audio", out)
    if decoded is None:
        return out
    rates = {result.sample_rate for result in decoded if result.sample_rate}
    if len(rates) != 1:
        out.add(f"{prefix}.duration", False, f"sample rates {sorted(rates)} (need exactly one)")
        return out
    (rate,) = rates
    samples = sum(result.samples for result in decoded)
    # A negative first timestamp means the container signalled the AAC encoder delay and the
    # decoder dropped it; otherwise (ffmpeg's fMP4 HLS: edit list media_time 0) the priming
    # samples are in the decoded output and are not programme audio.
    first = decoded[0].first_packet_pts
    unsignalled = decoded[0].codec == "aac" and first is not None and first >= 0
    priming = AAC_FRAME_SAMPLES if unsignalled else 0
    audio = Fraction(samples - priming, rate)
    video = Fraction(expected_frames) / frame_rate
    tolerance = 1 / frame_rate + Fraction(AAC_FRAME_SAMPLES, rate)
    note = f" less {priming} unsignalled priming" if priming else ""
    out.add(
        f"{prefix}.duration",
        abs(audio - video) <= tolerance,
        f"audio {_seconds(audio)} ({samples} samples at {rate} Hz{note}) vs video "
        f"{_seconds(video)} (tolerance {_seconds(tolerance)})",
    )
    return out


# ---------------------------------------------------------------------------------------------
# Progressive MP4


def _verify_mp4(
    path: Path,
    rung: str,
    *,
    expected_frames: int,
    frame_rate: Fraction,
    has_audio: bool,
    decode: bool = False,
) -> _Partial:
    """The MP4's structure, packets and timing; ``decode``: also decode every video frame
    strictly (the ``.decode`` check), when no other output of the rung is decoded in full."""
    out = _Partial()
    prefix = f"mp4.{rung}"
    tolerance = 1 / frame_rate

    try:
        boxes = top_level_boxes(path)
        container = av.open(str(path), mode="r", format="mp4")
    except (OSError, ValueError, av.error.FFmpegError) as exc:
        out.add(f"{prefix}.opens", False, f"{path.name}: {_reason(exc)}")
        return out
    with container:
        if not container.streams.video:
            out.add(f"{prefix}.opens", False, f"{path.name}: no video stream")
            return out
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        out.add(f"{prefix}.opens", True, f"{len(container.streams)} streams")

        order = [box.type for box in boxes]
        if "moov" in order and "mdat" in order:
            faststart = order.index("moov") < order.index("mdat")
            detail = f"top level: {' '.join(order)}"
        else:
            faststart, detail = False, f"no moov/mdat at top level: {' '.join(order)}"
        out.add(f"{prefix}.faststart", faststart, detail)

        context = video.codec_context
        codec, pix_fmt = context.name, context.pix_fmt
        out.add(
            f"{prefix}.codec",
            codec == "h264" and pix_fmt == "yuv420p",
            f"{codec} {pix_fmt}",
        )

        indexed = video.frames
        read = SegmentDecode()
        started = time.perf_counter()
        try:
            read_stream(
                container,
                video,
                "video",
                read,
                decode_frames=None if decode else 0,
                payload_digests=False,
            )
        except (ValueError, av.error.FFmpegError) as exc:
            failure = f"stopped at packet {read.packets}: {_reason(exc)}"
            if decode:
                out.add(f"{prefix}.decode", False, failure)
            out.add(f"{prefix}.frames", False, failure)
        else:
            if decode:
                out.frames_decoded += read.frames
                out.add(
                    f"{prefix}.decode",
                    read.frames == read.packets,
                    f"{read.frames} frames decode strictly"
                    + ("" if read.frames == read.packets else f" from {read.packets} packets"),
                )
            out.packet_digests = read.packet_digests
            packets = read.packets
            problems = []
            if packets != expected_frames:
                problems.append(f"{packets} packets != {expected_frames}")
            if indexed and indexed != packets:
                problems.append(f"index lists {indexed} samples, {packets} packets read")
            out.add(
                f"{prefix}.frames",
                not problems,
                "; ".join(problems) or f"{packets} == {expected_frames}",
            )
        finally:
            if decode:
                out.decode_seconds += time.perf_counter() - started

        expected = Fraction(expected_frames) / frame_rate
        if video.duration is not None and video.time_base is not None:
            duration = video.duration * video.time_base
        elif container.duration is not None:
            duration = Fraction(container.duration, av.time_base)
        else:
            duration = None
        out.add(
            f"{prefix}.duration",
            duration is not None and abs(duration - expected) <= tolerance,
            "no duration"
            if duration is None
            else f"{_seconds(duration)} vs {_seconds(expected)} (tolerance {_seconds(tolerance)})",
        )

        out.add(
            f"{prefix}.audio",
            (audio is not None) == has_audio,
            f"{'an' if audio else 'no'} audio stream"
            + (f" ({audio.codec_context.name})" if audio else "")
            + f", source has {'audio' if has_audio else 'none'}",
        )
        if audio is not None and has_audio:
            out.add(f"{prefix}.av_offset", *_start_offset(video, audio, tolerance))
    return out


def _start_offset(
    video: av.VideoStream, audio: av.AudioStream, tolerance: Fraction
) -> tuple[bool, str]:
    if (
        video.start_time is None
        or audio.start_time is None
        or video.time_base is None
        or audio.time_base is None
    ):
        return False, "a stream has no start time"
    v_start = video.start_time * video.time_base
    a_start = audio.start_time * audio.time_base
    offset = a_start - v_start
    return (
        abs(offset) < tolerance,
        f"audio starts {float(offset) * 1000:+.1f} ms from video "
        f"(video {_seconds(v_start)}, audio {_seconds(a_start)}; limit {_seconds(tolerance)})",
    )


def _match_packets(rungs: Sequence[str], parts: dict[str, _Partial]) -> _Partial:
    """``hls.<rung>.matches_mp4``: the HLS segments carry exactly the MP4's video packets."""
    out = _Partial()
    for rung in rungs:
        hls_part, mp4_part = parts.get(f"hls.{rung}"), parts.get(f"mp4.{rung}")
        if hls_part is None or mp4_part is None:
            continue
        hls_digests, mp4_digests = hls_part.packet_digests, mp4_part.packet_digests
        if hls_digests is None or mp4_digests is None:
            continue  # a rendition that could not be read has failed its own checks already
        if hls_digests == mp4_digests:
            out.add(f"hls.{rung}.matches_mp4", True, f"{len(hls_digests)} video packets identical")
            continue
        first = next(
            (i for i, (a, b) in enumerate(zip(hls_digests, mp4_digests, strict=False)) if a != b),
            min(len(hls_digests), len(mp4_digests)),
        )
        out.add(
            f"hls.{rung}.matches_mp4",
            False,
            f"video packet {first} differs (HLS has {len(hls_digests)} packets, "
            f"MP4 {len(mp4_digests)})",
        )
    return out


# ---------------------------------------------------------------------------------------------


def _run_shared(
    jobs: Sequence[tuple[str, Callable[[], _Partial]]], max_workers: int
) -> dict[str, _Partial]:
    """Run ``jobs`` on up to ``max_workers`` threads, the calling thread one of them
    (``media.pool.share``). Returns the parts by name, in the order of ``jobs``; a job that
    raised becomes a failed ``<name>.error`` check."""

    def checked(name: str, job: Callable[[], _Partial]) -> _Partial:
        try:
            return job()
        except Exception as exc:  # a verifier bug must fail the job, not publish it
            failed = _Partial()
            failed.add(f"{name}.error", False, f"verification crashed: {_reason(exc)}")
            return failed

    parts = share(
        BoundedLane(max(1, max_workers)), [partial(checked, name, job) for name, job in jobs]
    )
    return {name: part for (name, _), part in zip(jobs, parts, strict=True)}


def verify_outputs(
    out_dir: Path,
    *,
    rungs: Sequence[str],
    expected_frames: int,
    frame_rate: Fraction,
    has_audio: bool,
    hls: bool = True,
    mp4: bool = True,
    max_workers: int = 2,
    upstream: Mapping[str, UpstreamDecode] | None = None,
    decode_mp4: bool = False,
) -> VerificationReport:
    """Check every output under ``out_dir`` (``hls/…``, ``mp4/<rung>.mp4``) against the source.

    Every video frame of every rung is strictly decoded once: upstream, in the HLS segments or
    in the MP4. Rungs are decoded in parallel on ``max_workers`` threads (PyAV drops the GIL
    while decoding). ``upstream``: rungs whose packets were already strictly decoded (see
    ``UpstreamDecode``); their segments are opened and started alone but not decoded again.
    ``decode_mp4``: decode the other rungs in their MP4s, and only open and start their
    segments (whose packets must match the MP4's, ``matches_mp4``): one demuxer open fewer per
    rung than decoding the segments and demuxing the MP4 (a one-chunk job's case). Implied
    when there is no HLS. The report lists checks in a fixed order: master, each HLS rung, HLS
    audio, each MP4.
    """
    if not rungs:
        raise VerificationError("no rungs to verify")
    unusable = [r for r in rungs if r in ("", ".", "..", "audio") or "/" in r or "\\" in r]
    if unusable or len(set(rungs)) != len(rungs):
        raise VerificationError(f"rung names must be distinct directory names: {list(rungs)}")
    if frame_rate <= 0 or expected_frames <= 0:
        raise VerificationError(
            f"cannot verify against {expected_frames} frames at {frame_rate} fps"
        )
    started = time.perf_counter()
    upstream = upstream or {}
    # Rungs whose frames the MP4 decodes (it is there, and nothing else decodes them).
    in_mp4 = {r for r in rungs if r not in upstream and mp4 and (decode_mp4 or not hls)}
    hls_dir = out_dir / "hls"
    master = _Partial()
    resolutions: dict[str, tuple[int, int]] = {}
    if hls:
        resolutions = _check_master(hls_dir, rungs, has_audio, master)

    jobs: list[tuple[str, Callable[[], _Partial]]] = []
    if hls:
        jobs += [
            (
                f"hls.{rung}",
                partial(
                    _verify_hls_rung,
                    hls_dir,
                    rung,
                    expected_frames=expected_frames,
                    frame_rate=frame_rate,
                    resolution=resolutions.get(rung),
                    upstream=upstream.get(rung),
                    started_only=rung in in_mp4,
                ),
            )
            for rung in rungs
        ]
        if has_audio:
            audio_job = partial(
                _verify_hls_audio, hls_dir, expected_frames=expected_frames, frame_rate=frame_rate
            )
            jobs.append(("hls.audio", audio_job))
    if mp4:
        jobs += [
            (
                f"mp4.{rung}",
                partial(
                    _verify_mp4,
                    out_dir / "mp4" / f"{rung}.mp4",
                    rung,
                    expected_frames=expected_frames,
                    frame_rate=frame_rate,
                    has_audio=has_audio,
                    decode=rung in in_mp4,
                ),
            )
            for rung in rungs
        ]

    parts: dict[str, _Partial] = {"hls.master": master, **_run_shared(jobs, max_workers)}
    if hls and mp4:
        parts["packets"] = _match_packets(rungs, parts)

    report = VerificationReport()
    for part in parts.values():
        report.checks.extend(part.checks)
        report.frames_decoded += part.frames_decoded
        report.decode_seconds += part.decode_seconds
    report.wall_seconds = time.perf_counter() - started
    return report
