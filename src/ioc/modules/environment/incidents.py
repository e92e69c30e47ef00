"""The register of pollution incidents (air, water, land) and how each was detected.

* Sensors open incidents by themselves: a sustained air breach (hourly VN_AQI ≥ 151 for 3 hours
  at a station) or a water sample with VN_WQI < 26. While such an incident is open, a new breach
  at the same station updates it instead of opening another.
* Citizen reports in the pollution categories arrive as ``report.created`` events.
* Operators (and the environment department's officers) create, confirm, merge, dismiss and close
  incidents; every step is audited, kept in the incident's history and announced on the bus.
* KPI 13 counts *key* incidents (``key``) that were not merged or dismissed, and among them those
  first detected through IT (sensor, camera, field report through the app).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, select, true
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.admin_units import VN_TZ
from ioc.core.auth import Principal, Role
from ioc.core.db import utcnow
from ioc.core.events import publish
from ioc.core.problems import Problem

from .models import Incident, IncidentHistory
from .topics import INCIDENT_OPENED, INCIDENT_UPDATED, IncidentEvent

KINDS = ("air", "water", "land")
SOURCES = ("sensor", "camera", "citizen", "inspection", "press")
OPEN = ("new", "confirmed")
#: Not counted anywhere: folded into another incident, or found not to be one.
NOT_COUNTED = ("merged", "dismissed")
STATUSES = ("new", "confirmed", "closed", "merged", "dismissed")


def _snapshot(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "kind": incident.kind,
        "source": incident.source,
        "status": incident.status,
        "key": incident.key,
        "title": incident.title,
        "ward_code": incident.ward_code,
        "agency_id": incident.agency_id,
        "station_id": incident.station_id,
        "report_id": incident.report_id,
        "detected_at": incident.detected_at.isoformat(),
        "merged_into_id": incident.merged_into_id,
        "resolution": incident.resolution,
        "details": incident.details,
    }


def event_of(incident: Incident) -> IncidentEvent:
    return IncidentEvent(
        id=incident.id,
        kind=incident.kind,
        source=incident.source,
        status=incident.status,
        key=incident.key,
        title=incident.title,
        ward_code=incident.ward_code,
        station_id=incident.station_id,
        report_id=incident.report_id,
        detected_at=incident.detected_at,
        updated_at=incident.updated_at,
        merged_into_id=incident.merged_into_id,
    )


def _log(session: Session, incident: Incident, action: str, actor: Principal | None, note: str | None = None) -> None:
    session.add(
        IncidentHistory(
            incident_id=incident.id,
            at=incident.updated_at,
            action=action,
            actor=actor.name if actor else "system",
            status=incident.status,
            note=note,
        )
    )


def open_incident(
    session: Session,
    *,
    kind: str,
    source: str,
    title: str,
    agency_id: str,
    detected_at: datetime,
    actor: Principal | None = None,
    description: str = "",
    key: bool = True,
    ward_code: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    station_id: int | None = None,
    report_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> Incident:
    """Add an incident to the register (status ``new``), audited and announced."""
    if kind not in KINDS:
        raise ValueError(f"unknown incident kind {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown detection source {source!r}")
    now = utcnow()
    incident = Incident(
        kind=kind,
        source=source,
        status="new",
        key=key,
        title=title[:300],
        description=description,
        ward_code=ward_code,
        agency_id=agency_id,
        lat=lat,
        lon=lon,
        station_id=station_id,
        report_id=report_id,
        details=details or {},
        detected_at=detected_at,
        created_at=now,
        updated_at=now,
    )
    session.add(incident)
    session.flush()
    _log(session, incident, "opened", actor)
    audit.record(session, actor, "environment.incident.open", "env_incident", incident.id, after=_snapshot(incident))
    publish(session, INCIDENT_OPENED, event_of(incident), ward_code=ward_code, agency_id=agency_id)
    return incident


def open_for_station(session: Session, station_id: int, kind: str) -> Incident | None:
    """The open incident a sensor at ``station_id`` opened for ``kind``, if any."""
    stmt = (
        select(Incident)
        .where(
            Incident.station_id == station_id,
            Incident.kind == kind,
            Incident.source == "sensor",
            Incident.status.in_(OPEN),
        )
        .order_by(Incident.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def sensor_breach(
    session: Session,
    *,
    station_id: int,
    kind: str,
    title: str,
    agency_id: str,
    detected_at: datetime,
    ward_code: str | None,
    lat: float | None,
    lon: float | None,
    details: dict[str, Any],
    peak_key: str,
) -> tuple[Incident, bool]:
    """Open an incident for a sensor breach, or update the station's open one; returns (incident, opened).

    ``details[peak_key]`` is the breach's worst value so far: the open incident keeps the worst
    (highest AQI, lowest WQI) and its first detection time.
    """
    current = open_for_station(session, station_id, kind)
    if current is None:
        incident = open_incident(
            session,
            kind=kind,
            source="sensor",
            title=title,
            agency_id=agency_id,
            detected_at=detected_at,
            ward_code=ward_code,
            lat=lat,
            lon=lon,
            station_id=station_id,
            details=details,
        )
        return incident, True
    merged = dict(current.details or {})
    old, new = merged.get(peak_key), details.get(peak_key)
    worse = old is None or (new is not None and ((new > old) if kind == "air" else (new < old)))
    for name, value in details.items():
        if name != peak_key and name != "first_hour":
            merged[name] = value
    if worse:
        merged[peak_key] = new
    if merged != current.details:
        current.details = merged
        current.updated_at = utcnow()
    return current, False


# --------------------------------------------------------------------------- staff actions


def _manager_check(principal: Principal, incident: Incident) -> None:
    """404 outside the principal's remit (an officer of another agency or ward)."""
    if not principal.can_access(ward_code=incident.ward_code, agency_id=incident.agency_id):
        raise Problem(404, f"Không có sự cố {incident.id} (incident not found).", code="not-found")


