"""Monitors in Redis (docs/monitors.md, "Redis keys"): definitions, per-group states, the
transition log and the webhook outbox, all under ``strata:monitors:``.

- Definitions are scoped per org: every call the API makes names the org, and a monitor of
  another org is indistinguishable from a missing one (the API answers 404).
- Ids come from one ``INCR`` counter, so they are integers, unique across orgs, never reused.
- The evaluator writes one monitor's new group states, its transitions and their outbox
  entries in **one** ``MULTI``/``EXEC`` transaction (:meth:`MonitorStore.record`), guarded
  by ``WATCH`` on the definition and the evaluation status (which carries a version): if
  the monitor was edited, deleted or evaluated by someone else meanwhile, nothing is
  written and the evaluation is simply redone next round. A state change is therefore never
  recorded without its notification being queued, nor queued twice.
- The outbox holds one entry per (transition, webhook) until it is delivered; delivery marks
  it done in one transaction (entry removed, ``delivered`` noted), so a delivered event is
  never sent again; an entry whose send was not confirmed is sent again (at least once).

Every Redis failure becomes :class:`MonitorStoreUnavailable` (the API answers 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from query.monitors import (
    EvaluationStatus,
    GroupState,
    InvalidMonitor,
    Monitor,
    MonitorDefinition,
)
from strata.naming import normalize_tag

log = logging.getLogger(__name__)

PREFIX = "strata:monitors:"
NEXT_ID = f"{PREFIX}next_id"
ALL_IDS = f"{PREFIX}ids"
OUTBOX = f"{PREFIX}outbox"
OUTBOX_DUE = f"{PREFIX}outbox:due"
DELIVERED = f"{PREFIX}delivered"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def def_key(monitor_id: int) -> str:
    return f"{PREFIX}def:{monitor_id}"


def org_key(org: str) -> str:
    return f"{PREFIX}org:{org}"


def groups_key(monitor_id: int) -> str:
    return f"{PREFIX}groups:{monitor_id}"


def eval_key(monitor_id: int) -> str:
    return f"{PREFIX}eval:{monitor_id}"


def seq_key(monitor_id: int) -> str:
    return f"{PREFIX}tseq:{monitor_id}"


def log_key(monitor_id: int) -> str:
    return f"{PREFIX}transitions:{monitor_id}"


class MonitorStoreUnavailable(Exception):
    """Redis did not answer; the message says why. Nothing was changed, or the change is
    unknown (a write that timed out may have happened)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A monitor with its group states and last evaluation status, as read together.
    ``version`` counts recorded evaluations; :meth:`MonitorStore.record` needs it unchanged."""

    monitor: Monitor
    groups: dict[str, GroupState]
    evaluation: EvaluationStatus | None
    version: int

    def to_api(self, group_states: frozenset[str] | None = None) -> dict[str, Any]:
        return self.monitor.to_api(self.groups, self.evaluation, group_states=group_states)


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one group (or, with ``kind="renotify"``, a repeated notification
    of an unchanged state), as the evaluator found it."""

    group: str
    from_state: str
    to_state: str
    value: float | None
    window_start: int
    window_end: int
    time: float
    kind: str = "transition"


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """A recorded transition: ``seq`` is the monitor's transition sequence number;
    ``targets`` the webhook names it is notified to; ``delivery`` is ``pending`` while
    any of them has not confirmed, ``delivered`` after, ``none`` without targets."""

    seq: int
    monitor_id: int
    org: str
    transition: Transition
    targets: tuple[str, ...]
    delivery: str = "none"

    @property
    def event_id(self) -> str:
        return f"{self.monitor_id}:{self.transition.group}:{self.seq}"

    def to_json(self) -> dict[str, Any]:
        t = self.transition
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "monitor_id": self.monitor_id,
            "org": self.org,
            "group": t.group,
            "from": t.from_state,
            "to": t.to_state,
            "kind": t.kind,
            "value": t.value,
            "window": {"start": t.window_start, "end": t.window_end},
            "time": t.time,
            "targets": list(self.targets),
            "delivery": self.delivery,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TransitionRecord:
        t = Transition(
            group=d["group"],
            from_state=d["from"],
            to_state=d["to"],
            value=d["value"],
            window_start=d["window"]["start"],
            window_end=d["window"]["end"],
            time=d["time"],
            kind=d.get("kind", "transition"),
        )
        return cls(
            int(d["seq"]), int(d["monitor_id"]), d["org"], t, tuple(d["targets"]), d["delivery"]
        )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One notification to send: the transition, a snapshot of the monitor taken when it
    was recorded (so a later edit or delete does not change what is sent), the webhook."""

    key: str  # "<event id>|<webhook name>"
    webhook: str
    record: TransitionRecord
    monitor: dict[str, Any]
    attempts: int = 0
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "webhook": self.webhook,
            "record": self.record.to_json(),
            "monitor": self.monitor,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OutboxEntry:
        return cls(
            d["key"],
            d["webhook"],
            TransitionRecord.from_json(d["record"]),
            d["monitor"],
            int(d.get("attempts", 0)),
            d.get("last_error"),
        )


def monitor_snapshot(m: Monitor) -> dict[str, Any]:
    d = m.definition
    return {
        "id": m.id,
        "org": m.org,
        "name": d.name,
        "type": d.type,
        "query": d.query,
        "message": d.message,
        "tags": list(d.tags),
        "priority": d.priority,
    }


def _load(raw: bytes) -> Monitor | None:
    """A stored monitor, or ``None`` (logged) for a record this version cannot read."""
    try:
        return Monitor.from_record(orjson.loads(raw))
    except (InvalidMonitor, KeyError, TypeError, ValueError) as exc:
        log.error("unreadable monitor record skipped: %s", exc)
        return None


def _bytes_list(raw: Any) -> list[bytes]:
    """A Redis reply known to be a list of bytes (redis-py types replies loosely)."""
    return list(raw)


def _split(csv: str | None, normalize: bool) -> list[str]:
    out = []
    for part in (csv or "").split(","):
        part = part.strip()
        if part:
            tag = normalize_tag(part) if normalize else part
            out.append(tag or part)
    return out


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``GET /api/v1/monitor`` filters: ``name`` (substring, any case), ``tags`` (every one
    among the exact tags of the query's scopes), ``monitor_tags`` (every one among the
    monitor's tags), ``id_offset`` (ids above it), ``page`` (0-based; ``None`` = all) and
    ``page_size`` (default 100 when ``page`` is given)."""

    name: str | None = None
    tags: str | None = None
    monitor_tags: str | None = None
    id_offset: int | None = None
    page: int | None = None
    page_size: int | None = None

    def matches(self, m: Monitor) -> bool:
        d = m.definition
        if self.name and self.name.lower() not in d.name.lower():
            return False
        scope = d.parsed.scope_tags
        if any(t not in scope for t in _split(self.tags, normalize=True)):
            return False
        return all(t in d.tags for t in _split(self.monitor_tags, normalize=False))


