"""The job store's contract on both backends: idempotency, the step lifecycle, dead letters,
replays and the reaper's queries, with time driven by a fake clock."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from tests.integration.jobs.conftest import Backend, FakeClock, new_job, spec_for
from vodforge.errors import (
    ConfigError,
    FfmpegEvidence,
    FfmpegFailed,
    InvalidTransition,
    JobError,
    JobNotFound,
    TransientError,
)
from vodforge.jobs import (
    AttemptOutcome,
    DeadLetterState,
    ErrorInfo,
    EventRecord,
    JobSpec,
    JobState,
    JobStore,
    OutputRecord,
    StepFinish,
    StepState,
)

W1 = "host-a:101"
W2 = "host-b:202"


def _ffmpeg_error(*, permanent: bool, worker: str = W1) -> ErrorInfo:
    evidence = FfmpegEvidence(
        argv=("ffmpeg", "-i", "file:in.mp4", "out.mp4"),
        exit_code=1,
        stderr="frame=1\nInvalid data found when processing input\n",
        toolchain_id="tc-1",
    )
    info = ErrorInfo.from_exception(
        FfmpegFailed("ffmpeg exited 1", evidence=evidence), worker=worker
    )
    return ErrorInfo(
        label="input_corrupt" if permanent else info.label,
        message=info.message,
        permanent=permanent,
        worker=worker,
        argv=info.argv,
        exit_code=info.exit_code,
        stderr=info.stderr,
        toolchain_id=info.toolchain_id,
    )


# -- jobs -------------------------------------------------------------------------------------


def test_create_job_is_idempotent(store: JobStore) -> None:
    spec = spec_for()
    first, created = store.create_job(spec)
    again, created_again = store.create_job(spec)
    assert (created, created_again) == (True, False)
    assert again == first == store.get_job(spec.job_id)
    assert first.state is JobState.QUEUED
    assert first.created_at.tzinfo is not None
    assert [j.id for j in store.list_jobs()] == [spec.job_id]


def _put_event(spec: JobSpec) -> EventRecord:
    """The object-created event of ``spec``'s upload, as the dispatcher records it."""
    return EventRecord(
        bucket=spec.bucket,
        key=spec.key,
        etag=spec.etag,
        size=spec.size,
        event_name="ObjectCreated:Put",
        event_time=None,
        record={"eventName": "ObjectCreated:Put"},
        job_id=None,
        outcome="created",
    )


def test_admit_creates_the_job_its_queued_first_step_and_the_event_in_one_go(
    store: JobStore,
) -> None:
    spec = spec_for()
    event = _put_event(spec)
    job, created = store.admit(spec, event, ("probe", "quick"))
    assert created
    assert job.state is JobState.QUEUED
    [step] = store.steps(spec.job_id)
    assert (step.name, step.lane, step.state, step.attempts) == (
        "probe",
        "quick",
        StepState.QUEUED,
        0,
    )
    assert step.enqueued_at is not None
    again, created_again = store.admit(spec, event, ("probe", "quick"))
    assert not created_again
    assert again.id == job.id
    assert len(store.steps(spec.job_id)) == 1
    assert [(e.job_id, e.outcome) for e in reversed(store.events())] == [
        (spec.job_id, "created"),
        (spec.job_id, "duplicate"),
    ]
    started = store.start_step(spec.job_id, "probe", worker=W1)
    assert started is not None
    assert started.attempt == 1


def test_admit_maps_a_duplicate_to_its_job_after_the_toolchain_changed(store: JobStore) -> None:
    # The job id includes the toolchain: once a rollout has promoted a new stable (or rolled
    # back), a late duplicate of an upload gets another id, and must still find its job.
    first = spec_for(toolchain_id="tc-old")
    event = _put_event(first)
    job, created = store.admit(first, event, ("probe", "quick"))
    assert created
    late = spec_for(toolchain_id="tc-new")
    assert late.job_id != first.job_id
    again, created_again = store.admit(late, event, ("probe", "quick"))
    assert (created_again, again.id, again.toolchain_id) == (False, job.id, "tc-old")
    assert [j.id for j in store.list_jobs()] == [job.id]
    assert [(e.job_id, e.outcome) for e in reversed(store.events())] == [
        (job.id, "created"),
        (job.id, "duplicate"),
    ]
    # Another preset, etag or key of the same upload is another job.
    other, created_other = store.admit(spec_for(preset="mobile"), event, ("probe", "quick"))
    assert created_other
    assert other.id != job.id


