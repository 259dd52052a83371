"""Probe a source with PyAV (a pinned libav build) into a typed ``MediaInfo``.

The keyframe index and the frame count come from demuxed packets, without decoding; one frame is
decoded to learn what only the decoder knows (rotation side data, interlacing) and to prove that
the stream decodes at all. Every PyAV error is mapped to the ``InputError`` family here.
"""

from __future__ import annotations

import itertools
import statistics
from fractions import Fraction
from pathlib import Path

import av
import av.error

from vodforge.errors import (
    CorruptInput,
    EmptyInput,
    InputError,
    NotMediaError,
    UnsupportedInput,
)
from vodforge.media.mediainfo import AudioInfo, Keyframe, MediaInfo, VideoInfo

#: Demuxers a source may be read with. Playlists (hls), concat scripts, image sequences and
#: network-ish formats are not on it: an uploaded file must not make ffmpeg open other files.
SOURCE_DEMUXERS: tuple[str, ...] = (
    "mov",
    "mp4",
    "matroska",
    "webm",
    "avi",
    "mpegts",
    "flv",
    "mxf",
    "mpeg",
    "ogg",
    "wav",
    "mp3",
    "aac",
    "flac",
    "h264",
    "hevc",
    "m4v",
    "asf",
    "dv",
    "gif",
    "ivf",
    "nut",
    "yuv4mpegpipe",
    "mpegvideo",
)
SOURCE_PROTOCOLS = "file,pipe"

#: A frame interval differing from the median by more than this makes a stream VFR.
VFR_TOLERANCE = Fraction(1, 10)


def source_open_options() -> dict[str, str]:
    return {
        "protocol_whitelist": SOURCE_PROTOCOLS,
        "format_whitelist": ",".join(SOURCE_DEMUXERS),
    }


def _explain_unopenable(path: Path, exc: Exception) -> InputError:
    with path.open("rb") as fh:
        head = fh.read(64)
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"#EXTM3U"):
        return UnsupportedInput(f"{path.name}: an HLS playlist is not accepted as a source")
    if text.startswith((b"ffconcat", b"file ")):
        return UnsupportedInput(f"{path.name}: a concat script is not accepted as a source")
    if head[4:8] == b"ftyp":
        return CorruptInput(
            f"{path.name}: MP4/MOV with no readable index (moov atom missing): truncated upload?"
        )
    return NotMediaError(f"{path.name}: not a media file ({_reason(exc)})")


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":", 1)[0] if ": '" in text else text


def _pix_info(pix_fmt: str) -> tuple[int, str]:
    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return 8, "420"
    depth = max((c.bits for c in fmt.components), default=8)
    name = fmt.name
    if name.startswith(("gray", "ya")):
        return depth, "400"
    for chroma in ("444", "422", "420", "411", "440", "410"):
        if chroma in name:
            return depth, chroma
    return depth, "444" if fmt.is_rgb else "420"


def _field_order(value: object) -> str:
    text = str(value or "").lower()
    for key in ("progressive", "tt", "bb", "tb", "bt"):
        if text.endswith(key):
            return key
    return "unknown"


