"""Flood warning: water-level gauges with three alert levels, rainfall sums, flood-prone zones and
a warning status per ward.

* Alert levels follow QĐ 05/2020/QĐ-TTg: báo động I, II, III (I least dangerous). Each gauge's
  three levels are configured in ``data/flood.json`` (the official levels where the decision gives
  them, the provincial People's Committee's elsewhere).
* Hysteresis: a gauge reaches level *k* as soon as the water is at or above threshold *k*, and
  leaves it only once the water is below threshold *k* minus the gauge's hysteresis (0.10 m by
  default). A level hovering at a threshold therefore does not raise and clear alarms in turn.
* One alarm per gauge (type ``flood.level``): raised at level I (MINOR), escalated at II (MAJOR)
  and III (CRITICAL), de-escalated on the way down, cleared below level I.
* Rain: each WeatherObserved ``precipitation`` is the rain fallen since the previous reading;
  sums over 1 h, 3 h and 24 h are read with one aggregate.
* A ward's warning level is the highest alert level of the gauges in the ward or linked to a
  flood-prone zone of the ward (``data/flood_zones.geojson``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ioc.core import alarms
from ioc.core.admin_units import CITY_WARD_CODES, WardLocator
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.events import publish

from .models import EnvStation, RainReading, WaterLevelReading
from .stations import upsert
from .topics import CONTEXT_UPSERT, UpsertRequest

DATA = Path(__file__).resolve().parent / "data"
FLOOD_ALARM = "flood.level"
WARD_NAMES = {
    "16681": "Thành Vinh",
    "16690": "Trường Vinh",
    "16702": "Vinh Phú",
    "16708": "Vinh Lộc",
    "16732": "Cửa Lò",
    "17920": "Vinh Hưng",
}


@dataclass(frozen=True)
class GaugeConfig:
    """A configured gauge: where it is and its three alert levels (metres)."""

    code: str
    entity_id: str
    name: str
    name_en: str
    river: str
    lat: float
    lon: float
    levels: tuple[float, float, float]
    hysteresis_m: float
    official: bool = False


@dataclass(frozen=True)
class FloodConfig:
    gauges: dict[str, GaugeConfig]
    severity: dict[int, Severity]
    default_hysteresis_m: float
    zones: dict[str, Any]

    def for_entity(self, entity_id: str) -> GaugeConfig | None:
        """The gauge configured for an entity: by its id, else by the id's last segment as the code."""
        for gauge in self.gauges.values():
            if gauge.entity_id == entity_id:
                return gauge
        return self.gauges.get(entity_id.rsplit(":", 1)[-1])


@functools.cache
def config() -> FloodConfig:
    """The shipped flood configuration (gauges, severities, zones)."""
    raw = json.loads((DATA / "flood.json").read_text(encoding="utf-8"))
    default_h = float(raw.get("default_hysteresis_m", 0.1))
    gauges = {}
    for g in raw["gauges"]:
        levels = tuple(float(x) for x in g["levels"])
        if len(levels) != 3 or not levels[0] < levels[1] < levels[2]:
            raise ValueError(f"gauge {g['code']}: three increasing alert levels expected, got {levels}")
        gauges[g["code"]] = GaugeConfig(
            code=g["code"],
            entity_id=g["entity_id"],
            name=g["name"],
            name_en=g.get("name_en", g["name"]),
            river=g.get("river", ""),
            lat=float(g["lat"]),
            lon=float(g["lon"]),
            levels=(levels[0], levels[1], levels[2]),
            hysteresis_m=float(g.get("hysteresis_m", default_h)),
            official=bool(g.get("official", False)),
        )
    severity = {int(k): Severity(v) for k, v in raw.get("severity", {}).items()}
    zones = json.loads((DATA / "flood_zones.geojson").read_text(encoding="utf-8"))
    return FloodConfig(gauges, severity, default_h, zones)


