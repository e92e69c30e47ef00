"""Air and water quality, no HTTP: observations in, hourly and daily VN_AQI and VN_WQI out.

* Each air reading is kept once per (station, pollutant, time) and folded into the hourly mean of
  the hour it ends in (``hour_end``: readings in (07:00, 08:00] belong to the hour ending 08:00).
* The hours a reading affects are recomputed: its own hour and the next eleven (the NowCast window
  of PM is twelve hours), up to the station's latest hour; and the local days of those hours.
  So late data corrects what it touches and nothing else.
* The station's latest hourly result is written back to its NGSI-LD entity (``aqi``,
  ``aqiDominant``, ``aqiBand``, ``airQualityIndex``, ``airQualityLevel``, ``aqiDaily``) through
  ``context.upsert``, so the context store keeps it in its history.
* A sustained breach (hourly AQI ≥ 151 for 3 consecutive hours) opens an incident and raises an
  alarm that is cleared when the hourly AQI falls back below the threshold.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from ioc.core import alarms
from ioc.core.admin_units import VN_TZ, WardLocator, ward_locator
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.db import Database, utcnow
from ioc.core.events import publish

from . import incidents
from .models import AirHourlyMean, AirObservation, AqiDaily, AqiHourly, EnvStation, WqiResult
from .settings import EnvironmentSettings
from .stations import upsert
from .topics import CONTEXT_UPSERT, UpsertRequest

log = logging.getLogger("ioc.environment")

HOUR = timedelta(hours=1)
NOWCAST_HOURS = 12
AQI_ALARM = "environment.aqi"
WQI_ALARM = "environment.wqi"


@dataclass
class Runtime:
    """What the module's listeners and routes share for one app."""

    settings: EnvironmentSettings
    db: Database | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def locator(self, session: Session | None = None) -> WardLocator | None:
        """The city's ward locator (``session``: the caller's transaction, for a first build)."""
        return ward_locator(self.db, session) if self.db is not None else None


def iso_z(dt: datetime) -> str:
    """An aware datetime as the ISO 8601 UTC text NGSI-LD uses (``...Z``)."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hour_end_of(at: datetime) -> datetime:
    """The end of the hour ``at`` falls in: (07:00, 08:00] -> 08:00 (UTC, aware)."""
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + HOUR


def day_of_hour(hour_end: datetime) -> date:
    """The local day whose daily AQI includes the hour ending at ``hour_end`` (01:00 .. 24:00 local)."""
    return (hour_end.astimezone(VN_TZ) - timedelta(microseconds=1)).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The local day as ``(start, end)`` aware datetimes (00:00 and 24:00 Asia/Ho_Chi_Minh)."""
    start = datetime.combine(day, time.min, tzinfo=VN_TZ)
    return start, start + timedelta(days=1)


# --------------------------------------------------------------------------- air: storing


def record_air(session: Session, station: EnvStation, readings: Iterable[tuple[str, datetime, float]]) -> set[datetime]:
    """Store concentration readings (pollutant, time, µg/m³); returns the hours whose mean changed.

    A reading delivered again with the same value changes nothing; with a new value, the mean of
    its hour is corrected by the difference.
    """
    hours: set[datetime] = set()
    means = AirHourlyMean.__table__
    for pollutant, at, value in readings:
        existing = session.execute(
            select(AirObservation.id, AirObservation.value).where(
                AirObservation.station_id == station.id,
                AirObservation.pollutant == pollutant,
                AirObservation.observed_at == at,
            )
        ).first()
        if existing is None:
            session.add(AirObservation(station_id=station.id, pollutant=pollutant, observed_at=at, value=value))
            delta, n = value, 1
        elif existing.value != value:
            obs = session.get(AirObservation, existing.id)
            assert obs is not None
            obs.value = value
            delta, n = value - existing.value, 0
        else:
            continue
        hour = hour_end_of(at)
        upsert(
            session,
            means,  # type: ignore[arg-type]
            {"station_id": station.id, "pollutant": pollutant, "hour_end": hour, "total": delta, "count": n},
            ["station_id", "pollutant", "hour_end"],
            {"total": means.c.total + delta, "count": means.c["count"] + n},
        )
        hours.add(hour)
    session.flush()
    return hours


