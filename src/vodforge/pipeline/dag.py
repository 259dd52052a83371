"""The steps of a job and the edges between them (pure).

    probe ──► encode:0000 … encode:NNNN ─┐
          ├─► audio ─────────────────────┼─(fan-in "media")─► package ──► verify ──► done
          └─► previews ──────────────────┘

    probe ──► transcode ──► done          (a job of one chunk: see ``TRANSCODE``; a probe
                                           on the long lane runs it in the same thread)

Probe runs first and plans the rest; the media steps run in parallel on two lanes; the last of
them to finish (the job store's atomic counter decides which) sends ``package``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

PROBE = "probe"
AUDIO = "audio"
PREVIEWS = "previews"
PACKAGE = "package"
VERIFY = "verify"
#: A job of a single chunk runs as one step: fanning out a few seconds of video would cost more
#: in messages, transactions and intermediate objects than it saves.
TRANSCODE = "transcode"
ENCODE_PREFIX = "encode:"
MEDIA_GROUP = "media"


class Lane(StrEnum):
    """A queue with its own worker concurrency (a bulkhead): quick work never waits behind
    long encodes."""

    QUICK = "quick"
    LONG = "long"


@dataclass(frozen=True)
class StepSpec:
    name: str
    lane: Lane
    after: tuple[str, ...] = ()
    #: The fan-in group this step counts towards (its last finisher sends the next step).
    fanin: str | None = None


def encode_step(chunk_index: int) -> str:
    return f"{ENCODE_PREFIX}{chunk_index:04d}"


def chunk_index(step: str) -> int:
    if not step.startswith(ENCODE_PREFIX):
        raise ValueError(f"not an encode step: {step!r}")
    return int(step.removeprefix(ENCODE_PREFIX))


def step_kind(step: str) -> str:
    """``encode:0003`` → ``encode``: the label used in metrics."""
    return step.split(":", 1)[0]


def lane_of(step: str) -> Lane:
    long = step.startswith(ENCODE_PREFIX) or step in (PACKAGE, TRANSCODE)
    return Lane.LONG if long else Lane.QUICK


def probe_spec(lane: Lane = Lane.QUICK) -> StepSpec:
    """The first step of every job. ``lane``: the quick lane, or the long lane for a small
    upload (see ``chains_transcode``)."""
    return StepSpec(PROBE, lane)


def chains_transcode(specs: list[StepSpec], lane: Lane | None) -> bool:
    """A probe that ran on the long lane and planned a job of one chunk runs the ``transcode``
    right after it, in the same worker thread: one message, one queue wait and one thread
    hand-off fewer per short clip. On the quick lane it sends it instead (a quick-lane thread
    never encodes: previews and probes must not wait behind encodes)."""
    return lane is Lane.LONG and [s.name for s in specs] == [PROBE, TRANSCODE]


def job_steps(
    *, chunks: int, has_audio: bool, has_previews: bool, single: bool = False
) -> list[StepSpec]:
    """Every step of a planned job, in a topological order. ``single``: the whole job after
    the probe is one ``transcode`` step on the long lane."""
    if chunks < 1:
        raise ValueError("a job has at least one chunk")
    if single:
        return [probe_spec(), StepSpec(TRANSCODE, Lane.LONG, (PROBE,))]
    media = [StepSpec(encode_step(i), Lane.LONG, (PROBE,), MEDIA_GROUP) for i in range(chunks)]
    if has_audio:
        media.append(StepSpec(AUDIO, Lane.QUICK, (PROBE,), MEDIA_GROUP))
    if has_previews:
        media.append(StepSpec(PREVIEWS, Lane.QUICK, (PROBE,), MEDIA_GROUP))
    return [
        probe_spec(),
        *media,
        StepSpec(PACKAGE, Lane.LONG, tuple(s.name for s in media)),
        StepSpec(VERIFY, Lane.QUICK, (PACKAGE,)),
    ]


def fanin_totals(specs: list[StepSpec]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for s in specs:
        if s.fanin:
            totals[s.fanin] = totals.get(s.fanin, 0) + 1
    return totals


def successors(specs: list[StepSpec], finished: str) -> list[StepSpec]:
    return [s for s in specs if finished in s.after]


def ready(specs: list[StepSpec], succeeded: Mapping[str, bool]) -> list[StepSpec]:
    """Steps not yet succeeded whose every predecessor has: what a reaper re-drives when a job
    stopped advancing (a lost message, a crash between finishing a step and sending the next)."""
    return [
        s
        for s in specs
        if not succeeded.get(s.name, False) and all(succeeded.get(p, False) for p in s.after)
    ]
