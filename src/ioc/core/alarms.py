"""The alarm lifecycle shared by every module (modelled on ThingsBoard).

* Severity: CRITICAL > MAJOR > MINOR > WARNING.
* State: active or cleared, times acknowledged or not (four statuses).
* At most one *open* (not cleared) alarm per ``(source, type)``: raising the same condition
  again updates it (count, severity, details) instead of creating a new one. A database
  partial unique index enforces this even across workers.
* Every change is written to the alarm's history, the audit log and the event bus
  (topics ``alarm.raised``, ``alarm.updated``, ``alarm.acknowledged``, ``alarm.cleared``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Boolean,
    ColumnElement,
    CursorResult,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core import admin_units, audit
from ioc.core.auth import Agency, InputModel, Principal, Role
from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow
from ioc.core.events import Topic, publish
from ioc.core.problems import Problem


class Severity(StrEnum):
    """How bad a condition is; ``rank`` orders them (CRITICAL highest)."""

    CRITICAL = "CRITICAL"
    MAJOR = "MAJOR"
    MINOR = "MINOR"
    WARNING = "WARNING"

    @property
    def rank(self) -> int:
        """Order of gravity: WARNING 1 … CRITICAL 4."""
        return _RANK[self]


_RANK = {Severity.WARNING: 1, Severity.MINOR: 2, Severity.MAJOR: 3, Severity.CRITICAL: 4}


class AlarmStatus(StrEnum):
    """Active or cleared, times acknowledged or not."""

    ACTIVE_UNACK = "ACTIVE_UNACK"
    ACTIVE_ACK = "ACTIVE_ACK"
    CLEARED_UNACK = "CLEARED_UNACK"
    CLEARED_ACK = "CLEARED_ACK"


class Alarm(Base):
    """A condition that needs an operator's attention."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index(
            "uq_alarms_open_source_type",
            "source",
            "type",
            unique=True,
            sqlite_where=text("cleared = 0"),
            postgresql_where=text("cleared = false"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(256), index=True)
    type: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    module: Mapped[str] = mapped_column(String(64), default="core")
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cleared: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    cleared_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def status(self) -> AlarmStatus:
        """The ThingsBoard-style status: active or cleared, acknowledged or not."""
        if self.cleared:
            return AlarmStatus.CLEARED_ACK if self.acknowledged else AlarmStatus.CLEARED_UNACK
        return AlarmStatus.ACTIVE_ACK if self.acknowledged else AlarmStatus.ACTIVE_UNACK


class AlarmHistory(Base):
    """Who did what to an alarm, and when."""

    __tablename__ = "alarm_history"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


# --------------------------------------------------------------------------- schemas

#: Codes and slugs: letters, digits and a few separators — no spaces, no control characters.
_TYPE_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
#: A source names a device or a place: any printable text, no control characters.
_SOURCE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
WARD_CODE_PATTERN = r"^\d{5}$"
AGENCY_ID_PATTERN = r"^[a-z0-9-]+$"


class AlarmCreate(InputModel):
    """An alarm raised through the API or by a module."""

    source: str = Field(min_length=1, max_length=256, pattern=_SOURCE_PATTERN, examples=["gauge:song-vinh"])
    type: str = Field(min_length=1, max_length=128, pattern=_TYPE_PATTERN, examples=["flood.level"])
    severity: Severity
    title: str = Field(min_length=1, max_length=300)
    details: dict[str, Any] = Field(default_factory=dict)
    ward_code: str | None = Field(default=None, pattern=WARD_CODE_PATTERN, description="GSO code of the ward")
    agency_id: str | None = Field(default=None, max_length=64, pattern=AGENCY_ID_PATTERN)


class AlarmAction(InputModel):
    """An optional note with an acknowledgement or a clearing."""

    note: str | None = Field(default=None, max_length=2000)


class AlarmHistoryPublic(BaseModel):
    """One step of an alarm's history."""

    model_config = ConfigDict(from_attributes=True)

    at: datetime
    action: str
    actor: str
    severity: str
    note: str | None


