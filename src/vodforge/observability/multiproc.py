"""Prometheus multiprocess mode, set up before prometheus-client is imported anywhere.

prometheus-client picks its value store when it is first imported: the environment variable must
be set before that, in ``serve``, so the serve process and every worker it starts write their
samples to files that ``/metrics`` aggregates. This module imports nothing of prometheus-client.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vodforge.errors import ConfigError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(path: Path) -> None:
    """Point this process (and the children it starts) at a fresh multiprocess directory.
    Stale files from a previous run would resurrect old counts, so the folder is emptied."""
    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != str(path):
        raise ConfigError("metrics were imported before their multiprocess dir was set")
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
