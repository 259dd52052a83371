"""Webhooks against a real local HTTP receiver (signature checked, retried after a 500); the
SSE stream through a real uvicorn server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from tests.integration.api.conftest import Api
from vodforge.api.keys import create_key
from vodforge.api.webhooks import WebhookDeliverer
from vodforge.jobs import ErrorInfo


class Receiver:
    """Answers with the queued statuses (then 200) and keeps what it got."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.got: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _fail(api: Api, job_id: str) -> None:
    jobs = api.ctx.jobs
    jobs.start_step(job_id, "probe", worker="h:1")
    error = ErrorInfo(label="input_corrupt", message="bad", permanent=True, worker="h:1")
    jobs.fail_attempt(job_id, "probe", error=error, will_retry=False)
    jobs.fail_job(job_id, "probe", error=error)


def test_webhook_is_signed_retried_and_logged(api: Api, receiver: Receiver) -> None:
    made = create_key(api.ctx.keys, name="hooked", scopes="upload,read", webhook_url=receiver.url)
    auth = {"Authorization": f"Bearer {made.token}"}
    up = api.client.post("/v1/uploads", headers=auth, files={"file": ("a.mp4", b"abc")})
    job_id = up.json()["job"]["id"]
    deliverer = WebhookDeliverer(
        api.ctx.outbox,
        api.ctx.keys,
        api.ctx.payload_for,
        fallback_secret="x" * 32,
        min_backoff_ms=1,
        max_backoff_ms=5,
    )
    try:
        assert deliverer.tick() == 0  # not ended yet: nothing to deliver
        _fail(api, job_id)
        receiver.statuses = [500]
        assert deliverer.tick() == 1  # answered 500: retried later
        pending = api.client.get(f"/v1/jobs/{job_id}", headers=auth).json()["webhooks"]
        assert [(w["state"], w["attempts"], w["last_status"]) for w in pending] == [
            ("pending", 1, 500)
        ]
        time.sleep(0.05)
        assert deliverer.tick() == 1
        assert deliverer.tick() == 0  # delivered: not again
    finally:
        deliverer.close()
    hooks = api.client.get(f"/v1/jobs/{job_id}", headers=auth).json()["webhooks"]
    assert [(w["state"], w["attempts"], w["last_status"]) for w in hooks] == [("delivered", 2, 200)]
    assert len(receiver.got) == 2
    headers, body = receiver.got[-1]
    expected = hmac.new(
        made.key.webhook_secret.encode(),
        f"{headers['x-vodforge-timestamp']}.".encode() + body,
        hashlib.sha256,
    ).hexdigest()
    assert headers["x-vodforge-signature"] == f"sha256={expected}"
    assert headers["x-vodforge-event"] == "job.failed"
    payload = json.loads(body)
    assert payload["event"] == "job.failed"
    assert payload["job"]["id"] == job_id
    assert payload["job"]["error"]["type"] == "input_corrupt"


def test_webhook_gives_up_after_max_attempts(api: Api) -> None:
    made = create_key(
        api.ctx.keys, name="dead", scopes="upload,read", webhook_url="http://127.0.0.1:9/nothing"
    )
    auth = {"Authorization": f"Bearer {made.token}"}
    job_id = api.client.post("/v1/uploads", headers=auth, files={"file": ("a.mp4", b"abc")}).json()[
        "job"
    ]["id"]
    _fail(api, job_id)
    deliverer = WebhookDeliverer(
        api.ctx.outbox,
        api.ctx.keys,
        api.ctx.payload_for,
        fallback_secret="x" * 32,
        max_attempts=2,
        min_backoff_ms=1,
        max_backoff_ms=2,
        timeout_seconds=2,
    )
    try:
        deliverer.tick()
        time.sleep(0.02)
        deliverer.tick()
    finally:
        deliverer.close()
    (hook,) = api.client.get(f"/v1/jobs/{job_id}", headers=auth).json()["webhooks"]
    assert (hook["state"], hook["attempts"], hook["last_status"]) == ("failed", 2, None)
    assert hook["last_error"]


def test_events_stream_job_changes_to_those_who_may_see_them(api: Api) -> None:
    api.app.state.ping_seconds = 5.0
    config = uvicorn.Config(api.app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        job_id = api.client.post(
            "/v1/uploads", headers=api.auth("uploader"), files={"file": ("a.mp4", b"abc")}
        ).json()["job"]["id"]
        seen: dict[str, list[str]] = {"uploader": [], "other": []}

        stop = threading.Event()

        def listen(who: str, ready: threading.Event) -> None:
            try:
                with httpx.stream(
                    "GET", f"{base}/v1/events", headers=api.auth(who), timeout=3
                ) as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    for line in response.iter_lines():
                        if line.startswith(": connected"):
                            ready.set()
                        if line.startswith("data: "):
                            seen[who].append(json.loads(line[6:])["state"])
                            return
            except httpx.ReadTimeout:
                if not stop.is_set():
                    raise

        readies = {who: threading.Event() for who in seen}
        listeners = [
            threading.Thread(target=listen, args=(who, readies[who]), daemon=True) for who in seen
        ]
        for t in listeners:
            t.start()
        for ready in readies.values():
            assert ready.wait(10)
        time.sleep(0.2)
        api.ctx.jobs.cancel_job(job_id)
        listeners[0].join(10)
        assert seen["uploader"] == ["cancelled"]
        time.sleep(0.5)
        stop.set()
        listeners[1].join(5)
        assert seen["other"] == []  # not theirs: never sent
    finally:
        server.should_exit = True
        thread.join(10)