def get_visible(session: Session, principal: Principal, incident_id: int) -> Incident:
    """The incident, if the principal may see it (404 otherwise)."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise Problem(404, f"Không có sự cố {incident_id} (incident not found).", code="not-found")
    _manager_check(principal, incident)
    return incident


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """A SQL condition limiting incidents to the principal's remit."""
    if not principal.scoped:
        return true()
    if principal.role == Role.WARD_OFFICER:
        return Incident.ward_code == principal.ward_code if principal.ward_code else false()
    return Incident.agency_id == principal.agency_id if principal.agency_id else false()


def _change(
    session: Session, incident: Incident, principal: Principal, action: str, note: str | None, **values: Any
) -> Incident:
    before = _snapshot(incident)
    for name, value in values.items():
        setattr(incident, name, value)
    incident.updated_at = utcnow()
    session.flush()
    _log(session, incident, action, principal, note)
    audit.record(
        session,
        principal,
        f"environment.incident.{action}",
        "env_incident",
        incident.id,
        before=before,
        after=_snapshot(incident),
    )
    publish(session, INCIDENT_UPDATED, event_of(incident), ward_code=incident.ward_code, agency_id=incident.agency_id)
    return incident


def _must_be_open(incident: Incident) -> None:
    if incident.status not in OPEN:
        raise Problem(
            409,
            f"Sự cố {incident.id} đang ở trạng thái '{incident.status}' (incident is not open).",
            code="incident-not-open",
        )


def confirm(
    session: Session,
    principal: Principal,
    incident: Incident,
    *,
    key: bool = True,
    kind: str | None = None,
    note: str | None = None,
) -> Incident:
    """Confirm a new incident (and say whether it is a key incident, and of which kind)."""
    if incident.status != "new":
        raise Problem(
            409, f"Sự cố {incident.id} không ở trạng thái mới (only a new incident is confirmed).", code="not-new"
        )
    values: dict[str, Any] = {
        "status": "confirmed",
        "key": key,
        "confirmed_at": utcnow(),
        "confirmed_by": principal.name,
    }
    if kind is not None:
        values["kind"] = kind
    return _change(session, incident, principal, "confirmed", note, **values)


