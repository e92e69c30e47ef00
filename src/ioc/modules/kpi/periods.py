"""Calendar periods of KPI values: months, quarters, years (local dates, end inclusive)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from ioc.core.db import utcnow

from .timezone import VN


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date
    kind: str

    @property
    def label(self) -> str:
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "year":
            return str(self.start.year)
        return self.start.isoformat() if self.start == self.end else f"{self.start}/{self.end}"


def today() -> date:
    return utcnow().astimezone(VN).date()


def _month_end(year: int, month: int) -> date:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def period_of(day: date, kind: str) -> Period:
    """The month, quarter or year containing ``day``."""
    if kind == "month":
        return Period(day.replace(day=1), _month_end(day.year, day.month), kind)
    if kind == "quarter":
        first = (day.month - 1) // 3 * 3 + 1
        return Period(date(day.year, first, 1), _month_end(day.year, first + 2), kind)
    if kind == "year":
        return Period(date(day.year, 1, 1), date(day.year, 12, 31), kind)
    raise ValueError(f"unknown period kind {kind!r}")


def previous(p: Period) -> Period:
    return period_of(p.start - timedelta(days=1), p.kind)


def last_periods(kind: str, count: int, until: date | None = None) -> list[Period]:
    """The ``count`` periods up to the one containing ``until`` (today), oldest first."""
    current = period_of(until or today(), kind)
    out = [current]
    for _ in range(count - 1):
        out.append(previous(out[-1]))
    return out[::-1]


_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_MONTH_VN = re.compile(r"^(\d{1,2})/(\d{4})$")


def parse_period(text: str) -> Period:
    """``2026-06`` or ``06/2026`` (month), ``2026-Q2`` (quarter), ``2026`` (year), ``2026-06-30`` (a day)."""
    text = text.strip()
    if m := _MONTH.match(text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ValueError(f"tháng không hợp lệ '{text}'")
        return period_of(date(year, month, 1), "month")
    if m := _MONTH_VN.match(text):
        month, year = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ValueError(f"tháng không hợp lệ '{text}'")
        return period_of(date(year, month, 1), "month")
    if m := _QUARTER.match(text):
        return period_of(date(int(m[1]), (int(m[2]) - 1) * 3 + 1, 1), "quarter")
    if m := _YEAR.match(text):
        return period_of(date(int(m[1]), 1, 1), "year")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"kỳ không hợp lệ '{text[:30]}' (expected 2026-06, 2026-Q2, 2026 or 2026-06-30)") from None
    return Period(day, day, "day")
