"""The pure orchestration rules of ``strata up``: backoff, start-up failure, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.settings import CommonSettings
from strata.supervisor import (
    START_ORDER,
    Phase,
    RestartPolicy,
    Supervision,
    UnknownComponent,
    component_env,
    plan_components,
)

PORTS = {
    "intake": 8100,
    "query": 8101,
    "ram": 9001,
    "tags": 9002,
    "inverted": 9003,
    "rocks": 9004,
    "archive": 9005,
    "heartbeat": 9006,
}


def started_supervision(policy: RestartPolicy | None = None) -> Supervision:
    sup = Supervision(plan_components(PORTS), policy or RestartPolicy(), start_timeout=10.0)
    for i, name in enumerate(START_ORDER):
        sup.spawned(name, 100 + i, now=0.0)
    for name in START_ORDER:
        sup.healthy(name, now=1.0)
    return sup


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(initial=0.5, factor=2.0, maximum=3.0)
    assert [policy.delay(n) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_plan_needs_every_port() -> None:
    with pytest.raises(ValueError, match="no port for query"):
        plan_components({k: v for k, v in PORTS.items() if k != "query"})
    assert [c.module for c in plan_components(PORTS)] == [
        "intake",
        "stores.ram",
        "stores.rocks",
        "stores.archive",
        "stores.tags",
        "stores.inverted",
        "query",
        "heartbeat",
    ]


def test_exit_during_start_is_fatal_and_named() -> None:
    sup = Supervision(plan_components(PORTS))
    for name in START_ORDER:
        sup.spawned(name, 1, now=0.0)
    sup.healthy("intake", now=1.0)
    decision = sup.exited("ram", 1, now=2.0)
    assert not decision.restart
    assert decision.message == "ram store exited with 1 during start"
    assert not sup.started_up


def test_started_up_only_when_every_component_is_healthy() -> None:
    sup = Supervision(plan_components(PORTS))
    for name in START_ORDER:
        sup.spawned(name, 1, now=0.0)
    for name in START_ORDER:
        if name != "query":
            sup.healthy(name, now=1.0)
            assert not sup.started_up
    line = sup.healthy("query", now=1.0)
    assert sup.started_up
    assert line == "query is up on http://127.0.0.1:8101 (pid 1)"


def test_crash_after_start_restarts_with_backoff() -> None:
    sup = started_supervision(RestartPolicy(initial=0.5, maximum=30.0, stable_after=30.0))
    d1 = sup.exited("ram", -9, now=2.0)
    assert d1.restart
    assert d1.message == "ram store exited with -9; restarting in 0.5 s (restart 1)"
    assert sup.states["ram"].phase is Phase.BACKOFF
    assert sup.due(now=2.4) == []
    assert sup.due(now=2.5) == ["ram"]
    sup.spawned("ram", 555, now=2.5)
    assert sup.waiting_for_health() == ["ram"]
    assert sup.healthy("ram", now=3.0).endswith("(pid 555, restart 1)")
    # Crashing again soon after: the delay doubles.
    d2 = sup.exited("ram", 1, now=4.0)
    assert (d2.delay, sup.states["ram"].restarts) == (1.0, 2)


def test_stable_run_resets_the_backoff() -> None:
    sup = started_supervision(RestartPolicy(initial=0.5, stable_after=30.0))
    sup.exited("tags", 1, now=2.0)
    sup.spawned("tags", 7, now=2.5)
    sup.healthy("tags", now=3.0)
    sup.exited("tags", 1, now=4.0)  # unstable: 1.0 s
    sup.spawned("tags", 8, now=5.0)
    sup.healthy("tags", now=5.0)
    decision = sup.exited("tags", 1, now=100.0)  # ran 95 s: back to the first delay
    assert decision.delay == 0.5
    assert sup.states["tags"].restarts == 3


def test_start_timeout_lists_only_slow_starters() -> None:
    sup = Supervision(plan_components(PORTS), start_timeout=10.0)
    for name in START_ORDER:
        sup.spawned(name, 1, now=0.0)
    sup.healthy("intake", now=1.0)
    assert sup.timed_out(now=5.0) == []
    assert sup.timed_out(now=10.5) == [
        "ram",
        "rocks",
        "archive",
        "tags",
        "inverted",
        "query",
        "heartbeat",
    ]


def test_unknown_component_is_a_specific_error() -> None:
    with pytest.raises(UnknownComponent):
        started_supervision().exited("no-such-store", 1, now=0.0)


def test_snapshot_is_json_ready() -> None:
    sup = started_supervision()
    sup.exited("ram", -9, now=5.0)
    snap = sup.snapshot()
    assert snap["ram"] == {
        "label": "ram store",
        "module": "stores.ram",
        "url": "http://127.0.0.1:9001",
        "phase": "backoff",
        "pid": None,
        "restarts": 1,
        "last_exit": -9,
    }
    assert snap["intake"]["pid"] == 100


def test_component_env_wires_the_pipeline_and_passes_extras_through(tmp_path: Path) -> None:
    settings = CommonSettings(
        data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", redis_url="redis://x:2/0"
    )
    ram = plan_components(PORTS)[1]
    env = component_env(
        {"PATH": "/bin", "STRATA_HTTP_PORT": "1", "STRATA_EXTRA": "x"}, settings, ram
    )
    assert env["PATH"] == "/bin" and env["STRATA_EXTRA"] == "x"
    assert env["STRATA_HTTP_PORT"] == "9001"
    assert env["STRATA_ADVERTISE_URL"] == "http://127.0.0.1:9001"
    assert env["STRATA_KAFKA_BOOTSTRAP"] == "127.0.0.1:1"
    assert env["STRATA_KEYS_FILE"] == str(tmp_path / "keys.json")
    assert env["STRATA_INSTANCE_ID"] == "ram-up"
    # Every STRATA_* variable we set is a real CommonSettings field.
    fields = set(CommonSettings.model_fields)
    ours = {k.removeprefix("STRATA_").lower() for k in env if k.startswith("STRATA_")}
    assert ours - {"extra"} <= fields
