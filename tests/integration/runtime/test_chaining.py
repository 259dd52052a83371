"""With ``chain_upload_bytes`` (opt-in), a small upload's probe runs on the long lane and chains
a one-chunk job's transcode in the same thread; driven here by hand through a worker's
``StepExecutor`` (real job store, object store and ffmpeg) with a recording sender in place of
the broker, so every message is accounted for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import SampleFactory
from vodforge.jobs import AttemptOutcome, JobState, StepState
from vodforge.pipeline.dag import Lane
from vodforge.runtime.app import Runtime, build_runtime
from vodforge.runtime.broker import EmbeddedRedis
from vodforge.runtime.executor import StepExecutor, StepMessage
from vodforge.settings import Settings
from vodforge.storage import ObjectCreated


@dataclass
class Sent:
    """A ``StepSender`` that records instead of sending."""

    messages: list[tuple[Lane, str]] = field(default_factory=list)

    def send(self, lane: Lane, message: StepMessage, *, delay_ms: int | None = None) -> None:
        self.messages.append((lane, message.step))


@dataclass
class Driven:
    runtime: Runtime
    executor: StepExecutor
    sent: Sent

    def upload(self, path: Path, key: str) -> tuple[str, StepMessage]:
        """Upload (the dispatcher creates the job and 'sends' its probe); the probe message."""
        self.runtime.store.put_file(key, path)
        job = next(j for j in self.runtime.jobs.list_jobs(limit=100) if j.key == key)
        ref = self.runtime.dispatcher.ref_for(job.id, key, job.preset)
        return job.id, StepMessage(ref, "probe")


@pytest.fixture
def driven(
    tmp_path: Path, runtime_settings: Callable[..., Settings]
) -> Iterator[Callable[..., Driven]]:
    made: list[tuple[Runtime, EmbeddedRedis]] = []

    def make(**overrides: object) -> Driven:
        overrides.setdefault("chain_upload_bytes", 16 * 1024 * 1024)
        redis = EmbeddedRedis(tmp_path / f"broker{len(made)}")
        url = redis.start()
        runtime = build_runtime(runtime_settings(**overrides), broker_url=url, worker=True)
        made.append((runtime, redis))
        assert runtime.executor is not None
        sent = Sent()
        runtime.executor.sender = sent
        runtime.dispatcher.sender = sent
        dispatcher = runtime.dispatcher

        def dispatch(event: ObjectCreated) -> None:
            dispatcher.handle(event)

        runtime.store.subscribe(dispatch)
        return Driven(runtime, runtime.executor, sent)

    yield make
    for runtime, redis in made:
        runtime.close()
        redis.stop()


def test_a_small_one_chunk_upload_runs_in_one_message(
    driven: Callable[..., Driven], sample: SampleFactory
) -> None:
    d = driven()
    job_id, probe = d.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/a.mp4")
    assert d.sent.messages == [(Lane.LONG, "probe")]

    d.executor.execute(probe, Lane.LONG)

    job = d.runtime.jobs.get_job(job_id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert d.sent.messages == [(Lane.LONG, "probe")], "the transcode was never sent"
    steps = {s.name: s for s in d.runtime.jobs.steps(job_id)}
    assert set(steps) == {"probe", "transcode"}
    assert steps["probe"].lane == "long"
    assert all(s.state == StepState.SUCCEEDED and s.attempts == 1 for s in steps.values())
    assert steps["probe"].worker == steps["transcode"].worker


def test_on_the_quick_lane_the_transcode_is_sent(
    driven: Callable[..., Driven], sample: SampleFactory
) -> None:
    d = driven(chain_upload_bytes=0)
    job_id, probe = d.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/a.mp4")
    assert d.sent.messages == [(Lane.QUICK, "probe")]

    d.executor.execute(probe, Lane.QUICK)

    assert d.sent.messages == [(Lane.QUICK, "probe"), (Lane.LONG, "transcode")]
    assert d.runtime.jobs.get_job(job_id).state == JobState.RUNNING
    d.executor.execute(StepMessage(probe.ref, "transcode"), Lane.LONG)
    assert d.runtime.jobs.get_job(job_id).state == JobState.SUCCEEDED


def test_by_default_every_probe_is_on_the_quick_lane(
    driven: Callable[..., Driven], sample: SampleFactory
) -> None:
    d = driven(chain_upload_bytes=Settings.model_fields["chain_upload_bytes"].default)
    d.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/a.mp4")
    assert d.sent.messages == [(Lane.QUICK, "probe")]


def test_an_upload_over_the_limit_probes_on_the_quick_lane(
    driven: Callable[..., Driven], sample: SampleFactory
) -> None:
    source = sample("hd_audio", seconds=1, size=(320, 180))
    d = driven(chain_upload_bytes=source.stat().st_size - 1)
    d.upload(source, "uploads/a.mp4")
    assert d.sent.messages == [(Lane.QUICK, "probe")]


def test_a_redelivered_probe_resumes_the_transcode_its_dead_worker_left(
    driven: Callable[..., Driven], sample: SampleFactory
) -> None:
    """The probe message is acknowledged only after the transcode it chained: a worker killed
    mid-transcode leaves it unacknowledged, Dramatiq redelivers it, and the probe (done) hands
    over to the transcode again, whose dead attempt is closed as abandoned."""
    d = driven()
    job_id, probe = d.upload(sample("hd_audio", seconds=1, size=(320, 180)), "uploads/a.mp4")
    # The probe ran, and a worker began the transcode and died (nothing sent, nothing acked).
    d.executor.execute(probe, Lane.QUICK)
    assert d.runtime.jobs.start_step(job_id, "transcode", worker="gone:1") is not None

    d.executor.execute(probe, Lane.LONG)  # the redelivered probe message

    job = d.runtime.jobs.get_job(job_id)
    assert job.state == JobState.SUCCEEDED, job.error_message
    attempts = d.runtime.jobs.attempts(job_id, "transcode")
    assert [a.outcome for a in attempts] == [AttemptOutcome.ABANDONED, AttemptOutcome.SUCCEEDED]
    assert [a.number for a in attempts] == [1, 2]
    # Delivered once more after the job ended: nothing runs, nothing is sent.
    before = list(d.sent.messages)
    d.executor.execute(probe, Lane.LONG)
    assert d.sent.messages == before
    assert len(d.runtime.jobs.attempts(job_id, "transcode")) == 2
