"""Demo data for ``ioc seed --demo``: a week of air, water-level and rain readings in the six wards.

* Six air stations (one per ward) with daily rush-hour peaks, and one pollution episode: two
  mornings ago the Vinh Hưng station passes VN_AQI 151 for several hours, so an incident is opened
  by the sensor rule exactly as live data would open it.
* Eight gauges of ``data/flood.json`` with a flood episode three days ago on the Vinh river
  (passing báo động I and II, then hovering near I on the way down), and the Lam river at Bến Thủy
  at báo động I now; their alarms went through the real lifecycle (raised, escalated, cleared).
* Six rain stations (one per ward) with the storm behind the flood episode.
* Two water-quality points and a few incidents entered by staff (camera, inspection, press,
  citizen), so the register and KPI 13 have something to show.

Readings go straight into the module's tables through the same functions the listeners use, and
the stations' entities are published on ``context.upsert`` so the context store has them too.
"""

from __future__ import annotations

import logging
import math
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ioc.core.admin_units import VN_TZ, WardLocator
from ioc.core.db import utcnow
from ioc.core.events import publish

from . import flood, incidents, service
from .models import AirHourlyMean, AirObservation, EnvStation
from .service import Runtime, iso_z
from .settings import EnvironmentSettings
from .stations import ensure_station
from .topics import CONTEXT_UPSERT, UpsertRequest

log = logging.getLogger("ioc.environment")
DAYS = 7
HOUR = timedelta(hours=1)

AIR_STATIONS = [
    ("quang-truong", "Quảng trường Hồ Chí Minh", 18.6745, 105.6805, 1.0),
    ("truong-thi", "Trường Thi", 18.6620, 105.6950, 1.05),
    ("nghi-phu", "Nghi Phú", 18.7200, 105.6850, 0.95),
    ("hung-loc", "Hưng Lộc", 18.7250, 105.7250, 0.85),
    ("cua-lo", "Bãi biển Cửa Lò", 18.8050, 105.7200, 0.6),
    ("bac-vinh", "KCN Bắc Vinh", 18.7250, 105.6500, 1.2),
]
EPISODE_STATION = "bac-vinh"
RAIN_STATIONS = [
    ("thanh-vinh", "Thành Vinh", 18.6760, 105.6650),
    ("truong-vinh", "Trường Vinh", 18.6700, 105.7100),
    ("vinh-phu", "Vinh Phú", 18.7230, 105.6870),
    ("vinh-loc", "Vinh Lộc", 18.7260, 105.7230),
    ("cua-lo", "Cửa Lò", 18.7900, 105.7200),
    ("vinh-hung", "Vinh Hưng", 18.7230, 105.6560),
]
WATER_POINTS = [
    (
        "song-vinh",
        "Sông Vinh (cầu Trường Thi)",
        18.6620,
        105.6920,
        {
            "pH": 7.2,
            "DO": 5.2,
            "BOD5": 9.0,
            "COD": 22.0,
            "N-NH4": 0.6,
            "P-PO4": 0.25,
            "Coliform": 6000,
            "temperature": 28.0,
        },
    ),
    (
        "ho-goong",
        "Hồ Goong",
        18.6800,
        105.6720,
        {
            "pH": 7.6,
            "DO": 6.4,
            "BOD5": 5.0,
            "COD": 14.0,
            "N-NH4": 0.3,
            "P-PO4": 0.12,
            "Coliform": 3000,
            "temperature": 29.0,
        },
    ),
]


def _diurnal(local_hour: int) -> float:
    """Traffic peaks around 07–08 h and 18–20 h, a low at night."""
    morning = math.exp(-((local_hour - 7.5) ** 2) / 3.0)
    evening = math.exp(-((local_hour - 19.0) ** 2) / 4.0)
    return 0.6 + 0.7 * morning + 0.8 * evening


