"""RocksDB point store: days of compressed per-series blocks plus 1 m / 1 h rollups
(DESIGN §4, docs/rocks.md)."""
