"""The database layer: UTC times, WAL, and transactions that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from ioc.core.auth import Agency
from ioc.core.db import Database, utcnow


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
