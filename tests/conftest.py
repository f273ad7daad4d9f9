"""Shared fixtures: real servers (tansu, Valkey, moto S3) on free loopback ports.

Servers are session-scoped and die with the test process. Tests isolate themselves with
unique topic names (see ``settings_factory``) rather than separate brokers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strata.servers import RunningServer, start_moto, start_tansu, start_valkey
from strata.settings import CommonSettings

# Nothing in the tests may reach the internet (boto3 would probe EC2 metadata otherwise).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def tansu(server_logs: Path) -> Iterator[RunningServer]:
    server = start_tansu(server_logs / "tansu")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey(server_logs: Path) -> Iterator[RunningServer]:
    server = start_valkey(server_logs / "valkey")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto(server_logs: Path) -> Iterator[RunningServer]:
    server = start_moto(server_logs / "moto")
    yield server
    server.stop()


SettingsFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def strata_env(tansu: RunningServer, valkey: RunningServer, tmp_path: Path) -> dict[str, str]:
    """``STRATA_*`` environment for one test: unique topics, its own data dir and keys."""
    run = uuid.uuid4().hex[:8]
    return {
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        "STRATA_KAFKA_BOOTSTRAP": tansu.address,
        "STRATA_REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
        "STRATA_TOPIC_POINTS": f"points-{run}",
        "STRATA_TOPIC_SERIES": f"series-{run}",
        "STRATA_TOPIC_DEAD_LETTER": f"dead-letter-{run}",
        "STRATA_PARTITIONS": "3",
        "STRATA_SESSION_TIMEOUT_MS": "2000",
    }


@pytest.fixture
def common_settings(strata_env: dict[str, str]) -> CommonSettings:
    fields = {k.removeprefix("STRATA_").lower(): v for k, v in strata_env.items()}
    return CommonSettings.model_validate(fields)
