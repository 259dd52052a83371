"""The pinned ffmpeg: where it is, what it is, and whether it can do the job.

A toolchain is identified by its binary's sha256, its version string and its capabilities. The
default binary is the one shipped in the hash-pinned ``imageio-ffmpeg`` wheel, located through
that package, never through ``PATH``: a silent PATH fallback is exactly how a pipeline picks up a
new ffmpeg without anyone noticing.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vodforge.errors import MissingCapability, ToolchainDrift, ToolchainNotFound

#: Encoders and filters the pipeline's argv builders use. A toolchain without any of them is
#: refused at start, with the missing names in the error, instead of failing job after job.
REQUIRED_ENCODERS: frozenset[str] = frozenset({"libx264", "aac", "mjpeg", "gif"})
REQUIRED_FILTERS: frozenset[str] = frozenset(
    {
        "split",
        "scale",
        "fps",
        "trim",
        "setpts",
        "setsar",
        "format",
        "bwdif",
        "select",
        "tile",
        "palettegen",
        "paletteuse",
        "atrim",
        "asetpts",
        "aresample",
        "apad",
    }
)

_VERSION_RE = re.compile(r"^ffmpeg version (\S+)")
_RELEASE_RE = re.compile(r"^n?(\d+\.\d+(?:\.\d+)?)")
_LIST_RE = re.compile(r"^\s*[A-Z.]{6}\s+(\S+)\s")
_FILTER_RE = re.compile(r"^\s*[A-Z.|]{2,3}\s+(\S+)\s+\S+->\S+")


def parse_version(text: str) -> tuple[str, str]:
    """(full version string, release number) from ``ffmpeg -version`` output."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _VERSION_RE.match(first)
    if not match:
        raise ToolchainNotFound(f"not an ffmpeg binary: -version printed {first[:80]!r}")
    full = match.group(1)
    release = _RELEASE_RE.match(full)
    return full, release.group(1) if release else full


def parse_encoders(text: str) -> frozenset[str]:
    """Encoder names from ``ffmpeg -encoders`` output (pure)."""
    names = set()
    in_list = False
    for line in text.splitlines():
        if line.strip().startswith("------"):
            in_list = True
            continue
        if in_list:
            match = _LIST_RE.match(line)
            if match:
                names.add(match.group(1))
    return frozenset(names)


