"""End-to-end fixtures: a real ``strata up`` (its own tansu, valkey and every service).

``strata up`` runs as a subprocess on free ports with a temporary data directory, exactly as
a user starts it; tests talk to it over HTTP only. The tests are skipped (with the reason)
while a service module does not exist yet.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from strata.servers import free_port, spawn

SERVICE_MAINS = (
    "intake.__main__",
    "query.__main__",
    "stores.ram.__main__",
    "stores.tags.__main__",
    "stores.inverted.__main__",
)
START_DEADLINE = 150.0  # two shared cores: five Python services import in parallel
T = TypeVar("T")


def missing_services() -> list[str]:
    missing = []
    for name in SERVICE_MAINS:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def require_services() -> None:
    missing = missing_services()
    if missing:
        pytest.skip(f"services not written yet: {', '.join(missing)}")


def eventually(check: Callable[[], T], *, timeout: float = 60.0, what: str = "") -> T:
    """Call ``check`` until it returns without AssertionError; re-raise the last one."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                if what:
                    print(f"gave up waiting for {what} after {timeout:g} s")
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # reaped soon; it holds no resources
        return None
    return int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``root`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            started = proc_start_time(child)
            if started is not None:
                out[child] = started
                todo.append(child)
    return out


def still_alive(procs: dict[int, int]) -> list[int]:
    """Pids from ``procs`` that still run (same pid *and* start time, so no reuse mix-up)."""
    return [pid for pid, started in procs.items() if proc_start_time(pid) == started]


@dataclass
class Pipeline:
    """A running ``strata up`` and what it wrote to its data directory."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    output: Path  # stdout + stderr of strata up
    endpoints: dict[str, Any]

    @property
    def intake(self) -> str:
        return str(self.endpoints["intake"])

    @property
    def query(self) -> str:
        return str(self.endpoints["query"])

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "supervisor.json").read_text())
        return data

    def component(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.state()["components"][name]
        return info

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def diagnostics(self) -> str:
        parts = [f"--- strata up output ---\n{self.text()[-3000:]}"]
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            parts.append(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def stop(self, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_pipeline(
    data_dir: Path, *, partitions: int = 3, env: dict[str, str] | None = None
) -> Pipeline:
    """Start ``strata up`` on free ports and wait for its endpoints.json; ``env`` adds
    ``STRATA_*`` settings (strata up passes them to every service)."""
    require_services()
    output = data_dir.parent / f"{data_dir.name}-up.log"
    argv = [sys.executable, "-m", "strata.cli", "up", "--data-dir", str(data_dir)]
    for flag in ("--intake-port", "--query-port", "--kafka-port", "--redis-port"):
        argv += [flag, str(free_port())]
    argv += ["--partitions", str(partitions)]
    env = {
        **os.environ,
        "AWS_EC2_METADATA_DISABLED": "true",
        # A restarted store must rejoin its group quickly (join takes ~half of this).
        "STRATA_SESSION_TIMEOUT_MS": "2000",
        "STRATA_RESTART_INITIAL_SECONDS": "0.2",
        **(env or {}),
    }
    proc = spawn("strata-up", argv, output, env=env)
    endpoints_path = data_dir / "endpoints.json"
    pipeline = Pipeline(proc, data_dir, output, {})
    deadline = time.monotonic() + START_DEADLINE
    while not endpoints_path.exists():
        if proc.poll() is not None:
            pytest.fail(f"strata up exited with {proc.returncode}\n{pipeline.diagnostics()}")
        if time.monotonic() > deadline:
            pipeline.stop()
            pytest.fail(f"strata up not ready in {START_DEADLINE:g} s\n{pipeline.diagnostics()}")
        time.sleep(0.2)
    pipeline.endpoints = json.loads(endpoints_path.read_text())
    return pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One ``strata up`` shared by the tests of a module (they use distinct metrics)."""
    running = start_pipeline(tmp_path_factory.mktemp("e2e") / "data")
    try:
        yield running
    finally:
        running.stop()
