"""The dashboard's static files are served at / without shadowing the API, and found in a
source checkout; a bad ``web_dir`` is a one-line configuration error."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from vodforge.api.app import Probes, create_app
from vodforge.api.dashboard import VENDOR_FILES, locate_web_dir, source_web_dir
from vodforge.errors import ConfigError

WEB = source_web_dir()
CONTRACT_IDS = (
    "key-input",
    "key-save",
    "upload-input",
    "upload-progress",
    "jobs-table",
    "metrics-page",
    "rollouts-page",
)


def get(app: FastAPI, path: str) -> httpx.Response:
    """One request through the ASGI app in-process (starlette's TestClient warns on httpx)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_source_checkout_has_the_dashboard() -> None:
    assert locate_web_dir(None) == WEB
    assert (WEB / "index.html").is_file()


def test_served_at_root_next_to_the_api() -> None:
    app = create_app(Probes(), static_dir=WEB)
    page = get(app, "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for element_id in CONTRACT_IDS:
        assert f'id="{element_id}"' in page.text
    assert get(app, "/js/main.js").headers["content-type"].startswith("text/javascript")
    # The API's own routes still answer, the mount only takes what no route matched.
    assert get(app, "/healthz").json()["status"] == "ok"
    assert get(app, "/no/such/file.js").status_code == 404


def test_no_dashboard_without_a_directory() -> None:
    assert get(create_app(Probes()), "/").status_code == 404


def test_page_loads_nothing_from_another_origin() -> None:
    """Offline: every script, stylesheet and module import is a relative path on this server,
    and every vendored import names a file that ``make web`` installs."""
    sources = [WEB / "index.html", *sorted((WEB / "js").glob("*.js"))]
    for path in sources:
        text = path.read_text()
        refs = re.findall(r'(?:src|href)="([^"#]+)"|from "([^"]+)"', text)
        for ref in (a or b for a, b in refs):
            assert "//" not in ref, f"{path.name} loads {ref} from another origin"
            if "vendor/" in ref:
                assert ref.rsplit("/", 1)[-1] in VENDOR_FILES, f"{path.name}: {ref} not vendored"


def test_configured_web_dir_must_hold_a_page(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no index\.html"):
        locate_web_dir(tmp_path)
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    assert locate_web_dir(tmp_path) == tmp_path