def test_create_job_racing_duplicates_make_one_job(store: JobStore) -> None:
    spec = spec_for()
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def create() -> None:
        barrier.wait()
        _, created = store.create_job(spec)
        with lock:
            results.append(created)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [False] * 7 + [True]
    assert store.count_by_state()[JobState.QUEUED] == 1


def test_unknown_job_raises_job_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match="no job nope"):
        store.get_job("nope")
    for call in (
        lambda: store.steps("nope"),
        lambda: store.attempts("nope"),
        lambda: store.outputs("nope"),
        lambda: store.heartbeat("nope", "probe"),
        lambda: store.start_step("nope", "probe", worker=W1),
        lambda: store.cancel_job("nope"),
    ):
        with pytest.raises(JobNotFound):
            call()
    job = new_job(store)
    with pytest.raises(JobNotFound, match="has no step probe"):
        store.start_step(job.id, "probe", worker=W1)


def test_count_by_state_lists_every_state(store: JobStore) -> None:
    assert store.count_by_state() == dict.fromkeys(JobState, 0)
    a = new_job(store, "a.mp4")
    new_job(store, "b.mp4")
    store.cancel_job(a.id)
    counts = store.count_by_state()
    assert set(counts) == set(JobState)
    assert counts[JobState.QUEUED] == 1
    assert counts[JobState.CANCELLED] == 1
    assert counts[JobState.SUCCEEDED] == 0


def test_list_jobs_newest_first_with_filters(store: JobStore, clock: FakeClock) -> None:
    ids = []
    for i in range(4):
        ids.append(new_job(store, f"{i}.mp4", owner="key-a" if i % 2 else "key-b").id)
        clock.advance(seconds=1)
    store.cancel_job(ids[0])
    assert [j.id for j in store.list_jobs()] == ids[::-1]
    assert [j.id for j in store.list_jobs(limit=2, offset=1)] == [ids[2], ids[1]]
    assert [j.id for j in store.list_jobs(owner="key-a")] == [ids[3], ids[1]]
    assert [j.id for j in store.list_jobs(state=JobState.CANCELLED)] == [ids[0]]
    assert [j.id for j in store.list_jobs(state=JobState.QUEUED, owner="key-b")] == [ids[2]]


def test_events_are_recorded_newest_first(store: JobStore, clock: FakeClock) -> None:
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "in/a.mp4"}}}
    first = store.record_event(
        EventRecord(
            bucket="media",
            key="in/a.mp4",
            etag="e1",
            size=10,
            event_name="ObjectCreated:Put",
            event_time=clock.now - timedelta(seconds=3),
            record=record,
            job_id="abc",
            outcome="created",
        )
    )
    second = store.record_event(
        EventRecord(
            "media",
            "in/a.txt",
            "e2",
            None,
            "ObjectCreated:Put",
            None,
            {},
            None,
            "no_trigger",
            "no rule",
        )
    )
    events = store.events()
    assert [e.id for e in events] == [second, first]
    assert events[1].record == record
    assert events[1].event_time == clock.now - timedelta(seconds=3)
    assert events[0].detail == "no rule"
    json.dumps([e.to_dict() for e in events])
    with pytest.raises(JobError, match="unknown event outcome"):
        store.record_event(EventRecord("b", "k", "e", 1, "x", None, {}, None, "exploded"))


# -- the step lifecycle -----------------------------------------------------------------------


