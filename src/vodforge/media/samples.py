"""A corpus of small generated media: named recipes for ffmpeg's lavfi test sources.

Tests, benchmarks, ``vodforge sample`` and toolchain certification all need the same awkward
inputs (rotated, VFR, interlaced, 10-bit, odd sizes, one keyframe, truncated uploads, garbage).
Generating them with the pinned ffmpeg keeps them out of git, and the bitexact flags keep them
byte-identical from run to run on the same toolchain. ``sample_argv`` is pure; ``make_sample``
runs it and writes the file atomically (a temporary name, then ``os.replace``), so a reader never
sees a half-written sample. A few recipes are derived in Python from an ffmpeg output (cut
short) or need no ffmpeg at all (random bytes, an empty file).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import time
import uuid
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

from vodforge.errors import (
    ConfigError,
    CorruptInput,
    EmptyInput,
    FfmpegEvidence,
    FfmpegTimeout,
    InputError,
    MissingCapability,
    NotMediaError,
    OutOfDisk,
    ToolchainCrash,
    ToolchainNotFound,
    VodforgeError,
)

__all__ = ["SAMPLES", "SampleSpec", "make_sample", "sample_argv"]

Payload = Literal["ffmpeg", "random", "empty"]

#: x264 frame threads shape the bitstream (motion search is limited to rows already encoded),
#: so the thread count is pinned: the same toolchain makes the same bytes on any machine.
ENCODER_THREADS = 4
AUDIO_RATE = 48000
RANDOM_BYTES = 64 * 1024

_CAPABILITY_MARKERS = ("Unknown encoder", "No such filter", "Filter not found", "Unknown decoder")


@dataclass(frozen=True)
class SampleSpec:
    """One recipe of the corpus: what the clip is, and the knobs that make it so.

    ``gop_seconds=None`` means a single keyframe for the whole clip. ``truncate_to`` keeps that
    fraction of the encoded file's bytes. ``payload`` other than ``"ffmpeg"`` is made in Python.
    ``expected_error`` is the ``InputError`` that ``probe()`` must raise on it, if any.
    """

    name: str
    description: str
    suffix: str
    muxer: str = "mp4"
    seconds: float = 3.0
    size: tuple[int, int] = (320, 180)
    rate: str = "30"
    video: bool = True
    audio: bool = True
    video_codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    gop_seconds: float | None = 2.0
    bframes: int = 0
    video_filters: tuple[str, ...] = ()
    input_args: tuple[str, ...] = ()
    video_args: tuple[str, ...] = ()
    video_flags: tuple[str, ...] = ()
    output_args: tuple[str, ...] = ()
    faststart: bool = False
    truncate_to: float | None = None
    payload: Payload = "ffmpeg"
    seed: int = 0
    expected_error: type[InputError] | None = field(default=None, compare=False)

    @property
    def generated(self) -> bool:
        """True if ffmpeg makes it (``sample_argv`` applies), False for Python-made bytes."""
        return self.payload == "ffmpeg"


def _corpus(*specs: SampleSpec) -> dict[str, SampleSpec]:
    return {spec.name: spec for spec in specs}


SAMPLES: dict[str, SampleSpec] = _corpus(
    SampleSpec(
        name="hd_audio",
        description="1080p30 H.264 yuv420p + AAC stereo 48 kHz, keyframe every 2 s like a camera",
        suffix=".mp4",
        size=(1920, 1080),
        bframes=2,
    ),
    SampleSpec(
        name="basic",
        description="320x180 30 fps H.264 + AAC, 2 s GOP with B-frames: the general small case",
        suffix=".mp4",
        seconds=4.0,
        bframes=2,
    ),
    SampleSpec(
        name="odd_size",
        description="853x481 (odd width and height) MPEG-4 Part 2 + AAC; "
        "H.264 4:2:0 cannot code odd sizes, so real odd-sized uploads use other codecs",
        suffix=".mp4",
        seconds=2.0,
        size=(853, 481),
        video_codec="mpeg4",
    ),
    SampleSpec(
        name="rotated",
        description="phone-like MOV: 640x360 stored, display matrix says turn 90° clockwise "
        "(portrait 360x640 on screen)",
        suffix=".mov",
        muxer="mov",
        seconds=2.0,
        size=(640, 360),
        # -display_rotation is counter-clockwise; a phone held upright records -90.
        input_args=("-noautorotate", "-display_rotation", "-90"),
    ),
    SampleSpec(
        name="vfr",
        description="variable frame rate Matroska: 30 fps with frames 4-6 of every 10 dropped "
        "and the timestamps kept (irregular intervals, like a phone or screen recorder)",
        suffix=".mkv",
        muxer="matroska",
        video_filters=(r"select=not(between(mod(n\,10)\,4\,6))",),
        output_args=("-fps_mode", "vfr"),
    ),
    SampleSpec(
        name="no_audio",
        description="320x180 30 fps H.264 with no audio stream",
        suffix=".mp4",
        seconds=2.0,
        audio=False,
    ),
    SampleSpec(
        name="audio_only",
        description="AAC stereo sine in an .m4a container, no video stream",
        suffix=".m4a",
        muxer="ipod",
        seconds=2.0,
        video=False,
    ),
    SampleSpec(
        name="one_keyframe",
        description="4 s of H.264 with a single keyframe (an unbounded GOP, no scene cuts): "
        "a chunker can only cut it at the start",
        suffix=".mp4",
        seconds=4.0,
        gop_seconds=None,
    ),
    SampleSpec(
        name="long_gop",
        description="H.264 with a fixed 60 s keyframe interval; the default 4 s clip has one "
        "keyframe, a longer `seconds` one per minute (unlike one_keyframe, which never repeats)",
        suffix=".mp4",
        seconds=4.0,
        gop_seconds=60.0,
    ),
    SampleSpec(
        name="tenbit_422",
        description="10-bit 4:2:2 H.264 (High 4:2:2 profile, yuv422p10le), like a camera's "
        "intermediate recording",
        suffix=".mov",
        muxer="mov",
        seconds=2.0,
        pix_fmt="yuv422p10le",
        video_args=("-profile:v", "high422"),
    ),
    SampleSpec(
        name="interlaced",
        description="352x288 25 fps interlaced H.264 (MBAFF), top field first, "
        "coded as interlaced at the full frame rate",
        suffix=".mp4",
        seconds=2.0,
        size=(352, 288),
        rate="25",
        video_filters=("setfield=tff",),
        video_flags=("ildct", "ilme"),
        video_args=("-x264-params", "tff=1"),
    ),
    SampleSpec(
        name="ntsc_5994",
        description="320x180 at 60000/1001 fps (NTSC 59.94) + AAC",
        suffix=".mp4",
        seconds=2.0,
        rate="60000/1001",
    ),
    SampleSpec(
        name="truncated",
        description="faststart MP4 (index first) cut to 60% of its bytes: "
        "the index lists frames the file no longer has",
        suffix=".mp4",
        seconds=2.0,
        faststart=True,
        truncate_to=0.6,
        expected_error=CorruptInput,
    ),
    SampleSpec(
        name="truncated_tail",
        description="ordinary MP4 (index at the end) cut to 60% of its bytes: "
        "the moov atom is gone, as after an interrupted upload",
        suffix=".mp4",
        seconds=2.0,
        truncate_to=0.6,
        expected_error=CorruptInput,
    ),
    SampleSpec(
        name="random_bytes",
        description="64 KiB of seeded pseudo-random bytes named .mp4",
        suffix=".mp4",
        payload="random",
        seed=20240601,
        expected_error=NotMediaError,
    ),
    SampleSpec(
        name="empty",
        description="a zero-byte file named .mp4",
        suffix=".mp4",
        payload="empty",
        expected_error=EmptyInput,
    ),
)


def _spec(spec_or_name: SampleSpec | str) -> SampleSpec:
    if isinstance(spec_or_name, SampleSpec):
        return spec_or_name
    try:
        return SAMPLES[spec_or_name]
    except KeyError:
        known = ", ".join(sorted(SAMPLES))
        raise ConfigError(f"unknown sample {spec_or_name!r}; known: {known}") from None


def _resolve(
    spec_or_name: SampleSpec | str, seconds: float | None, size: tuple[int, int] | None
) -> SampleSpec:
    spec = _spec(spec_or_name)
    if seconds is not None:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ConfigError(f"sample {spec.name}: seconds must be positive, not {seconds}")
        spec = replace(spec, seconds=seconds)
    if size is not None:
        width, height = size
        if spec.video and (width < 16 or height < 16):
            raise ConfigError(f"sample {spec.name}: size {width}x{height} is too small")
        spec = replace(spec, size=(width, height))
    _check_codable(spec)
    return spec


def _check_codable(spec: SampleSpec) -> None:
    """Refuse sizes H.264 cannot code in the recipe's chroma format (x264 would fail late)."""
    if not spec.video or spec.video_codec != "libx264":
        return
    width, height = spec.size
    odd_width_ok = spec.pix_fmt.startswith(("yuv444", "gbr", "gray"))
    odd_height_ok = odd_width_ok or spec.pix_fmt.startswith("yuv422")
    if (width % 2 and not odd_width_ok) or (height % 2 and not odd_height_ok):
        raise ConfigError(
            f"sample {spec.name}: H.264 in {spec.pix_fmt} cannot be {width}x{height}; "
            "use even dimensions (the odd_size recipe uses MPEG-4 Part 2 for that)"
        )


