"""Webhook delivery: a loop in ``serve`` that fills the outbox from jobs that ended and POSTs
each due delivery, signed, retrying with exponential backoff and jitter.

Body ``{"event", "job": JobSummary}``; headers ``X-Vodforge-Event``, ``X-Vodforge-Delivery``,
``X-Vodforge-Timestamp`` and ``X-Vodforge-Signature: sha256=<hex HMAC-SHA256(key's webhook
secret, "<timestamp>.<body>")>``. A receiver checks the signature and that the timestamp is
recent, and treats the delivery id as idempotency key (a delivery can arrive twice if the
process dies between the POST and recording it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from dramatiq.common import compute_backoff

from vodforge.jobs import JobView
from vodforge.jobs.apikeys import ApiKeyStore
from vodforge.jobs.outbox import DeliveryView, WebhookOutbox
from vodforge.observability.logging import get_logger

__all__ = ["WebhookDeliverer", "signature"]

log = get_logger(__name__)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookDeliverer:
    def __init__(
        self,
        outbox: WebhookOutbox,
        keys: ApiKeyStore,
        payload_for: Callable[[JobView, str], dict[str, Any]],
        *,
        fallback_secret: str,
        max_attempts: int = 8,
        min_backoff_ms: int = 1000,
        max_backoff_ms: int = 600_000,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.outbox = outbox
        self.keys = keys
        self.payload_for = payload_for
        self.fallback_secret = fallback_secret
        self.max_attempts = max_attempts
        self.min_backoff_ms = min_backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self._client = httpx.Client(
            timeout=timeout_seconds, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                log.warning("webhook delivery pass failed", error=repr(exc))
            stop.wait(interval)
        self.close()

    def tick(self) -> int:
        """Fill the outbox, then attempt every due delivery; how many were attempted."""
        self.outbox.enqueue_finished(self.payload_for)
        due = self.outbox.due()
        for delivery in due:
            self.deliver(delivery)
        return len(due)

    def _secret(self, delivery: DeliveryView) -> str:
        key = self.keys.get(delivery.key_id) if delivery.key_id else None
        return key.webhook_secret if key is not None else self.fallback_secret

    def deliver(self, delivery: DeliveryView) -> DeliveryView:
        body = json.dumps(
            {"event": delivery.event, "job": delivery.payload}, separators=(",", ":")
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vodforge-webhooks",
            "X-Vodforge-Event": delivery.event,
            "X-Vodforge-Delivery": delivery.id,
            "X-Vodforge-Timestamp": str(timestamp),
            "X-Vodforge-Signature": signature(self._secret(delivery), timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        t0 = time.monotonic()
        try:
            response = self._client.post(delivery.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempt = delivery.attempts + 1
        retry_at = None
        if error is not None and attempt < self.max_attempts:
            _, delay_ms = compute_backoff(
                attempt - 1, factor=max(1, self.min_backoff_ms), max_backoff=self.max_backoff_ms
            )
            retry_at = self.outbox.now() + timedelta(milliseconds=delay_ms)
        done = self.outbox.record_attempt(
            delivery.id,
            status=status,
            error=error,
            seconds=time.monotonic() - t0,
            retry_at=retry_at,
        )
        log.info(
            "webhook attempt",
            delivery=delivery.id,
            job_id=delivery.job_id,
            url=delivery.url,
            attempt=attempt,
            status=status,
            error=error,
            state=done.state,
        )
        return done
