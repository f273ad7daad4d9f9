"""The server launchers fail loudly, and the registry round-trips through real Valkey."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.registry import Registration, Registry
from strata.servers import RunningServer, ServerFailed, start_tansu


def test_tansu_refuses_a_busy_port(tansu: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match="already in use"):
        start_tansu(tmp_path, port=tansu.port)


def test_failed_start_reports_the_output(tmp_path: Path) -> None:
    with pytest.raises(ServerFailed) as err:
        start_tansu(tmp_path, storage="nosuchengine://x/")
    assert "tansu exited" in str(err.value)


def test_registry_publish_discover_withdraw(valkey: RunningServer) -> None:
    reg = Registry(f"redis://127.0.0.1:{valkey.port}/0")
    entry = Registration(
        kind="ramtest",
        instance="i1",
        address="http://127.0.0.1:1",
        topic="t",
        partition_count=4,
        partitions=[0, 2],
        coverage={0: [10, 20]},
        offsets={0: 5},
    )
    reg.publish(entry, ttl_seconds=5)
    found = reg.discover("ramtest")
    assert found == [entry]
    reg.withdraw(entry)
    assert reg.discover("ramtest") == []
    reg.close()
