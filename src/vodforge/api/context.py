"""What the API's routes work against, gathered once per app (``app.state.api``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from vodforge.api.limiter import KeyRateLimiter
from vodforge.api.signing import ObjectUrls
from vodforge.jobs import JobStore, JobView
from vodforge.jobs.apikeys import ApiKeyStore
from vodforge.jobs.outbox import WebhookOutbox
from vodforge.runtime.dispatch import Dispatcher
from vodforge.settings import Settings
from vodforge.storage import ObjectStore


@dataclass
class ApiContext:
    settings: Settings
    jobs: JobStore
    store: ObjectStore
    dispatcher: Dispatcher
    keys: ApiKeyStore = field(init=False)
    outbox: WebhookOutbox = field(init=False)
    urls: ObjectUrls = field(init=False)
    limiter: KeyRateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.keys = ApiKeyStore(self.jobs)
        self.outbox = WebhookOutbox(self.jobs)
        self.urls = ObjectUrls(
            self.store,
            self.settings.secret(),
            expires_seconds=self.settings.signed_url_seconds,
            public_url=self.settings.public_url,
        )
        self.limiter = KeyRateLimiter(self.settings.rate_limit)

    @property
    def base_url(self) -> str:
        """This server's own URL, for URLs made outside a request (webhook payloads)."""
        host = self.settings.http_host
        return self.settings.public_url or f"http://{host}:{self.settings.http_port}"

    def payload_for(self, job: JobView, event: str) -> dict[str, Any]:
        """A webhook's ``job``: the JobSummary as the API shows it."""
        from vodforge.api.render import Renderer  # noqa: PLC0415

        render = Renderer(self.jobs, self.urls, self.outbox, self.base_url)
        return render.summary(job, detail=True).model_dump(mode="json")


def api_context(request: Request) -> ApiContext:
    ctx = request.app.state.api
    assert isinstance(ctx, ApiContext)
    return ctx