def load_series(
    session: Session, station_id: int, lo: datetime, hi: datetime
) -> dict[str, dict[datetime, float | None]]:
    """Hourly means ``{pollutant: {hour_end: µg/m³}}`` of a station for hours in ``[lo, hi]``."""
    rows = session.execute(
        select(AirHourlyMean.pollutant, AirHourlyMean.hour_end, AirHourlyMean.total, AirHourlyMean.count).where(
            AirHourlyMean.station_id == station_id, AirHourlyMean.hour_end >= lo, AirHourlyMean.hour_end <= hi
        )
    )
    series: dict[str, dict[datetime, float | None]] = defaultdict(dict)
    for pollutant, hour, total, count in rows:
        if count:
            series[pollutant][hour] = total / count
    return dict(series)


def latest_hour(session: Session, station_id: int) -> datetime | None:
    return session.scalar(select(func.max(AirHourlyMean.hour_end)).where(AirHourlyMean.station_id == station_id))


# --------------------------------------------------------------------------- air: computing


@dataclass
class AirOutcome:
    """What a recomputation changed for one station."""

    hours: list[datetime] = field(default_factory=list)
    days: list[date] = field(default_factory=list)
    latest_changed: bool = False
    opened: list[int] = field(default_factory=list)


def _store_result(
    session: Session, model: type[AqiHourly] | type[AqiDaily], key: dict[str, Any], station: EnvStation, result: Any
) -> bool:
    """Insert, update or delete one AQI row; True when what is stored changed."""
    conds = [getattr(model, name) == value for name, value in key.items()]
    current = session.execute(select(model.aqi, model.dominant).where(*conds)).first()
    if result.aqi is None:
        if current is not None:
            session.execute(delete(model).where(*conds))
            return True
        return False
    values = {
        **key,
        "ward_code": station.ward_code,
        "aqi": int(result.aqi),
        "dominant": result.dominant,
        "band": result.band.level if result.band is not None else None,
        "sub_indices": {k: int(v) for k, v in (result.sub_indices or {}).items()},
        "computed_at": utcnow(),
    }
    if current is None:
        session.execute(insert(model).values(values))
        return True
    unchanged = current.aqi == values["aqi"] and current.dominant == values["dominant"]
    if unchanged:
        session.execute(update(model).where(*conds).values(sub_indices=values["sub_indices"]))
    else:
        session.execute(update(model).where(*conds).values({k: v for k, v in values.items() if k not in key}))
    return not unchanged


def recompute_air(session: Session, rt: Runtime, station: EnvStation, hours: Iterable[datetime]) -> AirOutcome:
    """Recompute the hourly AQI of the hours ``hours`` affect, and the daily AQI of their days."""
    from . import aqi  # the index arithmetic (QĐ 1459)

    out = AirOutcome()
    hours = sorted(set(hours))
    latest = latest_hour(session, station.id)
    if not hours or latest is None:
        return out
    targets = sorted({h + k * HOUR for h in hours for k in range(NOWCAST_HOURS) if h + k * HOUR <= latest})
    days = sorted({day_of_hour(h) for h in targets})
    lo = min(targets[0], day_bounds(days[0])[0]) - NOWCAST_HOURS * HOUR
    hi = max(targets[-1], day_bounds(days[-1])[1])
    series = load_series(session, station.id, lo, hi)
    changed_latest = False
    for h, result in aqi.hourly_aqi_many(series, targets).items():
        if _store_result(session, AqiHourly, {"station_id": station.id, "hour_end": h}, station, result):
            out.hours.append(h)
            changed_latest = changed_latest or h == latest
    for d, result in aqi.daily_aqi_many(series, days, tz=VN_TZ).items():
        if _store_result(session, AqiDaily, {"station_id": station.id, "day": d}, station, result):
            out.days.append(d)
    session.flush()
    latest_row = session.scalar(
        select(AqiHourly).where(AqiHourly.station_id == station.id).order_by(AqiHourly.hour_end.desc()).limit(1)
    )
    if latest_row is not None and (
        station.aqi_hour_end is None
        or latest_row.hour_end > station.aqi_hour_end
        or (
            latest_row.hour_end == station.aqi_hour_end
            and (station.aqi, station.aqi_dominant) != (latest_row.aqi, latest_row.dominant)
        )
    ):
        station.aqi = latest_row.aqi
        station.aqi_dominant = latest_row.dominant
        station.aqi_band = latest_row.band
        station.aqi_hour_end = latest_row.hour_end
        out.latest_changed = True
    elif changed_latest:
        out.latest_changed = True
    if out.latest_changed and latest_row is not None:
        publish_aqi(session, station, latest_row)
    out.opened = check_air_breach(session, rt, station, targets, latest)
    return out


