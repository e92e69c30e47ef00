"""Database engine and sessions for SQLite (default, WAL) and PostgreSQL.

Every table of the core and of the modules hangs off :data:`Base.metadata`. Times are stored
as UTC and always come back timezone-aware, on both databases.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request
from sqlalchemy import JSON, DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from ioc.core import jsoncodec

log = logging.getLogger("ioc.db")

if TYPE_CHECKING:
    import psycopg

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A JSON document: JSONB on PostgreSQL, JSON text on SQLite.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _read_as_utc_or_none(value)

    # On SQLite a timestamp is text. SQLAlchemy converts it in two steps, the dialect's (a
    # %-format of seven fields; ``fromisoformat``) around ours, each a Python call per value, a
    # visible part of a write's cost: one C call does each whole, to the same text. The same
    # text matters: SQL compares timestamps as text, against rows written before.
    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_timestamp

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        if dialect.name == "sqlite":
            return _sqlite_datetime
        if self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype) is None:
            return _read_as_utc_or_none  # the driver's datetime as it is: no call through TypeDecorator's
        return super().result_processor(dialect, coltype)


def _to_utc(value: datetime) -> datetime:
    """A timestamp to store: in UTC; a naive one is refused (its zone is unknown)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    return value.astimezone(UTC)


def _read_as_utc(value: datetime) -> datetime:
    """A stored timestamp, aware in UTC (a naive one was stored in UTC)."""
    if value.tzinfo is UTC:  # PostgreSQL's, its sessions running in UTC (``_pg_options``)
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _read_as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _read_as_utc(value)


def _sqlite_timestamp(value: datetime | None) -> str | None:
    """A timestamp as SQLite stores it: UTC, ``YYYY-MM-DD HH:MM:SS.ffffff`` (SQLAlchemy's format)."""
    return None if value is None else _to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_datetime(value: str | None) -> datetime | None:
    """A timestamp read from SQLite, timezone-aware in UTC."""
    return None if value is None else _read_as_utc(datetime.fromisoformat(value))


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def bulk_write(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    keys: tuple[str, ...] | None = None,
    update_cols: tuple[str, ...] = (),
    update: bool = False,
    returning: tuple[str, ...] = (),
) -> list[tuple[Any, ...]]:
    """Write ``rows`` (dicts with the same columns) with one executemany of the driver, each
    value converted by its column type's own bind processor, as SQLAlchemy would send it.

    An INSERT (``ON CONFLICT (keys) DO UPDATE SET update_cols``, or ``DO NOTHING`` without
    them, when ``keys`` are given), or with ``update`` an ``UPDATE ... WHERE keys``. SQLAlchemy's
    own paths cost more than a small write itself (compiling, its per-row parameter processing):
    here a statement is built once per shape and a timestamp shared by many rows is converted
    once. On PostgreSQL it joins the connection's pipeline when one is open (one round trip for
    several statements), and ``returning`` (SQL expressions) gives each row's values back, in
    the order of ``rows``; not on SQLite, whose driver does not return rows from executemany."""
    conn = session.connection()
    if returning and conn.dialect.name != "postgresql":
        raise ValueError("bulk_write: RETURNING is read on PostgreSQL only")
    cols = tuple(rows[0])
    if update and keys is not None:
        cols = (*(c for c in cols if c not in keys), *keys)  # SET ... WHERE: the keys' values last
    sql, processors, timestamps = _bulk_statement(table, cols, keys, update_cols, conn.dialect, update, returning)
    # Column by column, so the conversions run in C loops (map) rather than a call per value.
    columns: list[list[Any]] = []
    for col, proc, timestamp in zip(cols, processors, timestamps, strict=True):
        values = list(map(itemgetter(col), rows))
        if proc is None:
            columns.append(values)
        elif timestamp:
            memo = {v: proc(v) for v in set(values)}  # a change set's rows share a few timestamps
            columns.append(list(map(memo.__getitem__, values)))
        else:
            columns.append(list(map(proc, values)))
    params = list(zip(*columns, strict=True))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if not returning:
            cursor.executemany(sql, params)
            return []
        cast(Any, cursor).executemany(sql, params, returning=True)  # psycopg's
        out: list[tuple[Any, ...]] = []
        while True:  # one result per row written, in order
            out.extend(cursor.fetchall())
            if not cursor.nextset():
                return out
    finally:
        cursor.close()


