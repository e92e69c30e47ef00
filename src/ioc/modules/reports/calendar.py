"""The Vietnamese working calendar: working hours, weekends, public holidays (Tết included) and
make-up working days, with working-time arithmetic for SLA deadlines.

Public holidays come from the ``holidays`` package (Vietnam: Tết Nguyên đán, Giỗ Tổ Hùng Vương,
30/4, 1/5, Quốc khánh …). When the government moves a day off (e.g. 2 May 2025 off, worked on
Saturday 26 April), the package lists the day off as "Day off (substituted from 04/26/2025)":
the date named there is a make-up working day ("ngày làm bù") and is treated as such.
Configured make-up days and extra days off come on top.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

import holidays

from ioc.core.admin_units import VN_TZ

_SUBSTITUTED = re.compile(r"substituted from (\d{2})/(\d{2})/(\d{4})")
#: Safety bound: no SLA spans more than this many calendar days.
MAX_SPAN_DAYS = 3660


@functools.cache
def _vn_year(year: int) -> tuple[frozenset[date], frozenset[date]]:
    """Days off and make-up working days of ``year`` according to the ``holidays`` package."""
    days_off: set[date] = set()
    make_up: set[date] = set()
    for day, name in holidays.country_holidays("VN", years=year, language="en_US").items():
        days_off.add(day)
        for part in str(name).split(";"):
            m = _SUBSTITUTED.search(part)
            if m:
                make_up.add(date(int(m.group(3)), int(m.group(1)), int(m.group(2))))
    return frozenset(days_off), frozenset(make_up)


def parse_periods(spec: str) -> tuple[tuple[time, time], ...]:
    """``"07:30-11:30,13:00-17:00"`` → ordered, non-overlapping periods; ValueError if malformed."""
    periods: list[tuple[time, time]] = []
    for chunk in spec.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        start_s, sep, end_s = chunk.partition("-")
        if not sep:
            raise ValueError(f"working period {chunk!r}: expected HH:MM-HH:MM")
        start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
        if start >= end:
            raise ValueError(f"working period {chunk!r}: start must be before end")
        periods.append((start, end))
    periods.sort()
    for (_, end1), (start2, _) in itertools.pairwise(periods):
        if start2 < end1:
            raise ValueError("working periods overlap")
    if not periods:
        raise ValueError("no working period")
    return tuple(periods)


class WorkingCalendar:
    """Working days and hours in Vietnam (local time UTC+7)."""

    def __init__(
        self,
        periods: str | Iterable[tuple[time, time]] = "07:30-11:30,13:00-17:00",
        *,
        make_up_days: Iterable[date] = (),
        extra_days_off: Iterable[date] = (),
    ) -> None:
        self.periods = parse_periods(periods) if isinstance(periods, str) else tuple(sorted(periods))
        self.make_up_days = frozenset(make_up_days)
        self.extra_days_off = frozenset(extra_days_off)

    @property
    def hours_per_day(self) -> float:
        """Working hours of one working day."""
        return sum(_seconds(s, e) for s, e in self.periods) / 3600

    def is_holiday(self, day: date) -> bool:
        off, _ = _vn_year(day.year)
        return day in off or day in self.extra_days_off

    def is_working_day(self, day: date) -> bool:
        """A working day: Monday–Friday not a holiday, or a make-up day (a Saturday worked)."""
        _, make_up = _vn_year(day.year)
        if day in self.make_up_days or (day in make_up and day not in self.extra_days_off):
            return True
        if self.is_holiday(day):
            return False
        return day.weekday() < 5

    def add(self, start: datetime, working: timedelta) -> datetime:
        """The moment ``working`` working time after ``start`` (timezone-aware, returned in UTC+7)."""
        if start.tzinfo is None:
            raise ValueError("naive datetime: give a timezone")
        local = start.astimezone(VN_TZ)
        remaining = working
        if remaining <= timedelta(0):
            return local
        day = local.date()
        cursor = local
        for _ in range(MAX_SPAN_DAYS):
            if self.is_working_day(day):
                for p_start, p_end in self.periods:
                    begin = datetime.combine(day, p_start, VN_TZ)
                    end = datetime.combine(day, p_end, VN_TZ)
                    if cursor >= end:
                        continue
                    begin = max(begin, cursor)
                    available = end - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
                    cursor = end
            day += timedelta(days=1)
            cursor = datetime.combine(day, time(0), VN_TZ)
        raise ValueError("SLA span too long")

    def add_hours(self, start: datetime, hours: float) -> datetime:
        return self.add(start, timedelta(hours=hours))

    def add_days(self, start: datetime, days: float) -> datetime:
        """``days`` working days after ``start``: that many days' worth of working hours."""
        return self.add(start, timedelta(hours=days * self.hours_per_day))

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two moments (zero when ``end`` is not after ``start``)."""
        if end <= start:
            return timedelta(0)
        a, b = start.astimezone(VN_TZ), end.astimezone(VN_TZ)
        total = timedelta(0)
        day = a.date()
        while day <= b.date():
            if self.is_working_day(day):
                for p_start, p_end in self.periods:
                    lo = max(datetime.combine(day, p_start, VN_TZ), a)
                    hi = min(datetime.combine(day, p_end, VN_TZ), b)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total


def _seconds(start: time, end: time) -> float:
    return (datetime.combine(date.min, end) - datetime.combine(date.min, start)).total_seconds()
