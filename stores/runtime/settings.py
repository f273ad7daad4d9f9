"""Settings every store process shares (subclassed by each store's own settings)."""

from __future__ import annotations

from pydantic import Field

from strata.settings import CommonSettings


class StoreSettings(CommonSettings):
    """:class:`CommonSettings` plus the consumer-runtime knobs (docs/stores.md)."""

    group_prefix: str = Field(
        default="strata",
        min_length=1,
        description="consumer group = <prefix>-<kind>; tests set a unique prefix per run",
    )
    # A backlogged store applies full batches: rocks re-encodes each touched hour block
    # once per batch, so larger batches cost less per point (bench_peers: rocks' CPU fell
    # 15 % from 500 to 2 000, docs/benchmarks.md). A store keeping up takes what has
    # arrived, far fewer.
    batch_max_messages: int = Field(
        default=2000, ge=1, description="most messages taken from Kafka per applied batch"
    )
    poll_timeout_seconds: float = Field(
        default=0.5, gt=0, description="longest wait for a batch before the loop idles"
    )
    registry_interval_seconds: float = Field(
        default=2.0, gt=0, description="how often the registry entry is refreshed"
    )
    registry_ttl_seconds: int = Field(
        default=10, ge=1, description="TTL of the registry entry (a crashed instance lapses)"
    )
    dead_letter_timeout_seconds: float = Field(
        default=10.0, gt=0, description="longest wait for the broker to take dead letters"
    )

    def group_id(self, kind: str) -> str:
        return f"{self.group_prefix}-{kind}"

    def instance_name(self, kind: str) -> str:
        """``instance_id`` or ``<kind>-<host>-<pid>``: unique per process."""
        if self.instance_id:
            return self.instance_id
        import os
        import socket

        return f"{kind}-{socket.gethostname()}-{os.getpid()}"

    def address(self, port: int) -> str:
        return self.advertise_url or f"http://{self.http_host}:{port}"
