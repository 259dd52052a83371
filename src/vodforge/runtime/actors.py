"""Dramatiq binding: one actor per lane, each running ``StepExecutor.execute``.

Actors are created on an explicit broker (no import-time global), so tests and ``serve`` can
build as many runtimes as they need. Retries are delayed messages the executor sends itself
(Dramatiq's ``compute_backoff``: exponential with jitter); the attempt budget and the
permanent/transient split are decided from the job store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from vodforge.pipeline.dag import Lane
from vodforge.runtime.executor import StepMessage

#: Dramatiq's TimeLimit middleware would interrupt a long encode; ffmpeg deadlines live in the
#: runner (scaled to the media's duration), so the actor limit is a week.
_NO_TIME_LIMIT_MS = 7 * 24 * 3600 * 1000


def actor_name(lane: Lane) -> str:
    return f"vodforge_step_{lane.value}"


@dataclass
class Lanes:
    """The actors of one broker, and a ``StepSender`` over them."""

    broker: RedisBroker
    actors: dict[Lane, dramatiq.Actor[[dict[str, Any]], None]]

    def send(self, lane: Lane, message: StepMessage, *, delay_ms: int | None = None) -> None:
        self.actors[lane].send_with_options(args=(message.to_dict(),), delay=delay_ms)


def bind_lanes(
    broker: RedisBroker,
    handler: Callable[[StepMessage, Lane], None] | None,
) -> Lanes:
    """Declare the lane actors on ``broker``. ``handler`` (the message and the lane it came
    from) None: a sender only (API, dispatcher)."""

    def make(lane: Lane) -> dramatiq.Actor[[dict[str, Any]], None]:
        def run(body: dict[str, Any]) -> None:
            if handler is None:
                raise RuntimeError("this process only sends steps")
            handler(StepMessage.from_dict(body), lane)

        run.__name__ = actor_name(lane)
        decorate = dramatiq.actor(
            actor_name=actor_name(lane),
            queue_name=lane.value,
            broker=broker,
            # Retries are the executor's (budget in the job store); a message that raised
            # anyway (a bug) is not redelivered in a loop: the reaper re-drives the job.
            max_retries=0,
            time_limit=_NO_TIME_LIMIT_MS,
        )
        actor: dramatiq.Actor[[dict[str, Any]], None] = decorate(run)
        return actor

    return Lanes(broker, {lane: make(lane) for lane in Lane})
