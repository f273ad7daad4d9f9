"""Monitor evaluator settings: :class:`strata.settings.StoreReaderSettings` (the fields it
shares with the query service) plus the evaluator's and the webhook notifier's own fields
(``STRATA_*`` environment, read once at start and passed down). Every field is listed in
docs/monitors.md.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from heartbeat.gate import POINT_TIERS, SKETCH_TIERS
from strata.settings import StoreReaderSettings


class EvaluatorSettings(StoreReaderSettings):
    """``STRATA_*`` environment of the monitor evaluator (``heartbeat/evaluator.py``)."""

    interval_seconds: float = Field(
        default=10.0, gt=0, description="every monitor is evaluated this often"
    )
    max_delay_seconds: int = Field(
        default=120,
        ge=0,
        description="a monitor whose data is complete only further back than this (behind "
        "now - evaluation_delay) is not evaluated: it holds its states and reports 'delayed'",
    )
    redis_timeout_seconds: float = Field(
        default=2.0, gt=0, description="socket timeout of the monitor store's Redis calls"
    )
    transitions_kept: int = Field(
        default=1000, ge=1, description="transitions kept per monitor in its log"
    )
    webhooks: dict[str, str] = Field(
        default_factory=dict,
        description='webhook name -> URL, as JSON: STRATA_WEBHOOKS=\'{"ops": "http://..."}\'; '
        "a monitor message naming @webhook-ops posts its transitions there",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="timeout of one webhook POST"
    )
    webhook_retry_initial_seconds: float = Field(
        default=1.0, gt=0, description="wait before the first retry of a failed webhook POST"
    )
    webhook_retry_max_seconds: float = Field(
        default=300.0, gt=0, description="the retry wait doubles per attempt up to this"
    )
    delivery_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often the outbox is checked for due notifications"
    )
    delivered_kept_seconds: int = Field(
        default=7 * 86400, ge=0, description="how long delivered event ids are remembered"
    )

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not name or not all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
                raise ValueError(f"webhook name {name!r}: letters, digits, '_' and '-' only")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {name!r}: URL must start with http:// or https://")
        return value

    @classmethod
    def load(cls) -> EvaluatorSettings:
        return cls()


# The tiers whose watermark gates a monitor (heartbeat/gate.py): the first with an owner.
GATE_POINT_TIERS = POINT_TIERS
GATE_SKETCH_TIERS = SKETCH_TIERS
DEFAULT_PORT = 8102


class HeartbeatSettings(EvaluatorSettings):
    """``STRATA_*`` environment of ``python -m heartbeat`` (docs/heartbeats.md)."""

    intake_url: str = Field(
        default="http://127.0.0.1:8100", description="intake's public URL the emitter posts to"
    )
    heartbeat_api_key: str | None = Field(
        default=None,
        description="API key of the heartbeat org (STRATA_HEARTBEAT_ORG); none: no heartbeats",
    )
    emit_interval_seconds: float = Field(
        default=1.0, gt=0, description="one heartbeat every this many seconds"
    )
    gate_point_tiers: list[str] = Field(
        default=list(GATE_POINT_TIERS),
        description="point tiers whose watermark gates a monitor: the first with an owner",
    )
    gate_sketch_tiers: list[str] = Field(
        default=list(GATE_SKETCH_TIERS),
        description="sketch tiers whose watermark gates a percentile monitor: the first with "
        "an owner",
    )

    @property
    def port(self) -> int:
        return self.http_port if self.http_port is not None else DEFAULT_PORT