def test_lifecycle_happy_path(store: JobStore, clock: FakeClock) -> None:
    job = new_job(store)
    plan = {"rungs": [360, 720], "chunks": 2}
    steps = [
        ("probe", "quick"),
        ("encode:0000", "long"),
        ("encode:0001", "long"),
        ("concat", "quick"),
    ]
    store.add_steps(job.id, steps, plan=plan)
    store.set_fanin(job.id, "encode", 2)
    assert store.get_job(job.id).plan == plan
    assert [s.name for s in store.steps(job.id)] == sorted(name for name, _ in steps)
    assert {s.state for s in store.steps(job.id)} == {StepState.PENDING}

    store.mark_queued(job.id, "probe")
    queued = {s.name: s for s in store.steps(job.id)}["probe"]
    assert queued.state is StepState.QUEUED
    assert queued.enqueued_at == clock.now

    clock.advance(seconds=1)
    start = store.start_step(job.id, "probe", worker=W1)
    assert start is not None
    assert start.attempt == 1
    assert start.job.state is JobState.RUNNING
    assert start.job.started_at == clock.now

    clock.advance(seconds=5)
    store.heartbeat(job.id, "probe", progress=0.5)
    probe = {s.name: s for s in store.steps(job.id)}["probe"]
    assert (probe.progress, probe.updated_at) == (0.5, clock.now)
    assert store.get_job(job.id).updated_at == clock.now

    clock.advance(seconds=1)
    done = store.finish_step(
        job.id, "probe", worker=W1, wall_seconds=7.0, cpu_seconds=3.0, outputs={"probe": "k/p.json"}
    )
    assert done == StepFinish(newly_finished=True, group_complete=False)

    results = []
    for name in ("encode:0000", "encode:0001"):
        store.mark_queued(job.id, name)
        assert store.start_step(job.id, name, worker=W2) is not None
        results.append(
            store.finish_step(
                job.id, name, worker=W2, wall_seconds=10.0, cpu_seconds=20.0, fanin_group="encode"
            )
        )
    assert [r.group_complete for r in results] == [False, True]
    assert store.get_job(job.id).progress == pytest.approx(0.75)

    assert store.start_step(job.id, "concat", worker=W1) is not None
    store.finish_step(job.id, "concat", worker=W1, wall_seconds=1.0, cpu_seconds=0.5)
    outputs = [
        OutputRecord("out/master.m3u8", 321, "a" * 64, "hls_master"),
        OutputRecord("out/720.mp4", 9999, "b" * 64, "mp4"),
    ]
    clock.advance(seconds=2)
    final = store.complete_job(job.id, outputs=outputs, manifest_key="out/manifest.json")
    assert final.state is JobState.SUCCEEDED
    assert final.finished_at == clock.now
    assert final.progress == 1.0
    assert final.cpu_seconds == pytest.approx(3.0 + 20.0 + 20.0 + 0.5)
    assert final.manifest_key == "out/manifest.json"
    assert store.outputs(job.id) == sorted(outputs, key=lambda o: o.key)
    steps_now = {s.name: s for s in store.steps(job.id)}
    assert {s.state for s in steps_now.values()} == {StepState.SUCCEEDED}
    assert steps_now["probe"].outputs == {"probe": "k/p.json"}
    assert steps_now["probe"].wall_seconds == 7.0
    attempts = store.attempts(job.id)
    assert len(attempts) == 4
    assert {a.outcome for a in attempts} == {AttemptOutcome.SUCCEEDED}
    assert {a.toolchain_id for a in attempts} == {"tc-1"}
    assert sorted(store.step_durations()) == [
        ("tc-1", "concat", 1.0),
        ("tc-1", "encode", 10.0),
        ("tc-1", "encode", 10.0),
        ("tc-1", "probe", 7.0),
    ]
    assert store.step_durations(since=clock.now) == []
    json.dumps(final.to_dict())
    json.dumps([s.to_dict() for s in steps_now.values()])
    json.dumps([a.to_dict() for a in attempts])

    # Publishing twice (a redelivered publish message) is harmless; a different manifest is not.
    assert store.complete_job(job.id, outputs=outputs, manifest_key="out/manifest.json") == final
    with pytest.raises(InvalidTransition, match="succeeded -> succeeded"):
        store.complete_job(job.id, outputs=[], manifest_key="elsewhere/manifest.json")
    assert store.start_step(job.id, "probe", worker=W1) is None


