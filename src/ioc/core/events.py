"""Typed event topics, a durable outbox, and fan-out to subscribers and SSE streams.

* :func:`publish` validates a payload against its :class:`Topic` and writes the event into
  the ``event_outbox`` table **in the caller's transaction**: the event exists if and only if
  the change that caused it was committed, so no event is lost on a crash.
* :class:`EventBus` runs, per process, a *dispatcher* thread and a *consumer* thread:
  - the dispatcher hands every new event, in id order, to the process's *listeners* (SSE
    streams, caches); each ``ioc serve`` worker sees every event because it reads the shared
    database, never process memory alone;
  - the consumer thread feeds *durable consumers*, each of which processes every event once
    across all workers, at least once, with its cursor in the database (``event_cursors``)
    updated in the same transaction as the consumer's own writes; a failing event is
    retried with exponential back-off. A slow consumer (an MQTT broker that is down) never
    delays the listeners.
* Readers advance by id, so ids must become visible in increasing order:
  - on SQLite one writer at a time holds the database, so ids commit in order;
  - on PostgreSQL an event gets a provisional id when published and its final id **at
    commit**, drawn under a transaction-level advisory lock that publishers serialise on
    until their commit ends. The lock is taken only in the last step of the commit, after
    every other row lock of the transaction, so it cannot deadlock with them and a long
    transaction that published early does not block every other publisher. ``NOTIFY``
    then wakes the dispatchers of every worker at once; on SQLite they poll (and a commit
    in the same process wakes them).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Select,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, Database, JsonDoc, UTCDateTime, bulk_write, utcnow

log = logging.getLogger("ioc.events")

P = TypeVar("P", bound=BaseModel)
BigId = BigInteger().with_variant(Integer(), "sqlite")
NOTIFY_CHANNEL = "ioc_events"
_PUBLISH_LOCK_KEY = 7_402_025  # advisory lock id serialising publishers' commits on PostgreSQL
# Dotted words: safe as an SSE ``event:`` line and, with dots turned to slashes, as an MQTT topic
# (no wildcards ``+``/``#``, no spaces or newlines).
TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class Topic(Generic[P]):
    """A named kind of event with the pydantic model of its payload."""

    def __init__(self, name: str, payload: type[P], description: str = "") -> None:
        if len(name) > 128 or not TOPIC_NAME.match(name):
            raise ValueError(f"bad topic name {name!r}: dotted words of letters, digits, '_' and '-'")
        self.name = name
        self.payload = payload
        self.description = description

    def __repr__(self) -> str:
        return f"Topic({self.name!r})"


class OutboxEvent(Base):
    """One published event."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(128), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class EventCursor(Base):
    """How far a durable consumer has got, and its retry state."""

    __tablename__ = "event_cursors"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