@functools.lru_cache(maxsize=64)
def _bulk_statement(
    table: Table,
    cols: tuple[str, ...],
    keys: tuple[str, ...] | None,
    update_cols: tuple[str, ...],
    dialect: Dialect,
    update: bool,
    returning: tuple[str, ...],
) -> tuple[str, list[Any], list[bool]]:
    """The statement of :func:`bulk_write`, the columns' bind processors, and which columns hold timestamps."""
    quote = dialect.identifier_preparer.quote
    mark = "%s" if dialect.name == "postgresql" else "?"
    if update and keys is not None:
        sql = (
            f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = {mark}' for c in cols if c not in keys)} "
            f"WHERE {' AND '.join(f'{quote(k)} = {mark}' for k in keys)}"
        )
    else:
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in cols)}) "
            f"VALUES ({', '.join([mark] * len(cols))})"
        )
        if keys is not None:
            sql += f" ON CONFLICT ({', '.join(quote(k) for k in keys)}) "
            sql += (
                "DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in update_cols)
                if update_cols
                else "DO NOTHING"
            )
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in cols]
    timestamps = [
        isinstance(table.c[c].type, UTCDateTime) and p is not None for c, p in zip(cols, processors, strict=True)
    ]
    return sql, processors, timestamps


#: How long a SQLite writer waits for the database (SQLite's busy timeout, and this process's write lock).
SQLITE_BUSY_TIMEOUT_S = 10.0
#: Connections a SQLite file's pool may open: above the server's worker threads (anyio's 40) plus
#: the event bus, consumers and scheduler threads.
SQLITE_MAX_CONNECTIONS = 96
#: Connections a SQLite file's pool keeps open between uses (it opens them as needed).
SQLITE_POOL_SIZE = 32
#: Connections a PostgreSQL pool keeps open between uses, and how many more it may open under a
#: burst. A connection returned above the first figure is closed: a pool smaller than the requests
#: in flight (16 concurrent clients, the event bus, the scheduler) opened a new server process for
#: most requests and closed it after, several milliseconds of both sides' CPU each. Per worker
#: process; PostgreSQL's default ``max_connections`` is 100.
PG_POOL_SIZE = 24
PG_MAX_OVERFLOW = 16
#: A pooled PostgreSQL connection that has been idle longer than this is pinged before it is
#: handed out, and replaced if the server does not answer (after a restart of PostgreSQL, say);
#: one given back more recently is handed out as it is. Pinging every checkout (SQLAlchemy's
#: ``pool_pre_ping``) was a round trip per request, a fifth of a GET by id.
PG_PING_AFTER_IDLE_S = 1.0
#: Connections of a worker process's reads on the event loop (PostgreSQL, :class:`LoopReads`): a
#: read by key is one round trip, and more of them in flight would only queue for the loop.
PG_LOOP_READ_CONNECTIONS = 8


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 driver begins a transaction only at the first write, so reads before it see the
    # newest committed data and a read-then-write transaction never fails on a stale WAL snapshot
    # (read committed, like PostgreSQL's default). The price: a SAVEPOINT must follow a write in
    # the same transaction, or the driver commits it; the core's code is written that way.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cursor.close()


# --------------------------------------------------------------------------- SQLite writers
#
# SQLite lets one connection write at a time. A connection that finds the database locked
# sleeps in SQLite's busy handler, in steps of up to 100 ms, and retries: with a dozen threads
# writing, most of them sleep while the database is free. Writers of this process therefore
# queue on a lock of their own, taken just before a transaction's first write (where SQLite
# takes its write lock) and given back when that transaction commits or rolls back: the next
# one starts the moment the database is free. Reads never take it (WAL: readers do not block).
# Between processes (``ioc serve --workers N``, the CLI beside a server) the writer holding that
# lock also takes an exclusive lock on a file beside the database, which a waiting writer of
# another process tries again every fraction of a millisecond; only a process that does not take
# it (another program on the file) meets the others in SQLite's busy handler.

_WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def sqlite_write_lock(database: str) -> threading.Lock:
    """The lock this process's writers of the SQLite file ``database`` queue on."""
    key = database if database.startswith("file:") else os.path.abspath(database)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


