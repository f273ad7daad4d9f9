"""Deterministic, order-independent resolution of duplicate (sid, ts) points (DESIGN §2).

The IRONdb rule: among points with the same series and timestamp, the one with the largest
absolute value wins; ties go to the larger value (so +x beats -x, and 0.0 beats -0.0, so
even the sign of zero does not depend on arrival order). The rule is a total order on
values, hence commutative, associative and idempotent: any replay or merge order gives the
same answer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from strata.arrays import order_by_sid
from strata.model import SID_DTYPE, TS_DTYPE, VALUE_DTYPE

Sids = npt.NDArray[np.uint64]
Times = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


def resolve(sid: Sids, ts: Times, value: Values) -> tuple[Sids, Times, Values]:
    """Sort by (sid, ts) and keep one winner per (sid, ts)."""
    if sid.size == 0:
        return (
            np.empty(0, SID_DTYPE),
            np.empty(0, TS_DTYPE),
            np.empty(0, VALUE_DTYPE),
        )
    # Duplicates are rare (a replay, a retried request), and sorting on (sid, ts) alone
    # takes a third of the time of the five keys the rule needs: try that first.
    order = order_by_sid(sid, ts)
    s, t = sid[order], ts[order]
    if not ((s[1:] == s[:-1]) & (t[1:] == t[:-1])).any():
        return s, t, value[order]
    # lexsort sorts by the last key first: sid, then ts, then preference (winner first);
    # signbit breaks the one tie -value leaves: 0.0 before -0.0.
    order = np.lexsort((np.signbit(value), -value, -np.abs(value), ts, sid))
    s, t, v = sid[order], ts[order], value[order]
    first = np.ones(s.size, dtype=bool)
    first[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return s[first], t[first], v[first]
