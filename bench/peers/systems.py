"""The three systems as processes: start, write target, count, settle, query, bytes, stop.

Each system runs alone on the machine while it is measured (the bench runs them one after
the other), on free loopback ports, with its data under the bench's temporary directory:

- **Strata**: a ``strata up`` (every service, tansu and valkey, as in a user's
  ``strata up``), with three settings changed for the bench: intake's late window covers
  the data's hours (``STRATA_LATE_WINDOW_SECONDS``), rocks folds closed hours at once
  (``STRATA_FOLD_DELAY_SECONDS=0``, default 600 s after the hour: the data lies in the past)
  and the archive flushes after 5 s instead of 60 s (``STRATA_ARCHIVE_FLUSH_SECONDS``).
- **Prometheus**: ``prometheus --web.enable-remote-write-receiver --web.enable-admin-api``
  with an empty scrape configuration.
- **InfluxDB 1.x**: ``influxd run`` with a generated configuration: no ``_internal``
  monitoring database, no reporting, and ``cache-snapshot-write-cold-duration`` /
  ``compact-full-write-cold-duration`` of 2 s (defaults 10 min / 4 h) so the cache is
  written to TSM and fully compacted soon after the writes stop; during writes they do
  nothing.

CPU time is read from ``/proc/<pid>/stat`` (utime + stime) of every server process (for
Strata every descendant of ``strata up``), so "points per core" counts what the servers
spent, not the client. Bytes on disk are allocated bytes (``st_blocks``, what ``du``
counts): InfluxDB preallocates sparse 4 MB series-file segments whose apparent size says
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.bench_query import Case, DataSet, with_server_errors
from bench.peers import queries
from bench.workload import CPU_FIELDS, CPU_METRICS
from strata.servers import free_port, spawn

CLK_TCK = os.sysconf("SC_CLK_TCK")
INFLUX_DB = "bench"


class SystemFailed(RuntimeError):
    """A system did not start, or did not take or show the data; carries its log tail."""


# --- processes, CPU and disk ----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live pid, in seconds."""
    out = {}
    for pid in pids:
        f = _stat(pid)
        if f is not None:
            out[pid] = (int(f[11]) + int(f[12])) / CLK_TCK  # fields 14 and 15 of stat
    return out


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat(int(entry.name))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings (processes started in between count whole)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def process_name(pid: int) -> str:
    """A short name: the module of ``python -m <module>``, else the program's file name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if "-m" in args[:-1]:
        module = args[args.index("-m") + 1]
        return " ".join([module, *args[args.index("-m") + 2 : args.index("-m") + 3]])
    return Path(args[0]).name if args else "?"


def cpu_by_name(before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """:func:`cpu_used` per :func:`process_name`, largest first."""
    out: dict[str, float] = {}
    for pid, t in after.items():
        name = process_name(pid)
        out[name] = out.get(name, 0.0) + t - before.get(pid, 0.0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def disk_bytes(path: Path, pattern: str = "*") -> int:
    """Allocated bytes of the files under ``path`` matching ``pattern``."""
    if not path.exists():
        return 0
    return sum(f.stat().st_blocks * 512 for f in path.rglob(pattern) if f.is_file())


def _wait(what: str, check: Any, timeout: float, log: Path | None = None) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > timeout:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise SystemFailed(f"{what} not done after {timeout:g} s\n{tail}")
        time.sleep(0.2)


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


# --- the common shape -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteTarget:
    base_url: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class System(Protocol):
    name: str
    version: str

    def pids(self) -> list[int]: ...
    def target(self) -> WriteTarget: ...
    def applied(self, since: float, timeout: float) -> str: ...
    def count(self, ds: DataSet) -> int: ...
    def settle(self, since: float, points: int) -> str: ...
    def query(self, client: httpx.Client, case: Case) -> tuple[float, str | None, str]: ...
    def client(self) -> httpx.Client: ...
    def stop(self) -> None: ...
    def disk(self) -> dict[str, int]: ...


def _timed_get(client: httpx.Client, pq: queries.PeerQuery) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    resp = client.get(pq.path, params=pq.params)
    ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 200:
        raise SystemFailed(f"HTTP {resp.status_code} for {pq.text}: {resp.text[:300]}")
    return ms, dict(resp.json())


@dataclass
class _Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# The stores a count over the data set's hours reads: the point tiers that hold them (RAM for
# the last hours, rocks for days) and the indexes that resolve ``{*}`` to series.
APPLIED_STORES = ("ram", "rocks", "tags", "inverted")
APPLIED_POLL_SECONDS = 0.1  # a /health answer is a dict copy; heartbeats come every second


def incomplete(kind: str, health: dict[str, Any], since_ms: float) -> str:
    """What a store's ``GET /health`` says is not yet complete through ``since_ms``: its
    partitions whose heartbeat watermark is older, or that it reports none (unknown is
    never complete); ``""`` when every partition it owns is."""
    marks: dict[str, dict[str, Any]] = health.get("watermarks") or {}
    if not marks:
        return f"{kind}: no watermarks yet"
    late = sorted(int(p) for p, m in marks.items() if m["complete_through_ms"] < since_ms)
    return f"{kind}: partitions {late} behind" if late else ""


# --- Strata ---------------------------------------------------------------------------------------


@dataclass
class Strata:
    root: Path
    ds: DataSet
    name: str = "Strata"
    version: str = ""
    endpoints: dict[str, Any] = field(default_factory=dict)
    _proc: _Proc | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "strata"

    def start(self, timeout: float = 180.0) -> float:
        from importlib.metadata import version

        self.version = f"strata {version('strata')} (strata up)"
        late = int(time.time()) - self.ds.start + 7200
        env = {
            **os.environ,
            "AWS_EC2_METADATA_DISABLED": "true",
            "STRATA_LATE_WINDOW_SECONDS": str(late),
            "STRATA_FOLD_DELAY_SECONDS": "0",
            "STRATA_ARCHIVE_FLUSH_SECONDS": "5",
        }
        argv = [sys.executable, "-m", "strata.cli", "up", "--data-dir", str(self.data_dir)]
        for flag in ("--intake-port", "--query-port", "--kafka-port", "--redis-port"):
            argv += [flag, str(free_port())]
        log = self.root / "strata-up.log"
        self._proc = _Proc(spawn("strata-up", argv, log, env=env), log)
        endpoints = self.data_dir / "endpoints.json"

        def up() -> bool:
            if self._proc is not None and self._proc.proc.poll() is not None:
                raise SystemFailed(f"strata up exited:\n{log.read_text(errors='replace')[-3000:]}")
            return endpoints.exists()

        took = _wait("strata up", up, timeout, log)
        self.endpoints = json.loads(endpoints.read_text())
        return took

    def pids(self) -> list[int]:
        assert self._proc is not None
        return descendants(self._proc.proc.pid)

    def target(self) -> WriteTarget:
        return WriteTarget(
            self.endpoints["intake"],
            "/api/v2/series",
            {},
            {
                "DD-API-KEY": self.endpoints["api_key"],
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            },
        )

    def client(self) -> httpx.Client:
        headers = {
            "DD-API-KEY": self.endpoints["api_key"],
            "DD-APPLICATION-KEY": self.endpoints["app_key"],
        }
        return httpx.Client(base_url=self.endpoints["query"], headers=headers, timeout=120.0)

    def applied(self, since: float, timeout: float) -> str:
        """Wait until the stores a count query reads say, by their heartbeat watermarks
        (``GET /health``, docs/heartbeats.md), that every partition is complete through
        ``since`` (Unix s): everything answered 202 before it is applied. This is how a
        Strata user knows data is complete (the monitor evaluator's gate); polling the count
        query instead would make each poll's reads part of the measured ingest CPU, where
        the peers are asked once. ``""`` once they all are, else what is still behind
        (the caller then counts anyway)."""
        comps = self.endpoints["components"]
        since_ms = since * 1000
        behind: list[str] = []

        def complete() -> bool:
            behind.clear()
            for kind in APPLIED_STORES:
                health = httpx.get(f"{comps[kind]}/health", timeout=5.0).json()
                problem = incomplete(kind, health, since_ms)
                if problem:
                    behind.append(problem)
            return not behind

        deadline = time.monotonic() + timeout
        while not complete() and time.monotonic() < deadline:
            time.sleep(APPLIED_POLL_SECONDS)
        return "; ".join(behind)

    def count(self, ds: DataSet) -> int:
        """Points of the data set the query API returns: per metric the hourly count
        rollup summed over all series, one v2 timeseries request per metric, one after the
        other (at ``--full`` size one metric is 4.32 M points: asking all ten at once
        would read 43 M points in parallel); -1 as soon as one request fails."""
        total = 0
        with self.client() as c:
            for m in CPU_METRICS:
                body = {
                    "data": {
                        "type": "timeseries_request",
                        "attributes": {
                            "from": ds.start * 1000,
                            "to": ds.end * 1000 - 1,
                            "interval": 3_600_000,
                            "queries": [
                                {
                                    "data_source": "metrics",
                                    "name": "q",
                                    "query": f"sum:{m}{{*}}.rollup(count, 3600)",
                                }
                            ],
                            "formulas": [{"formula": "q"}],
                        },
                    }
                }
                resp = c.post("/api/v2/query/timeseries", json=body)
                if resp.status_code != 200:
                    return -1
                values = resp.json()["data"]["attributes"]["values"]
                total += int(sum(v for row in values for v in row if v is not None))
        return total

    def settle(self, since: float, points: int) -> str:
        """Wait until rocks has written ``points`` points into hour blocks (merged directly
        or folded from staging: the data's hours are all closed, and the fold delay is 0;
        only the heartbeat's and self-metrics' points of the current hour stay staged) and
        the archive's watermark of every partition has passed ``since`` (everything sent
        before is uploaded)."""
        comps = self.endpoints["components"]
        stats: dict[str, Any] = {}

        def folded() -> bool:
            stats.update(httpx.get(f"{comps['rocks']}/v1/stats", timeout=5.0).json())
            return int(stats["direct_points"]) + int(stats["folded_points"]) >= points

        def archived() -> bool:
            health = httpx.get(f"{comps['archive']}/health", timeout=5.0).json()
            marks = health.get("watermarks", {})
            return bool(marks) and all(
                m["complete_through_ms"] >= since * 1000 for m in marks.values()
            )

        log = self.root / "strata-up.log"
        a = _wait("rocks fold", folded, 300.0, log)
        b = _wait("archive upload", archived, 300.0, log)
        return (
            f"rocks: {stats['direct_points']:,} points merged into blocks directly, "
            f"{stats['folded_points']:,} folded from staging (+{a:.1f} s); archive "
            f"watermarks past the end of the ingest (+{b:.1f} s)"
        )

    def query(self, client: httpx.Client, case: Case) -> tuple[float, str | None, str]:
        """Time, check and the tiers that served it (``X-Strata-Tiers``)."""
        t0 = time.perf_counter()
        resp = case.send(client)
        ms = (time.perf_counter() - t0) * 1000
        tiers = resp.headers.get("x-strata-tiers", "?")
        if resp.status_code != 200:  # a refused query is a failed instance, not a crash
            return ms, f"HTTP {resp.status_code}: {resp.text[:200]}", tiers
        body = resp.json()
        problem = case.check(case, body)
        return ms, problem and with_server_errors(problem, body), tiers

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def disk(self) -> dict[str, int]:
        """After the stop: every RocksDB flushed and fully compacted (the last level rewritten,
        as RocksDB's own compactions eventually do to old data) with its own options (rocks
        by :class:`~stores.rocks.shards.DayShards`, the indexes by ``open_db``), the archive
        compacted by ``python -m stores.archive compact``; then allocated bytes."""
        from stores.rocks.shards import DayShards
        from stores.runtime.rocks import compact_fully, open_db, store_path

        rocks = store_path(self.data_dir, "rocks", "rocks-up")
        shards = DayShards(rocks)
        shards.flush()
        shards.compact()
        shards.close()
        indexes = [store_path(self.data_dir, k, f"{k}-up") for k in ("tags", "inverted")]
        for path in indexes:
            db = open_db(path)
            db.flush(wait=True)
            compact_fully(db)
            db.close()
        env = {**os.environ, "STRATA_DATA_DIR": str(self.data_dir)}
        subprocess.run(
            [sys.executable, "-m", "stores.archive", "compact"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        out = {
            "rocks": disk_bytes(rocks),
            "rocks sst": disk_bytes(rocks, "*.sst"),
            "tag + inverted index": sum(disk_bytes(p) for p in indexes),
            "archive": disk_bytes(self.data_dir / "archive"),
        }
        out["rocks + indexes"] = out["rocks"] + out["tag + inverted index"]
        return out


# --- Prometheus -----------------------------------------------------------------------------------


@dataclass
class Prometheus:
    root: Path
    ds: DataSet
    name: str = "Prometheus"
    version: str = ""
    url: str = ""
    snapshot: Path | None = None
    _proc: _Proc | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "prometheus"

    def start(self, timeout: float = 60.0) -> float:
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemFailed("prometheus not installed (bench/peers/install.sh)")
        self.version = _version([binary, "--version"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--web.enable-admin-api",
            "--log.level=warn",
        ]
        log = self.root / "prometheus.log"
        self._proc = _Proc(spawn("prometheus", argv, log), log)

        def ready() -> bool:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200

        return _wait("prometheus", ready, timeout, log)

    def pids(self) -> list[int]:
        assert self._proc is not None
        return [self._proc.proc.pid]

    def target(self) -> WriteTarget:
        from bench.peers import remote_write

        return WriteTarget(self.url, remote_write.PATH, {}, dict(remote_write.HEADERS))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0)

    def count(self, ds: DataSet) -> int:
        span = ds.end - ds.start
        q = " + ".join(f"sum(count_over_time(cpu_{f}[{span}s]))" for f in CPU_FIELDS)
        with self.client() as c:
            resp = c.get("/api/v1/query", params={"query": q, "time": str(ds.end - 1)})
        result = resp.json()["data"]["result"] if resp.status_code == 200 else []
        return int(float(result[0]["value"][1])) if result else -1

    def applied(self, since: float, timeout: float) -> str:
        return ""  # remote write answers once the samples are in the head, queryable

    def settle(self, since: float, points: int) -> str:
        return "nothing to wait for: remote write answers once samples are in the head"

    def query(self, client: httpx.Client, case: Case) -> tuple[float, str | None, str]:
        ms, body = _timed_get(client, queries.promql(case, self.ds))
        return ms, queries.check_prometheus(case, body), ""

    def take_snapshot(self) -> Path:
        """Admin API snapshot with the head: the head's samples written as a block (what
        head compaction writes), beside hard links to the blocks already cut."""
        resp = httpx.post(f"{self.url}/api/v1/admin/tsdb/snapshot", timeout=600.0)
        resp.raise_for_status()
        self.snapshot = self.data_dir / "tsdb" / "snapshots" / resp.json()["data"]["name"]
        return self.snapshot

    def stop(self) -> None:
        if self.snapshot is None and self._proc is not None and self._proc.proc.poll() is None:
            self.take_snapshot()
        if self._proc is not None:
            self._proc.stop()

    def disk(self) -> dict[str, int]:
        tsdb = self.data_dir / "tsdb"
        snap = self.snapshot
        assert snap is not None
        return {
            "snapshot blocks": disk_bytes(snap),
            "snapshot chunks": disk_bytes(snap, "0*"),
            "snapshot index": disk_bytes(snap, "index"),
            "tsdb dir without snapshot (wal, head chunks, blocks)": disk_bytes(tsdb)
            - disk_bytes(tsdb / "snapshots"),
        }


# --- InfluxDB 1.x ---------------------------------------------------------------------------------


@dataclass
class Influx:
    root: Path
    ds: DataSet
    name: str = "InfluxDB"
    version: str = ""
    url: str = ""
    _proc: _Proc | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "influxdb"

    def start(self, timeout: float = 60.0) -> float:
        binary = shutil.which("influxd")
        if binary is None:
            raise SystemFailed("influxd not installed (bench/peers/install.sh)")
        self.version = _version([binary, "version"])
        d = self.data_dir
        port, rpc = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = self.root / "influxdb.conf"
        config.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{d / "meta"}"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n'
            "  query-log-enabled = false\n"
            '  cache-snapshot-write-cold-duration = "2s"\n'
            '  compact-full-write-cold-duration = "2s"\n'
            "[monitor]\n  store-enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        )
        log = self.root / "influxd.log"
        self._proc = _Proc(spawn("influxd", [binary, "run", "-config", str(config)], log), log)

        def ready() -> bool:
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204

        took = _wait("influxd", ready, timeout, log)
        resp = httpx.post(f"{self.url}/query", params={"q": f"CREATE DATABASE {INFLUX_DB}"})
        resp.raise_for_status()
        return took

    def pids(self) -> list[int]:
        assert self._proc is not None
        return [self._proc.proc.pid]

    def target(self) -> WriteTarget:
        return WriteTarget(
            self.url,
            "/write",
            {"db": INFLUX_DB, "precision": "s"},
            {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0)

    def count(self, ds: DataSet) -> int:
        q = f"SELECT count(*) FROM cpu WHERE time >= {ds.start}s AND time < {ds.end}s"
        with self.client() as c:
            resp = c.get("/query", params={"db": INFLUX_DB, "q": q})
        if resp.status_code != 200:
            return -1
        series = resp.json()["results"][0].get("series", [])
        return int(sum(v for v in series[0]["values"][0][1:] if v)) if series else 0

    def applied(self, since: float, timeout: float) -> str:
        return ""  # /write answers once the points are in the WAL and cache, queryable

    def _files(self) -> tuple[int, int, int]:
        data = self.data_dir / "data" / INFLUX_DB
        tsm = sorted(data.rglob("*.tsm"))
        wal = disk_bytes(self.data_dir / "wal", "*.wal")
        return len(tsm), sum(f.stat().st_size for f in tsm), wal

    def settle(self, since: float, points: int) -> str:
        """Wait until the WAL is empty (cache snapshotted to TSM) and the TSM files have
        not changed for 10 s (full compaction done)."""
        last: list[tuple[int, int, int]] = []

        def quiet() -> bool:
            state = self._files()
            last.append(state)
            stable = len(last) >= 50 and all(s == state for s in last[-50:])  # 10 s at 0.2 s
            return state[2] == 0 and stable

        took = _wait("influxdb compaction", quiet, 600.0, self.root / "influxd.log")
        n, size, _ = last[-1]
        return f"WAL empty and {n} TSM file(s) ({size:,} bytes) unchanged for 10 s (+{took:.1f} s)"

    def query(self, client: httpx.Client, case: Case) -> tuple[float, str | None, str]:
        ms, body = _timed_get(client, queries.influxql(case, self.ds, INFLUX_DB))
        return ms, queries.check_influx(case, body), ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def disk(self) -> dict[str, int]:
        data = self.data_dir / "data"
        return {
            "data dir (tsm, series file, fields.idx)": disk_bytes(data),
            "tsm": disk_bytes(data, "*.tsm"),
            "wal": disk_bytes(self.data_dir / "wal"),
        }
