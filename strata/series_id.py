"""64-bit series ids: a hash of (org, metric, canonical tags).

The hash is BLAKE2b with an 8-byte digest over an unambiguous encoding (NUL separators;
NUL cannot occur in a normalised name or tag). Ids are not assumed collision-free: the tag
index records the full identity under each id and counts collisions.
"""

from __future__ import annotations

import hashlib


def series_id(org: str, metric: str, tags: tuple[str, ...]) -> int:
    """Series id of a canonical tag set (see :func:`strata.naming.canonical_tags`)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(org.encode())
    h.update(b"\x00")
    h.update(metric.encode())
    for t in tags:
        h.update(b"\x00")
        h.update(t.encode())
    return int.from_bytes(h.digest(), "big")
