"""The step graph and the trigger rules are pure: tested without a broker, a store or ffmpeg."""

from __future__ import annotations

import pytest

from vodforge.pipeline import dag
from vodforge.pipeline.dag import Lane
from vodforge.runtime.triggers import match_trigger
from vodforge.settings import DEFAULT_TRIGGERS, Trigger


def names(specs: list[dag.StepSpec]) -> list[str]:
    return [s.name for s in specs]


def test_fan_out_graph() -> None:
    specs = dag.job_steps(chunks=3, has_audio=True, has_previews=True)
    assert names(specs) == [
        "probe",
        "encode:0000",
        "encode:0001",
        "encode:0002",
        "audio",
        "previews",
        "package",
        "verify",
    ]
    by_name = {s.name: s for s in specs}
    assert by_name["package"].after == (
        "encode:0000",
        "encode:0001",
        "encode:0002",
        "audio",
        "previews",
    )
    assert by_name["verify"].after == ("package",)
    assert dag.fanin_totals(specs) == {"media": 5}
    assert {s.name for s in specs if s.lane is Lane.LONG} == {
        "encode:0000",
        "encode:0001",
        "encode:0002",
        "package",
    }
    # topological: every step comes after its predecessors
    seen: set[str] = set()
    for spec in specs:
        assert set(spec.after) <= seen
        seen.add(spec.name)


def test_optional_media_steps_leave_the_fan_in() -> None:
    specs = dag.job_steps(chunks=2, has_audio=False, has_previews=False)
    assert names(specs) == ["probe", "encode:0000", "encode:0001", "package", "verify"]
    assert dag.fanin_totals(specs) == {"media": 2}


def test_single_chunk_job_is_one_step() -> None:
    specs = dag.job_steps(chunks=1, has_audio=True, has_previews=True, single=True)
    assert names(specs) == ["probe", "transcode"]
    assert specs[1].lane is Lane.LONG
    assert specs[1].fanin is None
    assert dag.fanin_totals(specs) == {}
    assert dag.successors(specs, "probe") == [specs[1]]
    assert dag.successors(specs, "transcode") == []


def test_a_job_has_a_chunk() -> None:
    with pytest.raises(ValueError, match="at least one chunk"):
        dag.job_steps(chunks=0, has_audio=True, has_previews=True)


def test_ready_is_what_a_reaper_may_resend() -> None:
    specs = dag.job_steps(chunks=2, has_audio=True, has_previews=False)
    assert names(dag.ready(specs, {})) == ["probe"]
    done = {"probe": True}
    assert names(dag.ready(specs, done)) == ["encode:0000", "encode:0001", "audio"]
    done |= {"encode:0000": True, "audio": True}
    assert names(dag.ready(specs, done)) == ["encode:0001"]
    done |= {"encode:0001": True}
    assert names(dag.ready(specs, done)) == ["package"]
    done |= {"package": True, "verify": True}
    assert dag.ready(specs, done) == []


@pytest.mark.parametrize(
    ("step", "lane"),
    [
        ("probe", Lane.QUICK),
        ("audio", Lane.QUICK),
        ("previews", Lane.QUICK),
        ("verify", Lane.QUICK),
        ("encode:0007", Lane.LONG),
        ("package", Lane.LONG),
        ("transcode", Lane.LONG),
    ],
)
def test_lane_of_matches_the_graph(step: str, lane: Lane) -> None:
    assert dag.lane_of(step) is lane
    assert dag.step_kind(step) == step.split(":", maxsplit=1)[0]


def test_chunk_index_roundtrip() -> None:
    assert dag.chunk_index(dag.encode_step(12)) == 12
    with pytest.raises(ValueError, match="not an encode step"):
        dag.chunk_index("audio")


@pytest.mark.parametrize(
    ("key", "preset"),
    [
        ("uploads/talk.mov", "mp4-only"),
        ("uploads/TALK.MOV", "mp4-only"),  # suffixes are case-insensitive
        ("uploads/talk.mp4", "default"),
        ("uploads/sub/dir/clip.mkv", "default"),
        ("elsewhere/talk.mp4", None),  # no trigger: no job
        ("uploadsX/talk.mp4", None),
    ],
)
def test_default_triggers(key: str, preset: str | None) -> None:
    trigger = match_trigger(DEFAULT_TRIGGERS, bucket="local", key=key)
    assert (trigger.preset if trigger else None) == preset


def test_trigger_bucket_and_order() -> None:
    triggers = [
        Trigger(bucket="studio", prefix="raw/", preset="mobile"),
        Trigger(prefix="raw/", suffix=".mxf", preset="mp4-only"),
        Trigger(prefix="raw/", preset="default"),
    ]
    assert match_trigger(triggers, bucket="studio", key="raw/a.mxf") == triggers[0]
    assert match_trigger(triggers, bucket="other", key="raw/a.MXF") == triggers[1]
    assert match_trigger(triggers, bucket="other", key="raw/a.mp4") == triggers[2]
    assert match_trigger([], bucket="other", key="raw/a.mp4") is None
