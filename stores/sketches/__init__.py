"""Distribution sketches in the point tiers (issue 5, docs/stores.md "Sketch stores").

The sketches topic is consumed by a second consumer loop inside the RAM and the rocks
store processes, not by new processes: each loop is its own store (:mod:`.ram`,
:mod:`.rocks`), consumer group and registry entry (kinds ``ram-sketches`` and
``rocks-sketches``), served by the same HTTP server as the points (``POST
/v1/sketches/read``, :mod:`.read`). ``strata up`` therefore runs them without a change, and
a point tier and its sketch tier live and die together.

Merging sketches is not idempotent, so unlike points a redelivered message must never be
applied twice: the RAM sketch store rebuilds a partition from a clean state on every
assignment and skips offsets it has applied; the rocks sketch store writes its applied
offsets in the same synced WriteBatch as the sketches and skips offsets below them.
"""