class MonitorStore:
    """Monitors of every org in one Redis (see the module docstring for the guarantees)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        clock: Callable[[], float] = time.time,
        transitions_kept: int = 1000,
        delivered_kept_seconds: int = 7 * 86400,
    ) -> None:
        self._r = client
        self._clock = clock
        self._kept = transitions_kept
        self._delivered_kept = delivered_kept_seconds

    @classmethod
    def from_url(cls, url: str, *, timeout_seconds: float = 2.0, **kwargs: Any) -> MonitorStore:
        # One immediate retry rides out a dropped connection; more would keep API callers
        # waiting on a Redis that is down (they get a 503 and retry themselves).
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, **kwargs)

    def close(self) -> None:
        self._r.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise MonitorStoreUnavailable(f"monitor store (Redis) unavailable: {exc}") from exc

    # -- definitions (the API) ------------------------------------------------------------------

    def create(self, org: str, definition: MonitorDefinition) -> Snapshot:
        now = self._clock()
        with self._guard():
            monitor_id = int(self._r.incr(NEXT_ID))
            monitor = Monitor(monitor_id, org, definition, now, now)
            pipe = self._r.pipeline(transaction=True)
            pipe.set(def_key(monitor_id), orjson.dumps(monitor.to_record()))
            pipe.zadd(org_key(org), {str(monitor_id): monitor_id})
            pipe.zadd(ALL_IDS, {str(monitor_id): monitor_id})
            pipe.execute()
        return Snapshot(monitor, {}, None, 0)

    def get(self, org: str | None, monitor_id: int) -> Snapshot | None:
        """The monitor with its states, ``None`` if it does not exist or (``org`` given)
        belongs to another org."""
        found = self._snapshots([monitor_id])
        snap = found[0] if found else None
        if snap is None or (org is not None and snap.monitor.org != org):
            return None
        return snap

    def _snapshots(self, ids: Sequence[int]) -> list[Snapshot | None]:
        if not ids:
            return []
        with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for i in ids:
                pipe.get(def_key(i))
                pipe.hgetall(groups_key(i))
                pipe.get(eval_key(i))
            raw = pipe.execute()
        out: list[Snapshot | None] = []
        for k in range(len(ids)):
            record, groups, status = raw[3 * k : 3 * k + 3]
            if record is None:
                out.append(None)
                continue
            monitor = _load(record)
            if monitor is None:
                out.append(None)
                continue
            states = {
                name.decode(): GroupState.from_json(orjson.loads(v)) for name, v in groups.items()
            }
            ev = orjson.loads(status) if status is not None else None
            evaluation = EvaluationStatus.from_json(ev["status"]) if ev else None
            out.append(Snapshot(monitor, states, evaluation, int(ev["version"]) if ev else 0))
        return out

    def list_monitors(self, org: str, query: ListQuery) -> list[Snapshot]:
        """The org's monitors matching ``query``, by increasing id, one page of them."""
        low = "-inf" if query.id_offset is None else f"({query.id_offset}"
        with self._guard():
            ids = [int(i) for i in _bytes_list(self._r.zrangebyscore(org_key(org), low, "+inf"))]
        with self._guard():
            pipe = self._r.pipeline(transaction=False)
            for i in ids:
                pipe.get(def_key(i))
            records = pipe.execute()
        matching = []
        for i, record in zip(ids, records, strict=True):
            if record is None:
                continue
            monitor = _load(record)
            if monitor is not None and monitor.org == org and query.matches(monitor):
                matching.append(i)
        if query.page is not None:
            size = query.page_size or DEFAULT_PAGE_SIZE
            matching = matching[query.page * size : (query.page + 1) * size]
        return [s for s in self._snapshots(matching) if s is not None and s.monitor.org == org]

    def update(self, org: str, monitor_id: int, definition: MonitorDefinition) -> Snapshot | None:
        """Replace the definition (``None`` if not the org's). A changed query starts the
        groups afresh: old groups would never be evaluated again."""
        current = self.get(org, monitor_id)
        if current is None:
            return None
        old = current.monitor
        monitor = Monitor(monitor_id, org, definition, old.created, self._clock())
        reset = definition.query != old.definition.query

        def write(pipe: Any) -> None:
            pipe.set(def_key(monitor_id), orjson.dumps(monitor.to_record()))
            if reset:
                pipe.delete(groups_key(monitor_id), eval_key(monitor_id))

        if not self._if_unchanged(old, write):
            return self.update(org, monitor_id, definition)  # edited meanwhile: redo
        if reset:
            return Snapshot(monitor, {}, None, 0)
        return Snapshot(monitor, current.groups, current.evaluation, current.version)

    def delete(self, org: str, monitor_id: int) -> bool:
        """Delete the org's monitor, its states and log (queued notifications are still
        delivered); ``False`` if it is not the org's."""
        current = self.get(org, monitor_id)
        if current is None:
            return False

        def write(pipe: Any) -> None:
            pipe.delete(
                def_key(monitor_id),
                groups_key(monitor_id),
                eval_key(monitor_id),
                log_key(monitor_id),
                seq_key(monitor_id),
            )
            pipe.zrem(org_key(org), str(monitor_id))
            pipe.zrem(ALL_IDS, str(monitor_id))

        if not self._if_unchanged(current.monitor, write):
            return self.delete(org, monitor_id)
        return True

    def _if_unchanged(self, monitor: Monitor, write: Callable[[Any], None]) -> bool:
        """Run ``write`` in a transaction if ``monitor``'s stored definition is still the
        one read (same ``modified``); ``False`` if it changed (the caller reads again)."""
        key = def_key(monitor.id)
        with self._guard():
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.watch(  # type: ignore[no-untyped-call]
                        key
                    )
                    raw = pipe.get(key)
                    if raw is None or float(orjson.loads(raw)["modified"]) != monitor.modified:
                        return False
                    pipe.multi()
                    write(pipe)
                    pipe.execute()
            except redis.WatchError:
                return False
        return True

    # -- evaluation (the evaluator) -----------------------------------------------------------

    def all_snapshots(self, batch: int = 500) -> list[Snapshot]:
        """Every org's monitors with their states, by increasing id."""
        with self._guard():
            ids = [int(i) for i in _bytes_list(self._r.zrange(ALL_IDS, 0, -1))]
        out: list[Snapshot] = []
        for k in range(0, len(ids), batch):
            out.extend(s for s in self._snapshots(ids[k : k + batch]) if s is not None)
        return out

    def record(
        self,
        snap: Snapshot,
        groups: Mapping[str, GroupState] | None,
        transitions: Sequence[Transition],
        targets: Sequence[str],
        status: EvaluationStatus,
    ) -> list[TransitionRecord] | None:
        """Atomically write an evaluation of ``snap``: the new group states (``None`` =
        unchanged, e.g. a delayed evaluation), the transitions with consecutive sequence
        numbers, one outbox entry per (transition, target) and ``status``.

        Returns the recorded transitions, or ``None`` (nothing written) when the monitor was
        edited, deleted or evaluated by another writer since ``snap`` was read. A crash
        before ``EXEC`` writes nothing; sequence numbers taken then are simply skipped."""
        m = snap.monitor
        with self._guard():
            last = int(self._r.incrby(seq_key(m.id), len(transitions))) if transitions else 0
            first = last - len(transitions) + 1
            records = [
                TransitionRecord(
                    first + i, m.id, m.org, t, tuple(targets), "pending" if targets else "none"
                )
                for i, t in enumerate(transitions)
            ]
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.watch(  # type: ignore[no-untyped-call]
                        def_key(m.id), eval_key(m.id)
                    )
                    record = pipe.get(def_key(m.id))
                    current = pipe.get(eval_key(m.id))
                    version = int(orjson.loads(current)["version"]) if current else 0
                    if record is None or version != snap.version:
                        return None
                    if float(orjson.loads(record)["modified"]) != m.modified:
                        return None
                    pipe.multi()
                    if groups:
                        mapping = {k: orjson.dumps(g.to_json()) for k, g in groups.items()}
                        pipe.hset(groups_key(m.id), mapping=mapping)  # type: ignore[arg-type]
                    ev = {"version": version + 1, "status": status.to_json()}
                    pipe.set(eval_key(m.id), orjson.dumps(ev))
                    if records:
                        pipe.rpush(log_key(m.id), *[orjson.dumps(r.to_json()) for r in records])
                        pipe.ltrim(log_key(m.id), -self._kept, -1)
                        self._queue(pipe, m, records, status.evaluated_at)
                    pipe.execute()
            except redis.WatchError:
                return None
        return records

    def _queue(
        self, pipe: Any, m: Monitor, records: Sequence[TransitionRecord], now: float
    ) -> None:
        snapshot = monitor_snapshot(m)
        for r in records:
            for webhook in r.targets:
                entry = OutboxEntry(f"{r.event_id}|{webhook}", webhook, r, snapshot)
                pipe.hset(OUTBOX, entry.key, orjson.dumps(entry.to_json()))
                pipe.zadd(OUTBOX_DUE, {entry.key: now})

    def transitions(self, org: str | None, monitor_id: int) -> list[TransitionRecord]:
        """The kept transition log, oldest first; ``delivery`` is current (``pending``
        while any target's entry is still in the outbox)."""
        with self._guard():
            raw = self._r.lrange(log_key(monitor_id), 0, -1)
            records = [TransitionRecord.from_json(orjson.loads(r)) for r in raw]
            records = [r for r in records if org is None or r.org == org]
            keys = [f"{r.event_id}|{t}" for r in records for t in r.targets]
            pending = set()
            if keys:
                found = self._r.hmget(OUTBOX, keys)
                pending = {k for k, v in zip(keys, found, strict=True) if v is not None}
        out = []
        for r in records:
            if r.targets:
                waiting = any(f"{r.event_id}|{t}" in pending for t in r.targets)
                r = TransitionRecord(
                    r.seq,
                    r.monitor_id,
                    r.org,
                    r.transition,
                    r.targets,
                    "pending" if waiting else "delivered",
                )
            out.append(r)
        return out

    # -- the outbox (the notifier) ----------------------------------------------------------------

    def due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """Outbox entries whose (re)send time has come, oldest first."""
        with self._guard():
            keys = _bytes_list(self._r.zrangebyscore(OUTBOX_DUE, "-inf", now, start=0, num=limit))
            if not keys:
                return []
            raw = self._r.hmget(OUTBOX, keys)
        return [OutboxEntry.from_json(orjson.loads(v)) for v in raw if v is not None]

    def claim(self, key: str, now: float, lease_seconds: float) -> bool:
        """Take ``key`` for sending until ``now + lease_seconds`` (so a second sender skips
        it); ``False`` if it is not due any more (delivered or claimed meanwhile)."""
        with self._guard():
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.watch(  # type: ignore[no-untyped-call]
                        OUTBOX_DUE
                    )
                    due = pipe.zscore(OUTBOX_DUE, key)
                    if due is None or due > now:
                        return False
                    pipe.multi()
                    pipe.zadd(OUTBOX_DUE, {key: now + lease_seconds})
                    pipe.execute()
            except redis.WatchError:
                return False
        return True

    def mark_delivered(self, key: str, now: float) -> None:
        """The receiver confirmed ``key``: remove it from the outbox, note it delivered."""
        with self._guard():
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(OUTBOX, key)
            pipe.zrem(OUTBOX_DUE, key)
            pipe.zadd(DELIVERED, {key: now})
            pipe.zremrangebyscore(DELIVERED, "-inf", now - self._delivered_kept)
            pipe.execute()

    def retry_later(self, entry: OutboxEntry, due: float, error: str) -> None:
        """Sending failed: count the attempt, note the error, send again at ``due`` (unless
        the entry was delivered meanwhile)."""
        updated = OutboxEntry(
            entry.key, entry.webhook, entry.record, entry.monitor, entry.attempts + 1, error
        )
        with self._guard():
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.watch(  # type: ignore[no-untyped-call]
                        OUTBOX
                    )
                    if not pipe.hexists(OUTBOX, entry.key):
                        return
                    pipe.multi()
                    pipe.hset(OUTBOX, entry.key, orjson.dumps(updated.to_json()))
                    pipe.zadd(OUTBOX_DUE, {entry.key: due})
                    pipe.execute()
            except redis.WatchError:
                return  # delivered or rescheduled by another sender meanwhile

    def delivered(self, key: str) -> bool:
        with self._guard():
            return self._r.zscore(DELIVERED, key) is not None

    def outbox_size(self) -> int:
        with self._guard():
            return int(self._r.hlen(OUTBOX))
