"""Classify a failed ffmpeg call from its exit status and stderr (pure).

Known stderr patterns map to labels (used in metrics, dead letters and rollout decisions) and to
an error class of the one tree: the source's fault (permanent), the toolchain's fault (permanent
for that toolchain) or worth a retry.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from vodforge.errors import (
    CorruptInput,
    FfmpegFailed,
    FfmpegKilled,
    FfmpegStalled,
    FfmpegTimeout,
    InputError,
    NoVideoStream,
    OutOfDisk,
    ToolchainCrash,
    UnsupportedInput,
    VodforgeError,
)


@dataclass(frozen=True)
class Signature:
    label: str
    pattern: re.Pattern[str]
    error: type[VodforgeError]
    summary: str


def _sig(label: str, regex: str, error: type[VodforgeError], summary: str) -> Signature:
    return Signature(label, re.compile(regex, re.IGNORECASE | re.MULTILINE), error, summary)


#: First match wins, so more specific patterns come first.
SIGNATURES: tuple[Signature, ...] = (
    _sig("out_of_disk", r"No space left on device", OutOfDisk, "out of disk space"),
    _sig("out_of_memory", r"Cannot allocate memory|out of memory", FfmpegKilled, "out of memory"),
    _sig(
        "unknown_encoder",
        r"Unknown encoder|Encoder not found|Requested encoder .* not found",
        ToolchainCrash,
        "the toolchain lacks an encoder",
    ),
    _sig(
        "filter_not_found",
        r"No such filter|Filter not found",
        ToolchainCrash,
        "the toolchain lacks a filter",
    ),
    _sig(
        "option_not_found",
        r"Unrecognized option|Option (?:\S+ )?not found|Error parsing options|Unknown option",
        ToolchainCrash,
        "the toolchain rejects an option vodforge passes",
    ),
    _sig(
        "encoder_open_failed",
        r"Error (?:while opening|initializing output stream).*encoder|Could not open encoder",
        ToolchainCrash,
        "an encoder failed to open",
    ),
    _sig(
        "protocol_refused",
        r"Protocol '[^']+' not on whitelist|not on whitelist",
        UnsupportedInput,
        "the source tried to open a refused protocol or format",
    ),
    _sig(
        "moov_missing",
        r"moov atom not found",
        CorruptInput,
        "MP4/MOV without an index (truncated upload?)",
    ),
    _sig(
        "no_video",
        r"Stream map '0:v:0' matches no streams|matches no streams|does not contain any stream",
        NoVideoStream,
        "the source has no video stream",
    ),
    _sig(
        "invalid_data",
        r"Invalid data found when processing input|Error while decoding|corrupt|"
        r"End of file|Truncat",
        CorruptInput,
        "the source is corrupt or truncated",
    ),
    _sig(
        "invalid_argument",
        r"Invalid argument",
        ToolchainCrash,
        "the toolchain rejected an argument",
    ),
)

#: Labels that blame the source, not the toolchain: a canary is not judged by them.
INPUT_LABELS: frozenset[str] = frozenset(
    sig.label for sig in SIGNATURES if issubclass(sig.error, InputError)
)


def blames_input(label: str | None) -> bool:
    """Whether an error label (a signature's or an error class's) is the source's fault."""
    return label is not None and (label in INPUT_LABELS or label.startswith("input"))


#: Signals that mean the binary itself crashed (an ABI break, a miscompiled build).
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGABRT, signal.SIGILL, signal.SIGBUS, signal.SIGFPE}
)


@dataclass(frozen=True)
class Classification:
    error: type[VodforgeError]
    label: str
    summary: str


def classify(
    *,
    exit_code: int | None,
    signal_number: int | None,
    stderr: str,
    timed_out: bool,
    stalled: bool = False,
) -> Classification:
    if timed_out:
        return Classification(FfmpegTimeout, "timeout", "ran past its deadline; killed")
    if stalled:
        return Classification(FfmpegStalled, "stalled", "made no progress; killed")
    if signal_number is not None:
        if signal_number in CRASH_SIGNALS:
            name = signal.Signals(signal_number).name
            return Classification(ToolchainCrash, "crash_signal", f"ffmpeg crashed ({name})")
        name = _signal_name(signal_number)
        return Classification(FfmpegKilled, "killed_by_signal", f"ffmpeg was killed ({name})")
    for sig in SIGNATURES:
        if sig.pattern.search(stderr):
            return Classification(sig.error, sig.label, sig.summary)
    return Classification(FfmpegFailed, "unclassified", f"ffmpeg exited {exit_code}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