@dataclass(frozen=True)
class Event:
    """An event as subscribers receive it (treat ``payload`` as read-only: it is shared)."""

    id: int
    topic: str
    payload: dict[str, Any]
    created_at: datetime
    ward_code: str | None = None
    agency_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (SSE ``data:``, MQTT payload)."""
        return {
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
            "ward_code": self.ward_code,
            "agency_id": self.agency_id,
        }


# --------------------------------------------------------------------------- publishing

_PUBLISHED_FLAG = "ioc_events_published"  # in Session.info: wake this process's bus after commit
_PENDING_KEY = "ioc_events_pending"  # in Connection.info: (transaction id, provisional ids) on PostgreSQL


def publish(
    session: Session,
    topic: Topic[P],
    payload: P | dict[str, Any],
    *,
    ward_code: str | None = None,
    agency_id: str | None = None,
) -> None:
    """Add an event to the outbox in ``session``'s transaction; it is delivered after commit.

    The payload is validated against ``topic.payload`` first (a pydantic ``ValidationError``
    writes nothing) and stored as JSON. On PostgreSQL the event's final id is assigned when
    the transaction commits, which must go through SQLAlchemy (``Session.commit()`` or a
    ``Connection`` transaction) so that the commit hook of this module runs.
    """
    publish_many(session, [Outgoing(topic, payload, ward_code, agency_id)])


@dataclass(frozen=True)
class Outgoing(Generic[P]):
    """One event to publish with :func:`publish_many`."""

    topic: Topic[P]
    payload: P | dict[str, Any]
    ward_code: str | None = None
    agency_id: str | None = None


def publish_many(session: Session, events: Sequence[Outgoing[Any]]) -> None:
    """Add several events to the outbox with one bulk INSERT, in the given order.

    Same contract as :func:`publish` (every payload is validated before anything is written;
    delivered after commit, in this order); the write path of large batches uses it.
    """
    if not events:
        return
    now = utcnow()
    rows = []
    for ev in events:
        model = ev.payload if isinstance(ev.payload, ev.topic.payload) else ev.topic.payload.model_validate(ev.payload)
        rows.append(
            {
                "topic": ev.topic.name,
                "payload": model.model_dump(mode="json"),
                "ward_code": ev.ward_code,
                "agency_id": ev.agency_id,
                "created_at": now,
            }
        )
    # the driver's executemany (``bulk_write``): SQLAlchemy's execution path cost more than the write
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        for new_id, xid in bulk_write(session, _OUTBOX, rows, returning=_OUTBOX_RETURNING):
            pending: tuple[str, list[int]] | None = conn.info.get(_PENDING_KEY)
            if pending is None or pending[0] != xid:  # left over from a transaction that ended elsewhere
                pending = conn.info[_PENDING_KEY] = (xid, [])
            pending[1].append(int(new_id))
    else:
        bulk_write(session, _OUTBOX, rows)
    session.info[_PUBLISHED_FLAG] = True


_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
_OUTBOX_RETURNING = ("id", "pg_current_xact_id()::text")


_RENUMBER = text(
    "UPDATE event_outbox SET id = fresh.new_id FROM ("
    " SELECT id AS old_id, nextval(pg_get_serial_sequence('event_outbox', 'id')) AS new_id"
    " FROM event_outbox WHERE id = ANY(:ids) ORDER BY id"
    ") AS fresh WHERE event_outbox.id = fresh.old_id"
)


def _order_on_commit(conn: Connection) -> None:
    """Give this transaction's events their final ids under the publish lock, just before COMMIT.

    Listens to every engine's ``commit`` event, which runs once per real (outermost) commit.
    """
    pending: tuple[str, list[int]] | None = conn.info.pop(_PENDING_KEY, None)
    if not pending or conn.dialect.name != "postgresql":
        return
    xid, provisional = pending
    # One round trip: wait for the publish lock, and notify the dispatchers (sent at COMMIT; a
    # constant payload, so PostgreSQL folds a transaction's notifications into one).
    current = conn.execute(
        text("SELECT pg_current_xact_id()::text, pg_advisory_xact_lock(:k), pg_notify(:c, '')"),
        {"k": _PUBLISH_LOCK_KEY, "c": NOTIFY_CHANNEL},
    ).scalar()
    if current != xid:
        return  # stale: that transaction ended without passing through here
    # Fresh ids for the rows still there (those published inside a savepoint that was rolled
    # back are gone), in the order of their provisional ids, in one statement: nextval in the
    # select list runs after its ORDER BY (PostgreSQL evaluates volatile output columns after
    # sorting), and every fresh id is above every provisional one (one sequence), so no update
    # collides.
    conn.execute(_RENUMBER, {"ids": provisional})


def _forget_pending(conn: Connection) -> None:
    conn.info.pop(_PENDING_KEY, None)


event.listen(Engine, "commit", _order_on_commit)
event.listen(Engine, "rollback", _forget_pending)


# --------------------------------------------------------------------------- reading


def matches(patterns: Sequence[str], topic: str) -> bool:
    """Whether ``topic`` matches any glob pattern (``alarm.*``, ``*``)."""
    return any(fnmatch.fnmatchcase(topic, p) for p in patterns)


#: The columns of an outbox row in the order of :class:`Event`'s fields.
_EVENT_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.topic,
    OutboxEvent.payload,
    OutboxEvent.created_at,
    OutboxEvent.ward_code,
    OutboxEvent.agency_id,
)


# Built once, with parameters: the dispatcher and every consumer run these after each commit,
# and a statement built anew costs SQLAlchemy its construction and cache key every time.
_AFTER = (
    select(*_EVENT_COLUMNS)
    .where(OutboxEvent.id > bindparam("after"))
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)
_BY_IDS = select(*_EVENT_COLUMNS).where(OutboxEvent.id.in_(bindparam("ids", expanding=True))).order_by(OutboxEvent.id)
_HEADS = (
    select(OutboxEvent.id, OutboxEvent.topic)
    .where(OutboxEvent.id > bindparam("after"))
    .order_by(OutboxEvent.id)
    .limit(bindparam("limit"))
)


def _read_events(session: Session, stmt: Select[Any], params: dict[str, Any]) -> list[Event]:
    """Outbox events in id order, read as columns (not ORM objects: a batch is hundreds of rows)."""
    return [Event(*r) for r in session.connection().execute(stmt, params)]


def events_after(session: Session, after_id: int, limit: int = 1000) -> list[Event]:
    """Outbox events with an id above ``after_id``, oldest first."""
    return _read_events(session, _AFTER, {"after": after_id, "limit": limit})


#: Most events a consumer round keeps read for the round's next consumers (``matching_events_after``).
ROUND_READS = 5_000


def matching_events_after(
    session: Session, after_id: int, patterns: Sequence[str], limit: int, read: dict[int, Event] | None = None
) -> tuple[list[Event], int, int]:
    """The events matching ``patterns`` among the next ``limit`` outbox events after ``after_id``,
    how many were scanned, and the id of the last scanned (``after_id`` when none). Payloads are
    read for the matching events only, and only once per round: ``read`` (a round's events by
    id, up to ``ROUND_READS``) gives back what an earlier consumer of the round read, and keeps
    what this one reads (outbox rows never change; payloads are shared read-only, see Event)."""
    heads = session.connection().execute(_HEADS, {"after": after_id, "limit": limit}).all()
    if not heads:
        return [], 0, after_id
    wanted = [event_id for event_id, topic in heads if matches(patterns, topic)]
    known = read if read is not None else {}
    missing = [event_id for event_id in wanted if event_id not in known]
    fresh: dict[int, Event] = {}
    for i in range(0, len(missing), 500):
        fresh.update((e.id, e) for e in _read_events(session, _BY_IDS, {"ids": missing[i : i + 500]}))
    if read is not None and len(read) < ROUND_READS:
        read.update(fresh)
    events = [e for e in (known.get(event_id) or fresh.get(event_id) for event_id in wanted) if e is not None]
    return events, len(heads), int(heads[-1][0])


def _passed_to(session: Session, patterns: Sequence[str], after_id: int, limit: int) -> int | None:
    """The id of the last event after ``after_id`` when all of them are of other topics than
    ``patterns`` (``after_id`` when there are none), read ``limit`` at a time; None when one matches."""
    while True:
        heads = session.connection().execute(_HEADS, {"after": after_id, "limit": limit}).all()
        if any(matches(patterns, topic) for _, topic in heads):
            return None
        if heads:
            after_id = int(heads[-1][0])
        if len(heads) < limit:
            return after_id


def latest_event_id(session: Session) -> int:
    """The highest committed event id (0 when the outbox is empty)."""
    return int(session.scalar(select(func.coalesce(func.max(OutboxEvent.id), 0))) or 0)


# --------------------------------------------------------------------------- the bus

Listener = Callable[[Event], None]
DurableHandler = Callable[[Session, Event], None]
StartFrom = Literal["earliest", "latest"]


@dataclass
class _Consumer:
    name: str
    patterns: tuple[str, ...]
    handler: DurableHandler
    start: StartFrom
    retry_at: float = 0.0  # time.monotonic() before which this process does not try again
    # Events up to this id were found to be all of other topics since the cursor was last
    # written (this process's knowledge; the cursor row is moved past them now and then).
    passed: int = 0
    moved_at: float = 0.0  # time.monotonic() of this process's last move of the cursor row


@dataclass(eq=False)
class _Listener:
    patterns: tuple[str, ...]
    fn: Listener
    active: bool = True


class Subscription:
    """A listener's registration: call it (or :meth:`close`) to unsubscribe.

    ``position`` is the id of the last event this process had dispatched when the listener
    was added: the listener receives every event with a higher id, so a reader that replays
    the outbox up to ``position`` and then follows the listener misses nothing.
    """

    def __init__(self, bus: EventBus, entry: _Listener, position: int) -> None:
        self._bus = bus
        self._entry = entry
        self.position = position

    def close(self) -> None:
        """Stop delivery; once this returns the listener is not called again (bar a call in flight)."""
        self._bus._remove_listener(self._entry)

    def __call__(self) -> None:
        self.close()


@dataclass
class BusStats:
    """Counters for the operations page and tests."""

    delivered: int = 0
    consumer_runs: int = 0
    consumer_failures: int = 0
    last_poll: float = 0.0
    errors: list[str] = field(default_factory=list)


def _patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    pats = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    if not pats:
        raise ValueError("give at least one topic pattern")
    return pats


def _wanted_patterns(listeners: Iterable[_Listener]) -> set[str]:
    """The topic patterns the active listeners want."""
    return {p for entry in listeners if entry.active for p in entry.patterns}


class _HandlerFailed(Exception):
    """A durable consumer's handler failed on ``event`` (the batch it ran in is rolled back)."""

    def __init__(self, event: Event, error: BaseException) -> None:
        super().__init__(f"event {event.id}: {error!r}")
        self.event = event
        self.error = error


