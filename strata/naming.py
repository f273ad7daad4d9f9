"""Datadog metric-name and tag normalisation, and canonical tag sets.

Rules follow Datadog's documentation for metric names and tags:
- metric names: ASCII letters, digits, ``_`` and ``.``; anything else becomes ``_``; must
  start with a letter; at most 200 characters; case is preserved.
- tags: lower-cased (except the value of ``host:``/``device:`` tags), characters other than
  Unicode letters/digits and ``_ - : . /`` become ``_``, runs of ``_`` collapse, trailing
  ``_`` are dropped, leading characters before the first letter are dropped, at most 200
  characters. A tag that normalises to nothing is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_NAME_LENGTH = 200
MAX_TAG_LENGTH = 200

_METRIC_BAD = re.compile(r"[^A-Za-z0-9_.]")
_TAG_BAD = re.compile(r"[^\w\-:./]", re.UNICODE)
_UNDERSCORES = re.compile(r"_{2,}")
# Tag keys whose value keeps its case, as at Datadog.
_CASE_PRESERVING_KEYS = ("host:", "device:")


class InvalidName(ValueError):
    """A metric name that cannot be normalised into a valid one."""


def normalize_metric_name(name: str) -> str:
    """Return the Datadog form of ``name`` or raise :class:`InvalidName`."""
    if not name:
        raise InvalidName("metric name is empty")
    out = _METRIC_BAD.sub("_", name)
    if not out[0].isascii() or not out[0].isalpha():
        raise InvalidName(f"metric name must start with a letter: {name[:50]!r}")
    if len(out) > MAX_NAME_LENGTH:
        raise InvalidName(f"metric name longer than {MAX_NAME_LENGTH} characters")
    return out


def normalize_tag(tag: str) -> str | None:
    """Return the normalised tag, or ``None`` when nothing valid is left."""
    lowered = tag.lower()
    if lowered.startswith(_CASE_PRESERVING_KEYS):
        key, _, value = tag.partition(":")
        tag = key.lower() + ":" + value
    else:
        tag = lowered
    tag = _TAG_BAD.sub("_", tag)
    # ``\w`` admits digits and ``_`` first; Datadog requires a leading letter.
    start = 0
    while start < len(tag) and not tag[start].isalpha():
        start += 1
    tag = tag[start : start + MAX_TAG_LENGTH]
    tag = _UNDERSCORES.sub("_", tag).rstrip("_")
    return tag or None


def canonical_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Normalise, deduplicate and sort a tag collection (the canonical tag set)."""
    out = set()
    for t in tags:
        n = normalize_tag(t)
        if n is not None:
            out.add(n)
    return tuple(sorted(out))
