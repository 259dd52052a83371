"""Per-key rate limits: ``limits``' in-memory moving window (one API process holds them)."""

from __future__ import annotations

import math
import threading
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from vodforge.errors import RateLimited


class KeyRateLimiter:
    def __init__(self, default: str) -> None:
        self._default = default
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._parsed: dict[str, limits.RateLimitItem] = {}
        self._lock = threading.Lock()

    def _item(self, rate: str | None) -> limits.RateLimitItem:
        text = rate or self._default
        with self._lock:
            item = self._parsed.get(text)
            if item is None:
                item = self._parsed[text] = limits.parse(text)
        return item

    def hit(self, key_id: str, rate: str | None) -> None:
        """Count one request of ``key_id``; ``RateLimited`` (with Retry-After) past its limit."""
        item = self._item(rate)
        if self._limiter.hit(item, key_id):
            return
        stats = self._limiter.get_window_stats(item, key_id)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"rate limit {item} exceeded for key {key_id}; retry in {retry_after} s",
            retry_after=retry_after,
        )
