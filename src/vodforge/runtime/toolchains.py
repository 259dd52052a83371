"""The toolchains one worker can run: each registered ffmpeg with its own runner and context.

A job records the toolchain it runs on; the executor asks the pool for that toolchain's step
context before every step. The pool loads a registry entry on first use (so a rollout started
after the worker needs no restart), and before handing out a loaded one re-checks its binary
(a ``stat``, rehashing only when inode, size or mtime moved). A binary that no longer matches
raises ``ToolchainDrift``: the executor hands the step back and another worker takes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vodforge.errors import ToolchainDrift, ToolchainNotFound
from vodforge.media.toolchain import Toolchain
from vodforge.observability import metrics
from vodforge.observability.logging import get_logger
from vodforge.pipeline.steps import StepContext
from vodforge.rollout.registry import Registry

log = get_logger(__name__)


@dataclass
class ToolchainPool:
    registry: Registry
    #: Builds the step context (runner, fingerprint) of one toolchain.
    make_context: Callable[[Toolchain], StepContext]
    _loaded: dict[str, tuple[Toolchain, StepContext]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def adopt(self, toolchain: Toolchain, ctx: StepContext) -> None:
        """Use this host's ``toolchain`` for the registry entry of its build, if registered
        with the same sha256 (a host may install the same build at another path)."""
        try:
            entry = self.registry.get(toolchain.build_id)
        except ToolchainNotFound:
            return
        if entry.sha256 == toolchain.sha256:
            with self._lock:
                self._loaded[entry.id] = (toolchain, ctx)

    def preload(self) -> dict[str, str | None]:
        """At worker start: fingerprint every registered toolchain. Returns id → refusal
        reason (None: usable). A drifted one is logged and counted, and its jobs are refused."""
        status: dict[str, str | None] = {}
        for entry in self.registry.entries():
            try:
                self.context_for(entry.id)
                status[entry.id] = None
            except ToolchainDrift as exc:
                status[entry.id] = exc.one_line()
        return status

    def context_for(self, toolchain_id: str) -> tuple[Toolchain, StepContext]:
        """``ToolchainNotFound`` for an unregistered id, ``ToolchainDrift`` when this host's
        binary is missing or differs from the registered one."""
        with self._lock:
            loaded = self._loaded.get(toolchain_id)
        try:
            if loaded is None:
                toolchain = self.registry.load(toolchain_id)
                loaded = (toolchain, self.make_context(toolchain))
                with self._lock:
                    loaded = self._loaded.setdefault(toolchain_id, loaded)
            loaded[0].verify_unchanged()
        except ToolchainDrift as exc:
            metrics.TOOLCHAIN_REFUSALS.labels("drift").inc()
            metrics.TOOLCHAIN_HEALTHY.labels(toolchain_id).set(0)
            log.warning("toolchain refused on this worker", toolchain=toolchain_id, reason=str(exc))
            raise
        metrics.TOOLCHAIN_HEALTHY.labels(toolchain_id).set(1)
        return loaded
