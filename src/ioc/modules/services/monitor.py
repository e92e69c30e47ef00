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

The dossier figures are read from the daily/monthly roll-ups of :mod:`.rollups` (maintained on
write), never by scanning the period's dossiers; only the in-progress split of a period that is
still running reads raw rows, those of the dossiers still open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from ioc.core.db import utcnow

from . import rollups
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


@dataclass
class _Figures:
    received: int = 0
    carried_over: int = 0
    resolved: int = 0
    early: int = 0
    late: int = 0
    closed_other: int = 0
    pending: int = 0
    pending_late: int = 0
    pending_nearly: int = 0
    online: int = 0
    full: int = 0
    online_service: int = 0


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


BREAKDOWNS = {"agency": Dossier.agency_id, "ward": Dossier.ward_code, "procedure": Dossier.procedure_code}


def _open_at_end(
    session: Session,
    e: datetime,
    t: datetime,
    nearly: timedelta,
    by: str | None,
    filters: list[ColumnElement[bool]],
) -> dict[str | None, tuple[int, int]]:
    """Overdue and nearly-due dossiers among those open at ``e``, at the time ``t``, from raw rows.

    Read along the ``resolved_at`` index: the dossiers never closed, and those closed at or after
    ``e`` — few when ``e`` is recent (a period still running)."""
    d = Dossier
    cols = [
        _sum(and_(d.due_at.is_not(None), d.due_at < t)).label("late"),
        _sum(and_(d.due_at.is_not(None), d.due_at >= t, d.due_at < t + nearly)).label("nearly"),
    ]
    column = BREAKDOWNS[by] if by else None
    out: dict[str | None, tuple[int, int]] = {}
    for part in (d.resolved_at.is_(None), d.resolved_at >= e):
        where = [part, d.received_at < e, *filters]
        if column is None:
            rows: list[Any] = [session.execute(select(literal(None).label("key"), *cols).where(*where)).one()]
        else:
            rows = list(session.execute(select(column.label("key"), *cols).where(*where).group_by(column)))
        for row in rows:
            late, near = out.get(row.key, (0, 0))
            out[row.key] = (late + int(row.late or 0), near + int(row.nearly or 0))
    return out


def _monitors(
    session: Session,
    start: date,
    end: date,
    by: str | None,
    agency_id: str | None,
    procedure_code: str | None,
    ward_code: str | None,
    now: datetime | None,
    nearly_late_hours: int,
) -> dict[str | None, Monitor]:
    """The monitors of ``[start, end]`` from the roll-ups (see :mod:`.rollups`), per ``by`` or under None.

    Everything but the in-progress split comes from the roll-ups; the split too when the period has
    ended (it is evaluated at the period's end, a day boundary) and the window is the default 48 h;
    otherwise from the raw rows of the dossiers open at the period's end."""
    e = day_bounds(start, end)[1]
    t = min(e, now or utcnow())
    dims = {"agency_id": agency_id, "procedure_code": procedure_code, "ward_code": ward_code}
    before = rollups.sums(session, None, start, by=by, **dims)
    during = rollups.sums(session, start, end + timedelta(days=1), by=by, **dims)
    exact = t >= e and nearly_late_hours == 24 * rollups.NEARLY_DAYS
    raw = {} if exact else _open_at_end(session, e, t, timedelta(hours=nearly_late_hours), by, _filters(**dims))
    keys: set[str | None] = {None} if by is None else set(before) | set(during)
    out: dict[str | None, Monitor] = {}
    for key in keys:
        b, p = before.get(key) or rollups.Sums(), during.get(key) or rollups.Sums()
        f = _Figures(
            received=p.received,
            carried_over=b.received - b.closed,
            resolved=p.resolved,
            early=p.early,
            late=p.late,
            closed_other=p.closed_other,
            online=p.online,
            full=p.full,
            online_service=p.online_service,
        )
        f.pending = f.carried_over + p.received - p.closed
        if exact:
            f.pending_late = b.late_open + p.late_open - b.late_close - p.late_close
            f.pending_nearly = b.nearly_open + p.nearly_open - b.nearly_close - p.nearly_close - f.pending_late
        else:
            f.pending_late, f.pending_nearly = raw.get(key, (0, 0))
        if by is not None and f.received + f.carried_over == 0:
            continue  # nothing to handle in the period: not a row of the breakdown
        m = _fill(Monitor(start, end, t), f)
        m.key = key
        out[key] = m
    return out


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
    m = _monitors(session, start, end, None, agency_id, procedure_code, ward_code, now, nearly_late_hours)[None]
    m.procedures = procedure_shares(
        session, min(end, m.evaluated_at.astimezone(VN).date()), agency_id=agency_id, code=procedure_code
    )
    return m


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
    if by not in BREAKDOWNS:
        raise KeyError(by)
    found = _monitors(session, start, end, by, agency_id, procedure_code, ward_code, now, nearly_late_hours)
    out = list(found.values())
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


