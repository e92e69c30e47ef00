"""The database layer: UTC times, WAL, transactions that behave the same on SQLite and PostgreSQL,
and SQLite writers of one process queueing on a lock rather than in SQLite's busy handler."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Integer, String, create_engine, event, func, make_url, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ioc.core import db as db_module
from ioc.core.auth import Agency
from ioc.core.db import (
    Database,
    LoopReads,
    SerialisedWriterConnection,
    SqliteLoopReads,
    _is_write,
    sqlite_write_lock,
    utcnow,
)
from tests.conftest import wait_for


def test_times_come_back_aware_in_utc(db: Database) -> None:
    hanoi = timezone(timedelta(hours=7))
    with db.session() as s:
        s.add(
            Agency(
                id="thu-nghiem", name="Thử nghiệm", kind="department", created_at=datetime(2025, 7, 1, 8, tzinfo=hanoi)
            )
        )
    with db.session() as s:
        agency = s.get(Agency, "thu-nghiem")
        assert agency is not None
        assert agency.created_at == datetime(2025, 7, 1, 1, tzinfo=UTC)
        assert agency.created_at.tzinfo is not None


def test_sqlite_stores_times_as_sqlalchemys_text_and_compares_them_in_sql(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL stores timestamptz")
    # SQL compares these timestamps as text, against rows written by earlier versions in
    # SQLAlchemy's own format: the text must stay exactly that (microseconds always written).
    hanoi = timezone(timedelta(hours=7))
    times = {
        "sang": datetime(2025, 7, 1, 8, tzinfo=hanoi),  # 01:00 UTC, no microseconds
        "chieu": datetime(2025, 7, 1, 1, 0, 0, 5, tzinfo=UTC),
        "xua": datetime(999, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
    }
    with db.session() as s:
        for key, at in times.items():
            s.add(Agency(id=key, name=key, kind="department", created_at=at))
    ours = Agency.id.in_(times)
    with db.session() as s:
        stored = dict(s.execute(text("SELECT id, created_at FROM agencies WHERE id IN ('sang', 'chieu', 'xua')")).all())
        assert stored == {
            "sang": "2025-07-01 01:00:00.000000",
            "chieu": "2025-07-01 01:00:00.000005",
            "xua": "0999-01-02 03:04:05.600000",
        }
        later = s.scalars(
            select(Agency.id).where(ours, Agency.created_at > datetime(2025, 7, 1, 8, tzinfo=hanoi))
        ).all()
        assert later == ["chieu"]
        back = dict(s.execute(select(Agency.id, Agency.created_at).where(ours)).all())
        assert back == {key: at.astimezone(UTC) for key, at in times.items()}
        assert all(at.tzinfo is UTC for at in back.values())
        # text written by another tool (no fraction, or an offset) reads back in UTC as well
        s.execute(text("UPDATE agencies SET created_at = '2025-07-01 08:00:00+07:00' WHERE id = 'sang'"))
        s.execute(text("UPDATE agencies SET created_at = '2025-07-01 01:00:00' WHERE id = 'xua'"))
        s.expire_all()
        assert s.get(Agency, "sang").created_at == datetime(2025, 7, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]
        assert s.get(Agency, "xua").created_at == datetime(2025, 7, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"), db.session() as s:
        s.add(Agency(id="ngay-tho", name="x", kind="department", created_at=datetime(2025, 1, 1)))
        s.flush()


def test_a_rolled_back_savepoint_leaves_the_outer_transaction_intact(db: Database) -> None:
    with db.session() as s:
        s.add(Agency(id="ngoai", name="Ngoài", kind="department", created_at=utcnow()))
        s.flush()
        with pytest.raises(RuntimeError), s.begin_nested():
            s.add(Agency(id="trong", name="Trong", kind="department", created_at=utcnow()))
            s.flush()
            raise RuntimeError("rollback the savepoint")
        s.rollback()  # the whole transaction: nothing of it may remain
    with db.session() as s:
        ids = set(s.scalars(select(Agency.id).where(Agency.id.in_(["ngoai", "trong"]))))
    assert ids == set()


def test_sqlite_runs_in_wal_mode(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite only")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_concurrent_sessions_reuse_pooled_connections(db: Database) -> None:
    """Twenty sessions at once, twice: the second round opens no new connection. On PostgreSQL a
    pool smaller than the requests in flight closed what it could not keep, and opened a server
    process for most requests after."""
    opened: list[object] = []
    event.listen(db.engine, "connect", lambda conn, _rec: opened.append(conn))
    barrier = threading.Barrier(20)

    def use() -> None:
        with db.session() as s:
            s.execute(text("SELECT 1"))
            barrier.wait(timeout=15)

    first_round = 0
    for round_ in range(2):
        threads = [threading.Thread(target=use) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if round_ == 0:
            first_round = len(opened)
    assert first_round >= 19  # the fixture may have left one in the pool
    assert len(opened) == first_round


def _backend_pid(db: Database) -> int:
    with db.session() as s:
        return int(s.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_pooled_connection_is_pinged_only_after_sitting_idle(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    pings: list[object] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting_ping)
    for _ in range(5):  # handed back a moment ago: used as it is
        _backend_pid(db)
    assert pings == []
    monkeypatch.setattr(db_module, "PG_PING_AFTER_IDLE_S", 0.0)
    _backend_pid(db)
    assert len(pings) == 1


def test_a_connection_that_died_in_the_pool_is_replaced(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL ends a pooled connection (a restart, an administrator): the next request gets
    another one instead of an error."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    db.engine.dispose()
    dead = _backend_pid(db)
    with psycopg.connect(_driver_url(db), autocommit=True) as c:
        assert c.execute("SELECT pg_terminate_backend(%s)", (dead,)).fetchone() == (True,)
    monkeypatch.setattr(db_module, "PG_PING_AFTER_IDLE_S", 0.0)  # as after a second in the pool
    assert _backend_pid(db) != dead


def test_reads_on_the_loop_decode_json_and_replace_a_connection_the_server_ended(db: Database) -> None:
    """PostgreSQL's reads on the event loop (``LoopReads``, open while serving): rows as the
    engine gives them (JSON documents decoded), and a pooled connection that PostgreSQL ended
    meanwhile (a restart) is replaced and the read run again, without an error. A SQLite file's
    (``SqliteLoopReads``) are one connection of the loop's own, outside the pool, that keeps no
    snapshot open between reads; none in memory."""

    async def scenario() -> None:
        await db.open_loop_reads()
        if db.dialect != "postgresql":
            reads = db.loop_reads
            assert isinstance(reads, SqliteLoopReads)
            checked_out = db.engine.pool.checkedout()  # type: ignore[attr-defined]
            assert await reads.fetch_all("SELECT ?, json('[1.5]')", (7,)) == [(7, "[1.5]")]
            assert db.engine.pool.checkedout() == checked_out  # type: ignore[attr-defined]
            with db.session() as s:
                s.execute(text("CREATE TABLE after_read (x INTEGER)"))
            # the next read sees what was committed since: no snapshot is left open between reads
            assert await reads.fetch_all("SELECT count(*) FROM after_read", ()) == [(0,)]
            await db.close_loop_reads()
            assert db.loop_reads is None and reads.served == 2
            memory = Database("sqlite://")
            await memory.open_loop_reads()
            assert memory.loop_reads is None
            return
        assert db.loop_reads is not None
        rows = await db.loop_reads.fetch_all("SELECT %s::jsonb", ('{"a": [1.5, "x"]}',))
        assert rows == [({"a": [1.5, "x"]},)]
        await db.close_loop_reads()
        assert db.loop_reads is None

        reads = LoopReads(db.url, max_size=1)  # one connection: the ended one is the one handed out next
        await reads.open()
        try:
            first = (await reads.fetch_all("SELECT pg_backend_pid()", None))[0][0]
            with psycopg.connect(_driver_url(db), autocommit=True) as c:
                assert c.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone() == (True,)
            second = (await reads.fetch_all("SELECT pg_backend_pid()", None))[0][0]
            assert second != first
        finally:
            await reads.close()

    asyncio.run(scenario())


def test_postgresql_sessions_run_in_utc_whatever_the_servers_zone(pg_database: str) -> None:
    """The engine's connections and the loop's reads run their sessions in UTC, with any options
    the URL gives kept, on a database whose default zone is Hanoi's: timestamps come back with
    Python's own UTC and SQL that depends on the session's zone answers in UTC."""
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    name = make_url(pg_database).database
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Ho_Chi_Minh'"))
    url = pg_database + "?options=-c%20application_name%3Dioc-test"
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            zone, app = conn.execute(
                text("SELECT current_setting('TimeZone'), current_setting('application_name')")
            ).one()
            assert (zone, app) == ("UTC", "ioc-test")
            day = conn.execute(text("SELECT (TIMESTAMPTZ '2025-07-01 20:00:00+00')::date")).scalar()
            assert str(day) == "2025-07-01"  # 2025-07-02 in Hanoi
        with db.session() as s:
            s.add(Agency(id="utc", name="UTC", kind="department", created_at=datetime(2025, 7, 1, 8, tzinfo=UTC)))
        with db.session() as s:
            agency = s.get(Agency, "utc")
            assert agency is not None and agency.created_at == datetime(2025, 7, 1, 8, tzinfo=UTC)
            assert agency.created_at.tzinfo is UTC

        async def on_the_loop() -> list[Any]:
            reads = LoopReads(url, max_size=1)
            await reads.open()
            try:
                return await reads.fetch_all("SELECT current_setting('TimeZone'), now()", None)
            finally:
                await reads.close()

        [(zone, now)] = asyncio.run(on_the_loop())
        assert zone == "UTC" and now.tzinfo is UTC
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET timezone'))
        admin.dispose()


def test_each_event_loop_has_reads_of_its_own(db: Database) -> None:
    """An async pool belongs to the loop it was opened on: an app served by two loops at once (a
    test's second client) opens reads on each, and closing one leaves the other open."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    opened, close_first = threading.Event(), threading.Event()
    first: list[LoopReads | None] = []
    failures: list[BaseException] = []

    def first_loop() -> None:
        async def serve() -> None:
            await db.open_loop_reads()
            reads = db.loop_reads
            first.append(reads)
            opened.set()
            await asyncio.to_thread(close_first.wait, 30)
            assert reads is not None and db.loop_reads is reads  # the other loop's closing left it open
            assert await reads.fetch_all("SELECT 1", None) == [(1,)]
            await db.close_loop_reads()

        try:
            asyncio.run(serve())
        except BaseException as exc:
            failures.append(exc)
            opened.set()

    thread = threading.Thread(target=first_loop)
    thread.start()
    try:
        assert opened.wait(30) and not failures and first[0] is not None

        async def second_loop() -> None:
            assert db.loop_reads is None  # none opened on this loop yet
            await db.open_loop_reads()
            assert db.loop_reads is not None and db.loop_reads is not first[0]
            assert await db.loop_reads.fetch_all("SELECT 2", None) == [(2,)]
            await db.close_loop_reads()
            assert db.loop_reads is None

        asyncio.run(second_loop())
    finally:
        close_first.set()
        thread.join(30)
    assert failures == []
    assert db.loop_reads is None


def _driver_url(db: Database) -> str:
    return make_url(db.url).set(drivername="postgresql").render_as_string(False)


# --------------------------------------------------------------------------- SQLite writers


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(32), unique=True)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    _Base.metadata.create_all(db.engine)
    return db


