"""The audit log: what it records, how it is read, and that the database keeps it append-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from ioc.core import audit
from ioc.core.audit import AuditEntry
from ioc.core.auth import Principal, Role
from ioc.core.db import Database, utcnow

ACTOR = Principal(
    kind="user", id="user:7", name="truc.ban", permissions=frozenset({"*"}), role=Role.ADMIN, ip="10.1.2.3"
)


def _count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)) or 0


def test_record_keeps_actor_object_and_both_states(db: Database) -> None:
    with db.session() as s:
        audit.record(
            s, ACTOR, "user.update", "user", 42, before={"role": "viewer"}, after={"role": "operator", "tên": "Hà"}
        )
        audit.record(s, None, "alarm.raise", "alarm", "9", after={"severity": "MAJOR"}, ip="10.9.9.9")
    with db.session() as s:
        first, second = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert (first.actor_kind, first.actor_id, first.actor_name, first.ip) == ("user", "user:7", "truc.ban", "10.1.2.3")
    assert (first.action, first.object_type, first.object_id) == ("user.update", "user", "42")
    assert first.before == {"role": "viewer"}
    assert first.after == {"role": "operator", "tên": "Hà"}
    assert first.at.tzinfo is not None
    assert (second.actor_kind, second.actor_id, second.actor_name, second.ip) == (
        "system",
        "system",
        "system",
        "10.9.9.9",
    )


def test_record_survives_hostile_text(db: Database) -> None:
    """A failed login with a NUL in the username is audited, not a 500 on PostgreSQL."""
    with db.session() as s:
        audit.record(s, None, "login_failed", "user", "ad\x00min" + "x" * 500, after={"k\x00": ["v\x00"]})
    with db.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
    assert "\x00" not in entry.object_id
    assert len(entry.object_id) == 128
    assert entry.after == {"k\ufffd": ["v\ufffd"]}


def test_entries_filters_newest_first(db: Database) -> None:
    with db.session() as s:
        for i in range(5):
            audit.record(s, ACTOR if i % 2 else None, "alarm.raise" if i < 3 else "alarm.clear", "alarm", i)
        audit.record(s, ACTOR, "user.create", "user", 1)
    with db.session() as s:
        everything = audit.entries(s)
        assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
        assert len(everything) == 6
        assert [e.object_id for e in audit.entries(s, object_type="alarm", action="alarm.raise")] == ["2", "1", "0"]
        assert [e.object_id for e in audit.entries(s, actor_id="user:7", object_type="alarm")] == ["3", "1"]
        assert [e.object_id for e in audit.entries(s, object_type="alarm", object_id="4")] == ["4"]
        assert [e.object_id for e in audit.entries(s, object_type="alarm", limit=2, offset=1)] == ["3", "2"]
        now = utcnow()
        assert len(audit.entries(s, since=now - timedelta(minutes=5))) == 6
        assert audit.entries(s, since=now + timedelta(minutes=5)) == []
        assert audit.entries(s, until=now - timedelta(minutes=5)) == []


APPEND_ONLY_VIOLATIONS = [
    "UPDATE audit_log SET action = 'forged'",
    "UPDATE audit_log SET after = NULL WHERE id = 1",
    "DELETE FROM audit_log",
    "DELETE FROM audit_log WHERE id = 1",
]


def test_the_database_refuses_to_change_or_delete_audit_rows(db: Database) -> None:
    with db.session() as s:
        audit.record(s, ACTOR, "user.create", "user", 1, after={"username": "a"})
    for statement in APPEND_ONLY_VIOLATIONS:
        with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
            s.execute(text(statement))
    with db.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
        assert entry.action == "user.create"
        assert entry.after == {"username": "a"}


def test_the_orm_cannot_rewrite_history_either(db: Database) -> None:
    with db.session() as s:
        audit.record(s, ACTOR, "user.create", "user", 1)
    with db.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
        entry.actor_name = "someone else"
        with pytest.raises(DBAPIError, match="append-only"):
            s.flush()
        s.rollback()
    with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
        s.execute(update(AuditEntry).values(object_id="x"))
    with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
        s.execute(delete(AuditEntry))
    with db.session() as s:
        entry = s.scalars(select(AuditEntry)).one()
        assert entry.actor_name == "truc.ban"
    # Appending is still allowed.
    with db.session() as s:
        audit.record(s, ACTOR, "user.update", "user", 1)
    assert _count(db) == 2
