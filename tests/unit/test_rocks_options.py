"""The options every RocksDB of ours opens with (stores/runtime/rocks.py), on real RocksDBs."""

from __future__ import annotations

import re
from pathlib import Path

from rocksdict import Options, Rdict

from stores.rocks.shards import DayShards
from stores.runtime.rocks import KEEP_LOG_FILES, compact_fully, open_db


def _default_cf_compression(path: Path) -> str:
    """The default column family's ``compression`` in the database's newest OPTIONS file."""
    newest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    section = newest.read_text().split('[CFOptions "default"]', 1)[1]
    found = re.search(r"^\s*compression=(\w+)", section, re.MULTILINE)
    assert found is not None
    return found.group(1)


def _sst_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.sst"))


def _postings_like(n: int) -> dict[bytes, bytes]:
    """Keys sharing long prefixes and repetitive values, like the inverted index's."""
    return {
        b"Borg-1\x00system.cpu.user\x00host:host_%04d\x00" % (i % 500) + i.to_bytes(8, "big"): (
            b"\x3a\x30\x00\x00" + (i % 7).to_bytes(2, "little") * 20
        )
        for i in range(n)
    }


def test_an_existing_database_takes_our_options_and_keeps_its_data(tmp_path: Path) -> None:
    # Created by an older version with RocksDB's defaults (Snappy).
    old = Options(raw_mode=True)
    old.create_if_missing(True)
    db = Rdict(str(tmp_path), old)
    before = _postings_like(3000)
    for k, v in before.items():
        db[k] = v
    db.close()
    assert _default_cf_compression(tmp_path) == "kSnappyCompression"

    db = open_db(tmp_path)
    assert _default_cf_compression(tmp_path) == "kZSTD"
    compact_fully(db)  # rewrites the Snappy file with zstd
    assert dict(db.items()) == before
    db.close()


def test_compact_fully_rewrites_a_lone_flushed_file(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    for k, v in _postings_like(20_000).items():
        db[k] = v
    db.flush(wait=True)
    flushed = _sst_bytes(tmp_path)
    db.compact_range(None, None)  # a trivial move: the same file, sequence numbers kept
    assert _sst_bytes(tmp_path) == flushed
    compact_fully(db)
    assert _sst_bytes(tmp_path) < flushed
    assert len(list(db.items())) == 20_000
    db.close()


def test_reopening_keeps_a_bounded_number_of_log_files(tmp_path: Path) -> None:
    for _ in range(KEEP_LOG_FILES + 4):
        open_db(tmp_path / "index").close()
        DayShards(tmp_path / "rocks").close()
    for path in (tmp_path / "index", tmp_path / "rocks"):
        logs = [p for p in path.iterdir() if p.name == "LOG" or p.name.startswith("LOG.old")]
        assert 1 <= len(logs) <= KEEP_LOG_FILES, sorted(p.name for p in logs)
