"""Pure tier planning: which point tier serves which part of a query range, at which resolution.

Contract (docs/architecture.md, "Planner: stitching tiers"): tiers are tried freshest first
(ram, rocks, archive); each serves the part of the range inside its coverage that no fresher
tier serves. A tier only ever serves *whole* buckets of the resolution step inside its
coverage, so every split point is a multiple of the step and every stored bucket comes from
exactly one tier (no point is counted twice, none is lost at a boundary). A bucket that no
tier holds whole — the unaligned edges of the query range, or the partial bucket at the start
of a tier's coverage with nothing older behind it — is planned again at the next finer
resolution (1h -> 1m -> raw), so cost stays proportional to output points while the edges
stay exact.

What stays uncovered at raw resolution is either *before history* (older than the start
of every tier's history for the partition: its advertised coverage, including tiers that
just failed, or for a tier advertising nothing now, unregistered or restarting, the
coverage start the query process remembers it advertising, :mod:`query.history`; no tier
held points there, so the answer there is empty) or a real gap, and a real gap raises
:class:`Uncovered` (HTTP 503 naming the unavailable tiers, the partition and range).

No I/O here: the stitcher (:mod:`query.stitch`) calls :func:`plan_segments` again with the
failed tier added whenever a read fails, and the failed segments move to the next tier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from strata.rollup import RESOLUTIONS

# Freshest first: the planner's preference order.
TIER_ORDER: tuple[str, ...] = ("ram", "rocks", "archive")
# Tiers whose advertised upper bound is "now" (the live edge): they also serve points
# stamped after the moment they published their coverage (intake accepts points up to
# 10 minutes in the future). The archive's upper bound is its newest complete upload.
LIVE_TIERS: frozenset[str] = frozenset({"ram", "rocks"})
# Finer resolution to fall back to for buckets no tier holds whole.
_FINER: dict[str, str] = {"1h": "1m", "1m": "raw"}
_FAR_FUTURE = 2**62


@dataclass(frozen=True, slots=True)
class TierSource:
    """The instance of one tier that owns the query's partition, and what it covers.

    ``coverage`` is the inclusive ``(lo, hi)`` in Unix seconds the instance advertises for
    the partition, or None when it advertises nothing (e.g. a RAM store still replaying).
    ``remembered`` is the coverage start last seen advertised for the partition, for a tier
    advertising nothing now; such a tier may also have no instance at all (``instance`` and
    ``address`` empty): it serves nothing but still marks where history starts.
    """

    tier: str
    instance: str
    address: str
    coverage: tuple[int, int] | None
    remembered: int | None = None
    #: the query's partition, sent with reads so an instance that no longer (or not yet)
    #: serves it refuses instead of answering with part of the data
    partition: int | None = None

    @property
    def live(self) -> bool:
        return self.tier in LIVE_TIERS

    def history_start(self) -> int | None:
        """The oldest time this tier is known to hold points from, if known at all."""
        return self.coverage[0] if self.coverage is not None else self.remembered

    def bounds(self) -> tuple[int, int] | None:
        """Coverage with the live edge opened to the far future."""
        if self.coverage is None:
            return None
        lo, hi = self.coverage
        return lo, _FAR_FUTURE if self.live else hi


@dataclass(frozen=True, slots=True)
class Segment:
    """Read ``[start, end]`` (inclusive) from ``source`` at ``resolution``.

    For ``1m``/``1h`` both bounds are bucket-aligned: ``start`` a multiple of the step and
    ``end + 1`` too.
    """

    source: TierSource
    resolution: str
    start: int
    end: int


class Uncovered(LookupError):
    """Part of the range after the partition's history start is served by no tier.

    ``tiers`` are the tiers that hold (part of) the range but cannot serve it now (down,
    unregistered or restarting), freshest first; empty when no tier is known to hold it.
    """

    def __init__(
        self,
        partition: int | None,
        start: int,
        end: int,
        failures: Mapping[str, str],
        tiers: Sequence[str] = (),
    ) -> None:
        where = f"partition {partition}" if partition is not None else "the metric's partition"
        why = "; ".join(f"{t}: {r}" for t, r in failures.items())
        if tiers:
            message = f"{', '.join(tiers)} unavailable for {where} [{start}, {end}]; retry later"
            message += f" ({why})" if why else ""
        else:
            message = f"no point store can serve {where} for [{start}, {end}]" + (
                f" ({why})" if why else " (no tier covers it; stores may be starting)"
            )
        super().__init__(message)
        self.partition = partition
        self.start = start
        self.end = end
        self.tiers = tuple(tiers)


Span = tuple[int, int]


def _subtract(spans: list[Span], lo: int, hi: int) -> tuple[list[Span], list[Span]]:
    """Split ``spans`` into (parts inside [lo, hi], parts outside)."""
    inside: list[Span] = []
    outside: list[Span] = []
    for a, b in spans:
        if b < lo or a > hi:
            outside.append((a, b))
            continue
        if a < lo:
            outside.append((a, lo - 1))
        inside.append((max(a, lo), min(b, hi)))
        if b > hi:
            outside.append((hi + 1, b))
    return inside, outside


def _assign(
    spans: list[Span], resolution: str, sources: Sequence[TierSource], out: list[Segment]
) -> list[Span]:
    """Give whole buckets of ``spans`` (aligned to the step) to the freshest covering tier;
    refine the rest at finer resolutions; return what stays uncovered at raw."""
    step = RESOLUTIONS[resolution]
    for src in sources:
        bounds = src.bounds()
        if bounds is None or not spans:
            continue
        lo, hi = bounds
        first = -(-lo // step) * step  # first bucket starting inside coverage
        last_end = hi if hi == _FAR_FUTURE else (hi + 1) // step * step - 1
        if first > last_end:
            continue
        inside, spans = _subtract(spans, first, last_end)
        out.extend(Segment(src, resolution, a, b) for a, b in inside)
    finer = _FINER.get(resolution)
    if finer is None or not spans:
        return spans
    return _assign(spans, finer, sources, out)


def _aligned_core(start: int, end: int, step: int) -> Span | None:
    """The largest bucket-aligned sub-range of [start, end], if any."""
    lo = -(-start // step) * step
    hi = (end + 1) // step * step - 1
    return (lo, hi) if lo <= hi else None


def plan_segments(
    start: int,
    end: int,
    resolution: str,
    sources: Sequence[TierSource],
    *,
    partition: int | None,
    failed: Mapping[str, str] | None = None,
) -> list[Segment]:
    """Segments covering [start, end] (inclusive), freshest tier first, then by time.

    ``sources`` are the tiers that own the partition (missing tiers absent, or present
    without coverage but with a ``remembered`` history start); ``failed`` maps tiers whose
    read failed to the reason. Tiers that failed or advertise nothing serve nothing, but
    their history still marks where history starts, so what only they hold is a gap.
    Raises :class:`Uncovered` for a real gap, ``ValueError`` for ``start > end`` or an
    unknown resolution.
    """
    if start > end:
        raise ValueError("start must not be after end")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    failed = failed or {}
    rank = {t: i for i, t in enumerate(TIER_ORDER)}
    ordered = sorted(sources, key=lambda s: rank.get(s.tier, len(rank)))
    usable = [s for s in ordered if s.tier not in failed and s.coverage is not None]

    out: list[Segment] = []
    left = _plan_range(start, end, resolution, usable, out)

    # History starts at the oldest start any tier is known to hold, advertised now or
    # remembered (a tier that is unregistered or restarting still holds its history). With
    # nothing known at all (stores starting or replaying) every part of the range is a gap.
    history = [h for s in ordered if (h := s.history_start()) is not None]
    history_start = min(history) if history else -_FAR_FUTURE
    gaps = [(max(a, history_start), b) for a, b in left if b >= history_start]
    if gaps:
        lo, hi = min(a for a, _ in gaps), max(b for _, b in gaps)
        down = [s for s in ordered if s.tier in failed or s.coverage is None]
        holding = tuple(dict.fromkeys(s.tier for s in down if _may_hold(s, lo, hi)))
        raise Uncovered(partition, lo, hi, dict(failed), holding)
    out.sort(key=lambda s: (rank.get(s.source.tier, len(rank)), s.start))
    return out


def _may_hold(source: TierSource, lo: int, hi: int) -> bool:
    """Whether ``source``'s known history overlaps [lo, hi] (its end is only known from an
    advertised coverage: a remembered tier may hold anything after its start)."""
    start = source.history_start()
    if start is None or start > hi:
        return False
    bounds = source.bounds()
    return bounds is None or bounds[1] >= lo


def _plan_range(
    start: int, end: int, resolution: str, sources: Sequence[TierSource], out: list[Segment]
) -> list[Span]:
    """Plan [start, end]: its bucket-aligned core at ``resolution``, the unaligned head and
    tail at finer resolutions; return what stays uncovered at raw."""
    step = RESOLUTIONS[resolution]
    core = _aligned_core(start, end, step)
    if core is None:
        finer = _FINER.get(resolution)
        if finer is None:  # raw: step 1 always has a core
            return [(start, end)]
        return _plan_range(start, end, finer, sources, out)
    left = _assign([core], resolution, sources, out)
    finer = _FINER.get(resolution)
    for a, b in ((start, core[0] - 1), (core[1] + 1, end)):
        if a <= b and finer is not None:
            left += _plan_range(a, b, finer, sources, out)
    return left


def tiers_used(segments: Sequence[Segment]) -> tuple[str, ...]:
    """Tiers serving ``segments``, oldest first (archive, rocks, ram): the header order."""
    used = {s.source.tier for s in segments}
    return tuple(t for t in reversed(TIER_ORDER) if t in used)
