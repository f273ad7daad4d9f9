"""Describe the machine a benchmark ran on (printed with every figure)."""

from __future__ import annotations

import os
import platform
import sys

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
