"""Agent ``SketchPayload`` intake: decode + convert, in sketches/s.

Run: ``python -m bench.bench_agent_sketches [--quick] [--sketches N] [--seed S]``.

A payload like the agent's: ``--sketches`` Sketch messages (distinct series: 8 tags and a
host each), one Dogsketch each of 100 latency-like values (lognormal around 20 ms, sigma 1,
so about 70 agent bins), encoded with the real ``protobuf`` runtime (the classes of
:func:`intake.agent_sketches.sketch_payload_class`), zstd-compressed as the agent sends it.

Measured (best of several repeats, one thread, wall clock):

- **decode** — protobuf bytes -> columns, two ways: our hand decoder
  (:func:`intake.agent_sketches.decode_sketch_payload`: a Python walk per message plus one
  numpy pass over every packed ``k``/``n``), and the ``protobuf`` (upb) runtime's
  ``ParseFromString`` followed by reading the same columns out of the message objects;
- **convert** — agent bins -> our sketches (:func:`strata.agent_mapping.from_agent_bins`);
- **parse** — the whole pure request path, :func:`intake.agent_sketches.parse_sketch_payload`
  (decode, checks, identities, window, conversion, merge by series), with a warm identity
  cache as in a running intake, and with a cold one;
- the same plus zstd decompression (intake/decode.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.machine import describe
from intake.agent_sketches import (
    DecodedPayload,
    decode_sketch_payload,
    parse_sketch_payload,
    sketch_payload_class,
)
from intake.decode import V1_LIMITS, decode_body
from intake.identity import SeriesIdentities
from intake.rejections import TimeWindow
from strata.agent_mapping import agent_keys, from_agent_bins
from strata.sketch import SketchParams

NOW = 1_700_000_000
WINDOW = TimeWindow(NOW, 3600, 600)


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def payload(rng: np.random.Generator, sketches: int, values: int) -> bytes:
    msg = sketch_payload_class()()
    for i in range(sketches):
        v = rng.lognormal(np.log(20.0), 1.0, values)
        k, n = np.unique(agent_keys(v), return_counts=True)
        s = msg.sketches.add(
            metric=f"bench.latency.{i % 20}",
            host=f"host-{i % 50}",
            tags=[f"tag{j}:value{(i * 7 + j) % 13}" for j in range(7)] + [f"series:{i}"],
        )
        s.dogsketches.add(
            ts=NOW - 10,
            cnt=values,
            min=float(v.min()),
            max=float(v.max()),
            avg=float(v.mean()),
            sum=float(v.sum()),
            k=k.tolist(),
            n=n.tolist(),
        )
    return bytes(msg.SerializeToString())


def decode_with_protobuf(body: bytes) -> DecodedPayload:
    """The columns of :class:`DecodedPayload` through the protobuf runtime (the alternative
    measured against the hand decoder; no per-field error messages)."""
    msg = sketch_payload_class()()
    msg.ParseFromString(body)
    out = DecodedPayload()
    ks: list[Any] = []
    ns: list[Any] = []
    for s in msg.sketches:
        out.metric.append(s.metric)
        out.host.append(s.host)
        out.tags.append(tuple(s.tags))
        for d in s.dogsketches:
            out.ts.append(d.ts)
            out.cnt.append(d.cnt)
            out.vmin.append(d.min)
            out.vmax.append(d.max)
            out.total.append(d.sum)
            ks.append(d.k)
            ns.append(d.n)
        out.first_row.append(len(out.ts))
    for name, lists in (("k", ks), ("n", ns)):
        lengths = np.fromiter(map(len, lists), np.int64, len(lists))
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter((x for seq in lists for x in seq), np.int64, int(offsets[-1]))
        setattr(out, f"{name}_values", values)
        setattr(out, f"{name}_offsets", offsets)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller payload, fewer repeats")
    ap.add_argument("--sketches", type=int, default=None)
    ap.add_argument("--values", type=int, default=100, help="values behind each sketch")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    sketches = args.sketches or (1_000 if args.quick else 5_000)
    repeats = 3 if args.quick else 7
    rng = np.random.default_rng(args.seed)
    print(describe())

    body = payload(rng, sketches, args.values)
    import zstandard

    wire = zstandard.ZstdCompressor(level=1).compress(body)
    print(
        f"payload: {sketches} sketches x {args.values} values, {len(body)} bytes protobuf "
        f"({len(body) / sketches:.0f} B/sketch), {len(wire)} bytes zstd"
    )

    ours = decode_sketch_payload(body)
    theirs = decode_with_protobuf(body)
    for col in ("ts", "cnt", "vmin", "vmax", "total", "metric", "host", "tags"):
        assert getattr(ours, col) == getattr(theirs, col), col
    for col in ("k_values", "k_offsets", "n_values", "n_offsets"):
        assert np.array_equal(getattr(ours, col), getattr(theirs, col)), col

    def rate(seconds: float) -> str:
        return f"{sketches / seconds:>10,.0f} sketches/s ({seconds * 1e3:7.1f} ms)"

    t_hand = best(lambda: decode_sketch_payload(body), repeats)
    t_upb = best(lambda: decode_with_protobuf(body), repeats)
    print(f"decode, hand decoder (numpy k/n):   {rate(t_hand)}")
    print(f"decode, protobuf runtime (upb):     {rate(t_upb)}")

    params = SketchParams()
    rows = ours.rows
    sid = np.arange(rows, dtype=np.uint64)
    ts = np.array(ours.ts, dtype=np.int64)

    def convert() -> object:
        return from_agent_bins(
            params,
            sid,
            ts,
            ours.cnt,
            ours.total,
            ours.vmin,
            ours.vmax,
            ours.k_offsets,
            ours.k_values,
            ours.n_values,
        )

    t_conv = best(convert, repeats)
    bins = int(ours.k_values.size)
    print(f"convert agent bins -> our sketches: {rate(t_conv)}, {bins / t_conv:,.0f} bins/s")

    warm = SeriesIdentities(sketches * 2)
    parse_sketch_payload(body, "bench", WINDOW, warm)
    t_warm = best(lambda: parse_sketch_payload(body, "bench", WINDOW, warm), repeats)
    t_cold = best(lambda: parse_sketch_payload(body, "bench", WINDOW), repeats)
    print(f"parse (warm identity cache):        {rate(t_warm)}")
    print(f"parse (cold identity cache):        {rate(t_cold)}")

    def full() -> object:
        raw = decode_body(wire, "zstd", V1_LIMITS)
        return parse_sketch_payload(raw, "bench", WINDOW, warm)

    print(f"zstd + parse (warm):                {rate(best(full, repeats))}")


if __name__ == "__main__":
    main()
