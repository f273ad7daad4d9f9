"""Validation of request parameters (pure): each error names the offending parameter."""

from __future__ import annotations

import math

# 9999-12-31T23:59:59Z: later "timestamps" are typos (often milliseconds for seconds).
MAX_TIMESTAMP = 253_402_300_799


class BadParameter(ValueError):
    """A request parameter is missing or invalid; the message names it."""


def required(name: str, raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise BadParameter(f"missing required parameter '{name}'")
    return raw


def parse_timestamp(name: str, raw: str | None) -> int:
    """Unix seconds from an integer or decimal string (fractions are floored)."""
    text = required(name, raw).strip()
    try:
        value = int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            raise BadParameter(
                f"parameter '{name}' must be a Unix timestamp in seconds, got {text[:40]!r}"
            ) from None
        if not math.isfinite(f):
            raise BadParameter(f"parameter '{name}' must be a finite number") from None
        value = math.floor(f)
    if not 0 <= value <= MAX_TIMESTAMP:
        raise BadParameter(
            f"parameter '{name}' is out of range (0..{MAX_TIMESTAMP} Unix seconds), got {value}"
        )
    return value


def parse_range(raw_from: str | None, raw_to: str | None) -> tuple[int, int]:
    start = parse_timestamp("from", raw_from)
    end = parse_timestamp("to", raw_to)
    if start > end:
        raise BadParameter(f"parameter 'from' ({start}) is after parameter 'to' ({end})")
    return start, end
