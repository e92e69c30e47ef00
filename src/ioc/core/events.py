"""Typed event topics, a durable outbox, and fan-out to subscribers and SSE streams.

* :func:`publish` writes an event into the ``event_outbox`` table **in the caller's
  transaction**: the event exists if and only if the change that caused it was committed,
  so no event is lost on a crash.
* :class:`EventBus` runs one dispatcher thread per process. It reads the outbox and
  - hands every new event to the process's *listeners* (SSE streams, caches): each
    ``ioc serve`` worker sees every event, because it reads the shared database;
  - feeds *durable consumers*, each of which processes every event once across all
    workers, at least once, with its cursor in the database (``event_cursors``) updated in
    the same transaction as the consumer's own writes; failures are retried with back-off.
* On PostgreSQL, publishers serialise on an advisory lock so ids commit in order (a reader
  never skips an id that commits late), and ``NOTIFY`` wakes the dispatchers at once; on
  SQLite (one writer at a time) the dispatcher polls.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, String, Text, delete, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, Database, JsonDoc, UTCDateTime, utcnow

log = logging.getLogger("ioc.events")

P = TypeVar("P", bound=BaseModel)
BigId = BigInteger().with_variant(Integer(), "sqlite")
NOTIFY_CHANNEL = "ioc_events"
_PUBLISH_LOCK_KEY = 7_402_025  # advisory lock id serialising publishers on PostgreSQL


class Topic(Generic[P]):
    """A named kind of event with the pydantic model of its payload."""

    def __init__(self, name: str, payload: type[P], description: str = "") -> None:
        if not name or any(c in name for c in " *?[]"):
            raise ValueError(f"bad topic name {name!r}")
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
    """An event as subscribers receive it."""

    id: int
    topic: str
    payload: dict[str, Any]
    created_at: datetime
    ward_code: str | None = None
    agency_id: str | None = None

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        return cls(row.id, row.topic, row.payload, row.created_at, row.ward_code, row.agency_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
            "ward_code": self.ward_code,
            "agency_id": self.agency_id,
        }


_PUBLISHED_FLAG = "ioc_events_published"


def publish(
    session: Session,
    topic: Topic[P],
    payload: P | dict[str, Any],
    *,
    ward_code: str | None = None,
    agency_id: str | None = None,
) -> OutboxEvent:
    """Add an event to the outbox in ``session``'s transaction (delivered after commit)."""
    model = payload if isinstance(payload, topic.payload) else topic.payload.model_validate(payload)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PUBLISH_LOCK_KEY})
    row = OutboxEvent(
        topic=topic.name,
        payload=model.model_dump(mode="json"),
        ward_code=ward_code,
        agency_id=agency_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": str(row.id)})
    session.info[_PUBLISHED_FLAG] = True
    return row


def matches(patterns: Sequence[str], topic: str) -> bool:
    """Whether ``topic`` matches any glob pattern (``alarm.*``, ``*``)."""
    return any(fnmatch.fnmatchcase(topic, p) for p in patterns)


def events_after(session: Session, after_id: int, limit: int = 1000) -> list[Event]:
    """Outbox events with an id above ``after_id``, oldest first."""
    rows = session.scalars(select(OutboxEvent).where(OutboxEvent.id > after_id).order_by(OutboxEvent.id).limit(limit))
    return [Event.from_row(r) for r in rows]


def latest_event_id(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(OutboxEvent.id), 0))) or 0)


Listener = Callable[[Event], None]
DurableHandler = Callable[[Session, Event], None]


@dataclass
class _Consumer:
    name: str
    patterns: tuple[str, ...]
    handler: DurableHandler
    start: str  # "earliest" | "latest"
    retry_at: float = 0.0


@dataclass
class _Listener:
    patterns: tuple[str, ...]
    fn: Listener


@dataclass
class BusStats:
    delivered: int = 0
    consumer_runs: int = 0
    consumer_failures: int = 0
    last_poll: float = 0.0
    errors: list[str] = field(default_factory=list)