_file_locks: dict[str, tuple[int, int]] = {}
#: How long a writer waiting for another process's write transaction sleeps between tries.
SQLITE_FILE_LOCK_POLL_S = 0.0002


def _file_lock(database: str) -> int | None:
    """This process's descriptor of the lock file its writers of ``database`` share with the
    other processes' (``<database>-writer.lock``, beside the WAL files); None for a URI."""
    if database.startswith("file:"):
        return None
    key = os.path.abspath(database)
    with _write_locks_guard:
        pid, fd = _file_locks.get(key, (0, -1))
        if pid != os.getpid():  # opened before a fork: the child needs a lock of its own
            fd = os.open(key + "-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            _file_locks[key] = (os.getpid(), fd)
        return fd


def _take_file_lock(fd: int) -> bool:
    """Take the lock file's exclusive lock, waiting at most the busy timeout: whether it was taken.
    Tried every ``SQLITE_FILE_LOCK_POLL_S`` (the other process's transaction ends within a few
    milliseconds), where SQLite's busy handler sleeps in steps of up to 100 ms."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(SQLITE_FILE_LOCK_POLL_S)


def _is_write(sql: str) -> bool:
    """Whether ``sql`` takes SQLite's write lock: DML, DDL, or a ``BEGIN IMMEDIATE|EXCLUSIVE``."""
    head = sql.lstrip()[:16].upper()
    return head.startswith(_WRITE_PREFIXES) or head.startswith(("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"))


class _SerialisedWriterCursor(sqlite3.Cursor):
    """Takes the connection's write lock before the first write of a transaction."""

    connection: SerialisedWriterConnection

    def execute(self, sql: str, parameters: Any = (), /) -> _SerialisedWriterCursor:
        conn = self.connection
        if not conn.holds_write_lock and _is_write(sql):
            conn.take_write_lock()
        try:
            super().execute(sql, parameters)
        finally:
            conn.release_if_idle()
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> _SerialisedWriterCursor:
        conn = self.connection
        if not conn.holds_write_lock and _is_write(sql):
            conn.take_write_lock()
        try:
            super().executemany(sql, seq_of_parameters)
        finally:
            conn.release_if_idle()
        return self


class SerialisedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions queue on this process's lock for its file.

    The lock is held from the first write (``INSERT``/``UPDATE``/``DELETE``/``REPLACE`` or DDL)
    until no transaction is open any more: ``commit()``, ``rollback()``, ``close()``, or at once in
    autocommit mode, on whichever thread ends the transaction. A writer that cannot get the lock
    within the busy timeout (a thread writing through a second connection while its first one
    holds it) goes on without it and meets SQLite's own busy handling, as it would without a lock.
    """

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.write_lock = sqlite_write_lock(str(database))
        self.file_lock = _file_lock(str(database))
        self.holds_write_lock = False
        self.holds_file_lock = False

    def cursor(self, factory: Any = _SerialisedWriterCursor) -> Any:
        return super().cursor(factory)

    def take_write_lock(self) -> None:
        self.holds_write_lock = self.write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_S)
        if self.holds_write_lock and self.file_lock is not None:
            self.holds_file_lock = _take_file_lock(self.file_lock)

    def release_if_idle(self) -> None:
        """Give the lock back once no transaction is open."""
        if self.holds_write_lock and not self.in_transaction:
            self._release()

    def _release(self) -> None:
        if self.holds_write_lock:
            self.holds_write_lock = False
            if self.holds_file_lock and self.file_lock is not None:
                self.holds_file_lock = False
                fcntl.flock(self.file_lock, fcntl.LOCK_UN)
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_if_idle()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_if_idle()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def __del__(self) -> None:  # a connection dropped without close() must not keep the lock
        if getattr(self, "holds_write_lock", False):
            self._release()


#: Pages of write-ahead log after which a SQLite writer copies it back into the database file in
#: its own commit (SQLite's default is 1,000). A server checkpoints far sooner on a thread of its
#: own (:class:`WalCheckpointer`); this is the bound for a process without one (the CLI, say).
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
#: How often a server's :class:`WalCheckpointer` copies the log back.
SQLITE_CHECKPOINT_EVERY_S = 0.5


class WalCheckpointer:
    """Copies a SQLite file's write-ahead log back into the database file on a thread of its own
    (a PASSIVE checkpoint every ``every`` seconds), for a server.

    SQLite does it in the commit that lets the log pass ``wal_autocheckpoint`` pages: that writer
    then copies pages and waits for two fsyncs while it holds the write lock, and every writer
    queued behind it waits too (4,000 grouped changes in-process: commits took up to 20 ms against
    a median of 0.5 ms, 0.52 s in all against 0.19 s without, and the writer's CPU per change was
    331 µs against 262 µs). A PASSIVE checkpoint waits for nobody:
    writers go on while it copies what is already committed, and it copies what it can without
    disturbing readers, the rest on its next turn. Two processes' checkpointers on one file take
    turns (the one that finds the other at it returns at once)."""

    def __init__(self, database: str, every: float = SQLITE_CHECKPOINT_EVERY_S) -> None:
        self.database = database
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ioc-wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(10)

    def _run(self) -> None:
        conn = sqlite3.connect(self.database, timeout=0, check_same_thread=False)
        try:
            while not self._stop.wait(self.every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy (another checkpointer), a disk error: next turn
                    log.debug("WAL checkpoint of %s: %s", self.database, exc)
        finally:
            conn.close()


def _sqlite_file(url: URL) -> bool:
    """Whether a SQLite URL names a file (not an in-memory database)."""
    return bool(url.database) and url.database != ":memory:" and url.query.get("mode") != "memory"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if _sqlite_file(parsed):
            connect_args["factory"] = SerialisedWriterConnection
            # Request threads hold their connection while they queue on the write lock; the
            # writer at the head of the queue may need a second connection (a cached lookup built
            # on first use, a consumer's side read). A pool smaller than the threads that can
            # queue would let the queue starve its own head until the timeouts: SQLite
            # connections are cheap, so the pool outgrows the worker threads instead. It keeps
            # SQLITE_POOL_SIZE of them open: under concurrent requests, a smaller pool would open
            # (and set up) a fresh connection for most requests and close it after.
            if "poolclass" not in kwargs:
                kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
                kwargs.setdefault("max_overflow", SQLITE_MAX_CONNECTIONS - SQLITE_POOL_SIZE)
        engine = create_engine(url, connect_args=connect_args, **_json_codec(kwargs))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", PG_POOL_SIZE)
        kwargs.setdefault("max_overflow", PG_MAX_OVERFLOW)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "options": _pg_options(parsed)}
    engine = create_engine(url, **_json_codec(kwargs))
    _ping_when_idle(engine)
    return engine


def _pg_options(url: URL) -> str:
    """libpq's ``options`` of a PostgreSQL connection: the URL's own, and the session in UTC.

    In UTC, whatever the server's default zone (``Asia/Ho_Chi_Minh``, say): psycopg then hands
    timestamps over with Python's own UTC, which they are read as without a conversion (loading
    100 entities' 500 attributes: 7.9-10.3 -> 5.3-8.2 ms against a server in ``Etc/UTC``), and
    SQL that depends on the session's zone answers the same on every server."""
    given = url.query.get("options") or ""
    return " ".join([given] if isinstance(given, str) else given) + " -c TimeZone=UTC"


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool: ping one idle for
    more than ``PG_PING_AFTER_IDLE_S`` at checkout; one that fails is discarded and the pool
    hands out another (``DisconnectionError``). A connection lost while in use fails its
    statement, and SQLAlchemy then replaces every connection of the pool opened before."""

    def idle_from_now(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= PG_PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc

    event.listen(engine, "connect", idle_from_now)
    event.listen(engine, "checkin", idle_from_now)
    event.listen(engine, "checkout", checkout)


def _json_codec(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Engine arguments with the JSON codec of stored documents (``ioc.core.jsoncodec``)."""
    return {"json_serializer": jsoncodec.dumps, "json_deserializer": jsoncodec.loads, **kwargs}


class LoopReads:
    """Short reads on a server's event loop, for PostgreSQL: psycopg's async connections in
    autocommit (one statement, no ``BEGIN``/``ROLLBACK`` around it), pooled by ``psycopg_pool``
    and open while the server serves (its lifespan, :meth:`Database.open_loop_reads`).

    A read by key costs less than handing it to a worker thread and the answer back: the two
    threads' turns at the interpreter lock. On a SQLite file such a read runs on the loop as it
    is (the file answers without waiting); on PostgreSQL the loop serves other requests while the
    server answers. Rows come back as the engine's connections give them (JSON decoded by
    ``ioc.core.jsoncodec``). A connection the server closed while it sat in the pool (PostgreSQL
    restarted, say) fails its first statement and is dropped; the read then runs once more on
    another connection, as the engine's pool replaces such a connection (``_ping_when_idle``)."""

    def __init__(self, url: str, *, max_size: int = PG_LOOP_READ_CONNECTIONS) -> None:
        from psycopg_pool import AsyncConnectionPool  # the driver only where PostgreSQL serves

        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "options": _pg_options(make_url(url))},
            configure=self._configure,
            name="ioc-loop-reads",
        )
        self.served = 0  # statements read

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        from psycopg.types.json import set_json_loads

        set_json_loads(jsoncodec.loads, conn)

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def fetch_all(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        """The rows of one statement (driver SQL and parameters)."""
        self.served += 1
        for attempt in (1, 2):
            async with self.pool.connection() as conn:
                try:
                    cursor = await conn.execute(sql, params)
                    return await cursor.fetchall()
                except conn.OperationalError:
                    if attempt == 2 or not conn.broken:
                        raise
        raise AssertionError("unreachable")


class SqliteLoopReads:
    """:class:`LoopReads` for a SQLite file: one connection of the event loop's own, open while the
    server serves, its statements run on the loop as they are (the file answers without waiting;
    in WAL mode readers never wait for writers). Taking a connection from the pool and giving it
    back, for each read, had cost a twelfth of a Retrieve Entity. It only reads (no transaction
    is left open: each SELECT is read whole), so it never holds the writers' lock."""

    def __init__(self, engine: Engine) -> None:
        pooled = engine.raw_connection()
        pooled.detach()  # the loop's own, closed with it rather than given back to the pool
        self._connection: sqlite3.Connection = pooled.dbapi_connection  # type: ignore[assignment]
        self.served = 0  # statements read

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        self._connection.close()

    async def fetch_all(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        """The rows of one statement (driver SQL and parameters), read at once."""
        self.served += 1
        cursor = self._connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


#: What a server's event loop reads with: PostgreSQL's async pool, or a SQLite file's connection.
Reads = LoopReads | SqliteLoopReads


class Database:
    """An engine and its session factory; while serving, its reads on the event loop
    (:class:`LoopReads`, :class:`SqliteLoopReads`) and on a SQLite file its :class:`WalCheckpointer`."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._loop_reads: dict[asyncio.AbstractEventLoop, Reads] = {}
        parsed = make_url(url)
        file = parsed.get_backend_name() == "sqlite" and _sqlite_file(parsed)
        self.checkpointer = WalCheckpointer(str(parsed.database)) if file else None

    @property
    def loop_reads(self) -> Reads | None:
        """The reads opened on the running event loop; None off a loop or where none were opened
        (an async pool belongs to the loop it was opened on)."""
        try:
            return self._loop_reads.get(asyncio.get_running_loop())
        except RuntimeError:
            return None

    async def open_loop_reads(self) -> None:
        """Open the reads on the running event loop (:class:`LoopReads` on PostgreSQL,
        :class:`SqliteLoopReads` on a SQLite file, nothing in memory) for the loop's lifetime: a
        server's lifespan opens them and :meth:`close_loop_reads` closes them. Each loop serving
        the app (a test's second client, say) gets its own."""
        loop = asyncio.get_running_loop()
        if loop in self._loop_reads:
            return
        reads: Reads
        if self.dialect == "postgresql":
            reads = LoopReads(self.url)
        elif self.checkpointer is not None:  # a SQLite file (not an in-memory database)
            reads = SqliteLoopReads(self.engine)
        else:
            return
        await reads.open()
        self._loop_reads[loop] = reads

    async def close_loop_reads(self) -> None:
        reads = self._loop_reads.pop(asyncio.get_running_loop(), None)
        if reads is not None:
            await reads.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def start_checkpoints(self) -> None:
        """On a SQLite file, checkpoint its write-ahead log on a thread of its own while the
        server serves (:class:`WalCheckpointer`); nothing elsewhere."""
        if self.checkpointer is not None:
            self.checkpointer.start()

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one session per request, committed when the handler returns."""
    with get_database(request).session() as session:
        yield session


# scope="function": the transaction commits before the response leaves, so a client that reads
# right after a write (on any worker) sees it.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
