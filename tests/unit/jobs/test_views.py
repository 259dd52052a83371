"""Views and error records: JSON-friendly, built from the one exception tree."""

from __future__ import annotations

import dataclasses
import json
import types
from datetime import UTC, datetime

import pytest

import vodforge.jobs
from vodforge.errors import CorruptInput, FfmpegEvidence, FfmpegTimeout, ToolchainCrash
from vodforge.jobs import ErrorInfo, JobState, JobView, OutputRecord

EVIDENCE = FfmpegEvidence(
    argv=("ffmpeg", "-i", "file:/tmp/in.mp4", "out.mp4"),
    exit_code=-11,
    stderr="line one\nSegmentation fault\n",
    toolchain_id="tc-9",
)


def test_error_info_from_a_toolchain_crash_keeps_the_evidence() -> None:
    info = ErrorInfo.from_exception(
        ToolchainCrash("ffmpeg died\n  of SIGSEGV", evidence=EVIDENCE), worker="h:1"
    )
    assert info == ErrorInfo(
        label="toolchain_crash",
        message="ffmpeg died of SIGSEGV",
        permanent=True,
        worker="h:1",
        argv=EVIDENCE.argv,
        exit_code=-11,
        stderr=EVIDENCE.stderr,
        toolchain_id="tc-9",
    )


def test_error_info_from_errors_without_evidence() -> None:
    corrupt = ErrorInfo.from_exception(CorruptInput("truncated moov"), worker="h:1")
    assert (corrupt.label, corrupt.permanent, corrupt.argv, corrupt.stderr) == (
        "input_corrupt",
        True,
        None,
        "",
    )
    timeout = ErrorInfo.from_exception(FfmpegTimeout("ran 600 s"), worker="h:1")
    assert (timeout.label, timeout.permanent) == ("timeout", False)


def test_foreign_exceptions_are_internal_and_retried() -> None:
    info = ErrorInfo.from_exception(KeyError("rung"), worker="h:2")
    assert info == ErrorInfo(
        label="internal", message="KeyError: 'rung'", permanent=False, worker="h:2"
    )


def test_views_are_frozen_and_json_friendly() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    view = JobView(
        id="j",
        bucket="b",
        key="k",
        etag="e",
        size=1,
        preset="default",
        toolchain_id="tc",
        owner=None,
        state=JobState.RUNNING,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
        requeued_at=None,
        max_age_seconds=60.0,
        plan={"chunks": [1, 2]},
        error_label=None,
        error_message=None,
        failed_step=None,
        manifest_key=None,
        cpu_seconds=0.0,
        progress=0.0,
    )
    data = view.to_dict()
    assert data["state"] == "running"
    assert data["created_at"] == "2030-01-01T00:00:00+00:00"
    assert json.loads(json.dumps(data)) == data
    assert not view.terminal
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.state = JobState.FAILED  # type: ignore[misc]
    err = ErrorInfo("l", "m", permanent=True, worker="w", argv=("a", "b"))
    assert err.to_dict()["argv"] == ["a", "b"]
    assert OutputRecord("k", 1, "0" * 64, "mp4").to_dict() == {
        "key": "k",
        "size": 1,
        "sha256": "0" * 64,
        "kind": "mp4",
    }


def test_all_is_the_public_api() -> None:
    public = {
        name
        for name, value in vars(vodforge.jobs).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(vodforge.jobs.__all__) == public
    assert sorted(vodforge.jobs.__all__) == sorted(set(vodforge.jobs.__all__))
