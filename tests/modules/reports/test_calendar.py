"""SLA arithmetic on the Vietnamese working calendar: weekends, Tết, make-up days, lunch breaks."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ioc.core.admin_units import VN_TZ
from ioc.modules.reports import catalog
from ioc.modules.reports.calendar import WorkingCalendar, parse_periods


def vn(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=VN_TZ)


CAL = WorkingCalendar()  # 07:30-11:30, 13:00-17:00: 8 h a day


def test_hours_skip_the_lunch_break_and_the_night() -> None:
    assert CAL.add_hours(vn(2026, 3, 2, 10, 0), 1) == vn(2026, 3, 2, 11, 0)  # Monday
    assert CAL.add_hours(vn(2026, 3, 2, 11, 0), 1) == vn(2026, 3, 2, 13, 30)
    assert CAL.add_hours(vn(2026, 3, 2, 16, 0), 2) == vn(2026, 3, 3, 8, 30)
    assert CAL.add_hours(vn(2026, 3, 2, 20, 0), 1) == vn(2026, 3, 3, 8, 30)  # filed in the evening


def test_weekends_are_not_working_time() -> None:
    # Friday 16:00 + 4 working hours → Monday 10:30
    assert CAL.add_hours(vn(2026, 3, 6, 16, 0), 4) == vn(2026, 3, 9, 10, 30)
    # filed on Saturday: the clock starts Monday 07:30
    assert CAL.add_hours(vn(2026, 3, 7, 9, 0), 8) == vn(2026, 3, 9, 17, 0)
    assert CAL.between(vn(2026, 3, 6, 17, 0), vn(2026, 3, 9, 7, 30)) == timedelta(0)


def test_tet_holidays_stop_the_clock() -> None:
    # Tết Bính Ngọ 2026: 16–20 February (Mon–Fri) are days off, then the weekend.
    for day in range(16, 21):
        assert not CAL.is_working_day(date(2026, 2, 16 + (day - 16)))
    # Friday 13 Feb 16:00 + 3 working days (24 h) → Wednesday 25 Feb 16:00
    assert CAL.add_days(vn(2026, 2, 13, 16, 0), 3) == vn(2026, 2, 25, 16, 0)


def test_make_up_day_from_the_holidays_package_is_a_working_day() -> None:
    # 2 May 2025 (Friday) was given off and worked on Saturday 26 April 2025.
    assert CAL.is_working_day(date(2025, 4, 26))
    assert not CAL.is_working_day(date(2025, 5, 2))
    # Friday 25 April 2025 16:00 + 2 h → the make-up Saturday 26 April 08:30
    assert CAL.add_hours(vn(2025, 4, 25, 16, 0), 2) == vn(2025, 4, 26, 8, 30)


def test_configured_make_up_days_and_extra_days_off() -> None:
    cal = WorkingCalendar(make_up_days=[date(2026, 3, 7)], extra_days_off=[date(2026, 3, 9)])
    assert cal.is_working_day(date(2026, 3, 7))  # a Saturday declared worked
    assert not cal.is_working_day(date(2026, 3, 9))  # a Monday given off
    assert cal.add_hours(vn(2026, 3, 6, 16, 0), 4) == vn(2026, 3, 7, 10, 30)
    assert cal.add_hours(vn(2026, 3, 7, 16, 0), 2) == vn(2026, 3, 10, 8, 30)


def test_configurable_working_hours() -> None:
    cal = WorkingCalendar("08:00-12:00,13:30-17:30")
    assert cal.hours_per_day == 8
    assert cal.add_hours(vn(2026, 3, 2, 11, 0), 2) == vn(2026, 3, 2, 14, 30)
    for bad in ("", "17:00-08:00", "08:00-12:00,11:00-13:00", "8h-12h"):
        try:
            parse_periods(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_sla_tiers_defaults() -> None:
    tiers = catalog.sla_tiers()
    start = vn(2026, 3, 2, 9, 0)  # Monday
    assert tiers["normal"].accept_due(CAL, start) == vn(2026, 3, 3, 9, 0)  # 8 working hours
    assert tiers["normal"].resolve_due(CAL, start) == vn(2026, 3, 5, 9, 0)  # 3 working days
    assert tiers["urgent"].resolve_due(CAL, start) == vn(2026, 3, 2, 14, 30)  # 4 working hours
    # acceptance can never be due after resolution
    assert tiers["urgent"].accept_due(CAL, start) == tiers["urgent"].resolve_due(CAL, start)


def test_routing_table_covers_every_category_and_ward() -> None:
    table = catalog.routing_table()
    assert catalog.route("rac-thai", "16702") == "ubnd-vinh-phu"
    assert catalog.route("duong-via-he", "16681") == "so-xay-dung"  # central ward: the department
    assert catalog.route("duong-via-he", "16732") == "ubnd-cua-lo"  # other wards: the ward committee
    assert len(table) == len(catalog.categories()) * 6
    assert catalog.categories()["an-ninh-trat-tu"].private
