"""Indicators of citizen reports, as QĐ 766/QĐ-TTg (2022) defines them for service handling.

* On-time rate ("tỷ lệ giải quyết đúng hạn"): reports closed in the period whose closing
  came no later than their resolution deadline, over all reports closed in the period.
  Duplicates are left out (they are merged into the original, which is counted).
* Satisfaction rate ("tỷ lệ hài lòng"): reporters rating 4 or 5 out of 5, over all ratings
  given, for reports closed in the period.
* Time to accept / to resolve: working hours (on the Vietnamese working calendar) from
  submission to acceptance / closing; median and mean.
Rankings by agency, ward or category list only units with at least ``MIN_RANKED`` reports.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core.admin_units import VN_TZ
from ioc.core.registry import KpiMeasure

from .models import Report
from .service import Runtime
from .workflow import Status

MIN_RANKED = 10
_COUNTED_CLOSED = (Status.FIXED.value, Status.NO_FURTHER_ACTION.value, Status.NOT_RESPONSIBLE.value)


def _closed(session: Session, lo: datetime, hi: datetime, ward: str | None) -> list[Report]:
    stmt = select(Report).where(Report.status.in_(_COUNTED_CLOSED), Report.closed_at >= lo, Report.closed_at < hi)
    if ward:
        stmt = stmt.where(Report.ward_code == ward)
    return list(session.scalars(stmt))


def _received(session: Session, lo: datetime, hi: datetime, ward: str | None) -> list[Report]:
    stmt = select(Report).where(Report.created_at >= lo, Report.created_at < hi)
    if ward:
        stmt = stmt.where(Report.ward_code == ward)
    return list(session.scalars(stmt))


def on_time_rate(reports: list[Report]) -> float | None:
    closed = [r for r in reports if r.closed_at is not None and r.status in _COUNTED_CLOSED]
    if not closed:
        return None
    on_time = sum(1 for r in closed if r.closed_at is not None and r.closed_at <= r.resolve_due)
    return round(100.0 * on_time / len(closed), 2)


def satisfaction_rate(reports: list[Report]) -> float | None:
    rated = [r.rating for r in reports if r.rating is not None]
    if not rated:
        return None
    return round(100.0 * sum(1 for x in rated if x >= 4) / len(rated), 2)


def _hours(rt: Runtime, pairs: list[tuple[datetime, datetime]]) -> list[float]:
    return [rt.calendar.between(a, b) / timedelta(hours=1) for a, b in pairs]


def accept_hours(rt: Runtime, reports: list[Report]) -> list[float]:
    return _hours(rt, [(r.created_at, r.accepted_at) for r in reports if r.accepted_at is not None])


def resolve_hours(rt: Runtime, reports: list[Report]) -> list[float]:
    return _hours(rt, [(r.created_at, r.closed_at) for r in reports if r.closed_at is not None])


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _period(start: date, end: date) -> tuple[datetime, datetime]:
    """Local days ``start``..``end`` inclusive, as UTC+7 instants."""
    return datetime.combine(start, time(0), VN_TZ), datetime.combine(end + timedelta(days=1), time(0), VN_TZ)


def measures(rt: Runtime) -> list[KpiMeasure]:
    """The module's measures for the KPI registry."""

    def closed_measure(
        fn: Callable[[list[Report]], float | None],
    ) -> Callable[[Session, date, date, str | None], float | None]:
        def measure(session: Session, start: date, end: date, ward: str | None) -> float | None:
            return fn(_closed(session, *_period(start, end), ward))

        return measure

    def hours_measure(
        pick: Callable[[Runtime, list[Report]], list[float]], agg: Callable[[list[float]], float | None], closed: bool
    ) -> Callable[[Session, date, date, str | None], float | None]:
        def measure(session: Session, start: date, end: date, ward: str | None) -> float | None:
            lo, hi = _period(start, end)
            reports = _closed(session, lo, hi, ward) if closed else _received(session, lo, hi, ward)
            return agg(pick(rt, reports))

        return measure

    def received(session: Session, start: date, end: date, ward: str | None) -> float | None:
        return float(len(_received(session, *_period(start, end), ward)))

    return [
        KpiMeasure("reports.on_time_rate", closed_measure(on_time_rate), unit="%"),
        KpiMeasure("reports.satisfaction_rate", closed_measure(satisfaction_rate), unit="%"),
        KpiMeasure("reports.received", received, unit="reports"),
        KpiMeasure("reports.accept_hours_median", hours_measure(accept_hours, _median, False), unit="h"),
        KpiMeasure("reports.accept_hours_mean", hours_measure(accept_hours, _mean, False), unit="h"),
        KpiMeasure("reports.resolve_hours_median", hours_measure(resolve_hours, _median, True), unit="h"),
        KpiMeasure("reports.resolve_hours_mean", hours_measure(resolve_hours, _mean, True), unit="h"),
    ]


def breakdown(session: Session, rt: Runtime, lo: datetime, hi: datetime, by: str) -> dict[str, Any]:
    """Indicators per agency, ward or category over reports received in ``[lo, hi)``; ranking of
    units with at least :data:`MIN_RANKED` reports by on-time rate, then satisfaction."""
    key: Callable[[Report], str] = {
        "agency": lambda r: r.agency_id,
        "ward": lambda r: r.ward_code,
        "category": lambda r: r.category,
    }[by]
    groups: dict[str, list[Report]] = {}
    for report in _received(session, lo, hi, None):
        groups.setdefault(key(report), []).append(report)
    units: list[dict[str, Any]] = []
    for unit, reports in sorted(groups.items()):
        acc, res = accept_hours(rt, reports), resolve_hours(rt, [r for r in reports if r.status in _COUNTED_CLOSED])
        units.append(
            {
                "unit": unit,
                "reports": len(reports),
                "on_time_rate": on_time_rate(reports),
                "satisfaction_rate": satisfaction_rate(reports),
                "accept_hours_median": _median(acc),
                "accept_hours_mean": _mean(acc),
                "resolve_hours_median": _median(res),
                "resolve_hours_mean": _mean(res),
                "ranked": len(reports) >= MIN_RANKED,
            }
        )
    ranked = sorted(
        (u for u in units if u["ranked"]),
        key=lambda u: (-float(u["on_time_rate"] or 0.0), -float(u["satisfaction_rate"] or 0.0), str(u["unit"])),
    )
    return {
        "by": by,
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "min_reports_for_ranking": MIN_RANKED,
        "units": units,
        "ranking": [u["unit"] for u in ranked],
    }