class AlarmPublic(BaseModel):
    """An alarm as the API shows it and as events carry it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    type: str
    severity: Severity
    status: AlarmStatus
    title: str
    details: dict[str, Any]
    module: str
    ward_code: str | None
    agency_id: str | None
    count: int
    started_at: datetime
    updated_at: datetime
    acknowledged: bool
    ack_by: str | None
    ack_at: datetime | None
    cleared: bool
    cleared_by: str | None
    cleared_at: datetime | None


class AlarmDetail(AlarmPublic):
    """An alarm with its history."""

    history: list[AlarmHistoryPublic]


ALARM_RAISED = Topic("alarm.raised", AlarmPublic, "Một cảnh báo mới / a new alarm")
ALARM_UPDATED = Topic("alarm.updated", AlarmPublic, "Cảnh báo lặp lại hoặc đổi mức / repeated or re-rated")
ALARM_ACKNOWLEDGED = Topic("alarm.acknowledged", AlarmPublic, "Đã xác nhận / acknowledged")
ALARM_CLEARED = Topic("alarm.cleared", AlarmPublic, "Đã xoá / cleared")


# --------------------------------------------------------------------------- service


def _actor_name(actor: Principal | None) -> str:
    return actor.name if actor else "system"


def _snapshot(alarm: Alarm) -> dict[str, Any]:
    return AlarmPublic.model_validate(alarm).model_dump(mode="json")


def _announce(session: Session, topic: Topic[AlarmPublic], alarm: Alarm) -> None:
    payload = AlarmPublic.model_validate(alarm)
    publish(session, topic, payload, ward_code=alarm.ward_code, agency_id=alarm.agency_id)


def _log(session: Session, alarm: Alarm, action: str, actor: Principal | None, note: str | None = None) -> None:
    entry = AlarmHistory(
        alarm_id=alarm.id,
        at=alarm.updated_at,
        action=action,
        actor=_actor_name(actor),
        severity=alarm.severity,
        note=note,
    )
    session.add(entry)


def check_references(session: Session, data: AlarmCreate) -> None:
    """422 unless the alarm's ward is a ward in force and its agency exists."""
    if data.ward_code is not None:
        unit = admin_units.get_unit(session, data.ward_code)
        if unit is None or unit.level not in ("ward", "commune") or not unit.in_force(admin_units.vn_today()):
            raise Problem(
                422,
                f"Không có phường/xã đang hiệu lực mã '{data.ward_code}' (unknown ward).",
                code="unknown-ward",
            )
    if data.agency_id is not None and session.get(Agency, data.agency_id) is None:
        raise Problem(422, f"Không có cơ quan '{data.agency_id}' (unknown agency).", code="unknown-agency")