class EventBus:
    """The process's dispatcher: outbox -> listeners and durable consumers."""

    MAX_BACKOFF_SECONDS = 300.0
    BATCH = 500

    def __init__(self, db: Database, poll_seconds: float = 0.5, retention: timedelta = timedelta(days=7)) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.retention = retention
        self.stats = BusStats()
        self._listeners: list[_Listener] = []
        self._consumers: dict[str, _Consumer] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_id: int | None = None
        self._last_prune = 0.0
        event.listen(db.sessions, "after_commit", self._after_commit)

    # -- registration -------------------------------------------------------
    def listen(self, patterns: str | Iterable[str], fn: Listener) -> Callable[[], None]:
        """Call ``fn`` in this process for each new event matching ``patterns``; returns an unsubscribe."""
        entry = _Listener((patterns,) if isinstance(patterns, str) else tuple(patterns), fn)
        with self._lock:
            self._listeners.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)

        return unsubscribe

    def consume(
        self, name: str, patterns: str | Iterable[str], handler: DurableHandler, *, start: str = "earliest"
    ) -> None:
        """Register a durable consumer: ``handler(session, event)`` runs once per event across workers."""
        if name in self._consumers:
            raise ValueError(f"consumer {name!r} registered twice")
        if start not in ("earliest", "latest"):
            raise ValueError("start is 'earliest' or 'latest'")
        pats = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        self._consumers[name] = _Consumer(name, pats, handler, start)

    # -- running -----------------------------------------------------------
    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_PUBLISHED_FLAG, False):
            self._wake.set()

    def start(self) -> None:
        """Start the dispatcher thread (idempotent)."""
        if self._thread is not None:
            return
        try:
            with self.db.session() as s:
                self._last_id = latest_event_id(s)
        except SQLAlchemyError:
            # Database not reachable or not migrated yet: /readyz says so; the dispatcher retries.
            log.warning("event bus: outbox not readable yet; will retry", exc_info=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ioc-event-bus", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        notifier = _PgNotifier(self.db.url, self._wake) if self.db.dialect == "postgresql" else None
        if notifier:
            notifier.start()
        try:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                except Exception as exc:  # keep dispatching whatever one poll did
                    log.exception("event dispatch failed")
                    self.stats.errors = [*self.stats.errors[-9:], repr(exc)]
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
        finally:
            if notifier:
                notifier.stop()

    def poll_once(self) -> int:
        """Deliver what is new to listeners and run due consumers; returns events delivered to listeners."""
        self.stats.last_poll = time.time()
        delivered = 0
        if self._last_id is None:
            with self.db.session() as s:
                self._last_id = latest_event_id(s)
        while True:
            with self.db.session() as s:
                batch = events_after(s, self._last_id, self.BATCH)
            if not batch:
                break
            with self._lock:
                listeners = list(self._listeners)
            for ev in batch:
                self._last_id = ev.id
                for entry in listeners:
                    if matches(entry.patterns, ev.topic):
                        try:
                            entry.fn(ev)
                        except Exception:
                            log.exception("listener failed on event %s", ev.id)
                delivered += 1
            if len(batch) < self.BATCH:
                break
        self.stats.delivered += delivered
        for consumer in list(self._consumers.values()):
            if consumer.retry_at <= time.monotonic():
                self._run_consumer(consumer)
        if time.monotonic() - self._last_prune > 600:
            self.prune()
        return delivered

    def _run_consumer(self, consumer: _Consumer) -> None:
        try:
            with self.db.session() as s:
                cursor = self._lock_cursor(s, consumer)
                if cursor is None:
                    return  # another worker holds it
                if cursor.retry_at is not None and cursor.retry_at > utcnow():
                    consumer.retry_at = time.monotonic() + (cursor.retry_at - utcnow()).total_seconds()
                    return
                while True:
                    batch = events_after(s, cursor.last_id, self.BATCH)
                    for ev in batch:
                        if matches(consumer.patterns, ev.topic):
                            consumer.handler(s, ev)
                        cursor.last_id = ev.id
                    if len(batch) < self.BATCH:
                        break
                if batch or cursor.failures:
                    cursor.failures = 0
                    cursor.retry_at = None
                    cursor.last_error = None
                    cursor.updated_at = utcnow()
                self.stats.consumer_runs += 1
        except Exception as exc:
            self.stats.consumer_failures += 1
            log.exception("durable consumer %s failed; will retry", consumer.name)
            self._record_failure(consumer, exc)

    def _lock_cursor(self, s: Session, consumer: _Consumer) -> EventCursor | None:
        stmt = select(EventCursor).where(EventCursor.name == consumer.name)
        if s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        else:
            # SQLite: take the write lock before reading, so two workers never run one consumer at once.
            s.execute(
                update(EventCursor).where(EventCursor.name == consumer.name).values(updated_at=utcnow())
            )
        cursor = s.scalar(stmt)
        if cursor is not None:
            return cursor
        exists = s.scalar(select(func.count()).select_from(EventCursor).where(EventCursor.name == consumer.name))
        if exists:
            return None  # locked by another worker
        start_id = latest_event_id(s) if consumer.start == "latest" else 0
        with s.begin_nested():
            s.add(EventCursor(name=consumer.name, last_id=start_id, failures=0, updated_at=utcnow()))
        return s.scalar(stmt)

    def _record_failure(self, consumer: _Consumer, exc: Exception) -> None:
        with self.db.session() as s:
            cursor = s.get(EventCursor, consumer.name)
            if cursor is None:
                return
            cursor.failures += 1
            delay = min(2.0 ** min(cursor.failures, 16), self.MAX_BACKOFF_SECONDS)
            cursor.retry_at = utcnow() + timedelta(seconds=delay)
            cursor.last_error = repr(exc)[:2000]
            cursor.updated_at = utcnow()
            consumer.retry_at = time.monotonic() + delay

    def prune(self) -> int:
        """Delete events older than the retention that every durable consumer has passed."""
        self._last_prune = time.monotonic()
        with self.db.session() as s:
            floor = s.scalar(select(func.min(EventCursor.last_id)))
            stmt = delete(OutboxEvent).where(OutboxEvent.created_at < utcnow() - self.retention)
            if floor is not None:
                stmt = stmt.where(OutboxEvent.id <= floor)
            result = s.execute(stmt)
            return int(getattr(result, "rowcount", 0) or 0)

    def consumer_status(self) -> list[dict[str, Any]]:
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
    """LISTENs on PostgreSQL and sets ``wake`` on every NOTIFY, so dispatch is immediate."""

    def __init__(self, url: str, wake: threading.Event) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.conninfo = parsed.render_as_string(hide_password=False)
        self.wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ioc-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake.set()
            except Exception:
                log.warning("LISTEN connection lost; retrying in 2 s", exc_info=True)
                self._stop.wait(2.0)
