"""InfluxDB 1.x line protocol from workload columns, TSBS style.

TSBS writes cpu-only to InfluxDB as one line per host and time with all ten metrics as
fields of one measurement::

    cpu,arch=x64,datacenter=eu-west-1a,host=host_0,... usage_user=58.0,...,usage_nice=3.0 1700000000

so one line carries ten of our points (the same points the Datadog and remote-write bodies
carry one per series). Tags are sorted by key (what the server does anyway) and escaped by
the line-protocol rules: in measurement names ``,`` and space; in tag keys, tag values and
field keys also ``=``. Field values are floats written in their shortest round-trip form
(orjson's, in C, for a whole request at once), so ``58`` is sent as ``58.0``: a float field,
the type the other systems store. Timestamps are in seconds (``precision=s`` on /write).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

PATH = "/write"


def escape_measurement(name: str) -> str:
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def tag_set(tags: Sequence[str]) -> str:
    """``,k=v,k2=v2`` (with the leading comma) from ``key:value`` tags, sorted by key.
    Empty values have no line-protocol form and are refused, like bare tags."""
    pairs = []
    for tag in tags:
        key, sep, value = tag.partition(":")
        if not sep or not key or not value:
            raise ValueError(f"tag {tag!r} has no key:value form")
        pairs.append((key, value))
    pairs.sort()
    return "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in pairs)


def lines(
    measurement: str,
    tag_sets: Sequence[str],
    line_tags: I64,
    fields: Sequence[str],
    values: F64,
    ts: I64,
) -> bytes:
    """One line per row of ``values`` (rows x fields): measurement, ``tag_sets[line_tags[i]]``
    (from :func:`tag_set`), every field, timestamp ``ts[i]``. Non-finite values have no
    line-protocol form and raise ValueError."""
    n, width = values.shape
    if width != len(fields) or line_tags.size != n or ts.size != n:
        raise ValueError("values must be lines x fields, with one tag set and ts per line")
    if not np.isfinite(values).all():
        raise ValueError("line protocol has no NaN or infinite floats")
    if n == 0:
        return b""
    texts = orjson.dumps(values.ravel().tolist())[1:-1].decode().split(",")
    keys = [escape_key(f) + "=" for f in fields]
    head = escape_measurement(measurement)
    out = []
    for i, (tags, t) in enumerate(zip(line_tags.tolist(), ts.tolist(), strict=True)):
        row = texts[i * width : (i + 1) * width]
        out.append(
            f"{head}{tag_sets[tags]} {','.join(k + v for k, v in zip(keys, row, strict=True))} {t}"
        )
    return ("\n".join(out) + "\n").encode()