def _lock(db: Database) -> threading.Lock:
    assert db.engine.url.database
    return sqlite_write_lock(db.engine.url.database)


def test_sqlite_connections_serialise_writers(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, SerialisedWriterConnection)
    memory = Database("sqlite://")
    with memory.engine.connect() as conn:
        assert not isinstance(conn.connection.dbapi_connection, SerialisedWriterConnection)


def _in_database_file(path: str, name: str) -> bool:
    """Whether the row ``name`` is in the database file itself, not only in its write-ahead log
    (``immutable``: SQLite then reads the file alone)."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
        try:
            return bool(conn.execute("SELECT count(*) FROM rows WHERE name = ?", (name,)).fetchone()[0] == 1)
        except sqlite3.OperationalError:  # the table itself is still only in the log
            return False


def test_a_servers_checkpointer_copies_the_log_into_the_file_off_the_writers(sqlite_db: Database) -> None:
    path = str(sqlite_db.engine.url.database)
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == db_module.SQLITE_AUTOCHECKPOINT_PAGES
    with sqlite_db.session() as s:
        s.add(Row(thread=0, name="before"))
    time.sleep(3 * db_module.SQLITE_CHECKPOINT_EVERY_S)
    assert not _in_database_file(path, "before")  # a commit does not checkpoint a small log itself
    assert sqlite_db.checkpointer is not None
    sqlite_db.start_checkpoints()
    try:
        wait_for(lambda: _in_database_file(path, "before"), what="the checkpoint")
        with sqlite_db.session() as s:
            s.add(Row(thread=0, name="after"))
        wait_for(lambda: _in_database_file(path, "after"), what="the next checkpoint")
    finally:
        sqlite_db.dispose()
    assert sqlite_db.checkpointer._thread is None  # stopped with the database
    assert Database("sqlite://").checkpointer is None  # nothing to copy in memory


def test_writes_are_told_from_reads() -> None:
    for sql in ("INSERT INTO t VALUES (1)", "  update t set a=1", "DELETE FROM t", "REPLACE INTO t VALUES (1)"):
        assert _is_write(sql)
    for sql in ("CREATE TABLE t (a)", "DROP TABLE t", "ALTER TABLE t ADD b", "BEGIN IMMEDIATE", "begin exclusive"):
        assert _is_write(sql)
    for sql in ("SELECT 1", "PRAGMA journal_mode", "BEGIN", "SAVEPOINT sa_1", "RELEASE SAVEPOINT sa_1"):
        assert not _is_write(sql)


def test_concurrent_writers_from_threads_all_commit(sqlite_db: Database) -> None:
    threads, per_thread = 12, 25
    errors: list[BaseException] = []
    inside = 0
    most_inside = 0
    guard = threading.Lock()
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        nonlocal inside, most_inside
        try:
            start.wait()
            for i in range(per_thread):
                with sqlite_db.session() as s:
                    s.scalar(select(func.count()).select_from(Row))  # a read before the first write
                    s.add(Row(thread=n, name=f"{n}-{i}-a"))
                    s.flush()
                    with guard:
                        inside += 1
                        most_inside = max(most_inside, inside)
                    # Work between the first write and the commit: others must wait, not fail.
                    s.scalar(select(func.max(Row.id)))
                    s.add(Row(thread=n, name=f"{n}-{i}-b"))
                    s.flush()
                    with guard:
                        inside -= 1
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []  # no 'database is locked' escapes
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count()).select_from(Row)) == threads * per_thread * 2
        per = {int(t): int(c) for t, c in s.execute(select(Row.thread, func.count()).group_by(Row.thread))}
    assert per == dict.fromkeys(range(threads), per_thread * 2)
    assert most_inside == 1  # one write transaction at a time
    assert not _lock(sqlite_db).locked()


def test_a_writer_needing_a_second_connection_is_not_starved_by_the_queue(sqlite_db: Database) -> None:
    """The head of the write queue opens a second session (a cached lookup built on first use)
    while 48 request threads wait on the lock, each holding its own connection: the pool must
    have one left for it, or everyone stalls until the lock and busy timeouts expire."""
    waiters = 48
    errors: list[BaseException] = []
    holding = threading.Event()
    started = threading.Barrier(waiters + 1)

    def head() -> None:
        try:
            with sqlite_db.session() as s:
                s.add(Row(thread=-1, name="head"))
                s.flush()  # holds the write lock from here to the commit
                holding.set()
                started.wait(timeout=15)
                time.sleep(0.5)  # the others are queued on the lock by now
                with sqlite_db.session() as side:  # a second connection, inside the transaction
                    side.scalar(select(func.count()).select_from(Row))
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    def waiter(n: int) -> None:
        try:
            holding.wait()
            with sqlite_db.session() as s:
                s.scalar(select(func.count()).select_from(Row))  # the connection is checked out
                started.wait(timeout=15)
                s.add(Row(thread=n, name=f"w{n}"))
                s.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=head)] + [threading.Thread(target=waiter, args=(n,)) for n in range(waiters)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert time.monotonic() - began < 9  # far below the 10 s lock timeout a starved head would wait out
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count()).select_from(Row)) == waiters + 1


def test_lock_is_held_from_first_write_to_commit(sqlite_db: Database) -> None:
    lock = _lock(sqlite_db)
    with sqlite_db.session() as s:
        s.scalar(select(func.count()).select_from(Row))
        assert not lock.locked()  # reads do not take it
        s.add(Row(thread=0, name="x"))
        s.flush()
        assert lock.locked()
    assert not lock.locked()


def test_lock_is_given_back_on_rollback_and_failed_writes(sqlite_db: Database) -> None:
    lock = _lock(sqlite_db)
    with pytest.raises(RuntimeError), sqlite_db.session() as s:
        s.add(Row(thread=0, name="y"))
        s.flush()
        assert lock.locked()
        raise RuntimeError("boom")
    assert not lock.locked()

    with sqlite_db.session() as s:
        s.add(Row(thread=0, name="dup"))
    with pytest.raises(IntegrityError), sqlite_db.session() as s:
        s.add(Row(thread=0, name="dup"))
        s.flush()
    assert not lock.locked()

    with pytest.raises(OperationalError), sqlite_db.engine.begin() as conn:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
    assert not lock.locked()


def test_autocommit_writes_release_at_once(sqlite_db: Database) -> None:
    lock = _lock(sqlite_db)
    with sqlite_db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("INSERT INTO rows (thread, name) VALUES (0, 'auto')"))
        assert not lock.locked()
    with sqlite_db.session() as s:
        assert s.scalar(select(Row.name).where(Row.name == "auto")) == "auto"


def test_two_databases_on_one_file_share_the_lock(sqlite_db: Database) -> None:
    assert sqlite_db.engine.url.database
    other = Database(f"sqlite:///{sqlite_db.engine.url.database}")
    try:
        with sqlite_db.session() as s:
            s.add(Row(thread=0, name="first"))
            s.flush()
            done = threading.Event()

            def write_other() -> None:
                with other.session() as s2:
                    s2.add(Row(thread=1, name="second"))
                done.set()

            t = threading.Thread(target=write_other)
            t.start()
            assert not done.wait(0.2)  # queued on the lock while the first transaction is open
        t.join()
        assert done.is_set()
        with other.session() as s2:
            assert s2.scalar(select(func.count()).select_from(Row)) == 2
    finally:
        other.dispose()


_HOLD_THE_LOCK_FILE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


@contextmanager
def _another_process_writing(db: Database) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the writers' lock file of ``db`` until its stdin gets a line."""
    assert db.engine.url.database
    path = db.engine.url.database + "-writer.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK_FILE, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)


