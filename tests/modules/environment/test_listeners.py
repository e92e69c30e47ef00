"""Entity changes in, hourly/daily VN_AQI, VN_WQI, levels and rain out (real database, both legs)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.environment import aqi, units, wqi
from ioc.modules.environment.models import (
    AirHourlyMean,
    AirObservation,
    AqiDaily,
    AqiHourly,
    EnvStation,
    RainReading,
    WaterLevelReading,
    WqiResult,
)
from ioc.modules.environment.service import day_of_hour

from .conftest import Feed, air_change, hour, iso, simple_change

STATION = "urn:ngsi-ld:AirQualityObserved:test-1"


def hourly(db: Database) -> dict[Any, int]:
    with db.session() as s:
        return {r.hour_end: r.aqi for r in s.scalars(select(AqiHourly).order_by(AqiHourly.hour_end))}


def upserts(db: Database) -> list[dict[str, Any]]:
    """The entities this module published on ``context.upsert``, oldest first."""
    with db.session() as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.topic == "context.upsert").order_by(OutboxEvent.id))
        return [e for r in rows for e in r.payload["entities"]]


def test_readings_become_hourly_and_daily_aqi_written_back(
    db: Database, feed: Feed, points: dict[str, tuple[float, float]]
) -> None:
    lat, lon = points["16681"]
    for k in (1, 2, 3):
        at = hour(k) - timedelta(minutes=20)
        feed(air_change(STATION, at, {"pm25": 40.0}, lat=lat, lon=lon))
    # PM2.5 steady at 40 µg/m³: NowCast 40, AQI = 50 + (100 - 50)/(50 - 25)·(40 - 25) = 80; the
    # first hour has none (NowCast needs two of the last three hours).
    assert hourly(db) == {hour(2): 80, hour(3): 80}
    with db.session() as s:
        station = s.scalars(select(EnvStation)).one()
        assert (station.kind, station.ward_code, station.aqi, station.aqi_hour_end) == ("air", "16681", 80, hour(3))
        assert station.aqi_dominant == "pm25"
        daily = s.scalars(select(AqiDaily)).one()
        assert daily.day == day_of_hour(hour(3)) and daily.aqi == 80 and daily.ward_code == "16681"
    written = upserts(db)
    assert written, "the hourly AQI is written back to the entity"
    last = written[-1]
    assert last["id"] == STATION and last["type"] == "AirQualityObserved"
    assert last["aqi"] == {"type": "Property", "value": 80, "observedAt": iso(hour(3))}
    assert last["aqiDominant"]["value"] == "pm25"
    assert last["aqiBand"]["value"] == aqi.band_for(80).level == 2
    assert last["airQualityIndex"]["value"] == 80
    assert last["aqiDaily"]["value"] == 80


def test_late_reading_recomputes_the_nowcast_window_and_the_day(db: Database, feed: Feed) -> None:
    for k in range(1, 17):
        feed(air_change(STATION, hour(k) - timedelta(minutes=30), {"pm25": 20.0}))
    assert set(hourly(db).values()) == {40} and len(hourly(db)) == 15  # hour 1 has no NowCast yet
    published = len(upserts(db))
    with db.session() as s:
        daily_before = s.scalars(select(AqiDaily)).one().aqi
    # A (dust-storm) reading of hour 4 that arrives late: its hour's mean becomes (20 + 9980) / 2 =
    # 5000 µg/m³, large enough to still move the NowCast eleven hours later.
    feed(air_change(STATION, hour(4) - timedelta(minutes=5), {"pm25": 9980.0}))
    after = hourly(db)
    assert after[hour(2)] == 40 and after[hour(3)] == 40, "hours before the late one are untouched"
    series = {"pm25": {hour(k): (5000.0 if k == 4 else 20.0) for k in range(1, 17)}}
    for k in range(4, 16):  # hours whose 12-hour NowCast window holds hour 4
        assert after[hour(k)] == aqi.hourly_aqi(series, hour(k)).aqi, k
        assert after[hour(k)] > 40, k
    assert after[hour(16)] == 40, "hour 16's window (hours 5–16) does not hold hour 4"
    with db.session() as s:
        mean = s.scalars(select(AirHourlyMean).where(AirHourlyMean.hour_end == hour(4))).one()
        assert (mean.total, mean.count) == (10000.0, 2)
        assert s.scalars(select(AqiDaily)).one().aqi > daily_before
    assert len(upserts(db)) == published, "the latest hour did not change: nothing new written back"


def test_repeated_delivery_counts_once(db: Database, feed: Feed) -> None:
    change = air_change(STATION, hour(1) - timedelta(minutes=10), {"pm25": 33.0, "pm10": 50.0})
    feed(change)
    feed(change)  # at-least-once delivery
    with db.session() as s:
        means = {m.pollutant: (m.total, m.count) for m in s.scalars(select(AirHourlyMean))}
        assert means == {"pm25": (33.0, 1), "pm10": (50.0, 1)}
    # A corrected value for the same time replaces the first one.
    feed(air_change(STATION, hour(1) - timedelta(minutes=10), {"pm25": 43.0}))
    with db.session() as s:
        mean = s.scalars(select(AirHourlyMean).where(AirHourlyMean.pollutant == "pm25")).one()
        assert (mean.total, mean.count) == (43.0, 1)


def test_gas_units_are_converted(db: Database, feed: Feed) -> None:
    feed(air_change(STATION, hour(1) - timedelta(minutes=10), {"pm25": 10.0, "no2": 100.0}, unit="61"))  # ppb
    with db.session() as s:
        no2 = s.scalars(select(AirObservation).where(AirObservation.pollutant == "no2")).one()
        assert abs(no2.value - units.to_ugm3("no2", 100.0, "ppb")) < 1e-9
        assert 185 < no2.value < 195  # 100 ppb NO2 ≈ 188 µg/m³ at 25 °C


def test_variant_names_and_other_types_are_ignored_or_routed(db: Database, feed: Feed) -> None:
    feed(air_change(STATION, hour(1) - timedelta(minutes=10), {"PM2_5": 40.0, "temperature": 31.0}))
    feed(simple_change("urn:ngsi-ld:Vehicle:1", "Vehicle", hour(1), speed=30.0))
    # The module's own write-back comes back as an update without readings: nothing happens.
    feed(simple_change(STATION, "AirQualityObserved", hour(1), aqi=80))
    with db.session() as s:
        assert [m.pollutant for m in s.scalars(select(AirHourlyMean))] == ["pm25"]
        assert [st.entity_id for st in s.scalars(select(EnvStation))] == [STATION]


def test_flood_and_rain_entities(db: Database, feed: Feed, points: dict[str, tuple[float, float]]) -> None:
    gauge = "urn:ngsi-ld:FloodMonitoring:ben-thuy"  # configured: levels 2.6 / 3.4 / 4.2 m
    feed(simple_change(gauge, "FloodMonitoring", hour(1), currentLevel=2.7, location=(18.656, 105.705)))
    rain = "urn:ngsi-ld:WeatherObserved:rain-1"
    feed(simple_change(rain, "WeatherObserved", hour(1), precipitation=12.5, location=points["16690"]))
    with db.session() as s:
        g = s.scalars(select(EnvStation).where(EnvStation.kind == "gauge")).one()
        assert (g.code, g.ward_code, g.alert_level, g.level_m) == ("ben-thuy", "16690", 1, 2.7)
        assert (g.level1_m, g.level2_m, g.level3_m) == (2.6, 3.4, 4.2)
        assert s.scalars(select(WaterLevelReading)).one().level_m == 2.7
        r = s.scalars(select(EnvStation).where(EnvStation.kind == "rain")).one()
        assert r.ward_code == "16690"
        assert s.scalars(select(RainReading)).one().mm == 12.5
    assert any(e.get("floodAlertLevel", {}).get("value") == 1 for e in upserts(db))


def test_unconfigured_gauge_takes_sdm_thresholds(db: Database, feed: Feed) -> None:
    change = simple_change(
        "urn:ngsi-ld:FloodMonitoring:x-99", "FloodMonitoring", hour(1), waterLevel=1.0, alertLevel=2.0, dangerLevel=4.0
    )
    feed(change)
    with db.session() as s:
        g = s.scalars(select(EnvStation)).one()
        assert (g.level1_m, g.level2_m, g.level3_m, g.alert_level) == (2.0, 3.0, 4.0, 0)


def test_water_quality_sample_gets_its_wqi(db: Database, feed: Feed) -> None:
    station = "urn:ngsi-ld:WaterQualityObserved:song-vinh"
    attrs = {"pH": 7.1, "O2": 6.0, "temperature": 28.0, "bod": 5.0, "cod": 12.0, "NH4": 0.2, "PO4": 0.1}
    attrs["Coliform"] = 3000.0  # groups I, IV and V: enough for a VN_WQI
    feed(simple_change(station, "WaterQualityObserved", hour(5), **attrs))
    sample = {"ph": 7.1, "do": 6.0, "temp": 28.0, "bod5": 5.0, "cod": 12.0, "nh4": 0.2, "po4": 0.1, "coliform": 3000.0}
    expected = wqi.wqi(sample)
    assert expected.wqi is not None
    with db.session() as s:
        row = s.scalars(select(WqiResult)).one()
        assert row.wqi == expected.wqi and row.observed_at == hour(5)
        assert s.scalars(select(EnvStation)).one().wqi == expected.wqi
    assert any(e.get("wqi", {}).get("value") == expected.wqi for e in upserts(db))
    # An impossible value (pH 20) is refused by the index: logged and skipped, no error loop.
    feed(simple_change(station, "WaterQualityObserved", hour(6), pH=20.0, bod=5.0, cod=10.0, NH4=0.1))
    with db.session() as s:
        assert len(list(s.scalars(select(WqiResult)))) == 1
