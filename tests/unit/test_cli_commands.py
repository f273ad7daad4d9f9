"""``strata`` commands that need no running servers, and the data-directory files."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from strata import servers
from strata.cli import main
from strata.endpoints import (
    CREDENTIALS_FILE,
    EndpointsFileError,
    default_org_keys,
    read_json,
    write_json_atomic,
)
from strata.keys import KeyStore
from strata.servers import free_port


def test_keys_create_prints_working_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--org", "acme", "--data-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    store = KeyStore(tmp_path / "keys.json")
    assert out["org"] == "acme"
    assert store.org_for_api_key(out["api_key"]) == "acme"
    assert store.org_for_app_key(out["app_key"]) == "acme"


def test_keys_create_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--org", "acme", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "api_key" in out and "app_key" in out and "shown only once" in out


def test_keys_create_rejects_a_bad_org(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--org", "a|b", "--data-dir", str(tmp_path)]) == 2
    assert "org must be" in capsys.readouterr().err
    assert not (tmp_path / "keys.json").exists()


def test_run_rejects_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "rocks-and-roll"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_up_rejects_bad_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--data-dir", str(tmp_path), "--intake-port", "70000"]) == 2
    assert "intake_port" in capsys.readouterr().err


def test_up_rejects_two_servers_on_one_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["up", "--data-dir", str(tmp_path), "--query-port", "18555", "--redis-port", "18555"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "redis_port and query_port are both 18555" in err
    assert not (tmp_path / "logs").exists()  # refused before any server was started


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # A probe only shows a port is free at that moment, so the same number may come up again
    # before its server binds it; here every candidate comes up twice and 41002 is busy.
    candidates = iter([41000, 41000, 41001, 41001, 41002, 41003, 41004])
    monkeypatch.setattr(servers, "_handed_out", set())
    monkeypatch.setattr(servers, "_candidates", lambda: candidates)
    monkeypatch.setattr(servers, "_bindable", lambda port: port != 41002)
    assert servers.free_port() == 41000
    assert servers.free_port() == 41001
    assert servers.free_port(avoid=(41003,)) == 41004
    with pytest.raises(servers.ServerFailed, match="no free loopback port"):
        servers.free_port()  # the candidates have run out


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    spans = servers.port_spans()
    if spans:  # else the kernel's range covers nearly every port and its choices are taken
        assert all(any(a <= p <= b for a, b in spans) for p in ports)
    for p in ports[:20]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))


def test_status_when_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 1 on loopback refuses at once: the registry is reported unreachable, no crash.
    monkeypatch.setenv("STRATA_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["status", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "not running" in out and "unreachable" in out


def test_status_reports_a_corrupt_endpoints_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "endpoints.json").write_text("{half")
    assert main(["status", "--data-dir", str(tmp_path)]) == 2
    assert "endpoints.json: not valid JSON" in capsys.readouterr().err


def test_private_json_is_owner_only_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    path.write_text("old")
    path.chmod(0o644)
    write_json_atomic(path, {"k": 1}, private=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_json(path) == {"k": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]  # no temp file left


def test_read_json_rejects_non_objects(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[1]")
    with pytest.raises(EndpointsFileError, match="expected a JSON object"):
        read_json(tmp_path / "a.json")
    assert read_json(tmp_path / "missing.json") is None


def test_default_org_keys_are_created_once_then_reused(tmp_path: Path) -> None:
    keys_path = tmp_path / "keys.json"
    first, created = default_org_keys(tmp_path, keys_path, "main")
    assert created
    again, created_again = default_org_keys(tmp_path, keys_path, "main")
    assert not created_again and again == first
    assert stat.S_IMODE((tmp_path / CREDENTIALS_FILE).stat().st_mode) == 0o600


def test_default_org_keys_are_recreated_when_keys_file_lost_them(tmp_path: Path) -> None:
    keys_path = tmp_path / "keys.json"
    first, _ = default_org_keys(tmp_path, keys_path, "main")
    keys_path.unlink()
    second, created = default_org_keys(tmp_path, keys_path, "main")
    assert created and second.api_key != first.api_key
    assert KeyStore(keys_path).org_for_api_key(second.api_key) == "main"


def test_up_rejects_a_bad_org_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = [str(free_port()) for _ in range(4)]
    argv = ["up", "--data-dir", str(tmp_path), "--org", "a|b", "--intake-port", ports[0]]
    argv += ["--query-port", ports[1], "--kafka-port", ports[2], "--redis-port", ports[3]]
    assert main(argv) == 1
    assert "org must be" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # no server was started