def _gop_frames(spec: SampleSpec) -> int:
    fps = Fraction(spec.rate)
    if spec.gop_seconds is None:
        # Longer than the clip can ever be at this rate: one keyframe, never repeated.
        return max(math.ceil(spec.seconds * fps) + 1, 100_000)
    return max(round(spec.gop_seconds * fps), 1)


def _video_args(spec: SampleSpec) -> tuple[list[str], list[str]]:
    width, height = spec.size
    filters = list(spec.video_filters)
    # testsrc2 silently rounds odd sizes down to even for 4:2:0; scale up to the exact size.
    gen_w, gen_h = width + width % 2, height + height % 2
    if (gen_w, gen_h) != (width, height):
        filters.insert(0, f"scale={width}:{height},setsar=1")
    gop = _gop_frames(spec)
    source = f"testsrc2=size={gen_w}x{gen_h}:rate={spec.rate}:duration={spec.seconds:g}"
    inputs = [*spec.input_args, "-f", "lavfi", "-i", source]
    out = ["-c:v", spec.video_codec]
    if spec.video_codec == "libx264":
        out += ["-preset", "ultrafast", "-threads", str(ENCODER_THREADS), "-bf", str(spec.bframes)]
    else:
        out += ["-q:v", "4", "-bf", str(spec.bframes)]
    out += ["-pix_fmt", spec.pix_fmt, "-g", str(gop), "-keyint_min", str(gop)]
    flags = "".join(f"+{flag}" for flag in ("bitexact", *spec.video_flags))
    out += ["-sc_threshold", "0", *spec.video_args, "-flags:v", flags]
    if filters:
        out = ["-vf", ",".join(filters), *out]
    return inputs, out


