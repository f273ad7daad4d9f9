"""bench.proc_cpu: CPU seconds of a process tree by component, from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.proc_cpu import component_name, cpu_delta, machine_busy, tree_cpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

_BURN = (
    "import time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3:\n"
    "    pass\n"
    "time.sleep(60)\n"
)


def test_a_childs_cpu_is_counted_under_its_name(tmp_path: Path) -> None:
    # Under a name of its own: the test runner itself may run as "python" (.venv/bin/pytest).
    burner = tmp_path / "burner"
    burner.symlink_to(sys.executable)
    child = subprocess.Popen([str(burner), "-c", _BURN])
    try:
        deadline = time.monotonic() + 30
        while tree_cpu(os.getpid()).get("burner", 0.0) < 0.3:
            assert time.monotonic() < deadline, tree_cpu(os.getpid())
            time.sleep(0.05)
        assert component_name(child.pid) == "burner"
        assert tree_cpu(child.pid)["burner"] >= 0.3  # a tree rooted at the child alone
        assert tree_cpu(-1) == {}  # no such process
    finally:
        child.kill()
        child.wait()


def test_module_name_of_python_dash_m() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30  # until the child has exec'd (before: our argv)
        while component_name(child.pid) != "http.server":
            assert time.monotonic() < deadline, component_name(child.pid)
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()


def test_valkey_is_named_after_its_program_once_it_rewrote_its_title(tmp_path: Path) -> None:
    from strata.servers import free_port, valkey_binary

    argv = [str(valkey_binary()), "--port", str(free_port()), "--bind", "127.0.0.1"]
    child = subprocess.Popen(
        [*argv, "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30  # until it set its title "valkey-server 127.0.0.1:P"
        cmdline = Path(f"/proc/{child.pid}/cmdline")
        while b" " not in cmdline.read_bytes():
            assert time.monotonic() < deadline, cmdline.read_bytes()
            time.sleep(0.02)
        assert component_name(child.pid) == "valkey-server"
    finally:
        child.kill()
        child.wait()


def test_delta_is_per_component_largest_first() -> None:
    before = {"intake": 1.0, "tansu": 2.0}
    after = {"intake": 5.0, "tansu": 2.5, "query": 0.75}
    assert list(cpu_delta(before, after).items()) == [
        ("intake", 4.0),
        ("query", 0.75),
        ("tansu", 0.5),
    ]


def test_machine_busy_is_within_the_total() -> None:
    sample = machine_busy()
    assert sample is not None
    busy, total = sample
    assert 0 <= busy <= total