#: Under a stream of commits, the least time from the start of a thread's round to the start of
#: its next, as a multiple of the round's own length (at least the bus's ``round_gap_seconds``):
#: a round that took 8 ms is followed by the next 40 ms after it began, so the bus spends at most
#: a fifth of the time in rounds. A round's cost is mostly fixed (cursors, reads, commits, a turn
#: at SQLite's write lock); under 16 clients writing, rounds every 20 ms took a quarter of the
#: server's CPU. The pause after a long round is at most ``MAX_ROUND_PAUSE_SECONDS``.
ROUND_SPACING = 5.0
MAX_ROUND_PAUSE_SECONDS = 0.25
#: A consumer whose new events are all of other topics has its cursor row moved past them once
#: they are this many (at most a batch for its next run to scan again), or this long after its
#: last move: not at every round, which would be a write transaction each (on SQLite, a turn at
#: the one writer's lock) and, under a stream of writes, a fifth of the bus's work.
MOVE_AFTER_EVENTS = 500
MOVE_AFTER_SECONDS = 2.0
#: A round that finds nothing new writes the moves left over; with some left, the consumers'
#: thread looks again after this long even without a commit, so that the rows are where the
#: consumers are soon after the stream of writes stops.
MOVE_WHEN_IDLE_SECONDS = 0.05


