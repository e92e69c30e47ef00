"""The alarm lifecycle (DESIGN §4.3) on both databases: one open alarm per (source, type),
repeats, escalation, acknowledgement, clearing, history, audit and outbox events."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from ioc.core import alarms
from ioc.core.alarms import Alarm, AlarmCreate, AlarmHistory, AlarmStatus, Severity
from ioc.core.audit import AuditEntry
from ioc.core.auth import Principal, Role
from ioc.core.db import Database, utcnow
from ioc.core.events import OutboxEvent
from ioc.core.problems import Problem

OPERATOR = Principal(kind="user", id="user:1", name="truc.ban", permissions=frozenset({"*"}), role=Role.OPERATOR)
OFFICER = Principal(
    kind="user",
    id="user:2",
    name="can.bo.phuong",
    permissions=frozenset({"alarms:write"}),
    role=Role.WARD_OFFICER,
    agency_id="ubnd-thanh-vinh",
    ward_code="16681",
)


def flood(severity: Severity = Severity.MAJOR, **extra: Any) -> AlarmCreate:
    fields: dict[str, Any] = {
        "source": "gauge:song-vinh-cau-cua-tien",
        "type": "flood.level",
        "severity": severity,
        "title": "Mực nước sông Vinh vượt báo động",
        "details": {"level_m": 2.6},
        "ward_code": "16681",
        "agency_id": "ubnd-thanh-vinh",
    }
    fields.update(extra)
    return AlarmCreate(**fields)


def _raise(db: Database, data: AlarmCreate, actor: Principal | None = None) -> tuple[int, bool]:
    with db.session() as s:
        alarm, created = alarms.raise_alarm(s, data, actor=actor, module="test")
        return alarm.id, created


def _get(db: Database, alarm_id: int) -> Alarm:
    with db.session() as s:
        alarm = s.get(Alarm, alarm_id)
        assert alarm is not None
        return alarm


def _ack(db: Database, alarm_id: int, actor: Principal = OFFICER, note: str | None = None) -> Alarm:
    with db.session() as s:
        alarm = s.get(Alarm, alarm_id)
        assert alarm is not None
        return alarms.acknowledge(s, alarm, actor, note)


def _clear(db: Database, alarm_id: int, actor: Principal | None = OPERATOR) -> Alarm:
    with db.session() as s:
        alarm = s.get(Alarm, alarm_id)
        assert alarm is not None
        return alarms.clear(s, alarm, actor)


def _topics(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(OutboxEvent.topic).order_by(OutboxEvent.id)))


def _audit(db: Database) -> list[AuditEntry]:
    with db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.object_type == "alarm").order_by(AuditEntry.id)))


def _history(db: Database, alarm_id: int) -> list[tuple[str, str, str]]:
    with db.session() as s:
        return [(h.action, h.actor, h.severity) for h in alarms.history(s, alarm_id)]


def test_raising_opens_an_alarm_with_history_audit_and_event(db: Database) -> None:
    alarm_id, created = _raise(db, flood(), OPERATOR)
    assert created
    alarm = _get(db, alarm_id)
    assert alarm.status == AlarmStatus.ACTIVE_UNACK
    assert (alarm.count, alarm.severity, alarm.module) == (1, "MAJOR", "test")
    assert alarm.started_at == alarm.updated_at
    assert _history(db, alarm_id) == [("raised", "truc.ban", "MAJOR")]
    [entry] = _audit(db)
    assert (entry.action, entry.object_id, entry.actor_id, entry.before) == (
        "alarm.raise",
        str(alarm_id),
        "user:1",
        None,
    )
    assert entry.after is not None
    assert entry.after["status"] == "ACTIVE_UNACK"
    assert _topics(db) == ["alarm.raised"]
    with db.session() as s:
        event = s.scalars(select(OutboxEvent)).one()
        assert event.payload["id"] == alarm_id
        assert (event.ward_code, event.agency_id) == ("16681", "ubnd-thanh-vinh")


def test_raising_again_updates_the_open_alarm(db: Database) -> None:
    first, _ = _raise(db, flood())
    second, created = _raise(db, flood(Severity.MAJOR, title="Vẫn vượt báo động", details={"level_m": 2.7}))
    assert (second, created) == (first, False)
    alarm = _get(db, first)
    assert (alarm.count, alarm.title, alarm.details) == (2, "Vẫn vượt báo động", {"level_m": 2.7})
    assert alarm.updated_at >= alarm.started_at
    assert _topics(db) == ["alarm.raised", "alarm.updated"]
    updated = _audit(db)[-1]
    assert updated.action == "alarm.updated"
    assert updated.before is not None and updated.after is not None
    assert (updated.before["count"], updated.after["count"]) == (1, 2)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alarm)) == 1


def test_escalation_takes_the_acknowledgement_back(db: Database) -> None:
    alarm_id, _ = _raise(db, flood(Severity.MINOR))
    _ack(db, alarm_id)
    _raise(db, flood(Severity.MINOR))  # the same condition again: still acknowledged
    assert _get(db, alarm_id).status == AlarmStatus.ACTIVE_ACK
    _raise(db, flood(Severity.WARNING))  # better: still acknowledged
    assert _get(db, alarm_id).status == AlarmStatus.ACTIVE_ACK
    _raise(db, flood(Severity.CRITICAL))  # worse: must be seen again
    alarm = _get(db, alarm_id)
    assert alarm.status == AlarmStatus.ACTIVE_UNACK
    assert (alarm.severity, alarm.ack_by, alarm.ack_at, alarm.count) == ("CRITICAL", None, None, 4)
    assert [a for a, _, _ in _history(db, alarm_id)] == [
        "raised",
        "acknowledged",
        "updated",
        "deescalated",
        "escalated",
    ]
    assert _audit(db)[-1].action == "alarm.escalated"


def test_acknowledge_once(db: Database) -> None:
    alarm_id, _ = _raise(db, flood())
    alarm = _ack(db, alarm_id, note="Đã cử người kiểm tra")
    assert alarm.status == AlarmStatus.ACTIVE_ACK
    assert alarm.ack_by == "can.bo.phuong"
    assert alarm.ack_at is not None
    with pytest.raises(Problem) as exc:
        _ack(db, alarm_id, OPERATOR)
    assert exc.value.status == 409
    assert exc.value.code == "already-acknowledged"
    assert _get(db, alarm_id).ack_by == "can.bo.phuong"
    with db.session() as s:
        notes = list(s.scalars(select(AlarmHistory.note).where(AlarmHistory.action == "acknowledged")))
    assert notes == ["Đã cử người kiểm tra"]
    assert _topics(db) == ["alarm.raised", "alarm.acknowledged"]


def test_a_stale_copy_cannot_acknowledge_twice(db: Database) -> None:
    """Two operators open the same alarm; the database, not the stale copy, decides."""
    alarm_id, _ = _raise(db, flood())
    with db.session() as first:
        stale = first.get(Alarm, alarm_id)
        assert stale is not None and not stale.acknowledged
        _ack(db, alarm_id, OFFICER)  # another request acknowledges and commits meanwhile
        with pytest.raises(Problem) as exc:
            alarms.acknowledge(first, stale, OPERATOR)
        assert exc.value.status == 409
        assert "can.bo.phuong" in exc.value.detail
        first.rollback()
    assert _history(db, alarm_id) == [("raised", "system", "MAJOR"), ("acknowledged", "can.bo.phuong", "MAJOR")]
    assert _topics(db).count("alarm.acknowledged") == 1


def test_clear_then_acknowledge_then_raise_anew(db: Database) -> None:
    alarm_id, _ = _raise(db, flood())
    cleared = _clear(db, alarm_id)
    assert cleared.status == AlarmStatus.CLEARED_UNACK
    assert cleared.cleared_by == "truc.ban"
    assert cleared.cleared_at is not None
    with pytest.raises(Problem) as exc:
        _clear(db, alarm_id)
    assert exc.value.status == 409
    assert _ack(db, alarm_id).status == AlarmStatus.CLEARED_ACK
    again, created = _raise(db, flood())
    assert created
    assert again != alarm_id
    assert _get(db, again).status == AlarmStatus.ACTIVE_UNACK
    assert _get(db, alarm_id).status == AlarmStatus.CLEARED_ACK
    assert _topics(db) == ["alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.raised"]
    assert [e.action for e in _audit(db)] == ["alarm.raise", "alarm.clear", "alarm.acknowledge", "alarm.raise"]
    clear_entry = _audit(db)[1]
    assert clear_entry.before is not None and clear_entry.after is not None
    assert (clear_entry.before["cleared"], clear_entry.after["cleared"]) == (False, True)


def test_a_module_clears_a_condition_by_source_and_type(db: Database) -> None:
    alarm_id, _ = _raise(db, flood())
    with db.session() as s:
        assert alarms.clear_condition(s, "gauge:song-vinh-cau-cua-tien", "flood.level", "Nước đã rút") is not None
        assert alarms.clear_condition(s, "gauge:song-vinh-cau-cua-tien", "flood.level") is None
    assert _get(db, alarm_id).cleared_by == "system"
    assert _history(db, alarm_id)[-1] == ("cleared", "system", "MAJOR")


def test_a_rolled_back_raise_leaves_nothing(db: Database) -> None:
    """The alarm, its history, audit row and event commit together or not at all.

    (A savepoint-based insert once committed the alarm alone on SQLite, whose driver ends a
    savepoint opened outside a transaction with a COMMIT.)
    """

    def failing_request() -> None:
        with db.session() as s:
            alarms.raise_alarm(s, flood(), actor=OPERATOR)
            raise RuntimeError("the request failed later")

    with pytest.raises(RuntimeError):
        failing_request()
    with db.session() as s:
        for table in (Alarm, AlarmHistory, AuditEntry, OutboxEvent):
            assert s.scalar(select(func.count()).select_from(table)) == 0, table


def test_a_scoped_actor_cannot_update_another_remits_open_alarm(db: Database) -> None:
    alarm_id, _ = _raise(db, flood(ward_code="16690", agency_id="ubnd-truong-vinh"))
    with pytest.raises(Problem) as exc:
        _raise(db, flood(), OFFICER)
    assert exc.value.status == 403
    alarm = _get(db, alarm_id)
    assert (alarm.count, alarm.ward_code) == (1, "16690")


def test_the_partial_unique_index_allows_one_open_alarm_per_source_and_type(db: Database) -> None:
    now = utcnow()
    row = {
        "source": "gauge:x",
        "type": "flood.level",
        "severity": "MAJOR",
        "title": "t",
        "details": {},
        "module": "test",
        "count": 1,
        "started_at": now,
        "updated_at": now,
        "acknowledged": False,
    }
    with db.session() as s:
        # Any number of cleared ones, and one open one.
        s.execute(insert(Alarm), [{**row, "cleared": True}, {**row, "cleared": True}, {**row, "cleared": False}])
        s.execute(insert(Alarm), [{**row, "type": "other", "cleared": False}])
    with pytest.raises(IntegrityError), db.session() as s:
        s.execute(insert(Alarm).values(**row, cleared=False))
    with db.session() as s:
        open_count = s.scalar(select(func.count()).select_from(Alarm).where(Alarm.cleared.is_(False)))
        assert open_count == 2
        assert alarms._insert_open(s, flood(source="gauge:x"), "test") is None


def test_concurrent_raises_of_one_condition_make_one_alarm(db: Database) -> None:
    """Workers raising the same condition at once: one alarm, every repeat counted."""
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            _raise(db, flood())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    with db.session() as s:
        [alarm] = s.scalars(select(Alarm)).all()
        assert alarm.count == workers
        actions = sorted(s.scalars(select(AlarmHistory.action)))
    assert actions == ["raised"] + ["updated"] * (workers - 1)
    assert sorted(_topics(db)) == ["alarm.raised"] + ["alarm.updated"] * (workers - 1)


def test_visible_to_matches_can_access(db: Database) -> None:
    _raise(db, flood(source="a", ward_code="16681", agency_id="so-nnmt"))
    _raise(db, flood(source="b", ward_code="16690", agency_id="ubnd-truong-vinh"))
    _raise(db, flood(source="c", ward_code=None, agency_id=None))
    officer = Principal(
        kind="user", id="user:3", name="o", permissions=frozenset(), role=Role.AGENCY_OFFICER, agency_id="so-nnmt"
    )
    key = Principal(kind="apikey", id="apikey:1", name="k", permissions=frozenset(), agency_id="ubnd-truong-vinh")
    for principal, expected in [(OPERATOR, {"a", "b", "c"}), (OFFICER, {"a"}), (officer, {"a"}), (key, {"b"})]:
        with db.session() as s:
            rows = s.scalars(select(Alarm).where(alarms.visible_to(principal))).all()
            assert {r.source for r in rows} == expected, principal.name
            for r in s.scalars(select(Alarm)):
                assert principal.can_access(ward_code=r.ward_code, agency_id=r.agency_id) == (r.source in expected)


def test_alarm_input_is_checked() -> None:
    with pytest.raises(ValueError, match="type"):
        flood(type="có dấu cách")
    with pytest.raises(ValueError, match="ward_code"):
        flood(ward_code="1668")
    with pytest.raises(ValueError, match="details"):
        flood(details={"v": float("nan")})
    with pytest.raises(ValueError, match="colour"):
        AlarmCreate.model_validate({**flood().model_dump(), "colour": "red"})
    assert Severity.CRITICAL.rank > Severity.MAJOR.rank > Severity.MINOR.rank > Severity.WARNING.rank
