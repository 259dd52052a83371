"""Declarative encoding presets: TOML files validated by Pydantic.

A preset says *what* a job should produce (rungs, x264 settings, segment length, audio, fps
policy, previews); the planners in ``ladder``/``chunks``/``previews`` turn it plus a probed source
into a concrete plan. Built-in presets live in ``vodforge/presets/*.toml``; any other TOML file can
be passed by path.
"""

from __future__ import annotations

import tomllib
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vodforge.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RungSpec(_Strict):
    """One rung of the ladder. ``height`` is the short side of the picture (so a portrait phone
    video's 720p rung is 720 wide), the convention viewers know from "720p"."""

    height: int = Field(ge=64, le=4320)
    name: str | None = None
    crf: int | None = Field(default=None, ge=0, le=51)
    bitrate_kbps: int | None = Field(default=None, gt=0)
    maxrate_kbps: int | None = Field(default=None, gt=0)
    bufsize_kbps: int | None = Field(default=None, gt=0)
    profile: Literal["baseline", "main", "high"] | None = None
    level: str | None = None

    @model_validator(mode="after")
    def _rate_control(self) -> RungSpec:
        if self.crf is None and self.bitrate_kbps is None:
            raise ValueError(f"rung {self.label}: set crf (capped by maxrate) or bitrate_kbps")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.height}p"


class VideoSpec(_Strict):
    x264_preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
    ] = "veryfast"
    profile: Literal["baseline", "main", "high"] = "high"
    tune: str | None = None
    bframes: int = Field(default=3, ge=0, le=16)
    scale_flags: str = "bicubic"


class AudioSpec(_Strict):
    bitrate_kbps: int = Field(default=128, ge=16, le=512)
    channels: int = Field(default=2, ge=1, le=8)
    sample_rate: int = Field(default=48000)

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value not in (22050, 24000, 32000, 44100, 48000):
            raise ValueError("sample_rate must be one of 22050, 24000, 32000, 44100, 48000")
        return value


class PackagingSpec(_Strict):
    segment_seconds: float = Field(default=4.0, ge=1.0, le=20.0)
    hls: bool = True
    mp4: bool = True


class FpsPolicy(_Strict):
    """How the output frame rate follows the source.

    ``keep``: the source's rate (VFR sources snap to the nearest standard rate), divided by the
    smallest integer that brings it to ``max_fps`` or below (59.94 with max 30 → 29.97).
    ``fixed``: always ``rate`` (e.g. "30000/1001").
    """

    mode: Literal["keep", "fixed"] = "keep"
    max_fps: float = Field(default=60.0, gt=0, le=240)
    rate: str | None = None

    @model_validator(mode="after")
    def _fixed_needs_rate(self) -> FpsPolicy:
        if self.mode == "fixed":
            if not self.rate:
                raise ValueError('fps.mode = \'fixed\' needs fps.rate, e.g. "30" or "30000/1001"')
            try:
                value = Fraction(self.rate)
            except (ValueError, ZeroDivisionError) as exc:
                raise ValueError(f"fps.rate {self.rate!r} is not a number or fraction") from exc
            if value <= 0:
                raise ValueError("fps.rate must be positive")
        return self


class PreviewSpec(_Strict):
    enabled: bool = True
    thumbnails: int = Field(default=5, ge=0, le=100)
    thumbnail_width: int = Field(default=320, ge=32, le=1920)
    poster_width: int = Field(default=1280, ge=64, le=3840)
    poster_at: float = Field(default=0.1, ge=0.0, le=1.0)
    sprite_interval_seconds: float = Field(default=2.0, gt=0)
    sprite_tile_width: int = Field(default=160, ge=32, le=640)
    sprite_columns: int = Field(default=10, ge=1, le=50)
    sprite_max_tiles: int = Field(default=100, ge=1, le=1000)
    gif_seconds: float = Field(default=3.0, gt=0, le=15)
    gif_fps: int = Field(default=10, ge=1, le=30)
    gif_width: int = Field(default=320, ge=32, le=960)
    gif_at: float = Field(default=0.1, ge=0.0, le=1.0)


class Preset(_Strict):
    name: str
    description: str = ""
    rungs: list[RungSpec] = Field(min_length=1)
    video: VideoSpec = VideoSpec()
    audio: AudioSpec = AudioSpec()
    packaging: PackagingSpec = PackagingSpec()
    fps: FpsPolicy = FpsPolicy()
    previews: PreviewSpec = PreviewSpec()
    #: Target chunk length; None = automatic (enough chunks to keep every worker busy).
    chunk_seconds: float | None = Field(default=None, gt=0)

    @field_validator("rungs")
    @classmethod
    def _distinct(cls, rungs: list[RungSpec]) -> list[RungSpec]:
        labels = [r.label for r in rungs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"rung names must be distinct, got {labels}")
        return sorted(rungs, key=lambda r: -r.height)

    @model_validator(mode="after")
    def _some_output(self) -> Preset:
        if not (self.packaging.hls or self.packaging.mp4):
            raise ValueError("packaging: at least one of hls and mp4 must be true")
        return self


def builtin_names() -> list[str]:
    folder = resources.files("vodforge") / "presets"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def parse_preset(text: str, *, origin: str) -> Preset:
    """Validate a preset's TOML text. Parsed once per (text, origin) and shared (presets are
    frozen): every job's probe loads its preset, and TOML + validation cost ~1 ms a time."""
    return _parse_preset(text, origin)


@lru_cache(maxsize=64)
def _parse_preset(text: str, origin: str) -> Preset:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {origin}: not valid TOML ({exc})") from exc
    data.setdefault("name", Path(origin).stem)
    try:
        return Preset.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "preset"
        raise ConfigError(f"preset {origin}: {where}: {first['msg']}") from exc


def load_preset(name_or_path: str) -> Preset:
    """A built-in preset by name (``default``, ``mobile``, ...) or a TOML file by path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        return parse_preset(path.read_text(encoding="utf-8"), origin=str(path))
    resource = resources.files("vodforge") / "presets" / f"{name_or_path}.toml"
    if not resource.is_file():
        raise ConfigError(
            f"unknown preset {name_or_path!r}; built-in presets: {', '.join(builtin_names())}"
        )
    return parse_preset(resource.read_text(encoding="utf-8"), origin=name_or_path)
