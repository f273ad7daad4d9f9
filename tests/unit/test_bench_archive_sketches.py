"""bench/bench_archive_sketches.py at tiny sizes: it completes, its answers match what was
fed, and its check fails a run whose read answer is wrong.

What was fed is observed independently of the bench's own bookkeeping, by wrapping the
writer's ``apply``; the expected rows of a read are checked against a plain-loop model.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import bench_archive_sketches as bench
from stores.archive.sketches import ArchiveSketchReader, ArchiveSketchStore
from stores.runtime.store import Record
from strata.codec import SketchMessage
from strata.sketch import SketchBatch

ROOT = Path(__file__).resolve().parents[2]


def quiet(_line: str) -> None:
    pass


def test_expected_rows_match_a_loop_model() -> None:
    rng = np.random.default_rng(3)
    ticks, series = 2 * bench.TICKS_PER_HOUR, 3
    fed = bench.Fed(np.array([5, 9, 40], np.uint64), 7200, rng.integers(5, 16, (ticks, series)))
    for step in (10, 60, 3600):
        model: dict[tuple[int, int], int] = defaultdict(int)
        for t in range(ticks):
            for s in range(series):
                ts = 7200 + 10 * t
                model[(int(fed.sids[s]), ts - ts % step)] += int(fed.counts[t, s])
        sid, bucket, count = fed.expected(step)
        got = {(int(a), int(b)): int(c) for a, b, c in zip(sid, bucket, count, strict=True)}
        assert got == model
        assert list(zip(sid.tolist(), bucket.tolist(), strict=True)) == sorted(model)


def test_tiny_run_completes_and_counts_match(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[SketchBatch] = []
    original = ArchiveSketchStore.apply

    def observed(self: ArchiveSketchStore, records: Sequence[Record[SketchMessage]]) -> None:
        applied.extend(r.value.batch for r in records)
        original(self, records)

    monkeypatch.setattr(ArchiveSketchStore, "apply", observed)
    lines: list[str] = []
    # 500 sketches per object, applied 100 messages (600 sketches) at a time: several
    # ingest objects, so reads merge across objects.
    report = bench.run(6, 2, seed=5, repeats=1, flush_sketches=500, out=lines.append, batch=100)

    fed = SketchBatch.concat(applied)
    assert len(fed) == report.sketches == 6 * 2 * 360
    assert int(fed.count.sum()) == report.values
    assert 5 * len(fed) <= report.values <= 15 * len(fed)
    assert report.ingest_objects >= 2
    assert report.rows == {"raw": 6 * 720, "1m": 6 * 120, "1h": 6 * 2}
    for reads in (report.reads_before, report.reads_after):
        assert [(r.resolution, r.rows) for r in reads] == [
            ("raw", 6 * 720),
            ("1m", 6 * 120),
            ("1h", 6 * 2),
        ]
        assert all(len(r.seconds) == 1 and r.answer_bytes > 0 for r in reads)
    assert all(report.compacted_bytes[k] > 0 for k in ("raw", "1m", "1h"))
    assert any(line.startswith("compaction:") for line in lines)


def test_a_read_losing_a_sketch_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ArchiveSketchReader.read_sketches

    def lossy(self: ArchiveSketchReader, *args: Any, **kw: Any) -> SketchBatch:
        rows = original(self, *args, **kw)
        return rows.take(np.arange(len(rows) - 1))

    monkeypatch.setattr(ArchiveSketchReader, "read_sketches", lossy)
    with pytest.raises(bench.WrongAnswer, match=r"raw: .* rows, expected"):
        bench.run(3, 1, repeats=1, out=quiet)


def test_a_read_merging_a_sketch_twice_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ArchiveSketchReader.read_sketches

    def doubled(self: ArchiveSketchReader, *args: Any, **kw: Any) -> SketchBatch:
        rows = original(self, *args, **kw)
        return SketchBatch.concat([rows, rows.take([len(rows) // 2])]).merge_by_key()

    monkeypatch.setattr(ArchiveSketchReader, "read_sketches", doubled)
    with pytest.raises(bench.WrongAnswer, match="raw: 1 rows differ"):
        bench.run(3, 1, repeats=1, out=quiet)


def test_command_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_archive_sketches",
            "--series",
            "3",
            "--hours",
            "1",
            "--repeats",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "machine: " in done.stdout and "seed 1;" in done.stdout
    assert done.stdout.count("rows/s") == 6  # three resolutions, before and after compaction
