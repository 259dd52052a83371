"""Parse ffmpeg's ``-progress`` key=value stream (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One ``progress=continue|end`` block."""

    frame: int
    out_seconds: float
    speed: float | None
    done: bool


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip().rstrip("x")
    if not value or value == "N/A":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_progress(lines: Iterable[str]) -> Iterator[Progress]:
    """Yield a ``Progress`` at the end of each block; tolerant of garbage and partial blocks."""
    block: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        block[key] = value
        if key == "progress":
            micros = _number(block.get("out_time_us")) or _number(block.get("out_time_ms"))
            frame = _number(block.get("frame"))
            yield Progress(
                frame=int(frame or 0),
                out_seconds=max(0.0, (micros or 0.0) / 1_000_000),
                speed=_number(block.get("speed")),
                done=value == "end",
            )
            block = {}
