"""IntakeSettings from STRATA_* environment (intake.settings)."""

from __future__ import annotations

import pytest

from intake.settings import DEFAULT_PORT, IntakeSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATA_HTTP_PORT", raising=False)
    s = IntakeSettings()
    assert s.port == DEFAULT_PORT == 8100
    assert s.late_window_seconds == 3600
    assert s.future_window_seconds == 600
    assert s.produce_timeout_seconds == 5.0
    assert s.identity_cache_size == 100_000


def test_per_org_late_window_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_LATE_WINDOW_OVERRIDES", '{"big": 86400}')
    monkeypatch.setenv("STRATA_HTTP_PORT", "9123")
    s = IntakeSettings()
    assert s.late_window_for("big") == 86400
    assert s.late_window_for("small") == 3600
    assert s.port == 9123


def test_producer_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IntakeSettings().compression == "lz4"
    monkeypatch.setenv("STRATA_COMPRESSION", "zstd")
    assert IntakeSettings().compression == "zstd"
    monkeypatch.setenv("STRATA_COMPRESSION", "brotli")
    with pytest.raises(ValueError, match="compression"):
        IntakeSettings()
