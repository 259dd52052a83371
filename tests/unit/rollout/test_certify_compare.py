"""Certification's comparison on fabricated pipeline results (no ffmpeg)."""

from __future__ import annotations

from pathlib import Path

from vodforge.rollout.certify import Run, RungMeasure, Thresholds, compare, parse_quality

P = Path("x.mp4")


def run(frames: int = 30, duration: float = 1.0, size: int = 10_000, **kw: object) -> Run:
    return Run("basic", "t", {"240p": RungMeasure(frames, duration, size, P)}, **kw)  # type: ignore[arg-type]


def failing(names: list[str], checks: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(c.name for c in checks if not c.ok)


def test_identical_outputs_pass() -> None:
    checks = compare(run(), run(), {"240p": (float("inf"), 1.0)})
    assert all(c.ok for c in checks)
    assert {c.name for c in checks} == {
        "frames",
        "duration",
        "size",
        "PSNR vs stable (dB)",
        "SSIM vs stable",
    }


def test_each_regression_is_caught() -> None:
    quality = {"240p": (30.0, 0.9)}
    checks = compare(run(), run(frames=29, duration=1.2, size=12_000), quality, Thresholds())
    assert failing([], checks) == sorted(
        ["frames", "duration", "size", "PSNR vs stable (dB)", "SSIM vs stable"]
    )


def test_tolerances_hold() -> None:
    checks = compare(run(), run(duration=1.03, size=10_900), {"240p": (40.0, 0.99)})
    assert all(c.ok for c in checks)


def test_candidate_failure_and_missing_rung_are_regressions() -> None:
    broken = Run("basic", "t", error_label="unknown_encoder", error="encode: no libx264")
    [check] = compare(run(), broken, {})
    assert not check.ok
    assert "unknown_encoder" in check.candidate
    empty = Run("basic", "t", {})
    assert failing([], compare(run(), empty, {})) == ["rung produced"]


def test_stable_failure_is_reported_not_held_against_the_candidate() -> None:
    bad_stable = Run("basic", "s", error_label="option_not_found", error="x")
    [check] = compare(bad_stable, run(), {})
    assert check.ok
    assert "stable_failed" in check.name


def test_parse_quality_of_the_filters_summaries() -> None:
    psnr = "[Parsed_psnr_0 @ 0x1] PSNR y:inf u:inf v:inf average:inf min:inf max:inf\n"
    ssim = "[Parsed_ssim_0 @ 0x2] SSIM Y:0.991 (20.5) U:0.99 V:0.99 All:0.990123 (20.04)\n"
    assert parse_quality(psnr, ssim) == (float("inf"), 0.990123)
    psnr2 = "[Parsed_psnr_0 @ 0x1] PSNR y:41.2 u:44.0 v:44.1 average:42.07 min:40 max:45\n"
    assert parse_quality(psnr2, "")[0] == 42.07
