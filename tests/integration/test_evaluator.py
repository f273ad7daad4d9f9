"""The evaluator and the webhook notifier against a real Valkey and a real local HTTP
receiver (heartbeat/evaluator.py, heartbeat/notify.py, query/monitor_store.py). The gate
and the query are fakes over a model of the points, so every transition is known in
advance; the receiver must get exactly one accepted notification per recorded transition —
also when the evaluator is restarted between recording a transition and delivering it,
when the receiver fails for a while, and when two notifiers race for the same outbox."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import redis

from heartbeat.evaluator import Evaluator, WindowFrame
from heartbeat.notify import EVENT_ID_HEADER, WebhookNotifier
from heartbeat.settings import EvaluatorSettings
from query import ast
from query.monitor_store import PREFIX, MonitorStore, MonitorStoreUnavailable
from query.monitors import ALERT, NO_DATA, OK, EvaluationStatus, validate_definition
from strata.servers import RunningServer

pytestmark = pytest.mark.integration


# -- a real webhook receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``fail`` ones (then 200)."""

    url: str = ""
    fail: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: dict[str, Any], event_header: str) -> int:
        with self.lock:
            self.headers.append(event_header)
            if self.fail > 0:
                self.fail -= 1
                self.rejected.append(body)
                return 500
            self.accepted.append(body)
            return 200

    def ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for e in self.accepted]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            status = rec.handle(body, self.headers.get(EVENT_ID_HEADER, ""))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(5)


# -- the fake pipeline ----------------------------------------------------------------------------