def _point(lat: float, lon: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def seed_demo(session: Session) -> dict[str, int]:
    """Seed the week of demo data once (nothing is added when stations exist already)."""
    if session.scalar(select(func.count()).select_from(EnvStation)):
        return {}
    rt = Runtime(EnvironmentSettings())
    locator = WardLocator.from_session(session)
    rng = random.Random(2025)  # noqa: S311 - demo data, not secrets
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=DAYS)
    hours = [start + k * HOUR for k in range(1, DAYS * 24 + 1)]
    entities: list[dict[str, Any]] = []
    counts = {"air": 0, "gauge": 0, "rain": 0, "water": 0, "incidents": 0}

    # -- air --------------------------------------------------------------
    episode_day = (now - timedelta(days=2)).astimezone(VN_TZ).date()
    for code, name, lat, lon, factor in AIR_STATIONS:
        entity_id = f"urn:ngsi-ld:AirQualityObserved:vinh-{code}"
        station = ensure_station(
            session,
            tenant="",
            entity_id=entity_id,
            kind="air",
            seen_at=now,
            locator=locator,
            name=name,
            lat=lat,
            lon=lon,
        )
        observations: list[dict[str, Any]] = []
        means: list[dict[str, Any]] = []
        latest: dict[str, float] = {}
        for h in hours:
            local = h.astimezone(VN_TZ)
            d = _diurnal(local.hour) * factor
            pm25 = 14 + 16 * d + rng.uniform(-3, 3)
            if code == EPISODE_STATION and local.date() == episode_day and 5 <= local.hour <= 12:
                pm25 = 150 + 40 * math.sin((local.hour - 5) / 7 * math.pi) + rng.uniform(-5, 5)  # burning + inversion
            values = {
                "pm25": pm25,
                "pm10": pm25 * 1.6 + rng.uniform(0, 8),
                "no2": 18 + 30 * d + rng.uniform(-4, 4),
                "so2": 9 + 6 * factor + rng.uniform(-2, 2),
                "co": 700 + 500 * d + rng.uniform(-80, 80),
                "o3": 30 + 70 * max(0.0, math.sin((local.hour - 8) / 10 * math.pi)) + rng.uniform(-5, 5),
            }
            at = h - timedelta(minutes=30)
            for pollutant, value in values.items():
                v = round(max(value, 0.0), 1)
                observations.append({"station_id": station.id, "pollutant": pollutant, "observed_at": at, "value": v})
                means.append({"station_id": station.id, "pollutant": pollutant, "hour_end": h, "total": v, "count": 1})
                latest[pollutant] = v
        session.execute(insert(AirObservation), observations)
        session.execute(insert(AirHourlyMean), means)
        service.recompute_air(session, rt, station, hours)
        observed = iso_z(hours[-1] - timedelta(minutes=30))
        entity: dict[str, Any] = {
            "id": entity_id,
            "type": "AirQualityObserved",
            "name": {"type": "Property", "value": name},
        }
        entity["location"] = _point(lat, lon)
        for pollutant, v in latest.items():
            entity[pollutant] = {"type": "Property", "value": v, "unitCode": "GQ", "observedAt": observed}
        entities.append(entity)
        counts["air"] += 1

    # -- rain ----------------------------------------------------------------
    storm_peak = now - timedelta(days=3, hours=6)
    rain_by_hour: dict[datetime, float] = {}
    for h in hours:
        hours_from_peak = (h - storm_peak).total_seconds() / 3600
        storm = 22 * math.exp(-(hours_from_peak**2) / 18.0)
        drizzle = 1.5 if (now - h) < timedelta(hours=5) else 0.0
        rain_by_hour[h] = storm + drizzle
    for code, name, lat, lon in RAIN_STATIONS:
        entity_id = f"urn:ngsi-ld:WeatherObserved:vinh-{code}"
        station = ensure_station(
            session,
            tenant="",
            entity_id=entity_id,
            kind="rain",
            seen_at=now,
            locator=locator,
            name=name,
            lat=lat,
            lon=lon,
        )
        scale = rng.uniform(0.7, 1.3)
        for h in hours:
            mm = round(max(0.0, rain_by_hour[h] * scale + (rng.uniform(-0.5, 0.5) if rain_by_hour[h] > 1 else 0)), 1)
            if mm > 0 or h == hours[-1]:
                flood.record_rain(session, station, mm, h)
        entities.append(
            {
                "id": entity_id,
                "type": "WeatherObserved",
                "name": {"type": "Property", "value": name},
                "location": _point(lat, lon),
                "precipitation": {
                    "type": "Property",
                    "value": station.level_m or 0.0,
                    "unitCode": "MMT",
                    "observedAt": iso_z(hours[-1]),
                },
            }
        )
        counts["rain"] += 1

    # -- gauges --------------------------------------------------------------
    cfg = flood.config()
    flood_peak = now - timedelta(days=3, hours=2)
    for gauge in cfg.gauges.values():
        station = ensure_station(
            session,
            tenant="",
            entity_id=gauge.entity_id,
            kind="gauge",
            seen_at=now,
            locator=locator,
            name=gauge.name,
            lat=gauge.lat,
            lon=gauge.lon,
        )
        flood.apply_config(station, gauge, cfg)
        l1, l2, _ = gauge.levels
        base = l1 * 0.55
        level = base
        for h in hours[-72 if gauge.code not in ("song-vinh-truong-thi", "ben-thuy") else 0 :]:
            tide = 0.08 * math.sin(2 * math.pi * (h.timestamp() / 3600) / 12.4)
            level = base + tide + rng.uniform(-0.02, 0.02)
            if gauge.code == "song-vinh-truong-thi":
                x = (h - flood_peak).total_seconds() / 3600
                peak = l2 + 0.3
                if -14 <= x <= 0:  # the storm: up past báo động I and II
                    level = base + (peak - base) * (x + 14) / 14
                elif 0 < x <= 20:  # receding to just above level I
                    level = peak - (peak - l1 - 0.02) * x / 20
                elif 20 < x <= 32:  # hovering at level I: hysteresis keeps the alarm steady
                    level = l1 + rng.uniform(-0.07, 0.04)
                elif 32 < x <= 44:
                    level = l1 - (l1 - base) * (x - 32) / 12
            if gauge.code == "ben-thuy" and (now - h) < timedelta(hours=10):
                level = l1 + 0.15 * (1 - (now - h).total_seconds() / 36000) + rng.uniform(-0.02, 0.02)
            flood.record_level(session, station, round(level, 2), h)
        entities.append(
            {
                "id": gauge.entity_id,
                "type": "FloodMonitoring",
                "name": {"type": "Property", "value": gauge.name},
                "location": _point(gauge.lat, gauge.lon),
                "currentLevel": {
                    "type": "Property",
                    "value": station.level_m,
                    "unitCode": "MTR",
                    "observedAt": iso_z(hours[-1]),
                },
                "alertLevel": {"type": "Property", "value": l1, "unitCode": "MTR"},
            }
        )
        counts["gauge"] += 1

    # -- water quality -----------------------------------------------------------
    for code, name, lat, lon, sample in WATER_POINTS:
        entity_id = f"urn:ngsi-ld:WaterQualityObserved:vinh-{code}"
        station = ensure_station(
            session,
            tenant="",
            entity_id=entity_id,
            kind="water",
            seen_at=now,
            locator=locator,
            name=name,
            lat=lat,
            lon=lon,
        )
        for days_ago in (6, 3, 0):
            at = (now - timedelta(days=days_ago)).replace(hour=2)  # 09:00 local
            varied = {k: round(v * rng.uniform(0.9, 1.1), 2) for k, v in sample.items()}
            try:
                service.record_water(session, rt, station, varied, at)
            except Exception:  # the WQI arithmetic refusing a sample must not stop the demo
                log.warning("demo water sample of %s not computed", code, exc_info=True)
                continue
        counts["water"] += 1

    # -- incidents entered by staff ---------------------------------------------
    made = [
        (
            "air",
            "camera",
            "Đốt rác thải ngoài trời gần chợ Hưng Lộc (camera AI phát hiện khói)",
            "16708",
            18.7235,
            105.7210,
            5,
            "confirmed",
        ),
        (
            "land",
            "inspection",
            "Đổ trộm phế thải xây dựng ven đường tránh Vinh",
            "17920",
            18.7300,
            105.6480,
            12,
            "closed",
        ),
        (
            "water",
            "press",
            "Nước thải chưa xử lý chảy ra sông Vinh (báo Nghệ An phản ánh)",
            "16690",
            18.6640,
            105.6970,
            9,
            "confirmed",
        ),
        (
            "air",
            "citizen",
            "Mùi hôi từ bãi tập kết rác (phản ánh qua Vinh Smart)",
            "16702",
            18.7150,
            105.6820,
            1,
            "new",
        ),
    ]
    for kind, source, title, ward, lat, lon, days_ago, status in made:
        incident = incidents.open_incident(
            session,
            kind=kind,
            source=source,
            title=title,
            agency_id=rt.settings.incident_agency,
            detected_at=now - timedelta(days=days_ago, hours=3),
            ward_code=ward,
            lat=lat,
            lon=lon,
        )
        if status in ("confirmed", "closed"):
            incident.status, incident.confirmed_at, incident.confirmed_by = "confirmed", utcnow(), "demo"
        if status == "closed":
            incident.status, incident.closed_at, incident.closed_by = "closed", utcnow(), "demo"
            incident.resolution = "Đã thu dọn, xử phạt vi phạm hành chính."
        counts["incidents"] += 1

    publish(session, CONTEXT_UPSERT, UpsertRequest(tenant="", entities=entities, mode="update"))
    session.flush()
    return counts
