"""The worker's plan cache: bounded by weight (keyframes + chunks), least recently used first."""

from __future__ import annotations

from tests.unit.factories import media_info, video_info
from vodforge.media.plan import JobPlan, plan_job
from vodforge.media.presets import load_preset
from vodforge.pipeline.steps import JobRef, _PlanCache


def _plan(frames: int) -> JobPlan:
    return plan_job(
        media_info(video_info(frames=frames, gop=60)), load_preset("default"), workers=2
    )


def _key(n: int) -> tuple[JobRef, str]:
    return JobRef(job_id=f"job{n}", source_key=f"uploads/{n}.mp4", preset="default"), "bucket"


def test_weight_counts_keyframes_and_chunks() -> None:
    short, long = _plan(60), _plan(60 * 600)
    assert _PlanCache.weight(short) == 1 + 1 + len(short.chunks.chunks)
    assert _PlanCache.weight(long) == 1 + 600 + len(long.chunks.chunks)


def test_evicts_least_recently_used_beyond_the_budget() -> None:
    plan = _plan(60)
    weight = _PlanCache.weight(plan)
    cache = _PlanCache(budget=3 * weight)
    for n in range(3):
        cache.put(_key(n), plan)
    assert cache.get(_key(0)) is plan  # job 0 is now the most recently used
    cache.put(_key(3), plan)
    assert len(cache) == 3
    assert cache.get(_key(1)) is None  # the least recently used went
    assert cache.get(_key(0)) is plan
    assert cache.get(_key(3)) is plan


def test_one_heavy_plan_pushes_out_many_light_ones() -> None:
    light, heavy = _plan(60), _plan(60 * 300)
    cache = _PlanCache(budget=_PlanCache.weight(heavy) + _PlanCache.weight(light))
    for n in range(10):
        cache.put(_key(n), light)
    cache.put(_key(99), heavy)
    assert cache.get(_key(99)) is heavy
    assert len(cache) == 2
    assert cache.get(_key(9)) is light


def test_a_plan_over_the_budget_is_still_kept_alone() -> None:
    heavy = _plan(60 * 300)
    cache = _PlanCache(budget=10)
    cache.put(_key(0), heavy)
    assert cache.get(_key(0)) is heavy  # its job's next steps still find it


def test_forget_frees_the_weight() -> None:
    plan = _plan(60)
    cache = _PlanCache(budget=2 * _PlanCache.weight(plan))
    cache.put(_key(0), plan)
    cache.put(_key(1), plan)
    cache.forget(_key(0))
    cache.forget(_key(0))  # twice is harmless
    cache.put(_key(2), plan)
    assert cache.get(_key(1)) is plan
    assert cache.get(_key(2)) is plan