def _write_in_thread(db: Database, name: str) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def write() -> None:
        with db.session() as s:
            s.add(Row(thread=0, name=name))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    return thread, done


def test_a_writer_waits_for_another_process_on_the_lock_file(sqlite_db: Database) -> None:
    """Writers of several processes (``ioc serve --workers N``) take turns on a lock file beside
    the database: one waits while another process writes, and goes on as soon as it is done."""
    with _another_process_writing(sqlite_db) as holder:
        thread, done = _write_in_thread(sqlite_db, "after the other process")
        assert not done.wait(0.3)  # waiting for the other process's writer
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(10)
        thread.join(10)
    assert done.is_set()
    with sqlite_db.session() as s:
        assert s.scalar(select(Row.name)) == "after the other process"


def test_a_writer_gives_up_waiting_for_the_lock_file_after_the_busy_timeout(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that keeps the lock file too long (hung): after the busy timeout the writer goes
    on without it, to SQLite's own locking (here the database itself is free: it writes)."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    with _another_process_writing(sqlite_db):
        thread, done = _write_in_thread(sqlite_db, "without the lock file")
        assert done.wait(10)
        thread.join(10)
    with sqlite_db.session() as s:
        assert s.scalar(select(Row.name)) == "without the lock file"


def test_a_forked_process_opens_a_lock_file_of_its_own(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock taken through a descriptor inherited across a fork would be the parent's own lock
    (one open file): a process opens the lock file itself."""
    assert sqlite_db.engine.url.database
    ours = db_module._file_lock(sqlite_db.engine.url.database)
    assert ours == db_module._file_lock(sqlite_db.engine.url.database)
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert db_module._file_lock(sqlite_db.engine.url.database) not in (None, ours)