def publish_aqi(session: Session, station: EnvStation, row: AqiHourly) -> None:
    """Write the latest hourly (and that day's daily) AQI back to the station's entity."""
    from . import aqi

    observed = iso_z(row.hour_end)
    band = aqi.band_for(row.aqi)
    entity: dict[str, Any] = {
        "id": station.entity_id,
        "type": "AirQualityObserved",
        "aqi": {"type": "Property", "value": row.aqi, "observedAt": observed},
        "aqiBand": {"type": "Property", "value": band.level, "observedAt": observed},
        "airQualityIndex": {"type": "Property", "value": row.aqi, "observedAt": observed},
        "airQualityLevel": {"type": "Property", "value": band.name_en, "observedAt": observed},
    }
    if row.dominant:
        entity["aqiDominant"] = {"type": "Property", "value": row.dominant, "observedAt": observed}
    day = day_of_hour(row.hour_end)
    daily = session.scalar(select(AqiDaily).where(AqiDaily.station_id == station.id, AqiDaily.day == day))
    if daily is not None:
        entity["aqiDaily"] = {"type": "Property", "value": daily.aqi, "observedAt": observed}
    publish(session, CONTEXT_UPSERT, UpsertRequest(tenant=station.tenant, entities=[entity], mode="update"))


def _severity_for_aqi(value: int) -> Severity:
    return Severity.CRITICAL if value >= 201 else Severity.MAJOR


def check_air_breach(
    session: Session, rt: Runtime, station: EnvStation, hours: list[datetime], latest: datetime
) -> list[int]:
    """Open (or update) an incident for each sustained breach ending at one of ``hours``; raise or
    clear the station's alarm from its latest hours. Returns the ids of incidents opened."""
    n, threshold = rt.settings.breach_hours, rt.settings.breach_aqi
    lo = min(hours[0], latest) - (n + 24) * HOUR
    rows = dict(
        session.execute(
            select(AqiHourly.hour_end, AqiHourly.aqi).where(
                AqiHourly.station_id == station.id, AqiHourly.hour_end >= lo, AqiHourly.hour_end <= latest
            )
        ).all()
    )

    def run_length(end: datetime) -> int:
        length, h = 0, end
        while (rows.get(h) or 0) >= threshold:
            length += 1
            h -= HOUR
        return length

    opened: list[int] = []
    for h in sorted(set(hours) | {latest}):
        length = run_length(h)
        if length < n:
            continue
        window = [h - k * HOUR for k in range(length)]
        peak = max(int(rows[w]) for w in window)
        incident, created = incidents.sensor_breach(
            session,
            station_id=station.id,
            kind="air",
            title=f"Không khí xấu kéo dài tại trạm {station.name} (VN_AQI ≥ {threshold} trong {length} giờ)",
            agency_id=rt.settings.incident_agency,
            detected_at=h - (length - n) * HOUR,
            ward_code=station.ward_code,
            lat=station.lat,
            lon=station.lon,
            details={
                "station": station.entity_id,
                "peak_aqi": peak,
                "hours": length,
                "first_hour": window[-1].isoformat(),
                "last_hour": h.isoformat(),
            },
            peak_key="peak_aqi",
        )
        if created:
            opened.append(incident.id)
        if h == latest:
            _raise(
                session,
                AlarmCreate(
                    source=f"environment:station:{station.id}",
                    type=AQI_ALARM,
                    severity=_severity_for_aqi(int(rows[latest])),
                    title=f"VN_AQI {rows[latest]} tại trạm {station.name}: {length} giờ liên tiếp ≥ {threshold}",
                    ward_code=station.ward_code,
                    agency_id=rt.settings.incident_agency,
                    details={
                        "station": station.entity_id,
                        "aqi": int(rows[latest]),
                        "hours": length,
                        "incident_id": incident.id,
                    },
                ),
            )
    current = rows.get(latest)
    if current is not None and current < threshold:
        alarms.clear_condition(
            session, f"environment:station:{station.id}", AQI_ALARM, note=f"VN_AQI {current} < {threshold}"
        )
    return opened


