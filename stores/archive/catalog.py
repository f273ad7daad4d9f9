"""What objects exist and what their footers say, with footers cached by name.

Objects are immutable under their names (a name is derived from the exact input; a replay
writes identical content), so a footer read once stays true until the object is deleted.
A footer is read with ranged reads of the object's tail, never by downloading the object.
"""

from __future__ import annotations

import threading

from stores.archive.naming import (
    Family,
    ObjectName,
    parse_many,
    parse_progress,
    partition_prefix,
    safe_topic_id,
)
from stores.archive.objectstore import ObjectNotFound, ObjectStore
from stores.archive.parquet_io import FOOTER_GUESS, Meta, footer_size, read_meta


class Catalog:
    """Thread-safe listing + footer cache over one object store."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._lock = threading.Lock()
        self._meta: dict[str, Meta] = {}

    def names(self, prefix: str) -> list[ObjectName]:
        return parse_many(o.key for o in self.objects.list(prefix))

    def family(self, family: Family, partition: int | None = None) -> list[ObjectName]:
        """The objects of ``family``, in key order; with ``partition`` only that
        partition's (under every topic id), listed one ``<family>/<tid>/p<partition>/``
        prefix at a time instead of the whole family."""
        if partition is None:
            return self.names(family.value + "/")
        out: list[ObjectName] = []
        for tid in self.objects.children(family.value + "/"):
            if safe_topic_id(tid) != tid:
                continue  # not one of ours: no name under it parses
            names = self.names(partition_prefix(family, tid, partition))
            out += [n for n in names if n.partition == partition]
        return out

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
        """The footer summary of ``key``; None if it disappeared (compacted away).

        Raises :class:`UnreadableObject` for an object that is not ours."""
        found = self.cached(key)
        if found is not None:
            return found
        try:
            tail = self.objects.tail(key, FOOTER_GUESS)
            need = footer_size(tail)
            if need > len(tail) == FOOTER_GUESS:  # a footer larger than the guess
                tail = self.objects.tail(key, need)
        except ObjectNotFound:
            return None
        meta = read_meta(tail)
        self.remember(key, meta)
        return meta
