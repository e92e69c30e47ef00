"""The dossier monitor: the arithmetic of QĐ 766/QĐ-TTg style service indicators, and the KPI measures.

For a period ``[start, end]`` (local calendar days, end inclusive) and optional agency, procedure
and ward filters:

* **received**: received during the period; **carried over**: received before it and not closed
  before it starts; **to handle** = received + carried over.
* Each dossier to handle is either **closed during the period** or **in progress at its end**:
  - closed as *resolved*: **early** (before the local day of the due date), **on time** (on
    that day, by the due time, or no due date), **late** (after the due time);
  - closed as *returned* or *withdrawn*: counted apart (``closed_other``);
  - in progress at the evaluation time ``t = min(period end, now)``: **late** (due before
    ``t``), **nearly late** (due within ``nearly_late_hours`` after ``t``), **not yet due**.
* **on-time rate** = (early + on time) / resolved; **late rate** = (resolved late + in progress
  late) / (resolved + in progress); **online share** = received online / received;
  **toàn trình share** = received at level toàn trình / received; **online-service dossier
  share** (target 3) = received online at level một phần or toàn trình / received.
* The procedure catalogue at the period's end: share offered at least một phần (target 1,
  the resolution's level 3 — toàn trình counts as at least một phần) and toàn trình (target 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from ioc.core.db import utcnow

from .models import Dossier, Procedure
from .records import VN

NEARLY_LATE_HOURS = 48


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants of the local start of ``start`` and the local end of ``end`` (exclusive)."""
    if end < start:
        raise ValueError("period end before its start")
    begin = datetime.combine(start, time(), VN).astimezone(UTC)
    stop = datetime.combine(end + timedelta(days=1), time(), VN).astimezone(UTC)
    return begin, stop


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


@dataclass
class Split:
    total: int = 0
    early: int = 0
    on_time: int = 0
    late: int = 0


@dataclass
class Pending:
    total: int = 0
    late: int = 0
    nearly_late: int = 0
    not_due: int = 0


@dataclass
class ProcedureShares:
    at: date
    total: int = 0
    partial_or_full: int = 0
    full: int = 0
    partial_share: float | None = None
    full_share: float | None = None


