"""Archive store: points, series and distribution sketches as Parquet on an object store
(DESIGN §4, docs/archive.md).

Pure parts: :mod:`naming` (object names), :mod:`parquet_io` (tables <-> Parquet bytes),
:mod:`buffer` (per-partition batching), :mod:`plan` (which objects answer a read),
:mod:`retention`; for sketches :mod:`sketch_column` (sketch cells), :mod:`sketch_io`
(sketch tables) and :mod:`sketch_plan` (which objects hold which messages).
I/O parts: :mod:`objectstore` (local directory, S3), :mod:`store` (the consumers),
:mod:`sketches` (the sketch consumer and reader), :mod:`compaction`,
:mod:`sketch_compaction`, :mod:`reader`, :mod:`api`, :mod:`service`.
"""
