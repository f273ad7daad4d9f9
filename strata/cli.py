"""The ``strata`` command: ``up``, ``run``, ``keys create``, ``status``.

``strata up`` is the thin process shell around :mod:`strata.supervisor`: it starts the real
servers and the service processes, feeds their exits and health answers to
:class:`~strata.supervisor.Supervision` and does what it decides. Services are started by
module name (``python -m``), so the kernel never imports a service package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx

from strata.endpoints import (
    ENDPOINTS_FILE,
    SUPERVISOR_FILE,
    EndpointsFileError,
    default_org_keys,
    read_json,
    write_json_atomic,
)
from strata.keys import NewKeys, create_keys
from strata.servers import RunningServer, ServerFailed, free_port, port_open, spawn
from strata.settings import CommonSettings
from strata.supervisor import (
    INTERNAL_COMPONENTS,
    SERVICE_MODULES,
    Component,
    Phase,
    RestartPolicy,
    Supervision,
    UpSettings,
    component_env,
    plan_components,
)
from strata.topics import ensure_topics

POLL_SECONDS = 0.1


class CliError(Exception):
    """A problem the user can fix (bad argument, busy port, missing service); exit code 2."""


class StartFailed(Exception):
    """A component did not come up during ``strata up``; the message names it."""


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class Up:
    """One ``strata up`` run: start everything, supervise until a signal, stop everything."""

    def __init__(self, settings: UpSettings, out: TextIO, err: TextIO) -> None:
        self.settings = settings
        self.out, self.err = out, err
        self.data_dir = settings.data_dir
        self.log_dir = self.data_dir / "logs"
        self.stop_requested = False
        self.servers: list[RunningServer] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sup: Supervision | None = None
        self.heartbeat_keys: NewKeys | None = None
        self.internal_keys: NewKeys | None = None
        self.self_metrics_stop = threading.Event()

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self._start_and_supervise()
                return 0
            except (StartFailed, ServerFailed, CliError, RuntimeError) as exc:
                print(f"strata up: {exc}", file=self.err, flush=True)
                return 1
            except Exception:  # a bug or an unforeseen failure: stop everything, show it all
                traceback.print_exc(file=self.err)
                return 1
            finally:
                self._shutdown()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- start ---------------------------------------------------------------------------

    def _start_and_supervise(self) -> None:
        from strata.servers import start_tansu, start_valkey

        s = self.settings
        for what, port in (("intake", s.intake_port), ("query", s.query_port)):
            if port_open(port):
                raise CliError(f"{what} port {port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
        # Keys first: it validates --org before anything is started.
        try:
            keys, created = default_org_keys(self.data_dir, s.keys_path, s.org)
        except ValueError as exc:
            raise CliError(f"cannot create keys for org {s.org!r}: {exc}") from exc

        tansu = start_tansu(self.log_dir, port=s.kafka_port)
        self.servers.append(tansu)
        self.say(f"kafka (tansu, in-memory log) is up on {tansu.address}")
        valkey = start_valkey(
            self.log_dir, port=s.redis_port, data_dir=self.data_dir / "valkey", persist=True
        )
        self.servers.append(valkey)
        self.say(f"redis (valkey) is up on {valkey.address}")
        if self.stop_requested:
            return
        topics = ensure_topics(s)
        self.say("topics ready: " + ", ".join(f"{t} ({n} partitions)" for t, n in topics.items()))
        self.say(f"{'created' if created else 'reusing'} keys for org {s.org}")
        # The emitter's key: intake turns this org's submissions into heartbeat markers.
        self.heartbeat_keys, _ = default_org_keys(self.data_dir, s.keys_path, s.heartbeat_org)
        # Strata graphs itself: its own /metrics go into an internal org.
        self.internal_keys, _ = default_org_keys(self.data_dir, s.keys_path, s.self_metrics_org)

        ports = {"intake": s.intake_port, "query": s.query_port}
        # Avoid the public ports too: intake and query have not bound theirs yet.
        public = (s.intake_port, s.query_port, s.kafka_port, s.redis_port)
        ports |= {n: free_port(avoid=public) for n in INTERNAL_COMPONENTS}
        components = plan_components(ports)
        self.sup = Supervision(
            components,
            RestartPolicy(
                initial=s.restart_initial_seconds,
                maximum=s.restart_max_seconds,
                stable_after=s.stable_after_seconds,
            ),
            start_timeout=s.start_timeout_seconds,
        )
        for c in components:
            self._spawn(c)
        self._write_state()
        self._supervise(keys.api_key, keys.app_key, components)

    def _spawn(self, c: Component) -> None:
        assert self.sup is not None
        env = component_env(os.environ, self.settings, c)
        if c.name == "heartbeat":
            assert self.sup is not None and self.heartbeat_keys is not None
            env["STRATA_INTAKE_URL"] = self.sup.states["intake"].component.url
            env["STRATA_HEARTBEAT_API_KEY"] = self.heartbeat_keys.api_key
        argv = [sys.executable, "-m", c.module]
        proc = spawn(c.name, argv, self.log_dir / f"{c.name}.log", env=env)
        self.procs[c.name] = proc
        self.sup.spawned(c.name, proc.pid, time.monotonic())

    def _write_state(self) -> None:
        assert self.sup is not None
        state = {"pid": os.getpid(), "components": self.sup.snapshot()}
        write_json_atomic(self.data_dir / SUPERVISOR_FILE, state)

    def _write_endpoints(self, api_key: str, app_key: str, components: list[Component]) -> None:
        s = self.settings
        by_name = {c.name: c for c in components}
        endpoints: dict[str, Any] = {
            "intake": by_name["intake"].url,
            "query": by_name["query"].url,
            "api_key": api_key,
            "app_key": app_key,
            "org": s.org,
            "kafka": s.kafka_bootstrap,
            "redis": s.redis_url,
            "data_dir": str(self.data_dir),
            "supervisor_pid": os.getpid(),
            "components": {c.name: c.url for c in components},
            "topics": {
                "points": s.topic_points,
                "series": s.topic_series,
                "dead_letter": s.topic_dead_letter,
            },
        }
        write_json_atomic(self.data_dir / ENDPOINTS_FILE, endpoints, private=True)

    # -- supervise -----------------------------------------------------------------------

    def _supervise(self, api_key: str, app_key: str, components: list[Component]) -> None:
        assert self.sup is not None
        sup = self.sup
        announced = False
        while not self.stop_requested:
            now = time.monotonic()
            changed = False
            for name, proc in self.procs.items():
                code = proc.poll()
                if code is None or sup.states[name].phase not in (Phase.STARTING, Phase.RUNNING):
                    continue
                decision = sup.exited(name, code, now)
                changed = True
                if not decision.restart:
                    log = self.log_dir / f"{name}.log"
                    raise StartFailed(f"{decision.message}; last lines of {log}:\n{_tail(log)}")
                self.say(decision.message)
            for name in sup.waiting_for_health():
                if _healthy(sup.states[name].component.url, timeout=0.5):
                    self.say(sup.healthy(name, time.monotonic()))
                    changed = True
            for name in sup.timed_out(time.monotonic()):
                log = self.log_dir / f"{name}.log"
                label = sup.states[name].component.label
                if not sup.started_up:
                    raise StartFailed(
                        f"{label} did not answer /health within {sup.start_timeout:g} s; "
                        f"last lines of {log}:\n{_tail(log)}"
                    )
                # Hung after a restart: kill it; the next tick reports the exit and backs off.
                self.procs[name].kill()
                self.procs[name].wait()
            for name in sup.due(time.monotonic()):
                self._spawn(sup.states[name].component)
                changed = True
            if changed:
                self._write_state()
            if sup.started_up and not announced:
                announced = True
                by_name = {c.name: c for c in components}
                intake, query = by_name["intake"].url, by_name["query"].url
                # Said before endpoints.json appears: whoever waits for the file (a
                # script, a test) then always finds the line in the output too.
                self.say(
                    f"strata is up: intake {intake}, query {query} — keys in "
                    f"{self.data_dir / ENDPOINTS_FILE}"
                )
                self._write_endpoints(api_key, app_key, components)
                self._start_self_metrics(components)
            time.sleep(POLL_SECONDS)

    def _start_self_metrics(self, components: list[Component]) -> None:
        """Every service's /metrics, posted to intake as the internal org's series."""
        interval = self.settings.self_metrics_interval_seconds
        if interval <= 0 or self.internal_keys is None:
            return
        from strata.observability import SelfScraper

        urls = {c.name: c.url for c in components}
        intake, key = urls["intake"], self.internal_keys.api_key

        def run() -> None:
            with httpx.Client(timeout=2.0) as http:
                scraper = SelfScraper(urls, intake, key, http)
                while not self.self_metrics_stop.wait(interval):
                    scraper.once()

        threading.Thread(target=run, name="self-metrics", daemon=True).start()

    # -- stop ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.self_metrics_stop.set()
        live = {n: p for n, p in self.procs.items() if p.poll() is None}
        if live:
            self.say(f"stopping {', '.join(live)}")
        for p in live.values():
            p.terminate()
        deadline = time.monotonic() + self.settings.stop_timeout_seconds
        for name, p in live.items():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    f"{name} did not stop within {self.settings.stop_timeout_seconds:g} s;"
                    " killing it"
                )
                p.kill()
                p.wait()
        for server in reversed(self.servers):
            server.stop(timeout=self.settings.stop_timeout_seconds)
        for f in (ENDPOINTS_FILE, SUPERVISOR_FILE):
            (self.data_dir / f).unlink(missing_ok=True)
        if self.servers:
            self.say("strata stopped")


# -- commands --------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        k: v
        for k in ("intake_port", "query_port", "kafka_port", "redis_port", "partitions", "org")
        if (v := getattr(args, k)) is not None
    }
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = UpSettings(**overrides)
    data_dir = settings.data_dir.resolve()
    settings = settings.model_copy(
        update={
            "data_dir": data_dir,
            "kafka_bootstrap": f"127.0.0.1:{settings.kafka_port}",
            "redis_url": f"redis://127.0.0.1:{settings.redis_port}/0",
        }
    )
    return Up(settings, sys.stdout, sys.stderr).run()


def cmd_run(args: argparse.Namespace) -> int:
    module = SERVICE_MODULES[args.service]
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise CliError(f"service {args.service} is not installed (no module {module}.__main__)")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args.args])


def _data_settings(data_dir: Path | None) -> CommonSettings:
    return CommonSettings(data_dir=data_dir) if data_dir is not None else CommonSettings()


def cmd_keys_create(args: argparse.Namespace) -> int:
    settings = _data_settings(args.data_dir)
    try:
        keys = create_keys(settings.keys_path, args.org)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps({"org": keys.org, "api_key": keys.api_key, "app_key": keys.app_key}))
    else:
        print(f"org      {keys.org}\napi_key  {keys.api_key}\napp_key  {keys.app_key}")
        print(f"(keys file: {settings.keys_path}; the keys are shown only once)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from strata.registry import Registry, pipeline_lag

    settings = _data_settings(args.data_dir)
    data_dir = settings.data_dir
    endpoints = read_json(data_dir / ENDPOINTS_FILE)
    state = read_json(data_dir / SUPERVISOR_FILE) or {}
    report: dict[str, Any] = {"data_dir": str(data_dir), "running": endpoints is not None}
    ok = endpoints is not None
    components: dict[str, Any] = state.get("components", {})
    for info in components.values():
        info["healthy"] = _healthy(str(info["url"]), timeout=1.0)
        ok = ok and bool(info["healthy"])
    report["components"] = components
    redis_url = str(endpoints["redis"]) if endpoints else settings.redis_url
    report["redis"] = redis_url
    try:
        registry = Registry(redis_url, socket_timeout=1.0)
        try:
            found = registry.discover()
            report["registry"] = [json.loads(r.to_json()) for r in found]
            # now - watermark: how far each store's durable data trails what intake accepted
            report["lag"] = [asdict(row) for row in pipeline_lag(found, time.time())]
        finally:
            registry.close()
    except Exception as exc:  # any Redis failure is reported, status never crashes
        report["registry_error"] = f"{type(exc).__name__}: {exc}"
        ok = False
    if args.json:
        print(json.dumps(report, indent=1))
        return 0 if ok else 1
    if endpoints is None:
        print(f"strata up is not running in {data_dir} (no {ENDPOINTS_FILE})")
    else:
        print(f"strata is up: intake {endpoints['intake']}, query {endpoints['query']}")
    for name, info in components.items():
        health = "healthy" if info["healthy"] else "NOT healthy"
        print(
            f"  {name:<9} {info['phase']:<9} pid {info['pid']!s:<8} restarts {info['restarts']}"
            f"  {info['url']}  {health}"
        )
    if "registry_error" in report:
        print(f"registry at {redis_url} unreachable: {report['registry_error']}")
    else:
        print(f"registry at {redis_url}: {len(report['registry'])} instance(s)")
        lags: dict[tuple[str, str], list[str]] = {}
        for row in report["lag"]:
            lag = "-" if row["lag_seconds"] is None else f"{row['lag_seconds']:.1f}s"
            lags.setdefault((row["kind"], row["instance"]), []).append(f"{row['partition']}:{lag}")
        for r in report["registry"]:
            parts = ",".join(str(p) for p in r["partitions"])
            print(f"  {r['kind']:<9} {r['instance']:<20} {r['address']}  partitions [{parts}]")
            lag_line = " ".join(lags.get((r["kind"], r["instance"]), []))
            print(f"  {'':<9} pipeline lag per partition: {lag_line}")
    return 0 if ok else 1


def cmd_topics(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    try:
        topics = ensure_topics(settings)
    except Exception as exc:  # KafkaException and friends: name the broker, no traceback
        raise CliError(f"cannot create topics on {settings.kafka_bootstrap}: {exc}") from exc
    for topic, count in topics.items():
        print(f"{topic}: {count} partitions")
    return 0


def _progress_bar(done: int, total: int, out: TextIO, width: int = 30) -> None:
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} partitions")
    out.flush()


def cmd_archive(args: argparse.Namespace) -> int:
    """Run ``python -m stores.archive compact`` (compaction + retention) with a progress
    bar; the kernel never imports the archive package, it only starts it."""
    env = dict(os.environ)
    if args.data_dir is not None:
        env["STRATA_DATA_DIR"] = str(args.data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stores.archive", args.archive_command, "--progress"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    report = ""
    for line in proc.stdout:
        fields = line.split()
        if len(fields) == 3 and fields[0] == "progress":
            _progress_bar(int(fields[1]), int(fields[2]), sys.stderr)
        elif line.strip():
            report = line.strip()
    code = proc.wait()
    sys.stderr.write("\n")
    if code != 0:
        raise CliError(f"archive {args.archive_command} failed (exit {code})")
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strata", description="Strata metrics pipeline")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole pipeline on this machine")
    up.add_argument("--data-dir", type=Path, help="state directory (default ./strata-data)")
    up.add_argument("--intake-port", type=int, help="public write API (default 8100)")
    up.add_argument("--query-port", type=int, help="public read API (default 8101)")
    up.add_argument("--kafka-port", type=int, help="tansu broker (default 9092)")
    up.add_argument("--redis-port", type=int, help="valkey (default 6379)")
    up.add_argument("--partitions", type=int, help="partitions per new topic (default 4)")
    up.add_argument("--org", help="org whose keys are created and shown (default main)")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one service in the foreground (python -m)")
    run.add_argument("service", choices=sorted(SERVICE_MODULES))
    run.add_argument("args", nargs=argparse.REMAINDER, help="passed to the service")
    run.set_defaults(func=cmd_run)

    keys = sub.add_parser("keys", help="manage API and application keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a new key pair for an org")
    create.add_argument("--org", required=True)
    create.add_argument("--data-dir", type=Path, help="default: STRATA_DATA_DIR")
    create.add_argument("--json", action="store_true", help="machine-readable output")
    create.set_defaults(func=cmd_keys_create)

    topics = sub.add_parser(
        "topics", help="create missing topics on STRATA_KAFKA_BOOTSTRAP (docker-compose init)"
    )
    topics.set_defaults(func=cmd_topics)

    archive = sub.add_parser("archive", help="compact the archive / apply retention now")
    archive.add_argument("archive_command", choices=["compact", "retention"])
    archive.add_argument("--data-dir", type=Path, help="default: STRATA_DATA_DIR")
    archive.set_defaults(func=cmd_archive)

    status = sub.add_parser("status", help="show components, health and the registry")
    status.add_argument("--data-dir", type=Path, help="default: STRATA_DATA_DIR")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (CliError, EndpointsFileError) as exc:
        print(f"strata: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # pydantic ValidationError: a bad flag or STRATA_* value
        print(f"strata: error: invalid setting: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