def apply_config(
    station: EnvStation, gauge: GaugeConfig | None, cfg: FloodConfig, locator: WardLocator | None = None
) -> None:
    """Give a gauge station its code and thresholds from the configuration, and its place when the
    entity did not say where it is."""
    if gauge is None:
        return
    station.code = gauge.code
    if station.lat is None or station.lon is None:
        station.lat, station.lon = gauge.lat, gauge.lon
        if locator is not None:
            station.ward_code = locator.locate(gauge.lat, gauge.lon)
    station.level1_m, station.level2_m, station.level3_m = gauge.levels
    station.hysteresis_m = gauge.hysteresis_m


def thresholds(station: EnvStation) -> tuple[float | None, float | None, float | None]:
    return station.level1_m, station.level2_m, station.level3_m


def next_alert_level(current: int, value: float, levels: tuple[float | None, ...], hysteresis: float) -> int:
    """The alert level after reading ``value``, from ``current`` (0 none, 1..3), with hysteresis.

    Rising: the highest level whose threshold the water reaches. Falling: a level is kept until the
    water is below its threshold minus ``hysteresis``.
    """
    reached = max((k for k, t in enumerate(levels, 1) if t is not None and value >= t), default=0)
    if reached >= current:
        return reached
    held = max((k for k, t in enumerate(levels, 1) if t is not None and value >= t - hysteresis), default=0)
    return min(current, max(reached, held))


def rise_rate(session: Session, station_id: int, at: datetime, level: float) -> float | None:
    """Rate of rise (m/h) from the earliest reading within the hour before ``at`` (≥ 10 minutes before)."""
    earlier = session.execute(
        select(WaterLevelReading.observed_at, WaterLevelReading.level_m)
        .where(
            WaterLevelReading.station_id == station_id,
            WaterLevelReading.observed_at >= at - timedelta(hours=1),
            WaterLevelReading.observed_at <= at - timedelta(minutes=10),
        )
        .order_by(WaterLevelReading.observed_at)
        .limit(1)
    ).first()
    if earlier is None:
        return None
    hours = (at - earlier.observed_at).total_seconds() / 3600
    rate: float = round((float(level) - float(earlier.level_m)) / hours, 3)
    return rate


@dataclass
class LevelOutcome:
    previous: int
    current: int
    late: bool = False


def record_level(session: Session, station: EnvStation, level: float, observed_at: datetime) -> LevelOutcome:
    """Store a water level and move the gauge's alert level (raising, escalating or clearing its alarm).

    A reading older than the gauge's latest is stored for the history but does not move the state.
    """
    table = WaterLevelReading.__table__
    upsert(
        session,
        table,  # type: ignore[arg-type]
        {"station_id": station.id, "observed_at": observed_at, "level_m": level},
        ["station_id", "observed_at"],
        {"level_m": level},
    )
    previous = station.alert_level or 0
    if station.level_at is not None and observed_at < station.level_at:
        return LevelOutcome(previous, previous, late=True)
    station.level_m, station.level_at = level, observed_at
    station.rise_m_per_h = rise_rate(session, station.id, observed_at, level)
    current = next_alert_level(previous, level, thresholds(station), station.hysteresis_m or 0.0)
    if current == previous:
        return LevelOutcome(previous, current)
    station.alert_level = current
    station.alert_since = observed_at
    source = f"gauge:{station.code or station.id}"
    if current == 0:
        alarms.clear_condition(session, source, FLOOD_ALARM, note=f"{level:.2f} m")
    else:
        cfg = config()
        threshold = thresholds(station)[current - 1]
        alarms.raise_alarm(
            session,
            AlarmCreate(
                source=source,
                type=FLOOD_ALARM,
                severity=cfg.severity.get(current, Severity.MAJOR),
                title=f"Mực nước {station.name} {level:.2f} m: báo động {'I' * current}",
                ward_code=station.ward_code,
                details={
                    "gauge": station.code or station.entity_id,
                    "level_m": level,
                    "alert_level": current,
                    "threshold_m": threshold,
                    "rise_m_per_h": station.rise_m_per_h,
                    "observed_at": observed_at.isoformat(),
                },
            ),
            module="environment",
        )
    observed = observed_at.isoformat().replace("+00:00", "Z")
    entity = {
        "id": station.entity_id,
        "type": "FloodMonitoring",
        "floodAlertLevel": {"type": "Property", "value": current, "observedAt": observed},
    }
    publish(session, CONTEXT_UPSERT, UpsertRequest(tenant=station.tenant, entities=[entity], mode="update"))
    return LevelOutcome(previous, current)