class Pipeline:
    """Points per group (tag set), a watermark, and a clock, all set by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.complete: int | None = None
        self.points: dict[tuple[str, ...], dict[int, float]] = {}

    def clock(self) -> float:
        return self.now

    def gate(self, org: str, metrics: Sequence[str], sketches: Sequence[str]) -> int | None:
        return self.complete

    def run_query(self, org: str, expr: ast.Expr, start: int, end: int) -> WindowFrame:
        interval = 10
        grid = np.arange(start - start % interval, end - end % interval + 1, interval)
        limit = self.complete if self.complete is not None else -1
        rows = []
        tag_sets = []
        for tags, pts in sorted(self.points.items()):
            row = np.full(grid.size, np.nan)
            for ts, v in pts.items():
                if start <= ts <= min(end, limit):
                    col = (ts - int(grid[0])) // interval
                    row[col] = np.fmin(row[col], v)  # the bucket's minimum
            if not np.isnan(row).all():
                tag_sets.append(tags)
                rows.append(row)
        values = np.array(rows) if rows else np.empty((0, grid.size))
        return WindowFrame(tag_sets, values, grid.astype(np.int64), interval)

    def advance(self, seconds: int, lag: int = 2) -> None:
        self.now += seconds
        self.complete = int(self.now) - lag


@pytest.fixture
def redis_url(valkey: RunningServer) -> str:
    url = f"redis://127.0.0.1:{valkey.port}/0"
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{PREFIX}*"):
        client.delete(key)  # a fresh monitor namespace per test (the Valkey is shared)
    client.close()
    return url


def settings_for(receiver: Receiver, **overrides: Any) -> EvaluatorSettings:
    return EvaluatorSettings(
        webhooks={"ops": receiver.url, "oncall": receiver.url},
        webhook_retry_initial_seconds=1,
        webhook_retry_max_seconds=8,
        **overrides,
    )


@dataclass
class Stack:
    """One evaluator process: its own Redis connection, notifier and evaluator."""

    store: MonitorStore
    notifier: WebhookNotifier
    evaluator: Evaluator

    def close(self) -> None:
        self.notifier.close()
        self.store.close()


def start(redis_url: str, pipe: Pipeline, settings: EvaluatorSettings) -> Stack:
    store = MonitorStore.from_url(redis_url, clock=pipe.clock)
    notifier = WebhookNotifier(
        store,
        settings.webhooks,
        clock=pipe.clock,
        timeout_seconds=settings.webhook_timeout_seconds,
        retry_initial_seconds=settings.webhook_retry_initial_seconds,
        retry_max_seconds=settings.webhook_retry_max_seconds,
    )
    ev = Evaluator(store, pipe.run_query, pipe.gate, notifier, pipe.clock, settings)
    return Stack(store, notifier, ev)


def define(store: MonitorStore, query: str, message: str, **options: Any) -> int:
    body = {"type": "metric alert", "query": query, "message": message, "options": options}
    return store.create("acme", validate_definition(body)).monitor.id


def expected_events(store: MonitorStore, monitor_id: int) -> dict[str, dict[str, Any]]:
    """What the receiver must get: one event per recorded transition and target."""
    out = {}
    for r in store.transitions("acme", monitor_id):
        for target in r.targets:
            out[f"{r.event_id}|{target}"] = r.to_json()
    return out


def received(receiver: Receiver) -> list[str]:
    return [f"{e['event_id']}|{e['webhook']}" for e in receiver.accepted]


# -- tests --------------------------------------------------------------------------------------


def test_one_notification_per_transition(redis_url: str, receiver: Receiver) -> None:
    pipe = Pipeline()
    stack = start(redis_url, pipe, settings_for(receiver))
    try:
        mid = define(
            stack.store,
            "min(last_1m):min:hb{*} by {host} < 1",
            "heartbeat low on {{host.name}} @webhook-ops @webhook-oncall @webhook-unknown",
            notify_no_data=True,
            no_data_timeframe=2,
            thresholds={"critical": 1, "critical_recovery": 2},
        )
        t0 = int(pipe.now)
        # host:a: fine, drops to 0 at +120, back to 1.5 (not recovered: hysteresis) at +180,
        # 3 at +240 (recovered), stops at +400 (No Data); host:b always fine.
        for ts in range(t0 - 100, t0 + 400, 10):
            v = 5.0 if ts < t0 + 120 else 0.0 if ts < t0 + 180 else 1.5 if ts < t0 + 240 else 3.0
            pipe.points.setdefault(("host:a",), {})[ts] = v
        for ts in range(t0 - 100, t0 + 900, 10):
            pipe.points.setdefault(("host:b",), {})[ts] = 10.0
        for _ in range(80):
            pipe.advance(10)
            stack.evaluator.evaluate_once()
            stack.notifier.deliver_pending()
        log = stack.store.transitions("acme", mid)
        assert [(r.transition.group, r.transition.from_state, r.transition.to_state)
                for r in log] == [
            ("host:a", OK, ALERT), ("host:a", ALERT, OK), ("host:a", OK, NO_DATA),
        ]  # fmt: skip
        assert [r.seq for r in log] == [1, 2, 3]
        assert all(r.targets == ("ops", "oncall") and r.delivery == "delivered" for r in log)
        expected = expected_events(stack.store, mid)
        assert sorted(received(receiver)) == sorted(expected)  # each exactly once
        assert stack.store.outbox_size() == 0
        for event in receiver.accepted:
            r = expected[f"{event['event_id']}|{event['webhook']}"]
            assert event["version"] == 1 and event["org"] == "acme"
            assert event["monitor"]["id"] == mid
            assert event["monitor"]["query"] == "min(last_1m):min:hb{*} by {host} < 1"
            assert (event["group"], event["transition"]["seq"]) == (r["group"], r["seq"])
            assert (event["transition"]["from"], event["transition"]["to"]) == (r["from"], r["to"])
            assert (event["value"], event["window"]) == (r["value"], r["window"])
        alert = next(e for e in receiver.accepted if e["transition"]["to"] == ALERT)
        assert alert["value"] == 0.0 and alert["event_id"] == f"{mid}:host:a:1"
        assert set(receiver.headers) == {e["event_id"] for e in receiver.accepted}
        snap = stack.store.get("acme", mid)
        assert snap is not None
        assert {k: g.status for k, g in snap.groups.items()} == {"host:a": NO_DATA, "host:b": OK}
    finally:
        stack.close()


def test_restart_between_recording_and_delivering(redis_url: str, receiver: Receiver) -> None:
    pipe = Pipeline()
    settings = settings_for(receiver)
    first = start(redis_url, pipe, settings)
    mid = define(first.store, "max(last_1m):max:q{*} > 10", "q high @webhook-ops")
    t0 = int(pipe.now)
    pipe.points[()] = {ts: 50.0 for ts in range(t0 - 120, t0 + 60, 10)}
    pipe.advance(10)
    assert first.evaluator.evaluate_once().transitions == 1
    # The first evaluator dies here: the transition is recorded, its notification queued,
    # and one delivery attempt even claimed the entry before the process vanished.
    [entry] = first.store.due(pipe.now)
    assert first.store.claim(entry.key, pipe.now, lease_seconds=15)
    first.close()
    assert receiver.accepted == []
    observer = MonitorStore.from_url(redis_url)
    assert [r.delivery for r in observer.transitions(None, mid)] == ["pending"]
    observer.close()
    second = start(redis_url, pipe, settings)
    try:
        # The claim's lease has not run out: the new process does not send it yet.
        assert second.notifier.deliver_pending() == 0
        pipe.advance(20)  # lease over
        second.evaluator.evaluate_once()  # still Alert: nothing new is recorded
        assert second.notifier.deliver_pending() == 1
        for _ in range(5):
            pipe.advance(10)
            second.evaluator.evaluate_once()
            second.notifier.deliver_pending()
        assert received(receiver) == [f"{mid}:*:1|ops"]
        assert second.store.delivered(f"{mid}:*:1|ops")
        [r] = second.store.transitions("acme", mid)
        assert (r.transition.to_state, r.delivery) == (ALERT, "delivered")
    finally:
        second.close()


def test_restart_before_any_delivery_attempt(redis_url: str, receiver: Receiver) -> None:
    pipe = Pipeline()
    settings = settings_for(receiver)
    first = start(redis_url, pipe, settings)
    mid = define(first.store, "max(last_1m):max:q{*} > 10", "@webhook-ops", renotify_interval=1)
    pipe.points[()] = {ts: 50.0 for ts in range(int(pipe.now) - 120, int(pipe.now) + 600, 10)}
    pipe.advance(10)
    first.evaluator.evaluate_once()
    first.close()  # dies before its delivery loop ran
    second = start(redis_url, pipe, settings)
    try:
        assert second.notifier.deliver_pending() == 1  # due at once: never claimed
        assert second.notifier.deliver_pending() == 0
        for _ in range(13):  # renotifications every minute while in Alert
            pipe.advance(10)
            second.evaluator.evaluate_once()
            second.notifier.deliver_pending()
        kinds = [(e["event_type"], e["transition"]["seq"]) for e in receiver.accepted]
        assert kinds == [("transition", 1), ("renotify", 2), ("renotify", 3)]
        assert sorted(received(receiver)) == sorted(expected_events(second.store, mid))
    finally:
        second.close()


def test_failing_receiver_is_retried_with_backoff(redis_url: str, receiver: Receiver) -> None:
    pipe = Pipeline()
    stack = start(redis_url, pipe, settings_for(receiver))
    try:
        mid = define(stack.store, "max(last_1m):max:q{*} > 10", "@webhook-ops")
        pipe.points[()] = {ts: 50.0 for ts in range(int(pipe.now) - 120, int(pipe.now) + 60, 10)}
        receiver.fail = 3
        pipe.advance(10)
        stack.evaluator.evaluate_once()
        attempts_at: list[float] = []
        for _ in range(40):  # a quarter second of fake time per step
            if stack.notifier.deliver_pending() or len(receiver.rejected) > len(attempts_at):
                attempts_at.append(pipe.now)
            pipe.now += 0.25
        assert len(receiver.rejected) == 3 and received(receiver) == [f"{mid}:*:1|ops"]
        # backoff 1 s, 2 s, 4 s after the failed attempts
        gaps = [b - a for a, b in itertools.pairwise(attempts_at)]
        assert gaps == [1.0, 2.0, 4.0]
        assert [e["event_id"] for e in receiver.rejected] == [f"{mid}:*:1"] * 3
    finally:
        stack.close()


class FlakyStore(MonitorStore):
    """Loses the first delivery mark (Redis dropped the connection after the POST)."""

    lose_marks = 1

    def mark_delivered(self, key: str, now: float) -> None:
        if self.lose_marks:
            self.lose_marks -= 1
            raise MonitorStoreUnavailable("connection lost (injected)")
        super().mark_delivered(key, now)


def test_an_unconfirmed_send_is_repeated_with_the_same_event(
    redis_url: str, receiver: Receiver
) -> None:
    pipe = Pipeline()
    settings = settings_for(receiver)
    store = FlakyStore(redis.Redis.from_url(redis_url), clock=pipe.clock)
    notifier = WebhookNotifier(store, settings.webhooks, clock=pipe.clock)
    ev = Evaluator(store, pipe.run_query, pipe.gate, notifier, pipe.clock, settings)
    try:
        define(store, "max(last_1m):max:q{*} > 10", "@webhook-ops")
        pipe.points[()] = {ts: 50.0 for ts in range(int(pipe.now) - 120, int(pipe.now) + 60, 10)}
        pipe.advance(10)
        ev.evaluate_once()
        with pytest.raises(MonitorStoreUnavailable):
            notifier.deliver_pending()
        pipe.now += 60  # the claim's lease runs out
        assert notifier.deliver_pending() == 1
        pipe.now += 60
        assert notifier.deliver_pending() == 0
        # At least once: the receiver saw the event twice, identical, and can drop the copy.
        assert len(receiver.accepted) == 2 and receiver.accepted[0] == receiver.accepted[1]
    finally:
        notifier.close()
        store.close()


def test_two_notifiers_never_send_one_event_twice(redis_url: str, receiver: Receiver) -> None:
    pipe = Pipeline()
    settings = settings_for(receiver)
    a, b = start(redis_url, pipe, settings), start(redis_url, pipe, settings)
    try:
        ids = [
            define(a.store, f"max(last_1m):max:q{{*}} by {{host}} > {i}", "@webhook-ops")
            for i in range(5)
        ]
        for h in range(8):
            pipe.points[(f"host:h{h}",)] = {int(pipe.now) - 30: 100.0}
        pipe.advance(10)
        summary = a.evaluator.evaluate_once()
        assert summary.transitions == 40
        barrier = threading.Barrier(2)

        def drain(stack: Stack) -> None:
            barrier.wait()
            while stack.notifier.deliver_pending():
                pass

        threads = [threading.Thread(target=drain, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        expected = {k for mid in ids for k in expected_events(a.store, mid)}
        assert len(expected) == 40
        assert sorted(received(receiver)) == sorted(expected)  # 40 distinct, none twice
        assert a.store.outbox_size() == 0
    finally:
        a.close()
        b.close()


def test_concurrent_evaluators_record_each_transition_once(
    redis_url: str, receiver: Receiver
) -> None:
    pipe = Pipeline()
    settings = settings_for(receiver)
    a, b = start(redis_url, pipe, settings), start(redis_url, pipe, settings)
    try:
        mid = define(a.store, "max(last_1m):max:q{*} by {host} > 10", "@webhook-ops")
        for h in range(20):
            pipe.points[(f"host:h{h}",)] = {int(pipe.now) - 30: 100.0}
        pipe.advance(10)
        snaps = a.store.all_snapshots()
        # Both read the same snapshot; only one may write its evaluation.
        first = a.store.record(snaps[0], {}, [], [], _status(pipe))
        second = b.store.record(snaps[0], {}, [], [], _status(pipe))
        assert first == [] and second is None
        results = []
        barrier = threading.Barrier(2)

        def evaluate(stack: Stack) -> None:
            barrier.wait()
            results.append(stack.evaluator.evaluate_once())

        threads = [threading.Thread(target=evaluate, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        log = a.store.transitions("acme", mid)
        assert sorted(r.transition.group for r in log) == sorted(f"host:h{h}" for h in range(20))
        assert sum(r.transitions for r in results) == 20
        while a.notifier.deliver_pending():
            pass
        assert len(receiver.accepted) == 20
    finally:
        a.close()
        b.close()


def _status(pipe: Pipeline) -> EvaluationStatus:
    return EvaluationStatus(pipe.now, False)


def test_run_loop_evaluates_and_delivers(redis_url: str, receiver: Receiver) -> None:
    """``Evaluator.run`` on the real clock: a drop is notified within a few intervals."""
    pipe = Pipeline()
    pipe.complete = 2**40  # every point is visible; the gate below follows the real clock
    settings = settings_for(receiver, interval_seconds=0.05)
    store = MonitorStore.from_url(redis_url)
    notifier = WebhookNotifier(store, settings.webhooks)

    def gate(org: str, metrics: Sequence[str], sketches: Sequence[str]) -> int:
        return int(time.time()) - 1

    ev = Evaluator(store, pipe.run_query, gate, notifier, time.time, settings)
    points: dict[int, float] = {}
    pipe.points[()] = points
    mid = define(store, "min(last_1m):min:hb{*} < 1", "@webhook-ops")
    stop = threading.Event()
    thread = threading.Thread(target=ev.run, args=(stop,))
    try:
        now = int(time.time())
        points.update({ts: 5.0 for ts in range(now - 60, now - 5)})
        thread.start()
        deadline = time.monotonic() + 10
        while mid not in ev.status() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a few more rounds
        assert receiver.accepted == [] and ev.status()[mid].delayed is False
        points[now - 3] = 0.0
        deadline = time.monotonic() + 10
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e["transition"]["to"] for e in receiver.accepted] == [ALERT]
    finally:
        stop.set()
        thread.join(15)
        notifier.close()
        store.close()
    assert not thread.is_alive()
