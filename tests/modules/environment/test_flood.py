"""Flood alert levels with hysteresis, the alarm lifecycle, rain sums and the ward status."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from ioc.core.admin_units import CITY_WARD_CODES
from ioc.core.alarms import Alarm, AlarmHistory
from ioc.core.db import Database
from ioc.modules.environment import flood
from ioc.modules.environment.flood import next_alert_level
from ioc.modules.environment.models import EnvStation

from .conftest import Feed, hour, simple_change

VINH_RIVER = "urn:ngsi-ld:FloodMonitoring:song-vinh-truong-thi"  # levels 1.8 / 2.4 / 3.0 m, hysteresis 0.1 m
LEVELS = (1.8, 2.4, 3.0)


def levels(feed: Feed, entity: str, values: list[float], start: int = 0, minutes: int = 15) -> None:
    base = hour(start)
    for k, value in enumerate(values):
        at = base + timedelta(minutes=minutes * k)
        feed(simple_change(entity, "FloodMonitoring", at, currentLevel=value))


def alarm_steps(db: Database, source: str) -> list[tuple[str, str]]:
    with db.session() as s:
        ids = list(s.scalars(select(Alarm.id).where(Alarm.source == source).order_by(Alarm.id)))
        steps = s.execute(
            select(AlarmHistory.action, AlarmHistory.severity)
            .where(AlarmHistory.alarm_id.in_(ids))
            .order_by(AlarmHistory.id)
        )
        return [(a, sev) for a, sev in steps]


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        (0, 1.79, 0),
        (0, 1.80, 1),  # at the threshold: reached
        (0, 2.45, 2),  # straight to II
        (0, 3.20, 3),
        (1, 1.75, 1),  # below I but within the hysteresis: kept
        (1, 1.70, 1),  # exactly threshold - hysteresis: kept
        (1, 1.69, 0),
        (2, 2.31, 2),
        (2, 2.29, 1),
        (3, 2.95, 3),
        (3, 2.85, 2),
        (3, 1.00, 0),
        (2, 3.00, 3),  # rising again
    ],
)
def test_next_alert_level(current: int, value: float, expected: int) -> None:
    assert next_alert_level(current, value, LEVELS, 0.1) == expected


def test_a_level_hovering_at_a_threshold_does_not_flap(db: Database, feed: Feed) -> None:
    hovering = [1.50, 1.81, 1.79, 1.82, 1.75, 1.83, 1.78, 1.72, 1.84, 1.71]
    levels(feed, VINH_RIVER, hovering)
    source = "gauge:song-vinh-truong-thi"
    assert alarm_steps(db, source) == [("raised", "MINOR")], "one alarm, raised once, never cleared in between"
    with db.session() as s:
        gauge = s.scalars(select(EnvStation)).one()
        assert gauge.alert_level == 1
        alarm = s.scalars(select(Alarm).where(Alarm.source == source)).one()
        assert alarm.count == 1 and not alarm.cleared
    levels(feed, VINH_RIVER, [1.65], start=5)  # clearly below level I − hysteresis
    assert alarm_steps(db, source)[-1] == ("cleared", "MINOR")
    with db.session() as s:
        assert s.scalars(select(EnvStation)).one().alert_level == 0


def test_escalation_deescalation_and_clearing(db: Database, feed: Feed) -> None:
    levels(feed, VINH_RIVER, [1.5, 1.9, 2.5, 3.1, 3.05, 2.85, 2.35, 2.25, 1.2])
    assert alarm_steps(db, "gauge:song-vinh-truong-thi") == [
        ("raised", "MINOR"),  # báo động I
        ("escalated", "MAJOR"),  # II
        ("escalated", "CRITICAL"),  # III
        ("deescalated", "MAJOR"),  # 2.85 < 3.0 − 0.1
        ("deescalated", "MINOR"),  # 2.35 is kept at II (≥ 2.3), 2.25 falls to I
        ("cleared", "MINOR"),
    ]
    with db.session() as s:
        alarm = s.scalars(select(Alarm)).one()
        assert alarm.cleared and alarm.type == "flood.level" and alarm.ward_code == "16690"
        assert alarm.details["alert_level"] == 1 and alarm.details["threshold_m"] == 1.8


def test_late_reading_does_not_move_the_state_and_rise_rate(db: Database, feed: Feed) -> None:
    levels(feed, VINH_RIVER, [1.0, 1.2, 1.4, 1.6, 1.9])  # every 15 minutes: +0.9 m in an hour
    with db.session() as s:
        gauge = s.scalars(select(EnvStation)).one()
        assert gauge.alert_level == 1
        assert gauge.rise_m_per_h == pytest.approx(0.9)
        latest = gauge.level_at
    feed(simple_change(VINH_RIVER, "FloodMonitoring", hour(0) + timedelta(minutes=5), currentLevel=3.5))  # late
    with db.session() as s:
        gauge = s.scalars(select(EnvStation)).one()
        assert (gauge.alert_level, gauge.level_at, gauge.level_m) == (1, latest, 1.9)


def test_rain_sums(db: Database, feed: Feed) -> None:
    rain = "urn:ngsi-ld:WeatherObserved:r1"
    t0 = hour(0)
    for minutes_ago, mm in [(10, 5.0), (50, 3.0), (90, 10.0), (170, 2.0), (200, 20.0), (23 * 60, 1.0), (25 * 60, 50.0)]:
        feed(simple_change(rain, "WeatherObserved", t0 - timedelta(minutes=minutes_ago), precipitation=mm))
    # the same reading delivered twice does not count twice
    feed(simple_change(rain, "WeatherObserved", t0 - timedelta(minutes=10), precipitation=5.0))
    with db.session() as s:
        sid = s.scalars(select(EnvStation.id)).one()
        assert flood.rain_sums(s, t0)[sid] == {"1h": 8.0, "3h": 20.0, "24h": 41.0}
        assert flood.rain_sums(s, t0 - timedelta(hours=1))[sid] == {"1h": 10.0, "3h": 32.0, "24h": 33.0}


def test_ward_status_follows_gauges_and_zones(db: Database, feed: Feed, points: dict[str, tuple[float, float]]) -> None:
    levels(feed, VINH_RIVER, [2.5])  # Trường Vinh at II
    feed(simple_change("urn:ngsi-ld:FloodMonitoring:nam-dan", "FloodMonitoring", hour(0), currentLevel=5.5))
    rain = "urn:ngsi-ld:WeatherObserved:r-vinh-loc"
    feed(simple_change(rain, "WeatherObserved", hour(0), precipitation=120.0, location=points["16708"]))
    with db.session() as s:
        status = {w["ward_code"]: w for w in flood.ward_status(s, hour(0), 100.0)}
    assert set(status) == set(CITY_WARD_CODES)
    assert status["16690"]["alert_level"] == 2
    assert {"song-vinh-truong-thi", "nam-dan"} <= set(status["16690"]["gauges"])
    # Nam Đàn (upstream, outside the city) at báo động I reaches the riverside zone of Vinh Lộc.
    assert status["16708"]["alert_level"] == 1
    assert any(z["code"] == "hung-loc-ven-song" and z["alert_level"] == 1 for z in status["16708"]["zones"])
    assert status["16708"]["heavy_rain"] is True and status["16708"]["rain_24h_mm"] == 120.0
    assert status["16681"]["alert_level"] == 0 and status["16681"]["heavy_rain"] is False


def test_configuration_is_consistent() -> None:
    cfg = flood.config()
    assert cfg.gauges["nam-dan"].levels == (5.4, 6.9, 7.9)  # QĐ 05/2020/QĐ-TTg, sông Cả tại Nam Đàn
    for zone in cfg.zones["features"]:
        props = zone["properties"]
        assert set(props["gauges"]) <= set(cfg.gauges), props["code"]
        assert set(props["wards"]) <= set(CITY_WARD_CODES), props["code"]
    assert {cfg.severity[k].value for k in (1, 2, 3)} == {"MINOR", "MAJOR", "CRITICAL"}
