"""Shared fixtures: the pinned toolchain, a session media directory, and the sample corpus.

``sample("vfr")`` generates a recipe of ``vodforge.media.samples`` once per session and hands
back the cached path afterwards. Every test also fails if anything logged at ERROR (as in
PySceneDetect): an error log nobody asserted on is a bug hiding behind a passing test. A test
that expects an ERROR record asserts on it and then calls ``caplog.clear()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from vodforge.errors import MissingCapability
from vodforge.media.samples import SAMPLES, make_sample
from vodforge.media.toolchain import Toolchain, load_toolchain


class SampleFactory(Protocol):
    def __call__(
        self, name: str, *, seconds: float | None = None, size: tuple[int, int] | None = None
    ) -> Path: ...


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    """The pinned ffmpeg from the imageio-ffmpeg wheel, fingerprinted once per session."""
    return load_toolchain()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def sample(toolchain: Toolchain, media_dir: Path) -> SampleFactory:
    """Factory: ``sample(name, seconds=..., size=...)`` -> path of a generated, cached sample."""
    cache: dict[tuple[str, float | None, tuple[int, int] | None], Path] = {}

    def make(
        name: str, *, seconds: float | None = None, size: tuple[int, int] | None = None
    ) -> Path:
        key = (name, seconds, size)
        if key not in cache:
            spec = SAMPLES[name]
            variant = "".join(
                [
                    f"-{seconds:g}s" if seconds is not None else "",
                    f"-{size[0]}x{size[1]}" if size is not None else "",
                ]
            )
            out = media_dir / f"{name}{variant}{spec.suffix}"
            try:
                cache[key] = make_sample(
                    name, out, ffmpeg=toolchain.path, seconds=seconds, size=size
                )
            except MissingCapability as exc:
                pytest.skip(f"toolchain {toolchain.id} cannot make sample {name}: {exc.message}")
        return cache[key]

    return make


@pytest.fixture(autouse=True)
def _fail_on_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [
        record
        for when in ("setup", "call")
        for record in caplog.get_records(when)
        if record.levelno >= logging.ERROR
    ]
    if errors:
        lines = "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)
        pytest.fail(f"test logged at ERROR level:\n{lines}", pytrace=False)
