"""``strata archive compact`` runs the archive's compaction as a subprocess with a bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stores.archive.naming import Family
from stores.archive.objectstore import LocalDirStore
from strata.cli import main
from tests.unit.test_archive_ingest import Clock, batch, ingest, make_store


def test_strata_archive_compact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATA_DATA_DIR", raising=False)
    now = int(time.time())
    t0 = now - now % 86400  # inside the default retention: compaction keeps everything
    objects = LocalDirStore(tmp_path / "archive" / "objects")
    store = make_store(objects, Clock(t0), flush_rows=1)
    ingest(store, [batch("acme", "cpu", 1, [t0 + i], [float(i)]) for i in range(12)], 0, 0)
    store.flush_all()
    assert main(["archive", "compact", "--data-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["partitions"] == 1 and report["outputs"] == 1 and report["inputs"] >= 3
    assert "1/1 partitions" in err
    names = store.catalog.family(Family.POINTS)
    assert len(names) == 1 and names[0].compacted
