"""Describe the machine a benchmark ran on (printed with every figure), and keep the logs of a
run that went wrong."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def describe() -> str:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"machine: {os.cpu_count()} cores, {cpu}; python {sys.version.split()[0]}; "
        f"numpy {np.__version__}; {platform.platform()}"
    )


def keep_logs(root: Path, prefix: str, parent: Path | None = None) -> Path | None:
    """Copy every ``*.log`` under ``root`` (the services' logs of a run in a temporary
    directory) to a new directory that outlives the run (in ``parent``, else the system's
    temporary directory), keeping their relative paths, and return it; ``None`` when there
    are none. A wrong answer seen once in many runs can then be traced in the services' own
    words."""
    logs = sorted(root.rglob("*.log"))
    if not logs:
        return None
    kept = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    for log in logs:
        target = kept / log.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, target)
    return kept
