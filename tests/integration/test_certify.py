"""``vodforge toolchain certify`` on real toolchains: a healthy candidate (a copy of the pinned
build) passes with exit 0, a broken one (an 'Unknown encoder' wrapper) fails with exit 1, and
Debian's ffmpeg is certified against the pinned one and its report shown as it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.runtime.test_canary_rollout import broken_wrapper
from vodforge.cli import app
from vodforge.media.toolchain import Toolchain

TINY = Path(__file__).resolve().parents[1] / "presets" / "tiny.toml"
DEBIAN_FFMPEG = Path("/usr/bin/ffmpeg")


def certify(tmp_path: Path, candidate: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        app,
        ["toolchain", "certify", str(candidate), "--preset", str(TINY), "--json", *extra],
        env={"VODFORGE_DATA_DIR": str(tmp_path / "var")},
    )
    return result.exit_code, json.loads(result.stdout)


def test_healthy_candidate_is_certified(tmp_path: Path, toolchain: Toolchain) -> None:
    copy = tmp_path / "ffmpeg-copy"
    shutil.copy2(toolchain.path, copy)
    code, report = certify(tmp_path, copy)
    assert code == 0, report
    assert report["ok"]
    clips = {c["clip"] for c in report["checks"]} - {"*"}
    assert clips == {"basic", "rotated", "no_audio"}
    psnr = [c for c in report["checks"] if c["check"].startswith("PSNR")]
    assert psnr
    assert all(c["candidate"] == "inf" for c in psnr)  # the same build: identical pictures


def test_broken_candidate_fails_the_gate(tmp_path: Path, toolchain: Toolchain) -> None:
    code, report = certify(tmp_path, broken_wrapper(tmp_path, toolchain.path))
    assert code == 1
    assert not report["ok"]
    failed = [c for c in report["checks"] if not c["ok"]]
    assert {c["clip"] for c in failed} == {"basic", "rotated", "no_audio"}
    assert all("unknown_encoder" in c["candidate"] for c in failed)


@pytest.mark.skipif(not DEBIAN_FFMPEG.exists(), reason="Debian's ffmpeg is not installed")
def test_debian_ffmpeg_against_the_pinned_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever Debian's build does, the report must be complete and the exit code must say
    it: 0 with no failed check, 1 with at least one (the README records the result)."""
    code, report = certify(tmp_path, DEBIAN_FFMPEG)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert code == (1 if failed else 0)
    assert report["regressions"] == len(failed)
    assert report["candidate"].startswith("ffmpeg-5.")
    assert {c["clip"] for c in report["checks"]} >= {"basic", "rotated", "no_audio"}
    with capsys.disabled():
        print(f"\nDebian ffmpeg vs pinned: exit {code}, {len(failed)} failed check(s)")
        for c in report["checks"]:
            print(f"  {c['clip']:<9} {c['rung']:<5} {c['check']:<36} {c['candidate']}")