def _period_sums(session: Session, start: date, end: date, ward: str | None) -> rollups.Sums:
    """The roll-up counters of the local days ``[start, end]`` (city-wide or one ward)."""
    return rollups.sums(session, start, end + timedelta(days=1), ward_code=ward).get(None) or rollups.Sums()


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
    return float(_period_sums(session, start, end, ward).received)


def m_dossiers_online_service(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_period_sums(session, start, end, ward).online_service)


def m_dossiers_full(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_period_sums(session, start, end, ward).full)


def m_dossiers_resolved(session: Session, start: date, end: date, ward: str | None) -> float | None:
    return float(_period_sums(session, start, end, ward).resolved)


def m_dossiers_resolved_on_time(session: Session, start: date, end: date, ward: str | None) -> float | None:
    """Resolved in the period by the due time (or without one): resolved − resolved late."""
    sums = _period_sums(session, start, end, ward)
    return float(sums.resolved - sums.late)


# Several periods at once (a KPI's series): one grouped query instead of one per period. (The
# catalogue measures stay one small query per period: one query with three sums per period for
# twelve periods was measured slower on PostgreSQL.)


def _month_aligned(start: date, end: date) -> bool:
    return start.day == 1 and (end + timedelta(days=1)).day == 1


def _period_sums_many(session: Session, spans: list[tuple[date, date]], ward: str | None) -> list[rollups.Sums]:
    """:func:`_period_sums` of each span; whole months (and quarters, years) from one query over the
    month-grain roll-ups grouped by month, other spans one by one."""
    if not spans or not all(_month_aligned(a, b) for a, b in spans):
        return [_period_sums(session, a, b, ward) for a, b in spans]
    r = rollups.DossierRollup
    conds: list[ColumnElement[bool]] = [
        r.level == rollups.level_for(None, None, ward, None),
        r.grain == "m",
        r.bucket >= min(a for a, _ in spans),
        r.bucket <= max(b for _, b in spans),
    ]
    if ward:
        conds.append(r.ward_code == ward)
    stmt = (
        select(r.bucket.label("month"), *[func.sum(getattr(r, c)).label(c) for c in rollups.COUNTERS])
        .where(*conds)
        .group_by(r.bucket)
    )
    months = list(session.execute(stmt))
    out = []
    for a, b in spans:
        sums = rollups.Sums()
        for row in months:
            if a <= row.month <= b:
                sums.add(row)
        out.append(sums)
    return out


ManyFn = Callable[[Session, list[tuple[date, date]], str | None], list[float | None]]


def _many_dossiers(value: Callable[[rollups.Sums], int]) -> ManyFn:
    def many(session: Session, spans: list[tuple[date, date]], ward: str | None) -> list[float | None]:
        return [float(value(s)) for s in _period_sums_many(session, spans, ward)]

    return many


MANY: dict[str, ManyFn] = {
    "services.dossiers_received": _many_dossiers(lambda s: s.received),
    "services.dossiers_online_service": _many_dossiers(lambda s: s.online_service),
    "services.dossiers_full": _many_dossiers(lambda s: s.full),
    "services.dossiers_resolved": _many_dossiers(lambda s: s.resolved),
    "services.dossiers_resolved_on_time": _many_dossiers(lambda s: s.resolved - s.late),
}

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
