"""Chaos fixtures: one seeded run and one pipeline of real processes per module.

The seed decides the workload and the fault schedule; it is printed in the report header and
by every test, and ``STRATA_CHAOS_SEED=<n>`` replays a run exactly (up to the machine's
timing, which decides where in a store's life a kill lands — that is why the tests count
where the kills landed).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from strata.servers import RunningServer
from tests.e2e.tiers_support import POINT_TIERS, Cluster, archive_env, require_modules


def _seed() -> int:
    raw = os.environ.get("STRATA_CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(2**31)


# Late points go up to two closed hours back (tests/chaos/test_kill_point_stores.py).
LATE_WINDOW_SECONDS = 4 * 3600

# Decided once per test process, so the header and the tests agree on it.
SEED = _seed()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: seeded fault injection on real processes")


def pytest_report_header() -> str:
    return f"chaos seed: {SEED} (STRATA_CHAOS_SEED={SEED} replays it)"


@pytest.fixture(scope="session")
def chaos_seed() -> int:
    print(f"chaos seed: {SEED} (STRATA_CHAOS_SEED={SEED} replays it)")
    return SEED


@pytest.fixture(scope="module")
def chaos_cluster(
    tansu: RunningServer, valkey: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Intake, query, both indexes and the three point tiers (archive on the local dir,
    flushing every half second so uploads, and kills between upload and commit, happen
    often).

    The background work of the durable tiers is made frequent enough that kills land in it
    (the production settings would leave it idle for the whole run): rocks folds staged
    points of an hour one second after the hour closed (production: 600 s), looking every
    quarter second (stores/rocks/settings.py), and the archive compacts every quarter second
    (stores/archive/settings.py; production: hourly). Intake accepts points 4 h old, so the
    flow can write into hours that are already closed.

    Rocks also polls Kafka for at most 50 ms (production: 500 ms; stores/runtime/settings.py)
    so that, keeping up, it applies the flow one to three requests per batch: a batch of the
    flow's run of sparse late requests becomes a staging chunk wholly in a closed hour, which
    folds a second later (a chunk holding a point of the open hour waits for it to close)."""
    require_modules(("intake", "query", "tags", "inverted", *POINT_TIERS))
    base = {
        "STRATA_KAFKA_BOOTSTRAP": tansu.address,
        "STRATA_REDIS_URL": f"redis://127.0.0.1:{valkey.port}/0",
        "STRATA_PARTITIONS": "3",
    }
    overrides = {
        "intake": {"STRATA_LATE_WINDOW_SECONDS": str(LATE_WINDOW_SECONDS)},
        "archive": archive_env(None, flush_seconds=0.5)
        | {"STRATA_ARCHIVE_COMPACT_INTERVAL_SECONDS": "0.25"},
        # Small batches: more apply/commit cycles, so more kills land between the two.
        "ram": {"STRATA_BATCH_MAX_MESSAGES": "20"},
        "rocks": {
            "STRATA_BATCH_MAX_MESSAGES": "20",
            "STRATA_FOLD_DELAY_SECONDS": "1",
            "STRATA_FOLD_CHECK_SECONDS": "0.25",
            "STRATA_POLL_TIMEOUT_SECONDS": "0.05",
        },
    }
    cluster = Cluster.create(base, tmp_path_factory.mktemp("chaos"), overrides)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