def test_add_steps_leaves_existing_steps_alone(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.add_steps(job.id, [("probe", "other-lane"), ("plan", "quick")], plan={"v": 2})
    steps = {s.name: s for s in store.steps(job.id)}
    assert steps["probe"].state is StepState.RUNNING
    assert steps["probe"].lane == "quick"
    assert steps["plan"].state is StepState.PENDING
    assert store.get_job(job.id).plan == {"v": 2}


def test_duplicate_finish_is_recorded_once(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("encode:0000", "long"), ("encode:0001", "long")])
    store.set_fanin(job.id, "encode", 2)
    store.set_fanin(job.id, "encode", 2)  # idempotent
    assert store.start_step(job.id, "encode:0000", worker=W1) is not None

    def finish(name: str) -> StepFinish:
        return store.finish_step(
            job.id, name, worker=W1, wall_seconds=2.0, cpu_seconds=4.0, fanin_group="encode"
        )

    assert finish("encode:0000") == StepFinish(newly_finished=True, group_complete=False)
    assert finish("encode:0000") == StepFinish(newly_finished=False, group_complete=False)
    assert store.get_job(job.id).cpu_seconds == 4.0
    assert store.start_step(job.id, "encode:0001", worker=W1) is not None
    assert finish("encode:0001") == StepFinish(newly_finished=True, group_complete=True)
    assert finish("encode:0001") == StepFinish(newly_finished=False, group_complete=False)
    (attempt,) = store.attempts(job.id, "encode:0001")
    assert attempt.outcome is AttemptOutcome.SUCCEEDED


def test_fanin_rules(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("encode:0000", "long")])
    store.set_fanin(job.id, "encode", 2)
    with pytest.raises(JobError, match="already has 2 steps"):
        store.set_fanin(job.id, "encode", 3)
    with pytest.raises(JobError, match="at least one step"):
        store.set_fanin(job.id, "audio", 0)
    assert store.start_step(job.id, "encode:0000", worker=W1) is not None
    with pytest.raises(JobNotFound, match="no fan-in group video"):
        store.finish_step(
            job.id, "encode:0000", worker=W1, wall_seconds=1, cpu_seconds=1, fanin_group="video"
        )
    # The failed call rolled back: the step still runs and can finish properly.
    assert {s.name: s.state for s in store.steps(job.id)}["encode:0000"] is StepState.RUNNING


