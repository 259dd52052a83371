"""Settings from the environment (``VODFORGE_*``) and CLI flags, validated by pydantic-settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VODFORGE_", extra="ignore")

    #: The ffmpeg binary. Unset: the one inside the pinned imageio-ffmpeg wheel (never PATH).
    ffmpeg: Path | None = None
    #: Where the embedded runtime keeps its store, database and broker.
    data_dir: Path = Path("var")
    #: Parallel chunk encodes; unset: one per core.
    workers: int | None = Field(default=None, ge=1, le=256)
    #: ffmpeg deadline = base + per_media_second x media seconds; the group is killed after it.
    timeout_base_seconds: float = Field(default=120.0, gt=0)
    timeout_per_media_second: float = Field(default=20.0, gt=0)
    #: Default preset for transcodes that name none.
    preset: str = "default"