def _raise(session: Session, data: AlarmCreate) -> None:
    """Raise ``data`` unless the same alarm is open at the same severity (no count churn per reading)."""
    existing = alarms.open_alarm(session, data.source, data.type)
    if existing is not None and existing.severity == data.severity.value:
        return
    alarms.raise_alarm(session, data, module="environment")


# --------------------------------------------------------------------------- water quality

#: NGSI-LD attribute names (Smart Data Models WaterQualityObserved and common variants) -> the
#: parameter names of QĐ 1460; :func:`wqi.canonical_key` turns them into the sample keys.
WATER_PARAMETERS: dict[str, str] = {
    "ph": "pH",
    "temperature": "temperature",
    "o2": "DO",
    "do": "DO",
    "dissolvedoxygen": "DO",
    "bod": "BOD5",
    "bod5": "BOD5",
    "cod": "COD",
    "toc": "TOC",
    "nh4": "N-NH4",
    "n-nh4": "N-NH4",
    "nnh4": "N-NH4",
    "no3": "N-NO3",
    "n-no3": "N-NO3",
    "nno3": "N-NO3",
    "no2": "N-NO2",
    "n-no2": "N-NO2",
    "nno2": "N-NO2",
    "po4": "P-PO4",
    "p-po4": "P-PO4",
    "ppo4": "P-PO4",
    "coliform": "Coliform",
    "ecoli": "E.coli",
    "e.coli": "E.coli",
    "as": "As",
    "cd": "Cd",
    "pb": "Pb",
    "cr6": "Cr6+",
    "cr6+": "Cr6+",
    "cu": "Cu",
    "zn": "Zn",
    "hg": "Hg",
}


def water_parameter(name: str) -> str | None:
    """The QĐ 1460 parameter an attribute name stands for, if any."""
    from . import wqi

    key = name.strip().lower().replace("_", "")
    named = WATER_PARAMETERS.get(key) or WATER_PARAMETERS.get(key.replace("-", "")) or name
    return wqi.canonical_key(named)


def _band_label(band: Any) -> str | None:
    if band is None:
        return None
    for attr in ("name_vi", "name", "label"):
        value = getattr(band, attr, None)
        if isinstance(value, str):
            return value[:64]
    return str(band)[:64]


def record_water(
    session: Session, rt: Runtime, station: EnvStation, values: Mapping[str, float], observed_at: datetime
) -> WqiResult:
    """Compute and store the VN_WQI of a sample (merged with what was already received for the same time)."""
    from . import wqi as wqi_index

    current = session.scalar(
        select(WqiResult).where(WqiResult.station_id == station.id, WqiResult.observed_at == observed_at)
    )
    sample: dict[str, float] = dict(current.sample) if current is not None else {}
    sample.update({(wqi_index.canonical_key(k) or k): v for k, v in values.items()})
    result = wqi_index.wqi(sample)
    value = None if result.wqi is None else int(result.wqi)
    groups = {str(k): v for k, v in dict(getattr(result, "groups", None) or {}).items()}
    if current is None:
        current = WqiResult(station_id=station.id, observed_at=observed_at)
        session.add(current)
    current.ward_code = station.ward_code
    current.wqi = value
    current.band = _band_label(result.band)
    current.reason = getattr(result, "reason", None)
    current.sample = sample
    current.groups = _jsonable(groups)
    current.computed_at = utcnow()
    session.flush()
    is_latest = station.wqi_at is None or observed_at >= station.wqi_at
    if is_latest:
        station.wqi, station.wqi_at = value, observed_at
        if value is not None:
            entity = {
                "id": station.entity_id,
                "type": "WaterQualityObserved",
                "wqi": {"type": "Property", "value": value, "observedAt": iso_z(observed_at)},
            }
            if current.band:
                entity["wqiBand"] = {"type": "Property", "value": current.band, "observedAt": iso_z(observed_at)}
            publish(session, CONTEXT_UPSERT, UpsertRequest(tenant=station.tenant, entities=[entity], mode="update"))
    threshold = rt.settings.breach_wqi
    if value is not None and value < threshold:
        incident, _ = incidents.sensor_breach(
            session,
            station_id=station.id,
            kind="water",
            title=f"Nước ô nhiễm nặng tại điểm quan trắc {station.name} (VN_WQI {value} < {threshold})",
            agency_id=rt.settings.incident_agency,
            detected_at=observed_at,
            ward_code=station.ward_code,
            lat=station.lat,
            lon=station.lon,
            details={"station": station.entity_id, "min_wqi": value, "sample_at": observed_at.isoformat()},
            peak_key="min_wqi",
        )
        if is_latest:
            _raise(
                session,
                AlarmCreate(
                    source=f"environment:station:{station.id}",
                    type=WQI_ALARM,
                    severity=Severity.CRITICAL if value < 10 else Severity.MAJOR,
                    title=f"VN_WQI {value} tại {station.name}: nước ô nhiễm nặng",
                    ward_code=station.ward_code,
                    agency_id=rt.settings.incident_agency,
                    details={"station": station.entity_id, "wqi": value, "incident_id": incident.id},
                ),
            )
    elif value is not None and is_latest:
        alarms.clear_condition(session, f"environment:station:{station.id}", WQI_ALARM, note=f"VN_WQI {value}")
    return current


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "_asdict"):
        return _jsonable(value._asdict())
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return str(value)