def test_finish_of_a_step_that_never_started_is_refused(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    with pytest.raises(InvalidTransition, match="pending -> succeeded"):
        store.finish_step(job.id, "probe", worker=W1, wall_seconds=1, cpu_seconds=1)


def test_mark_queued_follows_the_rules(store: JobStore, clock: FakeClock) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    store.mark_queued(job.id, "probe")
    clock.advance(seconds=3)
    store.mark_queued(job.id, "probe")  # a resend
    assert store.steps(job.id)[0].enqueued_at == clock.now
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.finish_step(job.id, "probe", worker=W1, wall_seconds=1, cpu_seconds=1)
    with pytest.raises(InvalidTransition, match="succeeded -> queued"):
        store.mark_queued(job.id, "probe")


def test_start_step_skips_succeeded_steps_and_cancelled_jobs(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick"), ("plan", "quick")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.finish_step(job.id, "probe", worker=W1, wall_seconds=1, cpu_seconds=1)
    assert store.start_step(job.id, "probe", worker=W2) is None
    assert len(store.attempts(job.id, "probe")) == 1

    cancelled = store.cancel_job(job.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.finished_at is not None
    assert store.cancel_job(job.id) == cancelled  # twice is a no-op
    assert store.start_step(job.id, "plan", worker=W1) is None
    assert store.attempts(job.id, "plan") == []


def test_cancelling_a_finished_job_is_refused(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.complete_job(job.id, outputs=[], manifest_key="m.json")
    with pytest.raises(InvalidTransition, match="succeeded -> cancelled"):
        store.cancel_job(job.id)
    with pytest.raises(InvalidTransition, match="only a failed or cancelled job"):
        store.requeue(job.id)


def test_redelivery_abandons_the_previous_attempt(store: JobStore, clock: FakeClock) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("encode:0000", "long")])
    assert store.start_step(job.id, "encode:0000", worker=W1) is not None
    clock.advance(seconds=30)
    second = store.start_step(job.id, "encode:0000", worker=W2)
    assert second is not None
    assert second.attempt == 2
    first, again = store.attempts(job.id, "encode:0000")
    assert (first.number, first.worker, first.outcome) == (1, W1, AttemptOutcome.ABANDONED)
    assert first.finished_at == clock.now
    assert first.wall_seconds == 30.0
    assert (again.number, again.worker, again.outcome) == (2, W2, AttemptOutcome.RUNNING)
    step = store.steps(job.id)[0]
    assert (step.state, step.attempts, step.worker) == (StepState.RUNNING, 2, W2)
    result = store.finish_step(job.id, "encode:0000", worker=W2, wall_seconds=5, cpu_seconds=9)
    assert result.newly_finished
    outcomes = [a.outcome for a in store.attempts(job.id, "encode:0000")]
    assert outcomes == [AttemptOutcome.ABANDONED, AttemptOutcome.SUCCEEDED]


# -- failures, dead letters, replays -----------------------------------------------------------


def test_retry_then_permanent_failure_writes_a_dead_letter(
    store: JobStore, clock: FakeClock
) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick"), ("encode:0000", "long")])
    store.mark_queued(job.id, "encode:0000")
    assert store.start_step(job.id, "encode:0000", worker=W1) is not None
    clock.advance(seconds=4)
    transient = _ffmpeg_error(permanent=False)
    store.fail_attempt(job.id, "encode:0000", error=transient, will_retry=True)
    step = store.steps(job.id)[0]
    assert (step.state, step.error_label) == (StepState.RETRYING, "ffmpeg_failed")
    (attempt,) = store.attempts(job.id, "encode:0000")
    assert attempt.outcome is AttemptOutcome.RETRYING
    assert attempt.wall_seconds == 4.0
    assert attempt.exit_code == 1
    assert "Invalid data" in attempt.stderr
    assert attempt.argv == ("ffmpeg", "-i", "file:in.mp4", "out.mp4")

    start = store.start_step(job.id, "encode:0000", worker=W2)
    assert start is not None
    assert start.attempt == 2
    permanent = _ffmpeg_error(permanent=True, worker=W2)
    store.fail_attempt(job.id, "encode:0000", error=permanent, will_retry=False)
    assert store.steps(job.id)[0].state is StepState.FAILED
    clock.advance(seconds=1)
    letter = store.fail_job(job.id, "encode:0000", error=permanent)

    failed = store.get_job(job.id)
    assert failed.state is JobState.FAILED
    assert (failed.error_label, failed.failed_step) == ("input_corrupt", "encode:0000")
    assert failed.finished_at == clock.now
    assert letter.state is DeadLetterState.OPEN
    assert (letter.job_id, letter.step, letter.error_label) == (
        job.id,
        "encode:0000",
        "input_corrupt",
    )
    assert letter.exit_code == 1
    assert letter.argv == ("ffmpeg", "-i", "file:in.mp4", "out.mp4")
    assert "Invalid data found" in letter.stderr
    assert (letter.toolchain_id, letter.worker) == ("tc-1", W2)
    assert [a["number"] for a in letter.attempts] == [1, 2]
    assert [a["outcome"] for a in letter.attempts] == ["retrying", "failed"]
    assert all("Invalid data" in a["stderr"] for a in letter.attempts)
    json.dumps(letter.to_dict())

    # A redelivered failure does not write a second dead letter.
    assert store.fail_job(job.id, "encode:0000", error=permanent) == letter
    assert store.list_dead_letters() == [letter]
    assert store.get_dead_letter(letter.id) == letter
    with pytest.raises(JobNotFound, match="no dead letter"):
        store.get_dead_letter("0" * 32)


def test_fail_job_closes_the_running_attempt(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    error = ErrorInfo.from_exception(ValueError("boom"), worker=W1)
    letter = store.fail_job(job.id, "probe", error=error)
    (attempt,) = store.attempts(job.id)
    assert attempt.outcome is AttemptOutcome.FAILED
    assert attempt.error_message == "ValueError: boom"
    assert letter.error_label == "internal"
    assert letter.argv is None
    assert letter.attempts[0]["outcome"] == "failed"
    assert store.steps(job.id)[0].state is StepState.FAILED


def test_fail_job_before_any_step(store: JobStore) -> None:
    job = new_job(store)
    error = ErrorInfo("job_expired", "ran past its max age", permanent=True, worker="reaper:1")
    letter = store.fail_job(job.id, "probe", error=error)
    assert letter.attempts == ()
    assert letter.toolchain_id == "tc-1"
    assert store.get_job(job.id).state is JobState.FAILED
    with pytest.raises(InvalidTransition, match="failed -> failed"):
        store.fail_job(job.id, "other", error=error)
    assert store.requeue(job.id) == []


def test_an_expired_job_fails_without_rewriting_finished_steps(
    store: JobStore, clock: FakeClock
) -> None:
    job = new_job(store, max_age_seconds=60.0)
    store.add_steps(job.id, [("probe", "quick"), ("encode:0000", "long")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.finish_step(job.id, "probe", worker=W1, wall_seconds=1, cpu_seconds=1)
    clock.advance(minutes=2)
    assert [j.id for j in store.expired_jobs()] == [job.id]
    error = ErrorInfo("job_expired", "exceeded its max age", permanent=True, worker="reaper:1")
    letter = store.fail_job(job.id, "probe", error=error)
    assert (letter.step, len(letter.attempts)) == ("probe", 1)
    assert store.get_job(job.id).state is JobState.FAILED
    assert store.expired_jobs() == []
    states = {s.name: s.state for s in store.steps(job.id)}
    assert states == {"encode:0000": StepState.PENDING, "probe": StepState.SUCCEEDED}


def test_requeue_and_replay(store: JobStore, clock: FakeClock) -> None:
    job = new_job(store)
    names = ["concat", "encode:0000", "encode:0001", "probe"]
    store.add_steps(job.id, [(n, "quick") for n in names])
    store.set_fanin(job.id, "encode", 2)
    for name in ("probe", "encode:0000"):
        assert store.start_step(job.id, name, worker=W1) is not None
        store.finish_step(
            job.id,
            name,
            worker=W1,
            wall_seconds=1,
            cpu_seconds=1,
            fanin_group=None if name == "probe" else "encode",
        )
    assert store.start_step(job.id, "encode:0001", worker=W1) is not None
    error = _ffmpeg_error(permanent=True)
    store.fail_attempt(job.id, "encode:0001", error=error, will_retry=False)
    letter = store.fail_job(job.id, "encode:0001", error=error)

    clock.advance(minutes=5)
    assert store.requeue(job.id) == ["concat", "encode:0001"]
    requeued = store.get_job(job.id)
    assert requeued.state is JobState.QUEUED
    assert (requeued.error_label, requeued.error_message, requeued.failed_step) == (
        None,
        None,
        None,
    )
    assert requeued.finished_at is None
    states = {s.name: s.state for s in store.steps(job.id)}
    assert states == {
        "concat": StepState.PENDING,
        "encode:0000": StepState.SUCCEEDED,
        "encode:0001": StepState.PENDING,
        "probe": StepState.SUCCEEDED,
    }
    assert store.get_dead_letter(letter.id).state is DeadLetterState.OPEN

    replayed = store.mark_replayed(letter.id)
    assert replayed.state is DeadLetterState.REPLAYED
    assert (replayed.replayed_at, replayed.replay_count) == (clock.now, 1)
    assert store.list_dead_letters() == []
    assert store.list_dead_letters(state="replayed") == [replayed]
    assert store.list_dead_letters(state=None) == [replayed]
    with pytest.raises(JobError, match="unknown dead letter state"):
        store.list_dead_letters(state="bogus")

    # The replay picks up where it failed: attempt numbers go on, the fan-in completes once.
    start = store.start_step(job.id, "encode:0001", worker=W2)
    assert start is not None
    # A replay gets a fresh attempt budget (the earlier attempt stays in the history).
    assert (start.attempt, start.job.state) == (1, JobState.RUNNING)
    assert start.job.requeued_at is not None
    done = store.finish_step(
        job.id, "encode:0001", worker=W2, wall_seconds=1, cpu_seconds=1, fanin_group="encode"
    )
    assert done == StepFinish(newly_finished=True, group_complete=True)


def test_requeue_of_a_cancelled_job_abandons_in_flight_work(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("encode:0000", "long"), ("encode:0001", "long")])
    store.mark_queued(job.id, "encode:0001")
    assert store.start_step(job.id, "encode:0000", worker=W1) is not None
    store.cancel_job(job.id)
    assert store.requeue(job.id) == ["encode:0000", "encode:0001"]
    assert {s.state for s in store.steps(job.id)} == {StepState.PENDING}
    assert [a.outcome for a in store.attempts(job.id)] == [AttemptOutcome.ABANDONED]
    with pytest.raises(InvalidTransition, match="only a failed or cancelled job"):
        store.requeue(job.id)


def test_fail_attempt_on_a_finished_step_is_refused(store: JobStore) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.finish_step(job.id, "probe", worker=W1, wall_seconds=1, cpu_seconds=1)
    with pytest.raises(InvalidTransition, match="succeeded -> retrying"):
        store.fail_attempt(job.id, "probe", error=_ffmpeg_error(permanent=False), will_retry=True)


# -- the reaper's queries ----------------------------------------------------------------------


def test_stale_steps(store: JobStore, clock: FakeClock) -> None:
    job = new_job(store)
    store.add_steps(job.id, [("probe", "quick"), ("encode:0000", "long"), ("audio", "long")])
    assert store.start_step(job.id, "probe", worker=W1) is not None
    store.mark_queued(job.id, "encode:0000")
    clock.advance(minutes=10)
    store.heartbeat(job.id, "probe")
    assert [s.name for s in store.stale_steps(older_than=timedelta(minutes=5))] == ["encode:0000"]
    clock.advance(minutes=10)
    stale = store.stale_steps(older_than=timedelta(minutes=5))
    assert [s.name for s in stale] == ["encode:0000", "probe"]  # oldest first; pending not stale
    store.cancel_job(job.id)
    assert store.stale_steps(older_than=timedelta(minutes=5)) == []


def test_stalled_jobs(store: JobStore, clock: FakeClock) -> None:
    planned = new_job(store, "planned.mp4")
    store.add_steps(planned.id, [("probe", "quick")])
    lost = new_job(store, "lost.mp4")
    clock.advance(minutes=3)
    fresh = new_job(store, "fresh.mp4")
    assert [j.id for j in store.stalled_jobs(older_than=timedelta(minutes=2))] == [lost.id]
    clock.advance(minutes=3)
    assert [j.id for j in store.stalled_jobs(older_than=timedelta(minutes=2))] == [
        lost.id,
        fresh.id,
    ]
    store.cancel_job(lost.id)
    assert [j.id for j in store.stalled_jobs(older_than=timedelta(minutes=2))] == [fresh.id]


def test_expired_jobs(store: JobStore, clock: FakeClock) -> None:
    short = new_job(store, "short.mp4", max_age_seconds=60.0)
    long = new_job(store, "long.mp4", max_age_seconds=3600.0)
    done = new_job(store, "done.mp4", max_age_seconds=60.0)
    store.cancel_job(done.id)
    clock.advance(seconds=60)
    assert store.expired_jobs() == []  # "older than", not "as old as"
    clock.advance(seconds=1)
    assert [j.id for j in store.expired_jobs()] == [short.id]
    clock.advance(hours=1)
    assert {j.id for j in store.expired_jobs()} == {short.id, long.id}


# -- configuration and failure of the store itself --------------------------------------------


def test_naive_clock_is_refused(backend: Backend) -> None:
    with backend.open(lambda: FakeClock().now.replace(tzinfo=None)) as store:
        with pytest.raises(ConfigError, match="naive datetime"):
            store.create_job(spec_for())
        with pytest.raises(ConfigError, match="naive datetime"):
            store.step_durations(since=FakeClock().now.replace(tzinfo=None))


def test_unreachable_database_is_a_transient_error() -> None:
    store = JobStore("postgresql://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 2})
    with store, pytest.raises(TransientError, match="job store unavailable") as info:
        store.get_job("x")
    assert not info.value.permanent


def test_unsupported_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sqlite:/// or postgresql://"):
        JobStore("mysql://localhost/jobs")


def test_sqlite_runs_in_wal_with_foreign_keys(sqlite_backend: Backend) -> None:
    with sqlite_backend.open() as store, store.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,
        "busy_timeout": 30000,
    }
