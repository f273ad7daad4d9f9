"""CPU time of a process tree by component, from /proc (Linux; elsewhere: nothing).

The load driver samples it around a run of ``strata up``: the CPU seconds each service
spent per million accepted points say which component an end-to-end rate is bound by,
which wall-clock rates on a shared 2-core machine cannot.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def component_name(pid: int) -> str:
    """``python -m stores.rocks`` -> ``stores.rocks``; other programs: the executable's name
    (``valkey-server``, also once valkey has rewritten its process title)."""
    try:
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    args = [a.decode(errors="replace") for a in argv if a]
    if "-m" in args[:-1]:
        return args[args.index("-m") + 1]
    # Up to the first space: valkey rewrites its argv into one process title,
    # "valkey-server 127.0.0.1:PORT", which would make a new name per port.
    return Path(args[0]).name.split(" ")[0] if args else f"pid {pid}"


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds used so far by ``root`` and every live descendant, summed per component
    name (the root itself under its own name)."""
    if not _PROC.is_dir():
        return {}
    stats: dict[int, tuple[int, float]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                stats[int(entry.name)] = found
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    out: dict[str, float] = defaultdict(float)
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        out[component_name(pid)] += stats[pid][1]
        todo.extend(children[pid])
    return dict(out)


def machine_busy() -> tuple[float, float] | None:
    """(busy CPU seconds, total CPU seconds) of the whole machine so far, all cores."""
    try:
        fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICKS, sum(ticks) / _TICKS


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per component between two :func:`tree_cpu` samples, largest first."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1]))