def open_alarm(session: Session, source: str, type_: str) -> Alarm | None:
    """The open (not cleared) alarm for ``(source, type)``, if any (row-locked on PostgreSQL)."""
    stmt = select(Alarm).where(Alarm.source == source, Alarm.type == type_, Alarm.cleared.is_(False))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def _insert_open(session: Session, data: AlarmCreate, module: str) -> int | None:
    """Insert a new open alarm; None when one for ``(source, type)`` exists already.

    ``INSERT .. ON CONFLICT DO NOTHING`` on the partial unique index: a concurrent raise of
    the same condition in another worker waits for ours and then finds it, and no savepoint
    is needed (SQLite's driver would commit a savepoint opened outside a transaction).
    """
    now = utcnow()
    values: dict[str, Any] = {
        "source": data.source,
        "type": data.type,
        "severity": data.severity.value,
        "title": data.title,
        "details": data.details,
        "module": module,
        "ward_code": data.ward_code,
        "agency_id": data.agency_id,
        "count": 1,
        "started_at": now,
        "updated_at": now,
        "acknowledged": False,
        "cleared": False,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(Alarm).values(values)
        pg = pg.on_conflict_do_nothing(index_elements=["source", "type"], index_where=Alarm.cleared == false())
        return session.scalar(pg.returning(Alarm.id))
    if dialect == "sqlite":
        lite = sqlite.insert(Alarm).values(values)
        lite = lite.on_conflict_do_nothing(index_elements=["source", "type"], index_where=Alarm.cleared == false())
        return session.scalar(lite.returning(Alarm.id))
    alarm = Alarm(**values)  # other databases: the unique index still refuses a duplicate
    session.add(alarm)
    session.flush()
    return alarm.id


def raise_alarm(
    session: Session,
    data: AlarmCreate,
    *,
    actor: Principal | None = None,
    module: str = "core",
) -> tuple[Alarm, bool]:
    """Raise ``data`` or update the open alarm of the same source and type; returns (alarm, created).

    With an ``actor``, the open alarm it would update must be in the actor's remit (403
    otherwise): a scoped integration cannot rewrite another agency's alarm.
    """
    for _attempt in range(3):
        existing = open_alarm(session, data.source, data.type)
        if existing is not None:
            if actor is not None and not actor.can_access(ward_code=existing.ward_code, agency_id=existing.agency_id):
                raise Problem(
                    403,
                    "Cảnh báo đang mở của nguồn này thuộc phạm vi khác (open alarm outside your remit).",
                    code="out-of-remit",
                )
            return _repeat(session, existing, data, actor), False
        alarm_id = _insert_open(session, data, module)
        if alarm_id is None:
            continue  # another worker opened it between our read and our insert: update theirs
        alarm = session.get(Alarm, alarm_id)
        assert alarm is not None
        _log(session, alarm, "raised", actor)
        audit.record(session, actor, "alarm.raise", "alarm", alarm.id, after=_snapshot(alarm))
        _announce(session, ALARM_RAISED, alarm)
        return alarm, True
    raise Problem(409, "Không thể tạo cảnh báo do xung đột đồng thời; thử lại.", code="alarm-conflict")


def _repeat(session: Session, alarm: Alarm, data: AlarmCreate, actor: Principal | None) -> Alarm:
    before = _snapshot(alarm)
    new_sev = data.severity
    escalated = new_sev.rank > Severity(alarm.severity).rank
    action = "updated"
    if new_sev.value != alarm.severity:
        action = "escalated" if escalated else "deescalated"
        alarm.severity = new_sev.value
    if escalated and alarm.acknowledged:
        # A worse condition must be seen again: escalation takes the acknowledgement back.
        alarm.acknowledged = False
        alarm.ack_by = None
        alarm.ack_at = None
    # Incremented in SQL: two workers repeating the same condition both count.
    alarm.count = Alarm.count + 1
    alarm.title = data.title
    alarm.details = data.details
    alarm.updated_at = utcnow()
    session.flush()
    session.refresh(alarm)
    _log(session, alarm, action, actor)
    audit.record(session, actor, f"alarm.{action}", "alarm", alarm.id, before=before, after=_snapshot(alarm))
    _announce(session, ALARM_UPDATED, alarm)
    return alarm


def _transition(session: Session, alarm: Alarm, unless: ColumnElement[bool], **values: Any) -> bool:
    """Apply ``values`` to ``alarm`` in one conditional UPDATE; False when ``unless`` no longer holds.

    The condition is checked by the database at write time, so two operators acknowledging
    at once get one success and one 409 — on both databases, without holding a lock
    between the read and the write.
    """
    stmt = update(Alarm).where(Alarm.id == alarm.id, unless).values(**values)
    result = cast(CursorResult[Any], session.execute(stmt.execution_options(synchronize_session=False)))
    session.refresh(alarm)
    return result.rowcount == 1


def acknowledge(session: Session, alarm: Alarm, actor: Principal, note: str | None = None) -> Alarm:
    """Acknowledge ``alarm``; 409 when it already is."""
    before = _snapshot(alarm)
    now = utcnow()
    if alarm.acknowledged or not _transition(
        session,
        alarm,
        Alarm.acknowledged.is_(False),
        acknowledged=True,
        ack_by=actor.name,
        ack_at=now,
        updated_at=now,
    ):
        raise Problem(409, f"Cảnh báo {alarm.id} đã được xác nhận bởi {alarm.ack_by}.", code="already-acknowledged")
    _log(session, alarm, "acknowledged", actor, note)
    audit.record(session, actor, "alarm.acknowledge", "alarm", alarm.id, before=before, after=_snapshot(alarm))
    _announce(session, ALARM_ACKNOWLEDGED, alarm)
    return alarm


def clear(session: Session, alarm: Alarm, actor: Principal | None, note: str | None = None) -> Alarm:
    """Clear ``alarm`` (the condition is over); 409 when it already is."""
    before = _snapshot(alarm)
    now = utcnow()
    if alarm.cleared or not _transition(
        session,
        alarm,
        Alarm.cleared.is_(False),
        cleared=True,
        cleared_by=_actor_name(actor),
        cleared_at=now,
        updated_at=now,
    ):
        raise Problem(409, f"Cảnh báo {alarm.id} đã được xoá bởi {alarm.cleared_by}.", code="already-cleared")
    _log(session, alarm, "cleared", actor, note)
    audit.record(session, actor, "alarm.clear", "alarm", alarm.id, before=before, after=_snapshot(alarm))
    _announce(session, ALARM_CLEARED, alarm)
    return alarm


def clear_condition(session: Session, source: str, type_: str, note: str | None = None) -> Alarm | None:
    """Clear the open alarm of ``(source, type)`` when a module sees the condition end."""
    alarm = open_alarm(session, source, type_)
    return clear(session, alarm, None, note) if alarm is not None else None


def history(session: Session, alarm_id: int) -> list[AlarmHistory]:
    """What happened to an alarm, oldest first."""
    stmt = select(AlarmHistory).where(AlarmHistory.alarm_id == alarm_id).order_by(AlarmHistory.id)
    return list(session.scalars(stmt))


STATUS_FILTERS: dict[str, ColumnElement[bool]] = {
    "active": Alarm.cleared.is_(False),
    "cleared": Alarm.cleared.is_(True),
    "ack": Alarm.acknowledged.is_(True),
    "unack": Alarm.acknowledged.is_(False),
}


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """A SQL condition limiting alarms to the principal's remit (mirrors ``Principal.can_access``)."""
    if not principal.scoped:
        return true()
    if principal.role == Role.WARD_OFFICER:
        return Alarm.ward_code == principal.ward_code if principal.ward_code else false()
    return Alarm.agency_id == principal.agency_id if principal.agency_id else false()