class EventBus:
    """The process's dispatcher: outbox -> listeners, and outbox -> durable consumers."""

    BATCH = 500
    PRUNE_EVERY_SECONDS = 600.0

    def __init__(
        self,
        db: Database,
        poll_seconds: float = 0.5,
        retention: timedelta = timedelta(days=7),
        *,
        retry_base_seconds: float = 2.0,
        max_backoff_seconds: float = 300.0,
        round_gap_seconds: float = 0.0,
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        # The least time from one round of a thread to its next: commits in between are handled
        # together, one round's fixed cost (cursors, reads, commit) for all of them. Under a
        # stream of small writes that is most of the bus's work; the price is a reaction up to
        # this much later.
        self.round_gap_seconds = round_gap_seconds
        self.retention = retention
        self.retry_base_seconds = retry_base_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.stats = BusStats()
        self._listeners: list[_Listener] = []
        self._consumers: dict[str, _Consumer] = {}
        self._lock = threading.Lock()  # guards _listeners, _consumers, _last_id
        self._dispatch_lock = threading.Lock()  # one listener dispatch at a time
        self._consume_lock = threading.Lock()  # one consumer round at a time
        self._lifecycle = threading.Lock()  # start() and stop()
        self._dispatch_wake = threading.Event()
        self._consume_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._notifier: _PgNotifier | None = None
        self._last_id: int | None = None  # last event handed to listeners
        self._latest_seen = -1  # the newest event id the consumers' previous round saw
        self._moves_left = False  # consumers past events whose cursor rows are not moved yet
        self._last_prune = float("-inf")

    # -- registration -------------------------------------------------------
    def listen(self, patterns: str | Iterable[str], fn: Listener) -> Subscription:
        """Call ``fn`` in this process for each new event matching ``patterns``, in id order.

        Returns the :class:`Subscription`; calling it unsubscribes. A listener runs on the
        dispatcher thread: it must be quick (hand off to a queue) and an exception it raises
        is logged without affecting the other listeners.
        """
        entry = _Listener(_patterns(patterns), fn)
        with self._lock:
            position = self._last_id
        if position is None:
            with self.db.session() as s:
                latest = latest_event_id(s)
            with self._lock:
                if self._last_id is None:
                    self._last_id = latest
        with self._lock:
            # Registered and positioned together, under the lock the dispatcher takes its snapshot
            # of the listeners and claims a batch with: every event above ``position`` reaches it.
            self._listeners.append(entry)
            position = self._last_id
        assert position is not None
        return Subscription(self, entry, position)

    def _remove_listener(self, entry: _Listener) -> None:
        with self._lock:
            entry.active = False
            if entry in self._listeners:
                self._listeners.remove(entry)

    @property
    def position(self) -> int | None:
        """The id of the last event dispatched to listeners (None before the first dispatch)."""
        with self._lock:
            return self._last_id

    def consume(
        self, name: str, patterns: str | Iterable[str], handler: DurableHandler, *, start: StartFrom = "earliest"
    ) -> None:
        """Register a durable consumer: ``handler(session, event)`` runs once per event across workers.

        The handler's writes go in ``session`` and commit together with the consumer's cursor;
        it must not commit itself. If it raises, its writes for that event are rolled back, the
        cursor stays before the event, and the event is retried with back-off (at least once).
        ``start="latest"`` skips what was published before the consumer first started.
        """
        if start not in ("earliest", "latest"):
            raise ValueError("start is 'earliest' or 'latest'")
        if len(name) > 128 or not name:
            raise ValueError(f"bad consumer name {name!r}")
        consumer = _Consumer(name, _patterns(patterns), handler, start)
        with self._lock:
            if name in self._consumers:
                raise ValueError(f"consumer {name!r} registered twice")
            self._consumers[name] = consumer
            running = bool(self._threads)
        if running:
            # Anchor "latest" now, not at the consumer thread's next round.
            try:
                with self.db.session() as s:
                    self._ensure_cursor(s, consumer)
            except SQLAlchemyError:
                log.warning("event bus: cursor of %s not created yet; will retry", name, exc_info=True)
            self._consume_wake.set()

    # -- running -----------------------------------------------------------
    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_PUBLISHED_FLAG, False):
            self.wake()

    def start(self) -> None:
        """Start the dispatcher and consumer threads (idempotent).

        Durable consumers registered so far get their cursors now, so ``start="latest"`` means
        "from this start on" even for an event published before the first consumer round.
        """
        with self._lifecycle:
            if not self._threads:
                self._start()

    def _start(self) -> None:
        with self._lock:
            consumers = list(self._consumers.values())
        try:
            with self.db.session() as s:
                latest = latest_event_id(s)
                for consumer in consumers:
                    self._ensure_cursor(s, consumer)
            with self._lock:
                if self._last_id is None:
                    self._last_id = latest
        except SQLAlchemyError:
            # Database not reachable or not migrated yet: /readyz says so, and the threads retry
            # (then a "latest" consumer starts from the first round that reaches the database).
            log.warning("event bus: outbox not readable yet; will retry", exc_info=True)
        self._stop.clear()
        event.listen(self.db.sessions, "after_commit", self._after_commit)
        if self.db.dialect == "postgresql":
            self._notifier = _PgNotifier(self.db.url, self.wake)
            self._notifier.start()
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(self.dispatch_once, self._dispatch_wake, lambda: self.poll_seconds),
                name="ioc-event-dispatch",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self.consume_once, self._consume_wake, self._consumers_wait),
                name="ioc-event-consumers",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, waiting up to ``timeout`` seconds for a round in progress to end."""
        with self._lifecycle:
            self._stop_threads(timeout)

    def _stop_threads(self, timeout: float) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("event bus thread %s still busy after %.1f s", thread.name, timeout)
        self._threads = []
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None
        if event.contains(self.db.sessions, "after_commit", self._after_commit):
            event.remove(self.db.sessions, "after_commit", self._after_commit)

    @property
    def running(self) -> bool:
        """Whether the threads have been started and not stopped."""
        return bool(self._threads)

    def wait_listening(self, timeout: float) -> bool:
        """On PostgreSQL, wait until ``LISTEN`` is in place (True at once elsewhere)."""
        notifier = self._notifier
        return True if notifier is None else notifier.listening.wait(timeout)

    def wake(self) -> None:
        """Make both threads look at the outbox now instead of at the end of the poll interval."""
        self._dispatch_wake.set()
        self._consume_wake.set()

    def _consumers_wait(self) -> float:
        """How long the consumers' thread waits for a commit before its next round: shorter while
        cursor rows are left to move (``MOVE_WHEN_IDLE_SECONDS``)."""
        return min(self.poll_seconds, MOVE_WHEN_IDLE_SECONDS) if self._moves_left else self.poll_seconds

    def _loop(self, step: Callable[[], object], wake: threading.Event, wait: Callable[[], float]) -> None:
        while not self._stop.is_set():
            wake.clear()  # before the step: a wake during it makes the next wait return at once
            started = time.monotonic()
            try:
                step()
            except Exception as exc:  # keep going whatever one round did
                log.exception("event bus round failed")
                self.stats.errors = [*self.stats.errors[-9:], repr(exc)]
            if wake.wait(wait()):
                # woken by a commit: let the commits of the next moments join this one's round
                took = time.monotonic() - started
                pause = min(took * (ROUND_SPACING - 1), MAX_ROUND_PAUSE_SECONDS)
                self._stop.wait(max(self.round_gap_seconds - took, pause))

    def poll_once(self) -> int:
        """One dispatch and one consumer round, synchronously; returns events handed to listeners."""
        delivered = self.dispatch_once()
        self.consume_once()
        return delivered

    def dispatch_once(self) -> int:
        """Hand what is new in the outbox to the listeners; returns the number of events some listener wanted."""
        with self._dispatch_lock:
            self.stats.last_poll = time.time()
            delivered = 0
            while True:
                with self._lock:
                    after = self._last_id
                if after is None:
                    with self.db.session() as s:
                        after = latest_event_id(s)
                    with self._lock:
                        self._last_id = after
                with self._lock:
                    wanted = _wanted_patterns(self._listeners)
                with self.db.session() as s:
                    # payloads are read for the events some listener wants only
                    batch, scanned, last_scanned = matching_events_after(s, after, tuple(wanted), self.BATCH)
                if not scanned:
                    break
                with self._lock:
                    # The batch is claimed together with the snapshot: a listener added while it is
                    # being delivered gets a position after it, so it misses nothing above that.
                    listeners = list(self._listeners)
                    if not _wanted_patterns(listeners) <= wanted:
                        continue  # a listener of other topics came meanwhile: read the batch again
                    self._last_id = last_scanned
                for ev in batch:
                    for entry in listeners:
                        if entry.active and matches(entry.patterns, ev.topic):
                            try:
                                entry.fn(ev)
                            except Exception:
                                log.exception("listener %r failed on event %s", entry.fn, ev.id)
                delivered += len(batch)
                self.stats.delivered += len(batch)
                if scanned < self.BATCH:
                    break
            return delivered

    def consume_once(self) -> None:
        """Run the durable consumers that have work and are not backing off; prune when due."""
        with self._consume_lock:
            with self._lock:
                consumers = list(self._consumers.values())
            now = time.monotonic()
            ready = [c for c in consumers if c.retry_at <= now]
            read: dict[int, Event] = {}  # the round's events, read once for all its consumers
            for consumer in self._with_work(ready):
                if self._stop.is_set() and self._threads:
                    break
                self._run_consumer(consumer, read)
            if time.monotonic() - self._last_prune >= self.PRUNE_EVERY_SECONDS:
                self.prune()

    def _with_work(self, consumers: list[_Consumer]) -> list[_Consumer]:
        """The consumers with events of their topics to process, found without locking; the cursors of
        the others move past what is new in one transaction, when they are many, some time after
        their last move, or at a round that finds nothing new (``MOVE_AFTER_EVENTS``, ...); until
        then the process remembers how far each has passed. A round with nothing new and nothing
        left to move writes nothing."""
        if not consumers:
            return []
        with self.db.session() as s:
            latest = latest_event_id(s)
            idle, self._latest_seen = latest == self._latest_seen, latest
            names = [c.name for c in consumers]
            cursors = {c.name: c for c in s.scalars(select(EventCursor).where(EventCursor.name.in_(names)))}
            now = utcnow()
            due: list[_Consumer] = []
            moves: list[tuple[str, int, int]] = []
            left = False
            mono = time.monotonic()
            for consumer in consumers:
                cursor = cursors.get(consumer.name)
                if cursor is None:
                    due.append(consumer)
                elif cursor.retry_at is not None and cursor.retry_at > now:
                    consumer.retry_at = time.monotonic() + (cursor.retry_at - now).total_seconds()
                elif cursor.failures:
                    due.append(consumer)
                elif cursor.last_id < latest:
                    checked = max(cursor.last_id, consumer.passed)  # what this process saw passed
                    passed_to = _passed_to(s, consumer.patterns, checked, self.BATCH) if checked < latest else checked
                    if passed_to is None:
                        due.append(consumer)
                        continue
                    consumer.passed = passed_to
                    if (
                        idle
                        or passed_to - cursor.last_id >= MOVE_AFTER_EVENTS
                        or mono - consumer.moved_at >= MOVE_AFTER_SECONDS
                    ):
                        moves.append((consumer.name, cursor.last_id, passed_to))
                        consumer.moved_at = mono
                    else:
                        left = True
        self._moves_left = left
        if moves:
            self._move_cursors(moves)
        return due

    def _move_cursors(self, moves: list[tuple[str, int, int]]) -> None:
        """Move the cursors of consumers with only other topics' events past them, in one transaction.

        Running each such consumer would do the same (its handler is not called) at the cost of a
        write transaction each, after every commit of the others: on SQLite, a turn at the one
        writer's lock for each. A cursor is only moved from where it was read, and not while
        another worker holds it (PostgreSQL: SKIP LOCKED), so a concurrent run is never undone."""
        with self.db.session() as s:
            for name, before, after in moves:
                mine = (
                    select(EventCursor.name)
                    .where(EventCursor.name == name, EventCursor.last_id == before, EventCursor.failures == 0)
                    .with_for_update(skip_locked=True)
                )
                s.execute(
                    update(EventCursor)
                    .where(EventCursor.name.in_(mine))
                    .values(last_id=after, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )

    def _backoff(self, failures: int) -> float:
        return float(min(self.retry_base_seconds * 2.0 ** (min(failures, 30) - 1), self.max_backoff_seconds))

    def _run_consumer(self, consumer: _Consumer, read: dict[int, Event] | None = None) -> None:
        """Process ``consumer``'s backlog, one batch per transaction, until done or failing."""
        while True:
            try:
                more = self._consume_batch(consumer, read)
            except Exception as exc:  # the database itself failed: nothing of this batch was kept
                self.stats.consumer_failures += 1
                log.exception("durable consumer %s failed; will retry", consumer.name)
                self._record_failure(consumer, exc)
                return
            if not more or (self._stop.is_set() and self._threads):
                return

    def _consume_batch(self, consumer: _Consumer, read: dict[int, Event] | None = None) -> bool:
        """One transaction: lock the cursor, handle up to BATCH events; True if more may follow.

        The batch first runs without savepoints (a savepoint per event costs a flush and two
        statements). If a handler fails, that transaction is rolled back whole and the batch runs
        again with a savepoint per event, up to the failing event, which is not called again but
        recorded as failed: the events before it stay done, as if each had had its savepoint from
        the start; they were handled twice, once undone (at least once)."""
        try:
            return self._consume_events(consumer, None, read)
        except _HandlerFailed as failed:
            return self._consume_events(consumer, failed, read)

    def _consume_events(
        self, consumer: _Consumer, failed_before: _HandlerFailed | None, read: dict[int, Event] | None = None
    ) -> bool:
        with self.db.session() as s:
            cursor = self._lock_cursor(s, consumer)
            if cursor is None:
                return False  # another worker is on it
            now = utcnow()
            if cursor.retry_at is not None and cursor.retry_at > now:
                consumer.retry_at = time.monotonic() + (cursor.retry_at - now).total_seconds()
                return False
            batch, scanned, last_scanned = matching_events_after(s, cursor.last_id, consumer.patterns, self.BATCH, read)
            failure: tuple[Event, BaseException] | None = None
            # set on the cursor once: a dirty cursor would be flushed before every handler's query
            done = last_scanned
            handled = cursor.last_id  # the last event handled in this batch (the cursor's place on a failure)
            for ev in batch:
                if failed_before is not None and ev.id == failed_before.event.id:
                    failure = (ev, failed_before.error)
                elif failed_before is None:
                    try:
                        consumer.handler(s, ev)
                    except Exception as exc:
                        raise _HandlerFailed(ev, exc) from exc  # rolls the whole batch back
                else:
                    try:
                        with s.begin_nested():  # a failure undoes this event's writes only
                            consumer.handler(s, ev)
                    except Exception as exc:
                        failure = (ev, exc)
                if failure is not None:
                    done = handled  # the cursor stays before the failing event
                    break
                handled = ev.id
            cursor.last_id = done
            self.stats.consumer_runs += 1
            if failure is not None:
                failed, error = failure
                self.stats.consumer_failures += 1
                cursor.failures += 1
                delay = self._backoff(cursor.failures)
                cursor.retry_at = utcnow() + timedelta(seconds=delay)  # counted from the failure
                cursor.last_error = f"event {failed.id} ({failed.topic}): {error!r}"[:2000]
                cursor.updated_at = utcnow()
                consumer.retry_at = time.monotonic() + delay
                log.warning(
                    "durable consumer %s failed on event %s; retry %d in %.1f s",
                    consumer.name,
                    failed.id,
                    cursor.failures,
                    delay,
                    exc_info=error,
                )
                return False
            consumer.moved_at = time.monotonic()  # the row is written: a move as good as any
            if batch or cursor.failures or cursor.retry_at is not None:
                cursor.failures = 0
                cursor.retry_at = None
                cursor.last_error = None
                cursor.updated_at = utcnow()
            consumer.retry_at = 0.0
            return scanned == self.BATCH

    def _lock_cursor(self, s: Session, consumer: _Consumer) -> EventCursor | None:
        """Lock ``consumer``'s cursor row for this transaction; None if another worker holds it."""
        stmt = select(EventCursor).where(EventCursor.name == consumer.name)
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        else:
            # SQLite: take the database write lock before reading (a deferred transaction that read
            # first could not upgrade safely), so two processes never run one consumer at once.
            claim = update(EventCursor).where(EventCursor.name == consumer.name).values(name=EventCursor.name)
            s.execute(claim.execution_options(synchronize_session=False))
        cursor = s.scalar(stmt)
        if cursor is not None:
            return cursor
        if s.scalar(select(func.count()).select_from(EventCursor).where(EventCursor.name == consumer.name)):
            return None  # exists, locked by another worker
        self._ensure_cursor(s, consumer)
        return s.scalar(stmt)

    def _ensure_cursor(self, s: Session, consumer: _Consumer) -> None:
        """Create ``consumer``'s cursor unless it exists (safe against a concurrent creator)."""
        start_id = latest_event_id(s) if consumer.start == "latest" else 0
        values = {"name": consumer.name, "last_id": start_id, "failures": 0, "updated_at": utcnow()}
        if s.get_bind().dialect.name == "postgresql":
            s.execute(pg_insert(EventCursor).values(values).on_conflict_do_nothing(index_elements=["name"]))
        else:
            s.execute(sqlite_insert(EventCursor).values(values).on_conflict_do_nothing(index_elements=["name"]))

    def _record_failure(self, consumer: _Consumer, exc: Exception) -> None:
        delay = self._backoff(1)
        try:
            with self.db.session() as s:
                cursor = s.get(EventCursor, consumer.name)
                if cursor is not None:
                    cursor.failures += 1
                    delay = self._backoff(cursor.failures)
                    cursor.retry_at = utcnow() + timedelta(seconds=delay)
                    cursor.last_error = repr(exc)[:2000]
                    cursor.updated_at = utcnow()
        except Exception:
            log.exception("could not record the failure of durable consumer %s", consumer.name)
        consumer.retry_at = time.monotonic() + delay

    def prune(self) -> int:
        """Delete events older than the retention that every live durable consumer has passed.

        * The newest event is always kept: SQLite gives a new row ``max(id) + 1``, so an empty
          table would hand out old ids again and readers, already past them, would skip them.
        * A cursor not updated for longer than the retention belongs to a consumer that no
          longer runs (an active one updates its cursor whenever there is something to do),
          so it does not hold the outbox back forever.
        """
        self._last_prune = time.monotonic()
        cutoff = utcnow() - self.retention
        with self.db.session() as s:
            newest = latest_event_id(s)
            floor = s.scalar(select(func.min(EventCursor.last_id)).where(EventCursor.updated_at >= cutoff))
            stmt = delete(OutboxEvent).where(OutboxEvent.created_at < cutoff, OutboxEvent.id < newest)
            if floor is not None:
                stmt = stmt.where(OutboxEvent.id <= floor)
            result = s.execute(stmt)
            return int(getattr(result, "rowcount", 0) or 0)

    def consumer_status(self) -> list[dict[str, Any]]:
        """Every durable consumer's cursor and retry state, for the operations page."""
        with self.db.session() as s:
            return [
                {
                    "name": c.name,
                    "last_id": c.last_id,
                    "failures": c.failures,
                    "retry_at": c.retry_at.isoformat() if c.retry_at else None,
                    "last_error": c.last_error,
                }
                for c in s.scalars(select(EventCursor).order_by(EventCursor.name))
            ]


class _PgNotifier:
    """LISTENs on PostgreSQL and calls ``on_notify`` on every NOTIFY, so dispatch is immediate."""

    def __init__(self, url: str, on_notify: Callable[[], None]) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.conninfo = parsed.render_as_string(hide_password=False)
        self.on_notify = on_notify
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ioc-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.listening.set()
                    self.on_notify()  # whatever was notified while not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.25, stop_after=1):
                            self.on_notify()
            except Exception:
                log.warning("LISTEN connection lost; retrying in 2 s", exc_info=True)
                self._stop.wait(2.0)
            finally:
                self.listening.clear()