# --------------------------------------------------------------------------- reading


def stations(session: Session, kind: str | None = None, ward: str | None = None) -> list[EnvStation]:
    stmt = select(EnvStation).order_by(EnvStation.kind, EnvStation.ward_code, EnvStation.name)
    if kind:
        stmt = stmt.where(EnvStation.kind == kind)
    if ward:
        stmt = stmt.where(EnvStation.ward_code == ward)
    return list(session.scalars(stmt))


def hourly_rows(
    session: Session, lo: datetime, hi: datetime, station_id: int | None, ward: str | None
) -> list[AqiHourly]:
    stmt = select(AqiHourly).where(AqiHourly.hour_end > lo, AqiHourly.hour_end <= hi).order_by(AqiHourly.hour_end)
    if station_id is not None:
        stmt = stmt.where(AqiHourly.station_id == station_id)
    if ward:
        stmt = stmt.where(AqiHourly.ward_code == ward)
    return list(session.scalars(stmt))


def daily_rows(session: Session, start: date, end: date, station_id: int | None, ward: str | None) -> list[AqiDaily]:
    stmt = select(AqiDaily).where(AqiDaily.day >= start, AqiDaily.day <= end).order_by(AqiDaily.day)
    if station_id is not None:
        stmt = stmt.where(AqiDaily.station_id == station_id)
    if ward:
        stmt = stmt.where(AqiDaily.ward_code == ward)
    return list(session.scalars(stmt))


def worst_by_key(rows: Iterable[Any], key: str) -> list[tuple[Any, Any, int]]:
    """For each ``key`` value (an hour or a day), the row with the highest AQI and how many stations."""
    best: dict[Any, Any] = {}
    counts: dict[Any, int] = defaultdict(int)
    for row in rows:
        k = getattr(row, key)
        counts[k] += 1
        if k not in best or row.aqi > best[k].aqi:
            best[k] = row
    return [(k, best[k], counts[k]) for k in sorted(best)]


def good_air_share(session: Session, start: date, end: date, ward: str | None) -> float | None:
    """Share (%) of the days with a daily AQI whose worst station was "good" (VN_AQI ≤ 50)."""
    worst = worst_by_key(daily_rows(session, start, end, None, ward), "day")
    if not worst:
        return None
    good = sum(1 for _, row, _ in worst if row.aqi <= 50)
    return round(100.0 * good / len(worst), 2)


def prune_observations(db: Database, keep_days: int) -> int:
    """Delete raw air observations older than ``keep_days`` (the hourly means stay)."""
    cutoff = utcnow() - timedelta(days=keep_days)
    with db.session() as session:
        result = session.execute(delete(AirObservation).where(AirObservation.observed_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