def close(session: Session, principal: Principal, incident: Incident, resolution: str) -> Incident:
    """Close an incident that was dealt with."""
    _must_be_open(incident)
    return _change(
        session,
        incident,
        principal,
        "closed",
        resolution,
        status="closed",
        closed_at=utcnow(),
        closed_by=principal.name,
        resolution=resolution,
    )


def dismiss(session: Session, principal: Principal, incident: Incident, reason: str) -> Incident:
    """Take an incident out of the count: it was not a pollution incident (false alarm, wrong place)."""
    _must_be_open(incident)
    return _change(
        session,
        incident,
        principal,
        "dismissed",
        reason,
        status="dismissed",
        closed_at=utcnow(),
        closed_by=principal.name,
        resolution=reason,
    )


def merge(session: Session, principal: Principal, incident: Incident, target: Incident, note: str | None) -> Incident:
    """Fold ``incident`` into ``target`` (the same event seen twice); returns the target.

    The target keeps the earliest detection: if the merged incident was detected first, the target
    takes its detection time and source, since that is when and how the event was first detected.
    """
    if incident.id == target.id:
        raise Problem(422, "Không thể gộp sự cố vào chính nó (cannot merge an incident into itself).", code="same")
    _must_be_open(incident)
    if target.status not in OPEN:
        raise Problem(409, f"Sự cố đích {target.id} không còn mở (the target is not open).", code="target-not-open")
    _change(
        session,
        incident,
        principal,
        "merged",
        note,
        status="merged",
        merged_into_id=target.id,
        closed_at=utcnow(),
        closed_by=principal.name,
    )
    values: dict[str, Any] = {"key": target.key or incident.key}
    if incident.detected_at < target.detected_at:
        values["detected_at"] = incident.detected_at
        values["source"] = incident.source
    merged_ids = [*target.details.get("merged", []), incident.id]
    values["details"] = {**target.details, "merged": merged_ids}
    return _change(session, target, principal, "absorbed", f"#{incident.id}", **values)


def history(session: Session, incident_id: int) -> list[IncidentHistory]:
    stmt = select(IncidentHistory).where(IncidentHistory.incident_id == incident_id).order_by(IncidentHistory.id)
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------- counting


def vn_day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end + 1 day 00:00)`` in Asia/Ho_Chi_Minh, as aware datetimes."""
    return (
        datetime.combine(start, time.min, tzinfo=VN_TZ),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=VN_TZ),
    )


def counted(start: date, end: date, ward: str | None) -> list[ColumnElement[bool]]:
    """Key incidents detected in ``[start, end]`` (local days) that were not merged or dismissed."""
    lo, hi = vn_day_bounds(start, end)
    conds: list[ColumnElement[bool]] = [
        Incident.key.is_(True),
        Incident.status.not_in(NOT_COUNTED),
        Incident.detected_at >= lo,
        Incident.detected_at < hi,
    ]
    if ward:
        conds.append(Incident.ward_code == ward)
    return conds


def count_key(session: Session, start: date, end: date, ward: str | None, sources: Iterable[str] | None = None) -> int:
    """How many key incidents were detected in the period (only those first detected by ``sources``)."""
    conds = counted(start, end, ward)
    if sources is not None:
        conds.append(Incident.source.in_(list(sources)))
    return int(session.scalar(select(func.count()).select_from(Incident).where(and_(*conds))) or 0)


def public_summary(session: Session, start: date, end: date) -> dict[str, Any]:
    """Counts anyone may see: incidents detected in the period by kind and by status (no details)."""
    lo, hi = vn_day_bounds(start, end)
    base = and_(Incident.detected_at >= lo, Incident.detected_at < hi, Incident.status.not_in(NOT_COUNTED))
    by_kind = dict.fromkeys(KINDS, 0)
    for kind, n in session.execute(select(Incident.kind, func.count()).where(base).group_by(Incident.kind)):
        by_kind[kind] = int(n)
    by_status = {s: 0 for s in STATUSES if s not in NOT_COUNTED}
    for status, n in session.execute(select(Incident.status, func.count()).where(base).group_by(Incident.status)):
        by_status[status] = int(n)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "total": sum(by_kind.values()),
        "by_kind": by_kind,
        "by_status": by_status,
    }
