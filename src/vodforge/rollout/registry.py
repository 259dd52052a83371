"""The toolchain registry: every ffmpeg vodforge may run, persisted in the job store.

An entry is one binary at one path, fingerprinted when it was added (sha256, version,
encoders, filters). Exactly one entry is *stable*: new jobs run on it unless a canary rollout
routes them to a candidate. The pinned wheel's binary registers itself as the first stable.

Ids key on the binary's sha256 (``ffmpeg-<release>-<sha12>``, the build id every manifest
records). The same build registered again at another path gets a path suffix
(``…-<sha256(path)[:6]>``), so a copy of the pinned binary can be rolled out as a candidate of
its own — a rehearsal of the rollout machinery with a known-good build.

Workers load entries by id and re-check the sha256 against the registered one, so a binary
replaced on one host is refused on that host (``ToolchainDrift``) instead of being trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from vodforge.errors import (
    ConfigError,
    MissingCapability,
    ToolchainDrift,
    ToolchainError,
    ToolchainNotFound,
)
from vodforge.jobs import JobStore
from vodforge.jobs.models import RegisteredToolchain
from vodforge.media.toolchain import REQUIRED_ENCODERS, REQUIRED_FILTERS, Toolchain, load_toolchain

SOURCES = ("imageio-ffmpeg", "debian", "path")


@dataclass(frozen=True)
class ToolchainEntry:
    id: str
    path: Path
    source: str
    version: str
    release: str
    sha256: str
    encoders: frozenset[str]
    filters: frozenset[str]
    stable: bool
    added_at: datetime

    @property
    def libvmaf(self) -> bool:
        return "libvmaf" in self.filters

    def to_dict(self) -> dict[str, Any]:
        """The API's ``Toolchain`` shape."""
        return {
            "id": self.id,
            "version": self.version,
            "release": self.release,
            "sha256": self.sha256,
            "source": self.source,
            "path": str(self.path),
            "capabilities": {
                "encoders": sorted(self.encoders),
                "filters": sorted(self.filters),
                "libvmaf": self.libvmaf,
                "missing_encoders": sorted(REQUIRED_ENCODERS - self.encoders),
                "missing_filters": sorted(REQUIRED_FILTERS - self.filters),
            },
            "stable": self.stable,
            "added_at": self.added_at.isoformat(),
        }


@dataclass(frozen=True)
class VerifyResult:
    """``vodforge toolchain verify`` for one entry: empty ``problems`` means it is fine."""

    id: str
    stable: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def path_suffix(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:6]


def version_allowed(release: str, version: str, allowed: Sequence[str]) -> bool:
    """The allowed-versions policy (pure): empty allows everything; an entry matches the
    release number (``9.0.2``) or the full version string exactly."""
    return not allowed or release in allowed or version in allowed


