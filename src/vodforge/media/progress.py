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


class ProgressParser:
    """Incremental form of ``parse_progress``: feed lines as they arrive, get a ``Progress``
    back at the end of each block (None otherwise)."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}

    def feed(self, raw: str) -> Progress | None:
        line = raw.strip()
        if "=" not in line:
            return None
        key, _, value = line.partition("=")
        block = self._block
        block[key] = value
        if key != "progress":
            return None
        micros = _number(block.get("out_time_us")) or _number(block.get("out_time_ms"))
        frame = _number(block.get("frame"))
        self._block = {}
        return Progress(
            frame=int(frame or 0),
            out_seconds=max(0.0, (micros or 0.0) / 1_000_000),
            speed=_number(block.get("speed")),
            done=value == "end",
        )


def parse_progress(lines: Iterable[str]) -> Iterator[Progress]:
    """Yield a ``Progress`` at the end of each block; tolerant of garbage and partial blocks."""
    parser = ProgressParser()
    for raw in lines:
        if (progress := parser.feed(raw)) is not None:
            yield progress