def _audio_args(spec: SampleSpec) -> tuple[list[str], list[str]]:
    source = f"sine=frequency=440:beep_factor=4:sample_rate={AUDIO_RATE}:duration={spec.seconds:g}"
    inputs = ["-f", "lavfi", "-i", source]
    outputs = ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", str(AUDIO_RATE)]
    return inputs, [*outputs, "-flags:a", "+bitexact"]


def sample_argv(
    spec_or_name: SampleSpec | str,
    out: Path,
    *,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
) -> list[str]:
    """The ffmpeg argv (without the binary) that writes this sample to ``out``. Pure.

    For a truncated recipe this is the argv of the whole file, before it is cut.
    """
    spec = _resolve(spec_or_name, seconds, size)
    if not spec.generated:
        raise ConfigError(f"sample {spec.name} is made in Python ({spec.payload}), not by ffmpeg")
    if not (spec.video or spec.audio):
        raise ConfigError(f"sample {spec.name} has neither video nor audio")
    argv = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    outputs: list[str] = []
    index = 0
    if spec.video:
        video_in, video_out = _video_args(spec)
        argv += video_in
        outputs += ["-map", f"{index}:v:0", *video_out]
        index += 1
    if spec.audio:
        audio_in, audio_out = _audio_args(spec)
        argv += audio_in
        outputs += ["-map", f"{index}:a:0", *audio_out]
    outputs += [*spec.output_args, "-map_metadata", "-1", "-map_chapters", "-1"]
    outputs += ["-fflags", "+bitexact"]
    if spec.faststart:
        outputs += ["-movflags", "+faststart"]
    return [*argv, *outputs, "-f", spec.muxer, f"file:{out}"]


