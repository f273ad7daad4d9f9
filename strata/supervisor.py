"""The pure core of ``strata up``: which components run, their environment, restart policy.

Nothing here touches processes, sockets, the clock or the disk: the shell in
:mod:`strata.cli` feeds in events (started, healthy, exited) with the current time and acts on
the decisions returned. That keeps the orchestration rules (backoff, when to give up, what is
reported) unit-testable without spawning anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from strata.settings import CommonSettings


class UpSettings(CommonSettings):
    """``STRATA_*`` environment for ``strata up``; command-line flags override it."""

    intake_port: int = Field(default=8100, ge=1, le=65535, description="public write API")
    query_port: int = Field(default=8101, ge=1, le=65535, description="public read API")
    kafka_port: int = Field(default=9092, ge=1, le=65535, description="tansu broker")
    redis_port: int = Field(default=6379, ge=1, le=65535, description="valkey")
    org: str = Field(default="main", description="the org whose keys strata up creates")
    start_timeout_seconds: float = Field(default=90.0, gt=0, description="wait for /health")
    stop_timeout_seconds: float = Field(default=10.0, gt=0, description="SIGTERM -> SIGKILL")
    restart_initial_seconds: float = Field(default=0.5, ge=0, description="first restart delay")
    restart_max_seconds: float = Field(default=30.0, ge=0, description="restart delay cap")
    stable_after_seconds: float = Field(
        default=30.0, ge=0, description="running this long resets the restart delay"
    )
    self_metrics_org: str = Field(
        default="strata-internal",
        description="org into which strata up ingests the pipeline's own /metrics",
    )
    self_metrics_interval_seconds: float = Field(
        default=10.0, ge=0, description="scrape every service's /metrics this often; 0 = off"
    )

    @model_validator(mode="after")
    def _ports_are_distinct(self) -> UpSettings:
        # Two servers given one port: the second fails to bind long after start, with a log
        # line that does not say which setting to change. Refuse it up front, naming both.
        seen: dict[int, str] = {}
        for name in ("intake_port", "query_port", "kafka_port", "redis_port"):
            port = getattr(self, name)
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} are both {port}; each needs its own")
            seen[port] = name
        return self


@dataclass(frozen=True)
class Component:
    """One Strata service process that ``strata up`` starts and supervises."""

    name: str  # short name: "ram" (also ``strata run ram``, the log file name)
    label: str  # what a human reads: "ram store"
    module: str  # ``python -m <module>``
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ``strata run <service>`` -> module. The kernel never imports these; it runs them by name.
SERVICE_MODULES: dict[str, str] = {
    "intake": "intake",
    "query": "query",
    "ram": "stores.ram",
    "rocks": "stores.rocks",
    "archive": "stores.archive",
    "tags": "stores.tags",
    "inverted": "stores.inverted",
    "heartbeat": "heartbeat",
}

SERVICE_LABELS: dict[str, str] = {
    "intake": "intake",
    "query": "query",
    "ram": "ram store",
    "rocks": "rocks store",
    "archive": "archive store",
    "tags": "tag index",
    "inverted": "inverted index",
    "heartbeat": "heartbeat + monitors",
}

# Start order; also the order of progress lines when several become healthy at once.
# The point tiers (ram, rocks, archive) before the indexes and query, freshest first; the
# heartbeat emitter and monitor evaluator last (they use all the others).
START_ORDER = ("intake", "ram", "rocks", "archive", "tags", "inverted", "query", "heartbeat")

# Components on internal ports chosen freshly at each ``strata up`` (the public ones, intake
# and query, have fixed ports a user can name).
INTERNAL_COMPONENTS = tuple(n for n in START_ORDER if n not in ("intake", "query"))


def plan_components(ports: Mapping[str, int]) -> list[Component]:
    """The components of a one-machine pipeline, given a port for each service name."""
    missing = [n for n in START_ORDER if n not in ports]
    if missing:
        raise ValueError(f"no port for {', '.join(missing)}")
    return [Component(n, SERVICE_LABELS[n], SERVICE_MODULES[n], ports[n]) for n in START_ORDER]


def component_env(
    base: Mapping[str, str], settings: CommonSettings, component: Component
) -> dict[str, str]:
    """The environment a component process runs with.

    ``base`` (the supervisor's own environment) is passed through so a user's extra
    ``STRATA_*`` settings reach every service; the values that wire the pipeline together
    override it. The instance id is stable across restarts so a restarted store replaces its
    own registry entry instead of leaving a stale twin until the TTL lapses.
    """
    env = dict(base)
    env.update(
        {
            "STRATA_DATA_DIR": str(settings.data_dir),
            "STRATA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "STRATA_REDIS_URL": settings.redis_url,
            "STRATA_TOPIC_POINTS": settings.topic_points,
            "STRATA_TOPIC_SERIES": settings.topic_series,
            "STRATA_TOPIC_SKETCHES": settings.topic_sketches,
            "STRATA_TOPIC_DEAD_LETTER": settings.topic_dead_letter,
            "STRATA_PARTITIONS": str(settings.partitions),
            "STRATA_KEYS_FILE": str(settings.keys_path),
            "STRATA_LOG_LEVEL": settings.log_level,
            "STRATA_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
            "STRATA_HTTP_HOST": "127.0.0.1",
            "STRATA_HTTP_PORT": str(component.port),
            "STRATA_ADVERTISE_URL": component.url,
            "STRATA_INSTANCE_ID": f"{component.name}-up",
        }
    )
    return env


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff: ``initial * factor**n`` capped at ``maximum``.

    ``n`` counts consecutive failures; a component that stayed up ``stable_after`` seconds
    starts again from ``initial``, so one crash a day is restarted at once while a crash loop
    backs off instead of burning the CPU.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    stable_after: float = 30.0

    def delay(self, failures_in_row: int) -> float:
        if failures_in_row <= 0:
            return 0.0
        return float(min(self.initial * self.factor ** (failures_in_row - 1), self.maximum))


class Phase(StrEnum):
    PENDING = "pending"  # not started yet
    STARTING = "starting"  # process spawned, /health not answered yet
    RUNNING = "running"
    BACKOFF = "backoff"  # exited; waiting for the restart delay
    STOPPED = "stopped"


@dataclass
class ComponentState:
    component: Component
    phase: Phase = Phase.PENDING
    pid: int | None = None
    restarts: int = 0
    failures_in_row: int = 0
    since: float = 0.0  # when the current phase began
    next_start: float | None = None
    last_exit: int | None = None


@dataclass(frozen=True)
class ExitDecision:
    """What to do about a component that exited, and the line to report."""

    restart: bool
    delay: float
    message: str


class UnknownComponent(KeyError):
    """An event named a component the supervision does not know."""


@dataclass
class Supervision:
    """State of every component, driven by events; returns decisions, performs none.

    Before every component has been healthy once (start-up) an exit or a start timeout is
    fatal: ``strata up`` names the component and stops. Afterwards exits are restarted with
    :class:`RestartPolicy` backoff, forever.
    """

    components: Iterable[Component]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    start_timeout: float = 90.0
    states: dict[str, ComponentState] = field(init=False)
    started_up: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.states = {c.name: ComponentState(c) for c in self.components}

    def _state(self, name: str) -> ComponentState:
        try:
            return self.states[name]
        except KeyError:
            raise UnknownComponent(name) from None

    def spawned(self, name: str, pid: int, now: float) -> None:
        st = self._state(name)
        st.phase, st.pid, st.since, st.next_start = Phase.STARTING, pid, now, None

    def healthy(self, name: str, now: float) -> str:
        """Record a first answer to /health; return the progress line."""
        st = self._state(name)
        st.phase, st.since = Phase.RUNNING, now
        if all(s.phase is Phase.RUNNING for s in self.states.values()):
            self.started_up = True
        c = st.component
        again = f", restart {st.restarts}" if st.restarts else ""
        return f"{c.label} is up on {c.url} (pid {st.pid}{again})"

    def exited(self, name: str, code: int, now: float) -> ExitDecision:
        st = self._state(name)
        if st.phase is Phase.RUNNING and now - st.since >= self.policy.stable_after:
            st.failures_in_row = 0
        st.last_exit, st.pid = code, None
        label = st.component.label
        if not self.started_up:
            st.phase, st.since = Phase.STOPPED, now
            return ExitDecision(False, 0.0, f"{label} exited with {code} during start")
        st.failures_in_row += 1
        st.restarts += 1
        delay = self.policy.delay(st.failures_in_row)
        st.phase, st.since, st.next_start = Phase.BACKOFF, now, now + delay
        when = f" in {delay:g} s" if delay > 0 else ""
        return ExitDecision(
            True, delay, f"{label} exited with {code}; restarting{when} (restart {st.restarts})"
        )

    def due(self, now: float) -> list[str]:
        """Components whose restart delay has passed, in start order."""
        return [
            n
            for n, s in self.states.items()
            if s.phase is Phase.BACKOFF and s.next_start is not None and s.next_start <= now
        ]

    def waiting_for_health(self) -> list[str]:
        return [n for n, s in self.states.items() if s.phase is Phase.STARTING]

    def timed_out(self, now: float) -> list[str]:
        """Components that have not answered /health within ``start_timeout``."""
        return [
            n
            for n, s in self.states.items()
            if s.phase is Phase.STARTING and now - s.since > self.start_timeout
        ]

    def stopped(self, name: str, now: float) -> None:
        st = self._state(name)
        st.phase, st.pid, st.since, st.next_start = Phase.STOPPED, None, now, None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON-ready view for DIR/supervisor.json and ``strata status``."""
        return {
            n: {
                "label": s.component.label,
                "module": s.component.module,
                "url": s.component.url,
                "phase": s.phase.value,
                "pid": s.pid,
                "restarts": s.restarts,
                "last_exit": s.last_exit,
            }
            for n, s in self.states.items()
        }