def parse_filters(text: str) -> frozenset[str]:
    """Filter names from ``ffmpeg -filters`` output (pure)."""
    return frozenset(m.group(1) for line in text.splitlines() if (m := _FILTER_RE.match(line)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: (binary, pinned sha256) -> the last file stamp whose content was hashed and matched.
_VERIFIED_STAMPS: dict[tuple[Path, str], FileStamp] = {}


def default_ffmpeg_path() -> Path:
    """The ffmpeg binary inside the pinned imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg  # noqa: PLC0415  (optional at import time of this module)
    except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
        raise ToolchainNotFound("imageio-ffmpeg is not installed; run `make run`") from exc
    binaries = Path(imageio_ffmpeg.__file__).parent / "binaries"
    candidates = sorted(p for p in binaries.glob("ffmpeg-*") if p.is_file())
    if not candidates:
        raise ToolchainNotFound(f"no ffmpeg binary inside the imageio-ffmpeg wheel ({binaries})")
    return candidates[0]


@dataclass(frozen=True)
class FileStamp:
    """Cheap identity of a file on disk: a changed stamp means the sha256 must be recomputed."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        st = path.stat()
        return cls(inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns)


@dataclass(frozen=True)
class Toolchain:
    """A fingerprinted ffmpeg build."""

    path: Path
    version: str
    release: str
    sha256: str
    encoders: frozenset[str] = field(repr=False)
    filters: frozenset[str] = field(repr=False)
    stamp: FileStamp = field(repr=False, compare=False)
    source: str = "imageio-ffmpeg"
    #: The registry's id for this binary at this path, when it differs from ``build_id`` (the
    #: same build registered at a second path; see ``vodforge.rollout.registry``).
    alias: str | None = field(default=None, compare=False)

    @property
    def build_id(self) -> str:
        """The build: release and the first 12 hex digits of the binary's sha256."""
        return f"ffmpeg-{self.release}-{self.sha256[:12]}"

    @property
    def id(self) -> str:
        """Stable identifier: the registry's alias, else the build id."""
        return self.alias or self.build_id

    def missing(self) -> tuple[list[str], list[str]]:
        return (
            sorted(REQUIRED_ENCODERS - self.encoders),
            sorted(REQUIRED_FILTERS - self.filters),
        )

    def require_capabilities(self) -> None:
        encoders, filters = self.missing()
        if encoders or filters:
            parts = []
            if encoders:
                parts.append("encoders " + ", ".join(encoders))
            if filters:
                parts.append("filters " + ", ".join(filters))
            raise MissingCapability(
                f"toolchain {self.id} at {self.path} lacks {' and '.join(parts)}; "
                "vodforge needs them for every job"
            )

    def verify_unchanged(self) -> None:
        """Raise ToolchainDrift if the binary on disk is no longer the one fingerprinted.

        Cheap when nothing changed (a stat); rehashes only when inode, size or mtime moved, and
        remembers a new stamp whose content still matches (a ``touch``), so it rehashes once.
        """
        try:
            stamp = FileStamp.of(self.path)
        except OSError as exc:
            raise ToolchainDrift(
                f"toolchain {self.id}: binary {self.path} is gone ({exc})"
            ) from exc
        if stamp == self.stamp or _VERIFIED_STAMPS.get((self.path, self.sha256)) == stamp:
            return
        digest = sha256_file(self.path)
        if digest != self.sha256:
            raise ToolchainDrift(
                f"toolchain {self.id}: binary {self.path} changed under this worker "
                f"(sha256 {digest[:12]} != pinned {self.sha256[:12]}); refusing work"
            )
        _VERIFIED_STAMPS[(self.path, self.sha256)] = stamp

    def fingerprint(self) -> dict[str, Any]:
        """The part of the toolchain that goes into manifests and job records."""
        return {
            "id": self.id,
            "path": str(self.path),
            "source": self.source,
            "version": self.version,
            "release": self.release,
            "sha256": self.sha256,
            "encoders_required": sorted(REQUIRED_ENCODERS),
            "filters_required": sorted(REQUIRED_FILTERS),
            "encoders_count": len(self.encoders),
            "filters_count": len(self.filters),
            "libvmaf": "libvmaf" in self.filters,
        }


def _query(path: Path, flag: str) -> str:
    try:
        proc = subprocess.run(
            [str(path), "-hide_banner", flag],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainNotFound(f"cannot run ffmpeg at {path}: {exc}") from exc
    if proc.returncode != 0:
        raise ToolchainNotFound(f"ffmpeg at {path} {flag} exited {proc.returncode}")
    return proc.stdout


def load_toolchain(path: Path | str | None = None, *, source: str | None = None) -> Toolchain:
    """Fingerprint the binary at ``path`` (default: the pinned wheel's)."""
    if path is None:
        binary, origin = default_ffmpeg_path(), "imageio-ffmpeg"
    else:
        binary, origin = Path(path), source or "path"
    binary = binary.resolve() if binary.exists() else binary
    if not binary.is_file():
        raise ToolchainNotFound(f"ffmpeg not found at {binary}")
    if not os.access(binary, os.X_OK):
        raise ToolchainNotFound(f"ffmpeg at {binary} is not executable")
    stamp = FileStamp.of(binary)
    version_text = _query(binary, "-version")
    # Tolerate lines before the banner, but not a banner that is not ffmpeg's (ffprobe, a stub).
    _, banner, rest = version_text.partition("ffmpeg version ")
    version, release = parse_version(banner + rest if banner else version_text)
    return Toolchain(
        path=binary,
        version=version,
        release=release,
        sha256=sha256_file(binary),
        encoders=parse_encoders(_query(binary, "-encoders")),
        filters=parse_filters(_query(binary, "-filters")),
        stamp=stamp,
        source=source or origin,
    )