@dataclass
class Monitor:
    """The monitor of one period and filter."""

    period_start: date
    period_end: date
    evaluated_at: datetime
    received: int = 0
    carried_over: int = 0
    to_handle: int = 0
    resolved: Split = field(default_factory=Split)
    closed_other: int = 0
    in_progress: Pending = field(default_factory=Pending)
    received_online: int = 0
    received_full: int = 0
    received_online_service: int = 0
    on_time_rate: float | None = None
    late_rate: float | None = None
    online_share: float | None = None
    full_share: float | None = None
    online_service_share: float | None = None
    procedures: ProcedureShares | None = None
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sum(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _columns(s: datetime, e: datetime, t: datetime, nearly: timedelta) -> list[Any]:
    d = Dossier
    in_period = and_(d.received_at >= s, d.received_at < e)
    closed_in = and_(d.resolved_at.is_not(None), d.resolved_at >= s, d.resolved_at < e)
    resolved = and_(closed_in, d.status == "resolved")
    open_at_end = or_(d.resolved_at.is_(None), d.resolved_at >= e)
    return [
        _sum(in_period).label("received"),
        _sum(d.received_at < s).label("carried_over"),
        _sum(resolved).label("resolved"),
        _sum(and_(resolved, d.due_day_start.is_not(None), d.resolved_at < d.due_day_start)).label("early"),
        _sum(and_(resolved, d.due_at.is_not(None), d.resolved_at > d.due_at)).label("late"),
        _sum(and_(closed_in, d.status != "resolved")).label("closed_other"),
        _sum(open_at_end).label("pending"),
        _sum(and_(open_at_end, d.due_at.is_not(None), d.due_at < t)).label("pending_late"),
        _sum(and_(open_at_end, d.due_at.is_not(None), d.due_at >= t, d.due_at < t + nearly)).label("pending_nearly"),
        _sum(and_(in_period, d.channel == "online")).label("online"),
        _sum(and_(in_period, d.service_level == "full")).label("full"),
        _sum(and_(in_period, d.channel == "online", d.service_level.in_(("partial", "full")))).label("online_service"),
    ]


def _parts(s: datetime, e: datetime) -> list[ColumnElement[bool]]:
    """Disjoint sets whose union is every dossier relevant to ``[s, e)``, each read along an index:
    received in the period (``received_at`` range); received before it and closed in it, or closed
    after it, or never closed (``resolved_at`` ranges)."""
    d = Dossier
    return [
        and_(d.received_at >= s, d.received_at < e),
        and_(d.resolved_at >= s, d.resolved_at < e, d.received_at < s),
        and_(d.resolved_at >= e, d.received_at < s),
        and_(d.resolved_at.is_(None), d.received_at < s),
    ]


def _filters(agency_id: str | None, procedure_code: str | None, ward_code: str | None) -> list[ColumnElement[bool]]:
    d = Dossier
    out: list[ColumnElement[bool]] = []
    if agency_id:
        out.append(d.agency_id == agency_id)
    if procedure_code:
        out.append(d.procedure_code == procedure_code)
    if ward_code:
        out.append(d.ward_code == ward_code)
    return out


_FIGURES = (
    "received",
    "carried_over",
    "resolved",
    "early",
    "late",
    "closed_other",
    "pending",
    "pending_late",
    "pending_nearly",
    "online",
    "full",
    "online_service",
)


class _Totals:
    """The sums of the figures over the parts of :func:`_parts`."""

    def __init__(self) -> None:
        for name in _FIGURES:
            setattr(self, name, 0)

    def add(self, row: Any) -> None:
        for name in _FIGURES:
            setattr(self, name, getattr(self, name) + int(getattr(row, name) or 0))


def _fill(m: Monitor, row: Any) -> Monitor:
    m.received = int(row.received)
    m.carried_over = int(row.carried_over)
    m.to_handle = m.received + m.carried_over
    m.resolved = Split(
        total=int(row.resolved),
        early=int(row.early),
        late=int(row.late),
        on_time=int(row.resolved) - int(row.early) - int(row.late),
    )
    m.closed_other = int(row.closed_other)
    pending_late, pending_nearly = int(row.pending_late), int(row.pending_nearly)
    m.in_progress = Pending(
        total=int(row.pending),
        late=pending_late,
        nearly_late=pending_nearly,
        not_due=int(row.pending) - pending_late - pending_nearly,
    )
    m.received_online = int(row.online)
    m.received_full = int(row.full)
    m.received_online_service = int(row.online_service)
    m.on_time_rate = _pct(m.resolved.early + m.resolved.on_time, m.resolved.total)
    m.late_rate = _pct(m.resolved.late + m.in_progress.late, m.resolved.total + m.in_progress.total)
    m.online_share = _pct(m.received_online, m.received)
    m.full_share = _pct(m.received_full, m.received)
    m.online_service_share = _pct(m.received_online_service, m.received)
    return m


def dossier_monitor(
    session: Session,
    start: date,
    end: date,
    *,
    agency_id: str | None = None,
    procedure_code: str | None = None,
    ward_code: str | None = None,
    now: datetime | None = None,
    nearly_late_hours: int = NEARLY_LATE_HOURS,
) -> Monitor:
    """The monitor of ``[start, end]`` for the filter (see the module docstring for every figure)."""
    s, e = day_bounds(start, end)
    t = min(e, now or utcnow())
    columns = _columns(s, e, t, timedelta(hours=nearly_late_hours))
    filters = _filters(agency_id, procedure_code, ward_code)
    totals = _Totals()
    for part in _parts(s, e):
        totals.add(session.execute(select(*columns).where(part, *filters)).one())
    m = _fill(Monitor(start, end, t), totals)
    m.procedures = procedure_shares(
        session, min(end, t.astimezone(VN).date()), agency_id=agency_id, code=procedure_code
    )
    return m


BREAKDOWNS = {"agency": Dossier.agency_id, "ward": Dossier.ward_code, "procedure": Dossier.procedure_code}


def monitor_breakdown(
    session: Session,
    start: date,
    end: date,
    by: str,
    *,
    agency_id: str | None = None,
    procedure_code: str | None = None,
    ward_code: str | None = None,
    now: datetime | None = None,
    nearly_late_hours: int = NEARLY_LATE_HOURS,
    limit: int = 200,
) -> list[Monitor]:
    """The monitor per agency, ward or procedure (largest to-handle first)."""
    column = BREAKDOWNS[by]
    s, e = day_bounds(start, end)
    t = min(e, now or utcnow())
    columns = _columns(s, e, t, timedelta(hours=nearly_late_hours))
    filters = _filters(agency_id, procedure_code, ward_code)
    groups: dict[str | None, _Totals] = {}
    for part in _parts(s, e):
        for row in session.execute(select(column.label("key"), *columns).where(part, *filters).group_by(column)):
            groups.setdefault(row.key, _Totals()).add(row)
    out = []
    for key, totals in groups.items():
        m = _fill(Monitor(start, end, t), totals)
        m.key = key
        out.append(m)
    out.sort(key=lambda m: (-m.to_handle, m.key or ""))
    return out[:limit]


def _procedure_conditions(at: date) -> tuple[ColumnElement[bool], ColumnElement[bool], ColumnElement[bool]]:
    p = Procedure
    active = and_(
        or_(p.valid_from.is_(None), p.valid_from <= at),
        or_(p.valid_to.is_(None), p.valid_to > at),
    )
    full = and_(p.full_since.is_not(None), p.full_since <= at)
    partial = or_(and_(p.partial_since.is_not(None), p.partial_since <= at), full)
    return active, partial, full


def procedure_shares(
    session: Session, at: date, *, agency_id: str | None = None, code: str | None = None
) -> ProcedureShares:
    """How many procedures of the catalogue were offered online at each level on ``at``."""
    active, partial, full = _procedure_conditions(at)
    stmt = select(func.count(), _sum(partial), _sum(full)).select_from(Procedure).where(active)
    if agency_id:
        stmt = stmt.where(Procedure.agency_id == agency_id)
    if code:
        stmt = stmt.where(Procedure.code == code)
    total, n_partial, n_full = session.execute(stmt).one()
    out = ProcedureShares(at, int(total), int(n_partial), int(n_full))
    out.partial_share = _pct(out.partial_or_full, out.total)
    out.full_share = _pct(out.full, out.total)
    return out


def procedures_at(session: Session, at: date, level: str | None, limit: int, offset: int) -> list[Procedure]:
    """The procedures counted on ``at``: all active ones, or those at ``level`` (partial = at least một phần)."""
    active, partial, full = _procedure_conditions(at)
    stmt = select(Procedure).where(active).order_by(Procedure.code)
    if level == "partial":
        stmt = stmt.where(partial)
    elif level == "full":
        stmt = stmt.where(full)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


# --------------------------------------------------------------------------- KPI measures
# MeasureFn: (session, first day, last day — inclusive, ward code or None) -> value or None.


def _count(session: Session, *conds: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(Dossier).where(*conds)) or 0)