class Registry:
    """The ``toolchains`` table of the job store."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs

    # -- reads ------------------------------------------------------------------------------

    def entries(self) -> list[ToolchainEntry]:
        """Stable first, then by the time they were added."""
        with self.jobs.transaction(write=False) as s:
            rows = s.scalars(
                select(RegisteredToolchain).order_by(
                    RegisteredToolchain.stable.desc(),
                    RegisteredToolchain.added_at,
                    RegisteredToolchain.id,
                )
            )
            return [_entry(r) for r in rows]

    def get(self, toolchain_id: str) -> ToolchainEntry:
        with self.jobs.transaction(write=False) as s:
            row = s.get(RegisteredToolchain, toolchain_id)
            if row is None:
                raise ToolchainNotFound(
                    f"no toolchain {toolchain_id!r} in the registry (see `vodforge toolchain list`)"
                )
            return _entry(row)

    def stable(self) -> ToolchainEntry | None:
        with self.jobs.transaction(write=False) as s:
            row = s.scalars(
                select(RegisteredToolchain).where(RegisteredToolchain.stable.is_(True)).limit(1)
            ).first()
            return _entry(row) if row is not None else None

    def find(self, ref: str) -> ToolchainEntry:
        """By id, or by the path of a registered binary (what a user types)."""
        try:
            return self.get(ref)
        except ToolchainNotFound:
            path = Path(ref)
            resolved = str(path.resolve()) if path.exists() else ref
            for entry in self.entries():
                if str(entry.path) in (ref, resolved):
                    return entry
            raise

    # -- writes -----------------------------------------------------------------------------

    def add(self, toolchain: Toolchain, *, stable: bool = False) -> ToolchainEntry:
        """Register ``toolchain`` (idempotent for the same binary at the same path)."""
        if toolchain.source not in SOURCES:
            raise ConfigError(
                f"toolchain source {toolchain.source!r}: expected one of {', '.join(SOURCES)}"
            )
        existing = {e.id: e for e in self.entries()}
        for candidate_id in (
            toolchain.build_id,
            f"{toolchain.build_id}-{path_suffix(toolchain.path)}",
        ):
            entry = existing.get(candidate_id)
            if entry is None:
                break
            if entry.path == toolchain.path and entry.sha256 == toolchain.sha256:
                if stable and not entry.stable:
                    self.set_stable(entry.id)
                    return self.get(entry.id)
                return entry
        else:  # pragma: no cover - a path hash collision between two registered paths
            raise ConfigError(f"cannot find a free registry id for {toolchain.path}")
        with self.jobs.transaction(write=True) as s:
            if stable:
                s.execute(update(RegisteredToolchain).values(stable=False))
            s.add(
                RegisteredToolchain(
                    id=candidate_id,
                    path=str(toolchain.path),
                    source=toolchain.source,
                    version=toolchain.version,
                    release=toolchain.release,
                    sha256=toolchain.sha256,
                    encoders=sorted(toolchain.encoders),
                    filters=sorted(toolchain.filters),
                    stable=stable,
                    added_at=self.jobs.now(),
                )
            )
        return self.get(candidate_id)

    def ensure_stable(self, toolchain: Toolchain) -> ToolchainEntry:
        """The stable entry; on an empty registry, ``toolchain`` registered as the stable one."""
        current = self.stable()
        if current is not None:
            return current
        return self.add(toolchain, stable=True)

    def set_stable(self, toolchain_id: str, *, session: Any = None) -> None:
        """Make ``toolchain_id`` the one stable entry; inside ``session`` when given (a
        promotion commits the rollout's end and the new stable together)."""
        self.get(toolchain_id)
        if session is not None:
            _set_stable(session, toolchain_id)
            return
        with self.jobs.transaction(write=True) as s:
            _set_stable(s, toolchain_id)

    # -- binaries ---------------------------------------------------------------------------

    def load(self, toolchain_id: str) -> Toolchain:
        """The registered binary, fingerprinted now, as a ``Toolchain`` carrying the registry id.

        ``ToolchainNotFound``: no such entry (permanent). ``ToolchainDrift``: the entry exists
        but the binary on this host is missing or is not the registered one (this host's
        problem: another host may run it)."""
        entry = self.get(toolchain_id)
        try:
            toolchain = load_toolchain(entry.path, source=entry.source)
        except ToolchainNotFound as exc:
            raise ToolchainDrift(
                f"toolchain {entry.id}: binary {entry.path} unusable on this host "
                f"({exc.one_line()})"
            ) from exc
        if toolchain.sha256 != entry.sha256:
            raise ToolchainDrift(
                f"toolchain {entry.id}: binary {entry.path} changed since it was registered "
                f"(sha256 {toolchain.sha256[:12]} != registered {entry.sha256[:12]})"
            )
        return dataclasses.replace(
            toolchain, alias=entry.id if entry.id != toolchain.build_id else None
        )

    def verify(self, allowed_versions: Sequence[str] = ()) -> list[VerifyResult]:
        """Every entry: the binary still matches its fingerprint, has what the pipeline needs,
        and its version is allowed by the policy."""
        results = []
        for entry in self.entries():
            problems: list[str] = []
            try:
                toolchain = self.load(entry.id)
                toolchain.require_capabilities()
            except MissingCapability as exc:
                problems.append(exc.one_line())
            except ToolchainError as exc:
                problems.append(exc.one_line())
            if not version_allowed(entry.release, entry.version, allowed_versions):
                allowed = ", ".join(allowed_versions)
                problems.append(f"version {entry.release} is not allowed (allowed: {allowed})")
            results.append(VerifyResult(entry.id, entry.stable, tuple(problems)))
        return results


def _entry(row: RegisteredToolchain) -> ToolchainEntry:
    return ToolchainEntry(
        id=row.id,
        path=Path(row.path),
        source=row.source,
        version=row.version,
        release=row.release,
        sha256=row.sha256,
        encoders=frozenset(row.encoders),
        filters=frozenset(row.filters),
        stable=bool(row.stable),
        added_at=row.added_at,
    )


def _set_stable(s: Any, toolchain_id: str) -> None:
    s.execute(update(RegisteredToolchain).values(stable=False))
    s.execute(
        update(RegisteredToolchain)
        .where(RegisteredToolchain.id == toolchain_id)
        .values(stable=True)
    )