def probe(path: Path | str) -> MediaInfo:
    """Probe ``path``; raise an ``InputError`` subclass with a one-line reason if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise EmptyInput(f"{path.name}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r", options=source_open_options())
    except av.error.FFmpegError as exc:
        raise _explain_unopenable(path, exc) from exc
    try:
        return _probe_open(path, size, container)
    finally:
        container.close()


def _probe_open(path: Path, size: int, container: av.container.InputContainer) -> MediaInfo:
    start = (
        Fraction(container.start_time, av.time_base)
        if container.start_time is not None
        else Fraction(0)
    )
    duration = (
        Fraction(container.duration, av.time_base)
        if container.duration is not None
        else Fraction(0)
    )
    vstream = container.streams.video[0] if container.streams.video else None
    astream = container.streams.audio[0] if container.streams.audio else None
    if vstream is None and astream is None:
        raise NotMediaError(f"{path.name}: no audio or video streams")

    audio = None
    if astream is not None and astream.codec_context is not None:
        tb = astream.time_base or Fraction(1, max(astream.codec_context.sample_rate or 1, 1))
        a_first = Fraction(astream.start_time) * tb if astream.start_time is not None else start
        a_dur = Fraction(astream.duration) * tb if astream.duration else duration
        audio = AudioInfo(
            codec=astream.codec_context.name,
            sample_rate=astream.codec_context.sample_rate or 0,
            channels=astream.codec_context.channels or 0,
            first_pts=a_first,
            duration=a_dur,
        )

    video = _probe_video(path, container, vstream) if vstream is not None else None
    if video is not None and duration == 0:
        duration = video.duration
    return MediaInfo(
        path=str(path),
        format_name=container.format.name,
        size_bytes=size,
        start_time=start,
        duration=duration,
        video=video,
        audio=audio,
        bit_rate=container.bit_rate or 0,
    )


def _varies(deltas: list[int], median: Fraction) -> bool:
    """Any delta further than ``VFR_TOLERANCE`` from the median, in integers: the same test as
    ``abs(d - median) > median * VFR_TOLERANCE`` without a Fraction per frame (a short clip's
    probe spent a fifth of its time there)."""
    # median = m / 2**k exactly (a median of ints is one or a mean of two), tolerance = p / q.
    scale = median.denominator
    m = median.numerator
    p, q = VFR_TOLERANCE.numerator, VFR_TOLERANCE.denominator
    return any(abs(d * scale - m) * q > m * p for d in deltas)


def _probe_video(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream
) -> VideoInfo:
    tb = stream.time_base
    if tb is None:
        raise CorruptInput(f"{path.name}: video stream has no time base")
    pts_list: list[int] = []
    durations: list[int] = []
    keyframes: list[tuple[int, int]] = []
    declared = stream.frames
    # The first frame is decoded from this same pass (rotation, interlacing, and proof that the
    # video decodes at all) instead of opening the file a second time. One thread: frame
    # threads would only delay that one frame, and start threads for every probe.
    signalled_field_order = _field_order(stream.codec_context.field_order)
    stream.codec_context.thread_count = 1
    first_frame: av.VideoFrame | None = None
    decode_error: av.error.FFmpegError | None = None
    try:
        for packet in container.demux(stream):
            if first_frame is None and decode_error is None:
                try:
                    first_frame = next(
                        (f for f in packet.decode() if isinstance(f, av.VideoFrame)), None
                    )
                except av.error.FFmpegError as exc:
                    decode_error = exc
            if packet.size == 0 or packet.pts is None:
                continue
            pts_list.append(packet.pts)
            durations.append(packet.duration or 0)
            if packet.is_keyframe:
                dts = packet.dts if packet.dts is not None else packet.pts
                keyframes.append((packet.pts, dts))
    except av.error.FFmpegError as exc:
        if not pts_list:
            raise CorruptInput(f"{path.name}: video cannot be read ({_reason(exc)})") from exc
        raise CorruptInput(
            f"{path.name}: truncated or corrupt after {len(pts_list)} video frames ({_reason(exc)})"
        ) from exc
    if not pts_list:
        raise CorruptInput(f"{path.name}: video stream has no frames")
    if declared and len(pts_list) < declared:
        raise CorruptInput(
            f"{path.name}: truncated: the index lists {declared} video frames, "
            f"only {len(pts_list)} are in the file"
        )
    if not keyframes:
        raise CorruptInput(f"{path.name}: video stream has no keyframe to start decoding from")

    order = sorted(range(len(pts_list)), key=pts_list.__getitem__)
    sorted_pts = [pts_list[i] for i in order]
    deltas = [b - a for a, b in itertools.pairwise(sorted_pts) if b > a]
    median = Fraction(statistics.median(deltas)) if deltas else Fraction(0)
    vfr = bool(deltas) and _varies(deltas, median)
    last_duration = durations[order[-1]] or (int(median) if median else 0)
    first_pts = Fraction(sorted_pts[0]) * tb
    end_pts = Fraction(sorted_pts[-1] + last_duration) * tb
    if end_pts <= first_pts:
        end_pts = first_pts + (Fraction(1, 25))
    span = end_pts - first_pts
    average_rate = Fraction(len(sorted_pts)) / span
    nominal = stream.guessed_rate or stream.average_rate or average_rate
    nominal_rate = Fraction(nominal).limit_denominator(1001)

    kf_times = sorted(
        (Keyframe(pts=Fraction(p) * tb, dts=Fraction(d) * tb) for p, d in keyframes),
        key=lambda k: k.pts,
    )
    gaps = [b.pts - a.pts for a, b in itertools.pairwise(kf_times)]
    gaps.append(end_pts - kf_times[-1].pts)

    if decode_error is not None:
        raise CorruptInput(f"{path.name}: video does not decode ({_reason(decode_error)})")
    if first_frame is None:
        raise CorruptInput(f"{path.name}: no video frame could be decoded")
    rotation, interlaced, field_order = _first_frame_facts(first_frame, signalled_field_order)
    cc = stream.codec_context
    pix_fmt = cc.pix_fmt or "yuv420p"
    depth, chroma = _pix_info(pix_fmt)
    sar = Fraction(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else Fraction(1)
    return VideoInfo(
        codec=cc.name,
        width=cc.width,
        height=cc.height,
        pix_fmt=pix_fmt,
        bit_depth=depth,
        chroma_subsampling=chroma,
        sar=sar if sar > 0 else Fraction(1),
        rotation=rotation,
        interlaced=interlaced,
        field_order=field_order,
        nominal_rate=nominal_rate,
        average_rate=average_rate,
        vfr=vfr,
        frame_count=len(sorted_pts),
        first_pts=first_pts,
        end_pts=end_pts,
        keyframes=tuple(kf_times),
        max_keyframe_gap=max(gaps),
    )


def _first_frame_facts(frame: av.VideoFrame, field_order: str) -> tuple[int, bool, str]:
    """Rotation (snapped to a quarter turn), interlacing and field order from the first frame
    and the field order the stream signalled."""
    rotation = round(-(frame.rotation or 0)) % 360
    interlaced = bool(frame.interlaced_frame) or field_order in ("tt", "bb", "tb", "bt")
    if interlaced and field_order in ("progressive", "unknown"):
        field_order = "tt"
    elif not interlaced:
        field_order = "progressive"
    return _snap_rotation(rotation), interlaced, field_order


def _snap_rotation(degrees: int) -> int:
    return min((0, 90, 180, 270, 360), key=lambda r: abs(r - degrees)) % 360
