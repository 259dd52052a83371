"""The dashboard end to end in headless Chromium: the real embedded system (``vodforge serve``
with its broker, worker and ffmpeg), a key from ``vodforge keys create``, a clip uploaded
through the page's file input, the job's badge reaching ``succeeded`` through live updates, then
the HLS ladder playing in hls.js past 2 s and a switch to another rung that keeps playing.

Debian's Chromium (``make sysdeps``) driven by Playwright with ``executable_path``; Playwright's
own browser download is never used. Screenshots go to ``tests/output/web/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from tests.conftest import SampleFactory
from vodforge.api.dashboard import missing_vendor_files, source_web_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
WEB_PRESET = Path(__file__).resolve().parents[2] / "presets" / "web.toml"
OUTPUT = Path(__file__).resolve().parents[3] / "tests" / "output" / "web"
VODFORGE = (sys.executable, "-m", "vodforge")
H264_AAC = 'video/mp4; codecs="avc1.42E01E,mp4a.40.2"'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make sysdeps)"),
]


@dataclass
class Served:
    data: Path
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        info = json.loads((self.data / "serve.json").read_text())
        return f"http://127.0.0.1:{info['port']}/"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    assert not missing_vendor_files(source_web_dir()), "dashboard libraries missing: make web"
    tmp_path = tmp_path_factory.mktemp("web")
    data = tmp_path / "var"
    data.mkdir()
    log = tmp_path / "serve.log"
    env = dict(os.environ) | {
        "VODFORGE_DATA_DIR": str(data),
        # Uploads (no preset asked) go through the trigger: two rungs, 2 s segments.
        "VODFORGE_TRIGGERS": json.dumps([{"prefix": "uploads/", "preset": str(WEB_PRESET)}]),
        "VODFORGE_WORKER_PROCESSES": "1",
        "VODFORGE_LONG_CONCURRENCY": "2",
        "VODFORGE_SECRET_KEY": "web-test-secret-0123456789abcdef",
    }
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vodforge", "serve", "--port", "0"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while not (data / "serve.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    try:
        yield Served(data, proc, log, env)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for p in psutil.process_iter(["cmdline"]):
            if str(data) in " ".join(p.info["cmdline"] or []):
                p.kill()


@contextmanager
def browser_page(*, sized: bool = True) -> Iterator[Page]:
    """A page of Debian's headless Chromium (never a downloaded browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = (
                browser.new_page(viewport={"width": 1280, "height": 900})
                if sized
                else browser.new_page()
            )
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def create_key(served: Served, name: str) -> str:
    out = subprocess.run(
        [*VODFORGE, "keys", "create", "--name", name, "--scope", "upload,read,admin"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = re.search(r"\bvf_[A-Za-z0-9_\-]+", out.stdout)
    assert found, out.stdout
    return found.group(0)


def test_upload_watch_done_and_play_the_ladder(served: Served, sample: SampleFactory) -> None:
    from playwright.sync_api import ConsoleMessage, sync_playwright

    clip = sample("hd_audio", seconds=6, size=(640, 360))
    key = create_key(served, "web-test")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        url = str(msg.location.get("url", ""))
        expected = ("401" in msg.text and url.endswith("/v1/me")) or (  # the wrong key
            "404" in msg.text and url.endswith("/v1/rollouts")  # a server without rollout routes
        )
        if msg.type == "error" and not expected:
            problems.append(f"console: {msg.text} ({url})")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.set_default_timeout(20_000)
            page.goto(served.url)
            assert page.evaluate(f"MediaSource.isTypeSupported('{H264_AAC}')"), (
                "this Chromium cannot play H.264/AAC through Media Source Extensions"
            )

            # The key gate: a wrong key is refused, the real one opens the job list.
            page.fill("#key-input", "vf_nope_nope")
            page.click("#key-save")
            page.wait_for_function("document.querySelector('#key-error').textContent !== ''")
            page.fill("#key-input", key)
            page.click("#key-save")
            page.wait_for_selector("#jobs-table", state="visible")
            assert page.evaluate("localStorage.getItem('vodforge.apiKey')") == key

            # Upload through the file input; the XHR progress bar fills; the row appears.
            page.set_input_files("#upload-input", str(clip))
            page.wait_for_selector("#upload-progress[data-done]")
            page.wait_for_selector("#upload-status a")
            job_id = (page.text_content("#upload-status a") or "").strip()
            assert job_id, page.text_content("#upload-status")
            row = f'tr[data-job-id="{job_id}"]'
            page.wait_for_selector(row)
            page.wait_for_function(
                "id => ['succeeded', 'failed', 'cancelled'].includes("
                "document.querySelector(`tr[data-job-id='${id}'] .state-badge`)?.textContent)",
                arg=job_id,
                timeout=180_000,
            )
            badge = page.text_content(f"{row} .state-badge")
            page.screenshot(path=str(OUTPUT / "jobs.png"), full_page=True)
            assert badge == "succeeded", served.log.read_text()[-3000:]

            # The job page: previews, the step timeline, the player.
            page.click(f"{row} a")
            page.wait_for_selector("#player")
            page.wait_for_selector("#timeline .bar")
            assert page.locator("#timeline .bar").count() >= 2
            assert page.locator("#thumbnails img").count() >= 1
            page.wait_for_function("Number(document.querySelector('#player').dataset.levels) >= 2")
            page.evaluate("document.querySelector('#player').play()")
            page.wait_for_function(
                "document.querySelector('#player').currentTime > 2", timeout=60_000
            )

            # Switch to a rung that is not playing: hls.js reports the switch, playback goes on.
            playing = page.get_attribute("#player", "data-level")
            options = page.eval_on_selector_all("#rung-select option", "os => os.map(o => o.value)")
            other = next(v for v in options if v not in ("-1", playing))
            page.evaluate("document.querySelector('#player').currentTime = 0.5")
            page.select_option("#rung-select", other)
            page.wait_for_function(
                "level => document.querySelector('#player').dataset.level === level", arg=other
            )
            page.wait_for_function(
                "document.querySelector('#player').currentTime > 2.5", timeout=60_000
            )
            shot = OUTPUT / "job.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"dashboard screenshots: {OUTPUT}")

            # Metrics: the finished job is in the jobs-per-minute plot and the p95 bars.
            page.goto(served.url + "#/metrics")
            page.wait_for_selector("#metrics-page #plot-jobs .uplot")
            assert page.locator("#metrics-page .p95-bar").count() >= 1
            page.screenshot(path=str(OUTPUT / "metrics.png"), full_page=True)
            # Rollouts: none started (or no rollout routes yet) reads "No rollouts."
            page.goto(served.url + "#/rollouts")
            page.wait_for_selector("#rollouts-page h1")
            assert page.locator("#rollouts-empty").text_content() == "No rollouts."
            page.screenshot(path=str(OUTPUT / "rollouts.png"), full_page=True)
        finally:
            browser.close()
    assert not problems, problems


def test_polls_when_the_event_stream_is_unavailable(served: Served, sample: SampleFactory) -> None:
    """With /v1/events refused (a proxy that buffers or blocks streams), the list falls back to
    polling /v1/jobs and still follows an upload to its end."""
    from playwright.sync_api import Route

    clip = sample("hd_audio", seconds=2, size=(640, 360))
    key = create_key(served, "web-poll")
    with browser_page(sized=False) as page:

        def refuse(route: Route) -> None:
            route.fulfill(status=503, body="no streams here")

        page.route("**/v1/events", refuse)
        page.goto(served.url)
        page.fill("#key-input", key)
        page.click("#key-save")
        page.wait_for_selector('#live-mode[data-mode="polling"]')
        page.set_input_files("#upload-input", str(clip))
        page.wait_for_selector("#upload-status a")
        job_id = (page.text_content("#upload-status a") or "").strip()
        page.wait_for_function(
            "id => document.querySelector(`tr[data-job-id='${id}'] .state-badge`)"
            "?.textContent === 'succeeded'",
            arg=job_id,
            timeout=120_000,
        )
        assert page.get_attribute("#live-mode", "data-mode") == "polling"


def test_failed_job_shows_its_error(served: Served, tmp_path: Path) -> None:
    """Random bytes uploaded through the page: the job fails and its page says why."""

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    key = create_key(served, "web-fail")
    with browser_page() as page:
        page.goto(served.url)
        page.fill("#key-input", key)
        page.click("#key-save")
        page.wait_for_selector("#jobs-table", state="visible")
        page.set_input_files("#upload-input", str(junk))
        page.wait_for_selector("#upload-status a")
        job_id = (page.text_content("#upload-status a") or "").strip()
        page.wait_for_function(
            "id => document.querySelector(`tr[data-job-id='${id}'] .state-badge`)"
            "?.textContent === 'failed'",
            arg=job_id,
            timeout=120_000,
        )
        page.click(f'tr[data-job-id="{job_id}"] a')
        page.wait_for_selector("#job-errors")
        text = page.text_content("#job-errors") or ""
        assert "Job failed" in text
        assert "step probe" in text, text
        page.screenshot(path=str(OUTPUT / "failed.png"), full_page=True)


ROLLOUT = {
    "id": "r1",
    "candidate": "ffmpeg-5.1-debian",
    "stable": "ffmpeg-9.0.2-0d709a0bed1a",
    "steps": [1, 10, 50, 100],
    "step_index": 1,
    "weight_percent": 10,
    "state": "running",
    "started_at": "2026-01-02T10:00:00+00:00",
    "ended_at": None,
    "counts": {
        "candidate": {"jobs": 21, "failed": 1, "failure_rate": 1 / 21, "p95_seconds": 3.5},
        "stable": {"jobs": 180, "failed": 0, "failure_rate": 0.0, "p95_seconds": 2.25},
    },
    "decisions": [
        {"at": "2026-01-02T10:00:00+00:00", "action": "start", "reason": "by an operator"},
        {"at": "2026-01-02T10:20:00+00:00", "action": "promote", "reason": "to 10%: 20 jobs"},
    ],
}


def test_rollouts_page_renders_the_contract_shape(served: Served) -> None:
    """The rollouts page against a contract-shaped ``GET /v1/rollouts`` answer (the route
    itself belongs to the toolchain branch): step, weight, counts, rates and decision log."""
    from playwright.sync_api import Route

    key = create_key(served, "web-rollouts")
    with browser_page() as page:

        def answer(route: Route) -> None:
            route.fulfill(json={"items": [ROLLOUT]})

        page.route("**/v1/rollouts", answer)
        page.goto(served.url + "#/rollouts")
        page.fill("#key-input", key)
        page.click("#key-save")
        card = page.wait_for_selector('#rollouts-page [data-rollout-id="r1"]')
        assert card is not None
        text = card.text_content() or ""
        for expected in ("Step 2 of 4", "10%", "4.8%", "3.50 s", "2.25 s", "promote"):
            assert expected in text, (expected, text)
        assert page.locator("#rollouts-page .steps li.current").text_content() == "10%"
        assert page.locator("#rollouts-page .decisions tbody tr").count() == 2
        page.screenshot(path=str(OUTPUT / "rollouts-running.png"), full_page=True)


def test_rollouts_page_shows_a_real_rollout(served: Served, tmp_path: Path) -> None:
    """A canary started through the real ``POST /v1/rollouts`` (a copy of the pinned build
    registered with ``vodforge toolchain add``) appears on the page with its step, weight and
    decision log; aborted through the API afterwards, the page shows that decision too."""
    import shutil

    import httpx

    from vodforge.media.toolchain import default_ffmpeg_path

    candidate_path = tmp_path / "ffmpeg-candidate"
    shutil.copy2(default_ffmpeg_path(), candidate_path)
    added = subprocess.run(
        [*VODFORGE, "toolchain", "add", str(candidate_path)],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    candidate = added.stdout.split()[0]
    key = create_key(served, "web-real-rollout")
    auth = {"Authorization": f"Bearer {key}"}
    started = httpx.post(
        served.url + "v1/rollouts",
        json={"candidate": candidate, "steps": [1, 10, 50, 100], "min_jobs": 50},
        headers=auth,
        timeout=30,
    )
    assert started.status_code == 201, started.text
    rollout_id = started.json()["id"]
    try:
        with browser_page() as page:
            page.goto(served.url + "#/rollouts")
            page.fill("#key-input", key)
            page.click("#key-save")
            card = page.wait_for_selector(f'#rollouts-page [data-rollout-id="{rollout_id}"]')
            assert card is not None
            assert candidate in (card.text_content() or "")
            assert page.locator("#rollouts-page .steps li.current").text_content() == "1%"
            assert page.locator("#rollouts-page .decisions .action").first.text_content() == (
                "start"
            )
            page.screenshot(path=str(OUTPUT / "rollouts-real.png"), full_page=True)
    finally:
        aborted = httpx.post(
            f"{served.url}v1/rollouts/{rollout_id}/abort", headers=auth, timeout=30
        )
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["state"] == "aborted"


def test_drag_and_drop_upload(served: Served, sample: SampleFactory) -> None:
    """A file dropped on the upload box is uploaded like a chosen one and becomes a job."""
    import base64

    clip = sample("hd_audio", seconds=2, size=(320, 180))
    payload = base64.b64encode(clip.read_bytes()).decode()
    key = create_key(served, "web-drop")
    with browser_page(sized=False) as page:
        page.goto(served.url)
        page.fill("#key-input", key)
        page.click("#key-save")
        page.wait_for_selector("#upload-box")
        transfer = page.evaluate_handle(
            """b64 => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped.mp4", { type: "video/mp4" }));
                return dt;
            }""",
            payload,
        )
        page.dispatch_event("#upload-box", "dragenter", {"dataTransfer": transfer})
        assert "dragging" in (page.get_attribute("#upload-box", "class") or "")
        page.dispatch_event("#upload-box", "drop", {"dataTransfer": transfer})
        page.wait_for_selector("#upload-status a")
        job_id = (page.text_content("#upload-status a") or "").strip()
        page.wait_for_function(
            "id => document.querySelector(`tr[data-job-id='${id}'] .state-badge`)"
            "?.textContent === 'succeeded'",
            arg=job_id,
            timeout=120_000,
        )
        assert "dragging" not in (page.get_attribute("#upload-box", "class") or "")
