"""The event bus on real SQLite and PostgreSQL: typed topics, the durable outbox, listeners,
durable consumers across workers, pruning, and PostgreSQL's commit ordering and NOTIFY."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core import events as events_module
from ioc.core.audit import AuditEntry
from ioc.core.db import Database
from ioc.core.events import (
    _PUBLISH_LOCK_KEY,
    Event,
    EventBus,
    EventCursor,
    OutboxEvent,
    Outgoing,
    Topic,
    events_after,
    latest_event_id,
    matches,
    publish,
    publish_many,
)
from tests.conftest import wait_for


class Thing(BaseModel):
    n: int
    label: str = ""


class Stamp(BaseModel):
    at: datetime
    tags: list[str]


THING = Topic("test.thing", Thing, "a test event")
OTHER = Topic("test.other", Thing)
ALARMISH = Topic("alarm.test", Thing)
STAMP = Topic("test.stamp", Stamp)


def emit(db: Database, topic: Topic[Thing], *ns: int, **kw: Any) -> None:
    """Publish one event per ``n``, all in one transaction."""
    with db.session() as s:
        for n in ns:
            publish(s, topic, Thing(n=n), **kw)


def outbox(db: Database) -> list[Event]:
    with db.session() as s:
        return events_after(s, 0, 100_000)


def cursor_of(db: Database, name: str) -> EventCursor:
    with db.session() as s:
        cursor = s.get(EventCursor, name)
        assert cursor is not None
        return cursor


def consumed(db: Database) -> Counter[int]:
    """How many committed audit rows each event id got from the test handlers."""
    with db.session() as s:
        ids = s.scalars(select(AuditEntry.object_id).where(AuditEntry.action == "test.consumed"))
        return Counter(int(i) for i in ids)


def record_handler(calls: list[int] | None = None, delay: float = 0.0) -> Callable[[Session, Event], None]:
    """A durable handler that writes an audit row per event (in the consumer's transaction)."""

    def handle(session: Session, ev: Event) -> None:
        audit.record(session, None, "test.consumed", "event", ev.id)
        if calls is not None:
            calls.append(ev.id)
        if delay:
            time.sleep(delay)

    return handle


@pytest.fixture
def bus(db: Database) -> Iterator[EventBus]:
    b = EventBus(db, poll_seconds=0.05)
    yield b
    b.stop()


# --------------------------------------------------------------------------- typed topics


@pytest.mark.parametrize("name", ["", "a b", "alarm.*", "x.#", "x/+", "a..b", ".a", "a.", "a\nb", "x" * 129])
def test_topic_names_must_be_dotted_words(name: str) -> None:
    with pytest.raises(ValueError, match="bad topic name"):
        Topic(name, Thing)


def test_matches_globs() -> None:
    assert matches(("alarm.*",), "alarm.raised")
    assert matches(("test.*", "alarm.*"), "alarm.cleared")
    assert matches(("*",), "anything.at.all")
    assert not matches(("alarm.*",), "alarms.raised")
    assert not matches(("alarm.raised",), "alarm.cleared")


def test_wrong_payload_raises_and_writes_nothing(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(ValidationError):
            publish(s, THING, {"n": "not a number"})
        with pytest.raises(ValidationError):
            publish(s, THING, {"label": "n is missing"})
        with pytest.raises(ValidationError):
            publish(s, THING, Stamp(at=datetime.now(UTC), tags=[]))  # type: ignore[misc]  # a model of another topic
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
    assert outbox(db) == []


def test_payload_is_stored_as_json(db: Database) -> None:
    at = datetime(2025, 7, 1, 8, 30, tzinfo=UTC)
    with db.session() as s:
        publish(s, STAMP, {"at": at, "tags": ["Núi Quyết", "lũ"]}, ward_code="16681", agency_id="ubnd-thanh-vinh")
    with db.session() as s:
        if db.dialect == "postgresql":
            kind = s.scalar(text("SELECT jsonb_typeof(payload) FROM event_outbox"))
            assert kind == "object"
            raw = s.scalar(text("SELECT payload::text FROM event_outbox"))
        else:
            assert s.scalar(text("SELECT json_valid(payload) FROM event_outbox")) == 1
            raw = s.scalar(text("SELECT payload FROM event_outbox"))
    assert json.loads(raw) == {"at": "2025-07-01T08:30:00Z", "tags": ["Núi Quyết", "lũ"]}
    [ev] = outbox(db)
    assert ev.topic == "test.stamp"
    assert ev.payload == {"at": "2025-07-01T08:30:00Z", "tags": ["Núi Quyết", "lũ"]}
    assert (ev.ward_code, ev.agency_id) == ("16681", "ubnd-thanh-vinh")
    assert ev.created_at.tzinfo is not None
    assert ev.as_dict()["payload"] == ev.payload


def test_publish_many_writes_every_event_in_order_with_one_call(db: Database) -> None:
    with db.session() as s:
        publish(s, THING, {"n": 0})
        publish_many(
            s,
            [
                Outgoing(THING if n % 2 else OTHER, {"n": n}, ward_code="16681" if n == 3 else None)
                for n in range(1, 1201)
            ],
        )
        publish_many(s, [])
        publish(s, THING, {"n": 1201})
    events = outbox(db)
    assert [e.payload["n"] for e in events] == list(range(1202))
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[2].topic == "test.other" and events[1].topic == "test.thing"
    assert events[3].ward_code == "16681" and events[4].ward_code is None


def test_publish_many_validates_every_payload_before_writing(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(ValidationError):
            publish_many(s, [Outgoing(THING, {"n": 1}), Outgoing(THING, {"n": "bad"})])
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0


# --------------------------------------------------------------------------- durable outbox


def test_rolled_back_event_never_appears_committed_one_does(db: Database) -> None:
    def failing_change() -> None:
        with db.session() as s:
            publish(s, THING, {"n": 1})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert outbox(db) == []
    emit(db, THING, 2)
    assert [e.payload["n"] for e in outbox(db)] == [2]


def test_event_of_a_rolled_back_savepoint_is_dropped(db: Database) -> None:
    with db.session() as s:
        publish(s, THING, {"n": 1})
        with s.begin_nested():
            publish(s, THING, {"n": 2})
        try:
            with s.begin_nested():
                publish(s, THING, {"n": 3})
                raise RuntimeError("undo this part")
        except RuntimeError:
            pass
        publish(s, THING, {"n": 4})
    events = outbox(db)
    assert [e.payload["n"] for e in events] == [1, 2, 4]
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_event_survives_a_crash_and_a_durable_consumer_gets_it_after_restart(settings: Any, db: Database) -> None:
    calls: list[int] = []
    first = EventBus(db)
    first.consume("crash-test", "test.*", record_handler(calls))
    emit(db, THING, 1)
    first.poll_once()
    assert len(calls) == 1
    emit(db, THING, 2)  # committed, then the process dies before any bus sees it
    db.dispose()

    db2 = Database(settings.database_url)
    try:
        after: list[int] = []
        second = EventBus(db2)
        second.consume("crash-test", "test.*", record_handler(after))
        second.poll_once()
        events = outbox(db2)
        assert [e.payload["n"] for e in events] == [1, 2]
        assert after == [events[1].id]  # the cursor survived too: event 1 is not redone
        assert consumed(db2) == Counter({events[0].id: 1, events[1].id: 1})
    finally:
        db2.dispose()


# --------------------------------------------------------------------------- listeners


def test_listeners_get_matching_events_in_id_order_once(db: Database, bus: EventBus) -> None:
    got_test: list[Event] = []
    got_alarm: list[Event] = []
    got_all: list[Event] = []
    bus.listen("test.*", got_test.append)
    bus.listen(["alarm.*"], got_alarm.append)
    bus.listen("*", got_all.append)
    emit(db, THING, 1)
    emit(db, ALARMISH, 2)
    with db.session() as s:  # several events, several topics in one transaction
        publish(s, OTHER, {"n": 3})
        publish(s, ALARMISH, {"n": 4})
        publish(s, THING, {"n": 5})
    assert bus.poll_once() == 5
    assert bus.poll_once() == 0  # nothing twice
    emit(db, THING, 6)
    assert bus.poll_once() == 1

    assert [e.payload["n"] for e in got_test] == [1, 3, 5, 6]
    assert [e.payload["n"] for e in got_alarm] == [2, 4]
    assert [e.payload["n"] for e in got_all] == [1, 2, 3, 4, 5, 6]
    assert [e.id for e in got_all] == sorted({e.id for e in got_all})
    assert bus.position == got_all[-1].id


def test_listener_sees_only_events_after_it_subscribed(db: Database, bus: EventBus) -> None:
    emit(db, THING, 1, 2)
    got: list[int] = []
    sub = bus.listen("*", lambda e: got.append(e.payload["n"]))
    assert sub.position == latest_event_id_of(db)
    emit(db, THING, 3)
    bus.poll_once()
    assert got == [3]


def test_listener_added_during_a_batch_gets_every_event_above_its_position(db: Database, bus: EventBus) -> None:
    late: list[int] = []
    subs: list[Any] = []

    def first(ev: Event) -> None:
        if not subs:  # subscribe in the middle of a batch being delivered
            subs.append(bus.listen("*", lambda e: late.append(e.id)))

    bus.listen("*", first)
    emit(db, THING, 1, 2, 3)
    bus.poll_once()
    emit(db, THING, 4, 5)
    bus.poll_once()
    ids = [e.id for e in outbox(db)]
    position = subs[0].position
    assert position in ids
    assert late == [i for i in ids if i > position]
    assert late[-2:] == ids[-2:]


def latest_event_id_of(db: Database) -> int:
    with db.session() as s:
        return latest_event_id(s)


def test_unsubscribe_stops_delivery(db: Database, bus: EventBus) -> None:
    got: list[int] = []
    kept: list[int] = []
    unsubscribe = bus.listen("*", lambda e: got.append(e.payload["n"]))
    bus.listen("*", lambda e: kept.append(e.payload["n"]))
    emit(db, THING, 1)
    bus.poll_once()
    unsubscribe()
    unsubscribe()  # twice is harmless
    emit(db, THING, 2)
    bus.poll_once()
    assert got == [1]
    assert kept == [1, 2]


def test_unsubscribing_during_a_batch_stops_at_once(db: Database, bus: EventBus) -> None:
    got: list[int] = []
    subs: list[Callable[[], None]] = []

    def once(ev: Event) -> None:
        got.append(ev.payload["n"])
        subs[0]()

    subs.append(bus.listen("*", once))
    emit(db, THING, 1, 2, 3)
    bus.poll_once()
    assert got == [1]


def test_a_failing_listener_does_not_stop_the_others(db: Database, bus: EventBus) -> None:
    seen_by_failing: list[int] = []
    got: list[int] = []

    def failing(ev: Event) -> None:
        seen_by_failing.append(ev.payload["n"])
        raise RuntimeError("listener bug")

    bus.listen("*", failing)
    bus.listen("*", lambda e: got.append(e.payload["n"]))
    emit(db, THING, 1, 2)
    emit(db, THING, 3)
    assert bus.poll_once() == 3
    assert got == [1, 2, 3]
    assert seen_by_failing == [1, 2, 3]  # and it is not handed the same events again
    bus.poll_once()
    assert seen_by_failing == [1, 2, 3]


def test_running_bus_delivers_live_events(db: Database, bus: EventBus) -> None:
    got: list[int] = []
    bus.listen("test.*", lambda e: got.append(e.payload["n"]))
    bus.start()
    bus.start()  # idempotent
    for n in range(1, 6):
        emit(db, THING, n)
    wait_for(lambda: len(got) == 5, what="live events")
    assert got == [1, 2, 3, 4, 5]
    threads = list(bus._threads)
    bus.stop()
    assert not bus.running
    assert not any(t.is_alive() for t in threads)


def test_a_commit_wakes_the_bus_before_the_poll_interval(settings: Any, db: Database) -> None:
    """SQLite: a commit in this process wakes the dispatcher; PostgreSQL: NOTIFY from any process does."""
    bus = EventBus(db, poll_seconds=300)
    got: list[int] = []
    bus.listen("*", lambda e: got.append(e.payload["n"]))
    bus.start()
    other = Database(settings.database_url) if db.dialect == "postgresql" else db
    try:
        assert bus.wait_listening(10)
        emit(other, THING, 1)
        # Without the wake-up this would wait for the 300 s poll interval.
        wait_for(lambda: got == [1], timeout=20, what="the dispatcher to wake up")
    finally:
        bus.stop()
        if other is not db:
            other.dispose()


def test_commits_within_the_round_gap_share_one_round(db: Database) -> None:
    """A round at most every ``round_gap_seconds``: the commits made meanwhile are handled
    together (one consumer batch), not one round each; after a quiet spell, at once."""
    bus = EventBus(db, poll_seconds=300, round_gap_seconds=1.0)
    delivered: dict[int, float] = {}
    bus.listen("*", lambda e: delivered.setdefault(e.payload["n"], time.monotonic()))
    bus.consume("gap", "*", record_handler())
    bus.start()
    try:
        assert bus.wait_listening(10)
        # the start's rounds (and, on PostgreSQL, the one LISTEN's start asks for) are more than a
        # gap ago: the next commit is handled at once
        time.sleep(2.2)
        sent = time.monotonic()
        emit(db, THING, 1)
        wait_for(lambda: 1 in delivered, what="event 1")
        assert delivered[1] - sent < 0.6
        wait_for(lambda: len(consumed(db)) == 1, what="the consumer to handle event 1")
        runs = bus.stats.consumer_runs
        for n in range(2, 7):  # five commits, each waking the bus, within its gap
            emit(db, THING, n)
        wait_for(lambda: len(delivered) == 6, what="events 2-6")
        wait_for(lambda: len(consumed(db)) == 6, what="the consumer to handle events 2-6")
        assert delivered[2] - delivered[1] >= 0.9  # not before the gap since the round of event 1
        assert max(delivered.values()) - delivered[2] < 0.2  # all in one dispatch round
        assert bus.stats.consumer_runs == runs + 1  # one consumer batch for the five commits
        stopping = time.monotonic()
        emit(db, THING, 7)  # wakes the threads into their gap: stop() does not wait it out
    finally:
        bus.stop()
    assert time.monotonic() - stopping < 0.8


def test_a_long_round_is_followed_by_a_longer_pause(db: Database) -> None:
    """Under a stream of commits the bus spends at most a fifth of the time in rounds: a round of
    0.05 s is followed by a pause of 0.2 s however soon a commit wakes the bus, and the next round
    handles what came meanwhile together."""
    handled: dict[int, float] = {}
    handler = record_handler(delay=0.05)

    def timed(session: Session, ev: Event) -> None:
        handler(session, ev)
        handled[ev.payload["n"]] = time.monotonic()

    bus = EventBus(db, poll_seconds=300, round_gap_seconds=0.0)
    bus.consume("slow", "*", timed)
    bus.start()
    try:
        assert bus.wait_listening(10)
        time.sleep(0.6)  # the start's rounds are over
        began = time.monotonic()
        emit(db, THING, 1)
        wait_for(lambda: 1 in handled, what="event 1")
        runs = bus.stats.consumer_runs
        for n in range(2, 5):  # each commit wakes the bus during its pause
            emit(db, THING, n)
        wait_for(lambda: len(handled) == 4, what="events 2-4")
        pause = min(0.05 * (events_module.ROUND_SPACING - 1), events_module.MAX_ROUND_PAUSE_SECONDS)
        assert handled[2] - began >= 0.05 + pause + 0.05  # event 1, the pause, then event 2
        assert bus.stats.consumer_runs == runs + 1  # one batch for the three commits
    finally:
        bus.stop()


# --------------------------------------------------------------------------- durable consumers


def test_consumer_registration_is_checked(bus: EventBus) -> None:
    bus.consume("c", "*", record_handler())
    with pytest.raises(ValueError, match="twice"):
        bus.consume("c", "*", record_handler())
    with pytest.raises(ValueError, match="earliest"):
        bus.consume("d", "*", record_handler(), start="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pattern"):
        bus.consume("e", [], record_handler())


def test_consumer_processes_history_and_new_events_once(db: Database, bus: EventBus) -> None:
    emit(db, THING, 1, 2)
    emit(db, OTHER, 3)
    calls: list[int] = []
    bus.consume("things", "test.thing", record_handler(calls))
    bus.poll_once()
    bus.poll_once()
    ids = [e.id for e in outbox(db)]
    assert calls == ids[:2]
    assert cursor_of(db, "things").last_id == ids[-1]  # passes over what does not match
    emit(db, THING, 4)
    bus.poll_once()
    assert consumed(db) == Counter({ids[0]: 1, ids[1]: 1, latest_event_id_of(db): 1})
    [status] = bus.consumer_status()
    assert status["name"] == "things"
    assert status["failures"] == 0


def test_start_latest_skips_history(db: Database, bus: EventBus) -> None:
    emit(db, THING, 1, 2, 3)
    calls: list[int] = []
    bus.consume("live-only", "*", record_handler(calls), start="latest")
    bus.start()
    emit(db, THING, 4)
    wait_for(lambda: calls, what="the new event")
    assert calls == [latest_event_id_of(db)]


def test_start_latest_is_anchored_when_registered_on_a_running_bus(db: Database, bus: EventBus) -> None:
    bus.start()
    emit(db, THING, 1)
    calls: list[int] = []
    bus.consume("late", "*", record_handler(calls), start="latest")
    emit(db, THING, 2)  # published right after registering: must not be skipped
    wait_for(lambda: calls, what="the event after registration")
    assert calls == [latest_event_id_of(db)]


def test_failing_handler_is_retried_with_backoff_and_its_writes_roll_back(db: Database) -> None:
    bus = EventBus(db, retry_base_seconds=0.2)
    attempts: Counter[int] = Counter()
    attempt_times: dict[int, list[datetime]] = {}
    emit(db, THING, 1, 2, 3)
    ids = [e.id for e in outbox(db)]
    flaky = ids[1]

    def handle(session: Session, ev: Event) -> None:
        attempts[ev.id] += 1
        attempt_times.setdefault(ev.id, []).append(datetime.now(UTC))
        audit.record(session, None, "test.consumed", "event", ev.id)  # written, then undone on failure
        if ev.id == flaky and attempts[ev.id] <= 2:
            raise RuntimeError(f"downstream unavailable (attempt {attempts[ev.id]})")

    bus.consume("flaky", "*", handle)
    bus.poll_once()
    cursor = cursor_of(db, "flaky")
    assert consumed(db) == Counter({ids[0]: 1})  # the failing event's write was rolled back
    assert cursor.last_id == ids[0]  # ...with the cursor, which stays before it
    assert cursor.failures == 1
    assert "downstream unavailable (attempt 1)" in (cursor.last_error or "")
    assert cursor.retry_at is not None
    first_retry_at = cursor.retry_at
    assert first_retry_at >= attempt_times[flaky][0] + timedelta(seconds=0.2)
    assert attempts[ids[2]] == 0  # nothing after the failing event ran

    wait_for(lambda: (bus.poll_once(), attempts[flaky] == 2)[1], what="the first retry")
    assert attempt_times[flaky][1] >= first_retry_at  # not before the back-off ended
    cursor = cursor_of(db, "flaky")
    assert cursor.failures == 2
    assert cursor.retry_at is not None
    assert cursor.retry_at >= attempt_times[flaky][1] + timedelta(seconds=0.4)  # the back-off doubled

    wait_for(lambda: (bus.poll_once(), attempts[ids[2]] == 1)[1], what="the event to go through")
    assert attempts[flaky] == 3
    assert consumed(db) == Counter(dict.fromkeys(ids, 1))  # nothing lost, nothing committed twice
    cursor = cursor_of(db, "flaky")
    assert (cursor.last_id, cursor.failures, cursor.retry_at, cursor.last_error) == (ids[2], 0, None, None)


def test_a_failure_mid_batch_keeps_the_events_before_it_and_runs_nothing_after(db: Database) -> None:
    # The batch runs without savepoints first; a failure rolls it back and the events before
    # the failing one are done again, each with its savepoint; the failing one is not called again.
    bus = EventBus(db, retry_base_seconds=60)
    calls: Counter[int] = Counter()
    emit(db, THING, *range(1, 8))
    ids = [e.id for e in outbox(db)]
    bad = ids[4]

    def handle(session: Session, ev: Event) -> None:
        calls[ev.id] += 1
        audit.record(session, None, "test.consumed", "event", ev.id)
        if ev.id == bad:
            raise RuntimeError("bad event")

    bus.consume("mid", "*", handle)
    bus.poll_once()
    assert consumed(db) == Counter(dict.fromkeys(ids[:4], 1))  # committed once each
    assert calls == Counter({**dict.fromkeys(ids[:4], 2), bad: 1})  # undone once, redone; bad called once
    cursor = cursor_of(db, "mid")
    assert (cursor.last_id, cursor.failures) == (ids[3], 1)
    assert "bad event" in (cursor.last_error or "")


def test_a_consumer_passes_over_events_of_other_topics(db: Database, bus: EventBus) -> None:
    emit(db, THING, *range(1, 6))
    calls: list[int] = []
    bus.consume("others", "nothing.*", record_handler(calls))
    bus.poll_once()
    assert calls == []
    assert cursor_of(db, "others").last_id == outbox(db)[-1].id  # past them, not stuck before them


def test_consumers_of_one_round_read_each_payload_once(
    db: Database, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two consumers of the same topic get the same events in order, but the round reads their
    payloads once, over several batches too; a later round reads the new ones; past the round's
    limit each consumer reads its own."""
    read: list[int] = []
    real = events_module._read_events

    def counting(session: Session, stmt: Any, params: dict[str, Any]) -> list[Event]:
        got = real(session, stmt, params)
        read.extend(e.id for e in got)
        return got

    monkeypatch.setattr(events_module, "_read_events", counting)
    first: list[Event] = []
    second: list[Event] = []
    bus.consume("first", "test.thing", lambda _s, ev: first.append(ev))
    bus.consume("second", "test.*", lambda _s, ev: second.append(ev))
    emit(db, THING, 1, 2, 3)
    emit(db, OTHER, 4)
    bus.consume_once()
    assert [e.payload["n"] for e in first] == [1, 2, 3]
    assert [e.payload["n"] for e in second] == [1, 2, 3, 4]
    assert sorted(read) == sorted({e.id for e in second})  # each payload read once
    read.clear()
    bus.BATCH = 2  # several batches per consumer in one round
    emit(db, THING, 5, 6, 7)
    bus.consume_once()
    assert [e.payload["n"] for e in first][3:] == [5, 6, 7] and [e.payload["n"] for e in second][4:] == [5, 6, 7]
    assert len(read) == 3
    monkeypatch.setattr(events_module, "ROUND_READS", 0)  # nothing kept: each consumer reads its own
    read.clear()
    emit(db, THING, 8)
    bus.consume_once()
    assert len(read) == 2 and first[-1].payload["n"] == second[-1].payload["n"] == 8


def test_a_consumer_with_only_other_topics_past_it_is_moved_without_running(
    db: Database, bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its cursor moves past events of other topics in one shared transaction, not in a round of
    its own (lock, read, write); from where it was read only, and never past a failure. The row
    is written once they are many (``MOVE_AFTER_EVENTS``), some time after its last move
    (``MOVE_AFTER_SECONDS``) or at a round that finds nothing new, not at every round under a
    stream of writes: between, the process remembers how far it saw."""
    monkeypatch.setattr(events_module, "MOVE_AFTER_SECONDS", 3600.0)  # however slow the machine
    monkeypatch.setattr(events_module, "MOVE_AFTER_EVENTS", 10**9)
    calls: list[int] = []
    bus.consume("things", "test.thing", record_handler(calls))
    emit(db, THING, 1)
    bus.poll_once()
    runs = bus.stats.consumer_runs
    written = cursor_of(db, "things").last_id
    emit(db, OTHER, *range(2, 12))
    bus.poll_once()  # a few of other topics, just after its row was written: the row stays
    assert cursor_of(db, "things").last_id == written < latest_event_id_of(db)
    assert bus.stats.consumer_runs == runs and len(calls) == 1
    emit(db, OTHER, *range(20, 30))
    bus.poll_once()
    assert cursor_of(db, "things").last_id == written
    assert bus.stats.consumer_runs == runs
    emit(db, THING, 30)  # one of its own behind them: it runs from the row, past everything
    bus.poll_once()
    assert bus.stats.consumer_runs == runs + 1 and len(calls) == 2
    assert cursor_of(db, "things").last_id == latest_event_id_of(db)

    emit(db, OTHER, *range(31, 35))
    bus.poll_once()
    row = cursor_of(db, "things").last_id
    assert row < latest_event_id_of(db)
    bus.BATCH = 3  # more of them than one read holds: past them all in the same round
    emit(db, OTHER, *range(35, 40))
    # (ids, not events: PostgreSQL's sequence leaves gaps, and the bound is on what a run rescans)
    monkeypatch.setattr(events_module, "MOVE_AFTER_EVENTS", latest_event_id_of(db) - row)  # that many now
    bus.poll_once()
    assert cursor_of(db, "things").last_id == latest_event_id_of(db)
    emit(db, OTHER, 40)
    bus.poll_once()
    assert cursor_of(db, "things").last_id < latest_event_id_of(db)
    bus._consumers["things"].moved_at -= events_module.MOVE_AFTER_SECONDS  # that long after its last move
    emit(db, OTHER, 41)
    bus.poll_once()
    assert cursor_of(db, "things").last_id == latest_event_id_of(db)
    emit(db, OTHER, 42)
    bus.poll_once()
    assert cursor_of(db, "things").last_id < latest_event_id_of(db)
    bus.poll_once()  # a round that finds nothing new: the row is moved where the consumer is
    assert cursor_of(db, "things").last_id == latest_event_id_of(db)
    assert bus.stats.consumer_runs == runs + 1 and len(calls) == 2
    bus.BATCH = 500

    at = cursor_of(db, "things").last_id
    bus._move_cursors([("things", at - 1, at + 5)])  # moved meanwhile by another worker: left alone
    assert cursor_of(db, "things").last_id == at
    with db.session() as s:
        s.execute(update(EventCursor).where(EventCursor.name == "things").values(failures=1))
    bus._move_cursors([("things", at, at + 5)])  # failing: left where the failure holds it
    assert cursor_of(db, "things").last_id == at


def test_a_running_bus_moves_the_rows_left_behind_soon_after_the_writes_stop(db: Database) -> None:
    """Without a commit to wake it, the consumers' thread looks again after
    ``MOVE_WHEN_IDLE_SECONDS`` while moves are left, not after the poll interval."""
    bus = EventBus(db, poll_seconds=60)
    calls: list[int] = []
    bus.consume("things", "test.thing", record_handler(calls))
    try:
        bus.start()
        emit(db, THING, 1)
        wait_for(lambda: len(calls) == 1)
        emit(db, OTHER, 2, 3)  # its row was just written: these are left for later
        wait_for(lambda: cursor_of(db, "things").last_id == latest_event_id_of(db), timeout=10)
    finally:
        bus.stop()


def test_backoff_is_shared_through_the_database(settings: Any, db: Database) -> None:
    """Another worker does not retry a failing event before the back-off recorded by the first ends."""
    emit(db, THING, 1)

    def fail(_s: Session, _e: Event) -> None:
        raise RuntimeError("boom")

    first = EventBus(db, retry_base_seconds=3600)
    first.consume("shared", "*", fail)
    first.poll_once()
    db2 = Database(settings.database_url)
    try:
        calls: list[int] = []
        second = EventBus(db2)
        second.consume("shared", "*", record_handler(calls))
        second.poll_once()
        assert calls == []
        assert cursor_of(db2, "shared").failures == 1
    finally:
        db2.dispose()


def test_each_event_is_processed_once_across_two_workers(settings: Any, db: Database) -> None:
    """Two processes' buses (two engines) poll one consumer concurrently: no event twice, none lost."""
    emit(db, THING, *range(30))
    db_a, db_b = Database(settings.database_url), Database(settings.database_url)
    calls: list[int] = []
    buses = []
    try:
        for worker_db in (db_a, db_b):
            b = EventBus(worker_db, poll_seconds=0.01)
            b.BATCH = 4  # short transactions, so the two workers interleave
            b.consume("once", "*", record_handler(calls, delay=0.002))
            buses.append(b)
        for b in buses:
            b.start()
        emit(db, THING, *range(30, 40))
        for n in range(40, 50):
            emit(db, OTHER, n)
        wait_for(lambda: cursor_of(db, "once").last_id == latest_event_id_of(db), timeout=30, what="both workers")
    finally:
        for b in buses:
            b.stop()
        db_a.dispose()
        db_b.dispose()
    ids = [e.id for e in outbox(db)]
    assert len(ids) == 50
    assert consumed(db) == Counter(dict.fromkeys(ids, 1))
    assert sorted(calls) == ids  # no handler ran twice, even in a transaction that was then undone


def test_two_consumers_keep_their_own_cursors(db: Database, bus: EventBus) -> None:
    a: list[int] = []
    b: list[int] = []
    bus.consume("a", "test.thing", lambda _s, e: a.append(e.payload["n"]))
    bus.consume("b", "test.other", lambda _s, e: b.append(e.payload["n"]))
    emit(db, THING, 1)
    emit(db, OTHER, 2)
    bus.poll_once()
    assert (a, b) == ([1], [2])
    assert cursor_of(db, "a").last_id == cursor_of(db, "b").last_id == latest_event_id_of(db)


def test_a_consumer_catches_up_a_long_backlog_in_several_transactions(db: Database, bus: EventBus) -> None:
    bus.BATCH = 7
    emit(db, THING, *range(50))
    calls: list[int] = []
    bus.consume("backlog", "*", record_handler(calls))
    bus.poll_once()
    assert len(calls) == 50
    assert cursor_of(db, "backlog").last_id == latest_event_id_of(db)


# --------------------------------------------------------------------------- pruning


def _age_events(db: Database, days: int) -> None:
    with db.session() as s:
        s.execute(update(OutboxEvent).values(created_at=datetime.now(UTC) - timedelta(days=days)))


def test_prune_keeps_the_newest_event_so_ids_are_never_reused(db: Database) -> None:
    """On SQLite an emptied table would hand out id 1 again: readers past it would skip new events."""
    bus = EventBus(db, retention=timedelta(days=1))
    got: list[int] = []
    calls: list[int] = []
    bus.listen("*", lambda e: got.append(e.payload["n"]))
    bus.consume("c", "*", record_handler(calls))
    emit(db, THING, 1, 2, 3)
    bus.poll_once()
    _age_events(db, 2)
    assert bus.prune() == 2
    assert [e.payload["n"] for e in outbox(db)] == [3]
    emit(db, THING, 4)
    bus.poll_once()
    assert got == [1, 2, 3, 4]
    assert len(calls) == 4
    assert outbox(db)[-1].id > calls[2]


def test_prune_waits_for_live_consumers_but_not_for_retired_ones(db: Database) -> None:
    bus = EventBus(db, retention=timedelta(days=7))
    emit(db, THING, 1, 2, 3, 4)
    ids = [e.id for e in outbox(db)]
    with db.session() as s:
        now = datetime.now(UTC)
        s.add(EventCursor(name="live", last_id=ids[1], failures=0, updated_at=now))
        s.add(EventCursor(name="retired", last_id=0, failures=0, updated_at=now - timedelta(days=30)))
    _age_events(db, 10)
    assert bus.prune() == 2  # up to the live consumer's cursor; the retired one holds nothing back
    assert [e.id for e in outbox(db)] == ids[2:]
    with db.session() as s:
        s.execute(update(EventCursor).where(EventCursor.name == "live").values(last_id=ids[3]))
    assert bus.prune() == 1  # the newest stays
    assert [e.id for e in outbox(db)] == ids[3:]


def test_prune_keeps_recent_events(db: Database) -> None:
    bus = EventBus(db, retention=timedelta(days=7))
    emit(db, THING, 1, 2)
    assert bus.prune() == 0
    assert len(outbox(db)) == 2


# --------------------------------------------------------------------------- PostgreSQL ordering


@pytest.fixture
def pg_db(pg_database: str) -> Iterator[Database]:
    database = Database(pg_database)
    with database.engine.begin() as conn:
        conn.execute(text("TRUNCATE event_outbox, event_cursors RESTART IDENTITY"))
    yield database
    database.dispose()


def _advisory_waiters(db: Database) -> int:
    with db.session() as s:
        return int(
            s.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = :k"),
                {"k": _PUBLISH_LOCK_KEY},
            )
            or 0
        )


def test_pg_publishers_serialise_on_the_advisory_lock_so_ids_follow_commit_order(pg_db: Database) -> None:
    errors: list[BaseException] = []
    late = pg_db.sessions()
    publish(late, THING, {"n": 1})  # published first (lower provisional id) but committed second

    holder = pg_db.sessions()
    holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PUBLISH_LOCK_KEY})
    publish(holder, THING, {"n": 2})

    def commit_late() -> None:
        try:
            late.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=commit_late)
    thread.start()
    try:
        wait_for(lambda: _advisory_waiters(pg_db) == 1, what="the commit to wait on the publish lock")
        assert outbox(pg_db) == []  # nothing visible while the lock is held
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
        late.close()
    assert not errors
    events = outbox(pg_db)
    assert [e.payload["n"] for e in events] == [2, 1]  # id order == commit order
    assert events[0].id < events[1].id


