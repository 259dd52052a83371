"""The dashboard: static files from the repo's ``web/`` served by the API at ``/``.

The page is plain ES modules; its libraries (hls.js, uPlot, eventsource-parser) are copied from
pinned npm packages into ``web/vendor/`` by ``make web``, so it never loads anything from a CDN
and works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from vodforge.errors import ConfigError

__all__ = [
    "VENDOR_FILES",
    "locate_web_dir",
    "missing_vendor_files",
    "mount_dashboard",
    "source_web_dir",
]

#: What ``make web`` puts in ``web/vendor/``; the page imports exactly these.
VENDOR_FILES = ("hls.mjs", "uPlot.esm.js", "uPlot.min.css", "eventsource-parser.js")


def source_web_dir() -> Path:
    """``web/`` beside ``src/`` in a source checkout: ``<repo>/src/vodforge`` → ``<repo>/web``."""
    return Path(__file__).resolve().parents[3] / "web"


def locate_web_dir(configured: Path | None) -> Path | None:
    """The dashboard directory: the configured one (which must exist), else the source
    checkout's ``web/`` if there is one, else None (an installed wheel serves no dashboard)."""
    if configured is not None:
        if not (configured / "index.html").is_file():
            raise ConfigError(f"web_dir {configured} has no index.html")
        return configured
    found = source_web_dir()
    return found if (found / "index.html").is_file() else None


def missing_vendor_files(web_dir: Path) -> list[str]:
    """Vendored libraries the page needs but ``make web`` has not installed yet."""
    return [name for name in VENDOR_FILES if not (web_dir / "vendor" / name).is_file()]


def mount_dashboard(app: FastAPI, web_dir: Path) -> None:
    """Serve ``web_dir`` at ``/`` (``index.html`` for ``/``). Mount it after every other route:
    a mount at ``/`` matches everything, so routes registered after it would be shadowed."""
    app.mount("/", StaticFiles(directory=web_dir, html=True), name="dashboard")