def _payload_bytes(spec: SampleSpec) -> bytes:
    if spec.payload == "random":
        return random.Random(spec.seed).randbytes(RANDOM_BYTES)
    return b""


def _temp_name(out: Path) -> Path:
    # Same directory (so os.replace is atomic) and same suffix (so nothing guesses differently).
    return out.with_name(f".{out.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{out.suffix}")


def _classify(evidence: FfmpegEvidence, name: str) -> VodforgeError:
    stderr = evidence.stderr
    if "No space left on device" in stderr:
        return OutOfDisk(f"sample {name}: out of disk space", evidence=evidence)
    if any(marker in stderr for marker in _CAPABILITY_MARKERS):
        return MissingCapability(
            f"sample {name}: ffmpeg lacks an encoder or filter the recipe needs",
            evidence=evidence,
        )
    how = (
        f"died of signal {evidence.signal}"
        if evidence.signal is not None
        else f"exited {evidence.exit_code}"
    )
    return ToolchainCrash(f"sample {name}: ffmpeg {how} on our argv", evidence=evidence)


def _run_ffmpeg(spec: SampleSpec, ffmpeg: Path, tmp: Path) -> None:
    argv = [str(ffmpeg), *sample_argv(spec, tmp)]
    pixels = spec.size[0] * spec.size[1] if spec.video else 0
    # Generous: ultrafast 1080p runs far faster than real time even on two cores.
    timeout = 60.0 + spec.seconds * (1.0 + pixels / 500_000)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        # TimeoutExpired carries bytes even with text=True.
        partial = exc.stderr or b""
        stderr = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        evidence = FfmpegEvidence(
            argv=tuple(argv),
            exit_code=None,
            stderr=stderr,
            toolchain_id=str(ffmpeg),
            wall_seconds=time.monotonic() - started,
        )
        raise FfmpegTimeout(
            f"sample {spec.name}: ffmpeg ran past {timeout:.0f} s", evidence=evidence
        ) from exc
    except OSError as exc:
        raise ToolchainNotFound(f"cannot run ffmpeg at {ffmpeg}: {exc}") from exc
    if proc.returncode != 0:
        evidence = FfmpegEvidence(
            argv=tuple(argv),
            exit_code=proc.returncode,
            stderr=proc.stderr,
            toolchain_id=str(ffmpeg),
            wall_seconds=time.monotonic() - started,
            signal=-proc.returncode if proc.returncode < 0 else None,
        )
        raise _classify(evidence, spec.name)


def make_sample(
    name: str | SampleSpec,
    out: Path,
    *,
    ffmpeg: Path,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Write sample ``name`` to ``out`` atomically with the ffmpeg at ``ffmpeg``; return ``out``."""
    spec = _resolve(name, seconds, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(out)
    try:
        if spec.generated:
            _run_ffmpeg(spec, ffmpeg, tmp)
            if spec.truncate_to is not None:
                keep = int(tmp.stat().st_size * spec.truncate_to)
                os.truncate(tmp, keep)
        else:
            tmp.write_bytes(_payload_bytes(spec))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
