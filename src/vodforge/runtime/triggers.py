"""Which preset an object-created event starts (pure): the first trigger whose bucket, key prefix
and case-insensitive suffix match, like ``.mov → mp4-only`` before ``uploads/ → default``."""

from __future__ import annotations

from collections.abc import Sequence

from vodforge.settings import Trigger


def match_trigger(triggers: Sequence[Trigger], *, bucket: str, key: str) -> Trigger | None:
    for trigger in triggers:
        if trigger.bucket not in ("*", bucket):
            continue
        if not key.startswith(trigger.prefix):
            continue
        if trigger.suffix and not key.lower().endswith(trigger.suffix.lower()):
            continue
        return trigger
    return None
