"""Archive store: points and series as Parquet on an object store (DESIGN §4, docs/archive.md).

Pure parts: :mod:`naming` (object names), :mod:`parquet_io` (tables <-> Parquet bytes),
:mod:`buffer` (per-partition batching), :mod:`plan` (which objects answer a read).
I/O parts: :mod:`objectstore` (local directory, S3), :mod:`store` (the consumers),
:mod:`compaction`, :mod:`reader`, :mod:`api`, :mod:`service`.
"""
