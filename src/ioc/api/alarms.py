"""Alarms: list, read, raise (integrations), acknowledge and clear.

Scoped callers (ward and agency officers, agency-bound API keys) see and change only the
alarms of their remit; another remit's alarm answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime
from sqlalchemy import func, select

from ioc.core import alarms
from ioc.core.alarms import (
    WARD_CODE_PATTERN,
    Alarm,
    AlarmAction,
    AlarmCreate,
    AlarmDetail,
    AlarmHistoryPublic,
    AlarmPublic,
    Severity,
)
from ioc.core.auth import Principal, Requires
from ioc.core.db import DbSession
from ioc.core.problems import Problem

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

AlarmReader = Annotated[Principal, Depends(Requires("alarms:read"))]
AlarmWriter = Annotated[Principal, Depends(Requires("alarms:write"))]
AlarmRaiser = Annotated[Principal, Depends(Requires("alarms:raise"))]

#: Ids are 32-bit on both databases; a larger number is a 422, not a database error.
AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: Query text is compared in SQL: no control characters (PostgreSQL refuses NUL outright).
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _get_visible(session: DbSession, alarm_id: int, principal: Principal) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    # Out of remit looks the same as missing: a scoped officer learns nothing of other wards.
    if alarm is None or not principal.can_access(ward_code=alarm.ward_code, agency_id=alarm.agency_id):
        raise Problem(404, f"Không tìm thấy cảnh báo {alarm_id} (alarm not found).", code="alarm-not-found")
    return alarm


@router.get("", response_model=list[AlarmPublic])
def list_alarms(
    session: DbSession,
    principal: AlarmReader,
    response: Response,
    status: Annotated[list[Literal["active", "cleared", "ack", "unack"]] | None, Query()] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    ward_code: Annotated[str | None, Query(pattern=WARD_CODE_PATTERN)] = None,
    source: Annotated[str | None, Query(max_length=256, pattern=_PRINTABLE)] = None,
    type: Annotated[str | None, Query(max_length=128, pattern=_PRINTABLE)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Changed at or after (ISO 8601 with offset)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[Alarm]:
    """Alarms in the caller's remit, most recently changed first; total in ``X-Total-Count``."""
    conditions = [alarms.visible_to(principal)]
    conditions += [alarms.STATUS_FILTERS[s] for s in status or []]
    if severity:
        conditions.append(Alarm.severity.in_([s.value for s in severity]))
    if ward_code:
        conditions.append(Alarm.ward_code == ward_code)
    if source:
        conditions.append(Alarm.source == source)
    if type:
        conditions.append(Alarm.type == type)
    if since is not None:
        conditions.append(Alarm.updated_at >= since)
    total = session.scalar(select(func.count()).select_from(Alarm).where(*conditions)) or 0
    response.headers["X-Total-Count"] = str(total)
    stmt = select(Alarm).where(*conditions).order_by(Alarm.updated_at.desc(), Alarm.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


@router.get("/{alarm_id}", response_model=AlarmDetail)
def read_alarm(alarm_id: AlarmId, session: DbSession, principal: AlarmReader) -> AlarmDetail:
    """One alarm with its history (who raised, acknowledged and cleared it, and when)."""
    alarm = _get_visible(session, alarm_id, principal)
    hist = [AlarmHistoryPublic.model_validate(h) for h in alarms.history(session, alarm.id)]
    return AlarmDetail(**AlarmPublic.model_validate(alarm).model_dump(), history=hist)


@router.post("", response_model=AlarmPublic, status_code=201)
def raise_alarm(body: AlarmCreate, session: DbSession, principal: AlarmRaiser, response: Response) -> Alarm:
    """Raise an alarm (201), or update the open one of the same source and type (200)."""
    if not principal.can_access(ward_code=body.ward_code, agency_id=body.agency_id):
        raise Problem(403, "Không được tạo cảnh báo ngoài phạm vi của mình (outside your remit).", code="out-of-remit")
    alarms.check_references(session, body)
    alarm, created = alarms.raise_alarm(session, body, actor=principal, module="api")
    if not created:
        response.status_code = 200
    return alarm


@router.post("/{alarm_id}/ack", response_model=AlarmPublic)
def acknowledge_alarm(
    alarm_id: AlarmId, session: DbSession, principal: AlarmWriter, body: AlarmAction | None = None
) -> Alarm:
    """Acknowledge an alarm (409 when it already is)."""
    alarm = _get_visible(session, alarm_id, principal)
    return alarms.acknowledge(session, alarm, principal, body.note if body else None)


@router.post("/{alarm_id}/clear", response_model=AlarmPublic)
def clear_alarm(
    alarm_id: AlarmId, session: DbSession, principal: AlarmWriter, body: AlarmAction | None = None
) -> Alarm:
    """Clear an alarm (409 when it already is)."""
    alarm = _get_visible(session, alarm_id, principal)
    return alarms.clear(session, alarm, principal, body.note if body else None)
