"""What objects exist and what their footers say, with footers cached by name.

Objects are immutable under their names (a name is derived from the exact input; a replay
writes identical content), so a footer read once stays true until the object is deleted.
"""

from __future__ import annotations

import threading

from stores.archive.naming import Family, ObjectName, parse_many, parse_progress
from stores.archive.objectstore import ObjectNotFound, ObjectStore
from stores.archive.parquet_io import Meta, read_meta


class Catalog:
    """Thread-safe listing + footer cache over one object store."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._lock = threading.Lock()
        self._meta: dict[str, Meta] = {}

    def names(self, prefix: str) -> list[ObjectName]:
        return parse_many(o.key for o in self.objects.list(prefix))

    def family(self, family: Family) -> list[ObjectName]:
        return self.names(family.value + "/")

    def progress(self, prefix: str) -> int | None:
        """Highest progress marker under ``prefix`` (written before retention deletes)."""
        marks = [parse_progress(o.key) for o in self.objects.list(prefix)]
        found = [m for m in marks if m is not None]
        return max(found) if found else None

    def remember(self, key: str, meta: Meta) -> None:
        with self._lock:
            self._meta[key] = meta

    def forget(self, key: str) -> None:
        with self._lock:
            self._meta.pop(key, None)

    def cached(self, key: str) -> Meta | None:
        with self._lock:
            return self._meta.get(key)

    def meta(self, key: str) -> Meta | None:
        """The footer summary of ``key``; None if it disappeared (compacted away)."""
        found = self.cached(key)
        if found is not None:
            return found
        try:
            data = self.objects.get(key)
        except ObjectNotFound:
            return None
        meta = read_meta(data)
        self.remember(key, meta)
        return meta