def test_pg_publish_then_row_lock_does_not_deadlock(pg_db: Database) -> None:
    """T1 publishes, then needs a lock that T2 holds; T2 publishes and commits. Were the publish lock
    taken at publish time, T2 would wait for it while T1 waits for T2's lock: a deadlock. (The other
    lock is an advisory one here; a row lock, e.g. on an open alarm, behaves the same.)"""
    t2_has_row = threading.Event()
    t1_published = threading.Event()
    errors: list[BaseException] = []

    def t1() -> None:
        try:
            with pg_db.session() as s:
                assert t2_has_row.wait(10)
                publish(s, THING, {"n": 1})
                t1_published.set()
                s.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        except BaseException as exc:
            errors.append(exc)
            t1_published.set()

    def t2() -> None:
        try:
            with pg_db.session() as s:
                s.execute(text("SELECT pg_advisory_xact_lock(4242)"))
                t2_has_row.set()
                assert t1_published.wait(10)
                publish(s, THING, {"n": 2})
        except BaseException as exc:
            errors.append(exc)
            t2_has_row.set()

    threads = [threading.Thread(target=t1), threading.Thread(target=t2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert [e.payload["n"] for e in outbox(pg_db)] == [2, 1]  # T2 committed first


def test_pg_final_id_is_drawn_at_commit(pg_db: Database) -> None:
    with pg_db.session() as s:
        publish(s, THING, {"n": 1})
        provisional = s.scalar(text("SELECT id FROM event_outbox"))
    [ev] = outbox(pg_db)
    assert ev.id > provisional
