"""docker-compose.yml runs services that exist, configured only with settings that exist."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from strata.settings import CommonSettings
from strata.supervisor import SERVICE_MODULES

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def strata_services() -> dict[str, dict[str, Any]]:
    """Services whose command is the ``strata`` CLI."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if isinstance(svc.get("command"), list) and svc["command"][:1] == ["strata"]
    }


def settings_class(module: str) -> type[CommonSettings]:
    """The service's own settings class if ``<module>.settings`` defines one, else the base."""
    try:
        mod = importlib.import_module(f"{module}.settings")
    except ImportError:
        return CommonSettings
    found = [
        cls
        for _, cls in inspect.getmembers(mod, inspect.isclass)
        if issubclass(cls, CommonSettings) and cls.__module__ == mod.__name__
    ]
    # The most derived class defined there (RamSettings over a base it might also define).
    return max(found, key=lambda c: len(c.__mro__)) if found else CommonSettings


def test_infrastructure_is_there() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    env = services["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"]  # KRaft: no ZooKeeper
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= 3
    assert services["redis"]["image"].startswith("redis")
    assert services["minio"]["image"].startswith("minio/minio")


def test_every_service_runs_under_compose() -> None:
    run = {svc["command"][2] for svc in strata_services().values() if svc["command"][1] == "run"}
    assert run == set(SERVICE_MODULES)


@pytest.mark.parametrize("name", sorted(strata_services()))
def test_command_names_an_existing_service(name: str) -> None:
    command = strata_services()[name]["command"]
    if command[1] != "run":
        assert command[1] in {"topics", "keys"}
        return
    module = SERVICE_MODULES[command[2]]
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{name}: module {module} does not exist")
    if importlib.util.find_spec(f"{module}.__main__") is None:
        pytest.skip(f"{module}.__main__ not written yet")


@pytest.mark.parametrize("name", sorted(strata_services()))
def test_every_strata_variable_is_a_setting(name: str) -> None:
    svc = strata_services()[name]
    command = svc["command"]
    module = SERVICE_MODULES.get(command[2]) if command[1] == "run" else None
    cls = settings_class(module) if module else CommonSettings
    env: dict[str, Any] = svc.get("environment", {})
    unknown = [
        k
        for k in env
        if k.startswith("STRATA_") and k.removeprefix("STRATA_").lower() not in cls.model_fields
    ]
    assert not unknown, f"{name}: {unknown} are not fields of {cls.__name__}"
    # And the values parse: the service would not start otherwise.
    cls.model_validate(
        {k.removeprefix("STRATA_").lower(): v for k, v in env.items() if k.startswith("STRATA_")}
    )


def test_durable_tiers_keep_their_data() -> None:
    """rocks keeps its RocksDB on a volume; the archive writes to MinIO over S3 with an
    explicit endpoint and credentials (never the AWS default chain or the internet), into a
    bucket the one-shot ``buckets`` service creates before the archive starts."""
    services = compose()["services"]
    assert any(v.endswith(":/data") for v in services["rocks"]["volumes"])
    archive = services["archive"]
    env = archive["environment"]
    s3 = {k: v for k, v in env.items() if k.startswith("STRATA_") and "S3" in k}
    assert any(v.startswith("http://minio:9000") for v in s3.values()), s3
    secret = services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert secret in s3.values(), "archive must use MinIO's credentials explicitly"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert archive["depends_on"]["buckets"]["condition"] == "service_completed_successfully"
    bucket_cmd = " ".join(services["buckets"]["command"])
    assert any(f"local/{v}" in bucket_cmd for v in s3.values()), "bucket is not created"
