"""The issue's list of ffmpeg failure signatures → labels, and the label reaching the job store's
error records (dead letters, metrics and rollout decisions read it from there)."""

from __future__ import annotations

import signal

import pytest

from vodforge.errors import FfmpegKilled, ToolchainCrash, VodforgeError
from vodforge.jobs import ErrorInfo
from vodforge.media.runner import CallRecord, raise_for_record
from vodforge.media.signatures import blames_input, classify


def _record(exit_code: int, stderr: str) -> CallRecord:
    return CallRecord(
        step="encode",
        label="c0000",
        argv=("ffmpeg", "-i", "file:in.mp4"),
        exit_code=exit_code,
        wall_seconds=0.1,
        cpu_seconds=0.1,
        toolchain_id="ffmpeg-9.0.2-abc",
        started_at=0.0,
        stderr=stderr,
    )


@pytest.mark.parametrize(
    ("exit_code", "stderr", "label"),
    [
        (1, "[vost#0:0/libx264] Unknown encoder 'libx264'\n", "unknown_encoder"),
        (1, "Error applying option 'crf' to filter: Invalid argument\n", "invalid_argument"),
        (8, "Option stats_period not found.\n", "option_not_found"),
        (1, "[mov,mp4] moov atom not found\nfile:in.mp4: Invalid data found\n", "moov_missing"),
        (1, "malloc of size 1048576 failed: Cannot allocate memory\n", "out_of_memory"),
        (-signal.SIGKILL, "", "killed_by_signal"),
        (-signal.SIGSEGV, "", "crash_signal"),
        (1, "a message nobody has seen\n", "ffmpeg_failed"),
    ],
)
def test_signature_label_reaches_the_error_record(exit_code: int, stderr: str, label: str) -> None:
    with pytest.raises(VodforgeError) as caught:
        raise_for_record(_record(exit_code, stderr))
    info = ErrorInfo.from_exception(caught.value, worker="h:1")
    assert info.label == label
    assert info.toolchain_id == "ffmpeg-9.0.2-abc"
    assert info.stderr == stderr


def test_classes_behind_the_labels() -> None:
    unknown = classify(
        exit_code=1, signal_number=None, stderr="Unknown encoder 'x'", timed_out=False
    )
    assert unknown.error is ToolchainCrash
    assert unknown.error.permanent
    oom = classify(exit_code=1, signal_number=None, stderr="out of memory", timed_out=False)
    assert oom.error is FfmpegKilled
    assert not oom.error.permanent


def test_input_labels_do_not_blame_the_toolchain() -> None:
    assert blames_input("moov_missing")
    assert blames_input("invalid_data")
    assert blames_input("input_corrupt")
    assert not blames_input("unknown_encoder")
    assert not blames_input("crash_signal")
    assert not blames_input(None)