def record_rain(session: Session, station: EnvStation, mm: float, observed_at: datetime) -> None:
    """Store the rain (mm) fallen in the interval ending at ``observed_at`` (a repeat replaces it)."""
    table = RainReading.__table__
    upsert(
        session,
        table,  # type: ignore[arg-type]
        {"station_id": station.id, "observed_at": observed_at, "mm": mm},
        ["station_id", "observed_at"],
        {"mm": mm},
    )
    if station.level_at is None or observed_at >= station.level_at:
        station.level_at = observed_at  # the station's latest rain reading time
        station.level_m = mm


def rain_sums(session: Session, at: datetime) -> dict[int, dict[str, float]]:
    """Rain sums per rain station over the 1, 3 and 24 hours ending at ``at``."""
    m = RainReading
    stmt = (
        select(
            m.station_id,
            func.coalesce(func.sum(case((m.observed_at > at - timedelta(hours=1), m.mm), else_=0.0)), 0.0),
            func.coalesce(func.sum(case((m.observed_at > at - timedelta(hours=3), m.mm), else_=0.0)), 0.0),
            func.coalesce(func.sum(m.mm), 0.0),
        )
        .where(m.observed_at > at - timedelta(hours=24), m.observed_at <= at)
        .group_by(m.station_id)
    )
    return {
        int(sid): {"1h": round(float(h1), 1), "3h": round(float(h3), 1), "24h": round(float(h24), 1)}
        for sid, h1, h3, h24 in session.execute(stmt)
    }


def zone_features(lang: str = "vi") -> dict[str, Any]:
    """The flood-prone zones as GeoJSON (as configured)."""
    return config().zones


def ward_status(
    session: Session, at: datetime, heavy_rain_mm: float, locator: WardLocator | None = None
) -> list[dict[str, Any]]:
    """Each city ward's warning: highest gauge alert level, zones on alert, and the rain of the last 24 h."""
    gauges = list(session.scalars(select(EnvStation).where(EnvStation.kind == "gauge")))
    by_code = {g.code: g for g in gauges if g.code}
    rain_stations = list(session.scalars(select(EnvStation).where(EnvStation.kind == "rain")))
    sums = rain_sums(session, at)
    zones = config().zones.get("features", [])
    result = []
    for ward in CITY_WARD_CODES:
        linked: dict[int, EnvStation] = {g.id: g for g in gauges if g.ward_code == ward}
        ward_zones = []
        for zone in zones:
            props = zone.get("properties", {})
            if ward not in props.get("wards", []):
                continue
            zone_gauges = [by_code[c] for c in props.get("gauges", []) if c in by_code]
            linked.update({g.id: g for g in zone_gauges})
            ward_zones.append(
                {
                    "code": props.get("code"),
                    "name": props.get("name"),
                    "name_en": props.get("name_en"),
                    "alert_level": max((g.alert_level for g in zone_gauges), default=0),
                }
            )
        level = max((g.alert_level for g in linked.values()), default=0)
        rain_24h = max((sums.get(s.id, {}).get("24h", 0.0) for s in rain_stations if s.ward_code == ward), default=None)
        name = WARD_NAMES.get(ward, ward)
        if locator is not None and ward in locator.wards:
            name = locator.wards[ward].name
        result.append(
            {
                "ward_code": ward,
                "ward_name": name,
                "alert_level": level,
                "gauges": sorted(g.code or str(g.id) for g in linked.values()),
                "zones": ward_zones,
                "rain_24h_mm": rain_24h,
                "heavy_rain": rain_24h is not None and rain_24h >= heavy_rain_mm,
            }
        )
    return result