def _in_period(start: date, end: date, ward: str | None) -> list[ColumnElement[bool]]:
    s, e = day_bounds(start, end)
    conds: list[ColumnElement[bool]] = [Dossier.received_at >= s, Dossier.received_at < e]
    if ward:
        conds.append(Dossier.ward_code == ward)
    return conds


def _closed_in(start: date, end: date, ward: str | None) -> list[ColumnElement[bool]]:
    s, e = day_bounds(start, end)
    conds: list[ColumnElement[bool]] = [Dossier.resolved_at >= s, Dossier.resolved_at < e, Dossier.status == "resolved"]
    if ward:
        conds.append(Dossier.ward_code == ward)
    return conds


def _catalogue_day(end: date) -> date:
    return min(end, utcnow().astimezone(VN).date())


def m_procedures_total(session: Session, start: date, end: date, ward: str | None) -> float | None:
    if ward:  # the catalogue is the same in every ward: no ward breakdown
        return None
    return float(procedure_shares(session, _catalogue_day(end)).total)


def m_procedures_partial(session: Session, start: date, end: date, ward: str | None) -> float | None:
    if ward:
        return None
    return float(procedure_shares(session, _catalogue_day(end)).partial_or_full)


def m_procedures_full(session: Session, start: date, end: date, ward: str | None) -> float | None:
    if ward:
        return None
    return float(procedure_shares(session, _catalogue_day(end)).full)


def m_dossiers_received(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_count(session, *_in_period(start, end, ward)))


def m_dossiers_online_service(session: Session, start: date, end: date, ward: str | None) -> float | None:
    conds = [*_in_period(start, end, ward), Dossier.channel == "online", Dossier.service_level.in_(("partial", "full"))]
    return float(_count(session, *conds))


def m_dossiers_full(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_count(session, *_in_period(start, end, ward), Dossier.service_level == "full"))


def m_dossiers_resolved(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_count(session, *_closed_in(start, end, ward)))


def m_dossiers_resolved_on_time(session: Session, start: date, end: date, ward: str | None) -> float | None:
    on_time = or_(Dossier.due_at.is_(None), Dossier.resolved_at <= Dossier.due_at)
    return float(_count(session, *_closed_in(start, end, ward), on_time))


MEASURES = {
    "services.procedures_total": (m_procedures_total, "thủ tục"),
    "services.procedures_online_partial": (m_procedures_partial, "thủ tục"),
    "services.procedures_online_full": (m_procedures_full, "thủ tục"),
    "services.dossiers_received": (m_dossiers_received, "hồ sơ"),
    "services.dossiers_online_service": (m_dossiers_online_service, "hồ sơ"),
    "services.dossiers_full": (m_dossiers_full, "hồ sơ"),
    "services.dossiers_resolved": (m_dossiers_resolved, "hồ sơ"),
    "services.dossiers_resolved_on_time": (m_dossiers_resolved_on_time, "hồ sơ"),
}
