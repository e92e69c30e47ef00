"""Durable consumers: NGSI-LD entity changes in, indices, levels and incidents out.

* ``environment.context`` reads ``context.entity.created`` and ``context.entity.updated``:
  AirQualityObserved (pm25, pm10, o3, no2, so2, co with ``unitCode``), WaterQualityObserved,
  FloodMonitoring (``currentLevel``, or ``waterLevel``/``level``/``height``/``measuredValue``) and
  WeatherObserved (``precipitation``). The module's own write-backs come back as updates that carry
  none of these attributes, so they are ignored.
* ``environment.reports`` reads ``report.created``: a citizen report in a pollution category
  (``data/incidents.json``) opens an incident detected by a citizen.

Both run once per event across workers, in the event's transaction (at least once: every write
here is idempotent).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core.events import Event

from . import flood, incidents, service
from .models import Incident
from .service import Runtime
from .stations import already_placed, ensure_station
from .topics import EntityChange, ReportEvent

log = logging.getLogger("ioc.environment")

DATA = Path(__file__).resolve().parent / "data"

#: NGSI-LD attribute names of the six pollutants, with common variants.
POLLUTANT_NAMES = {
    "pm25": "pm25",
    "pm2_5": "pm25",
    "pm2.5": "pm25",
    "pm10": "pm10",
    "o3": "o3",
    "no2": "no2",
    "so2": "so2",
    "co": "co",
}
LEVEL_NAMES = ("currentLevel", "waterLevel", "level", "height", "measuredValue", "riverLevel")
RAIN_NAMES = ("precipitation", "rainfall", "precipitationAmount")
DEFAULT_UNIT = "GQ"  # µg/m³, UN/CEFACT


@functools.cache
def incident_config() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "incidents.json").read_text(encoding="utf-8"))
    return data


def _instances(attr: Any) -> Iterator[dict[str, Any]]:
    """The instances of a normalized attribute (a list when several datasetIds changed)."""
    if isinstance(attr, list):
        for item in attr:
            if isinstance(item, dict):
                yield item
    elif isinstance(attr, dict):
        yield attr


def _default_instance(attr: Any) -> dict[str, Any] | None:
    """The default instance (no datasetId), else the first."""
    items = list(_instances(attr))
    for item in items:
        if "datasetId" not in item:
            return item
    return items[0] if items else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def observed_at(change: EntityChange, inst: dict[str, Any] | None) -> datetime:
    """When a value was observed: its ``observedAt``, else the entity's ``dateObserved``, else the change."""
    if inst is not None and (t := _time(inst.get("observedAt"))) is not None:
        return t
    date_observed = _default_instance(change.attributes.get("dateObserved"))
    if date_observed is not None:
        value = date_observed.get("value")
        if isinstance(value, dict):
            value = value.get("@value")
        if (t := _time(value)) is not None:
            return t
    return change.at


def _location(change: EntityChange) -> tuple[float | None, float | None]:
    inst = _default_instance(change.attributes.get("location"))
    if inst is None:
        return None, None
    geom = inst.get("value")
    if isinstance(geom, dict) and geom.get("type") == "Point":
        coords = geom.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2:
            lon, lat = _number(coords[0]), _number(coords[1])
            if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
                return lat, lon
    return None, None


def _name(change: EntityChange) -> str | None:
    inst = _default_instance(change.attributes.get("name"))
    value = inst.get("value") if inst else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _kind(change: EntityChange) -> str | None:
    types = set(change.type) | {t.rsplit("/", 1)[-1] for t in change.type_iris}
    if "AirQualityObserved" in types:
        return "air"
    if "WaterQualityObserved" in types:
        return "water"
    if "FloodMonitoring" in types or "WaterObserved" in types:
        return "gauge"
    if "WeatherObserved" in types:
        return "rain"
    return None


# --------------------------------------------------------------------------- handlers


def handle_entity(session: Session, rt: Runtime, change: EntityChange) -> None:
    """Route one entity change to the air, water, gauge or rain handling."""
    kind = _kind(change)
    if kind is None:
        return
    if "location" in change.attributes:  # placed (e.g. a device registered) before, or with, its readings
        lat, lon = _location(change)
        moved = (
            lat is None or lon is None or not already_placed(session, change.tenant, change.id, _name(change), lat, lon)
        )
        if moved:
            _station(session, rt, change, kind, None)
    if kind == "air":
        _air(session, rt, change)
    elif kind == "water":
        _water(session, rt, change)
    elif kind == "gauge":
        _gauge(session, rt, change)
    else:
        _rain(session, rt, change)


def _station(session: Session, rt: Runtime, change: EntityChange, kind: str, seen: datetime | None) -> Any:
    lat, lon = _location(change)
    return ensure_station(
        session,
        tenant=change.tenant,
        entity_id=change.id,
        kind=kind,
        seen_at=seen,
        locator=rt.locator(session),
        name=_name(change),
        lat=lat,
        lon=lon,
    )


def _air(session: Session, rt: Runtime, change: EntityChange) -> None:
    from . import units

    readings: list[tuple[str, datetime, float]] = []
    for name, attr in change.attributes.items():
        pollutant = POLLUTANT_NAMES.get(name.lower())
        if pollutant is None:
            continue
        for inst in _instances(attr):
            value = _number(inst.get("value"))
            if value is None or value < 0:
                continue
            unit = inst.get("unitCode") or DEFAULT_UNIT
            try:
                ugm3 = units.to_ugm3(pollutant, value, str(unit))
            except (ValueError, KeyError) as exc:
                log.warning("air reading of %s skipped: %s", change.id, exc)
                continue
            readings.append((pollutant, observed_at(change, inst), ugm3))
    if not readings:
        return
    station = _station(session, rt, change, "air", max(r[1] for r in readings))
    hours = service.record_air(session, station, readings)
    if hours:
        service.recompute_air(session, rt, station, hours)


def _water(session: Session, rt: Runtime, change: EntityChange) -> None:
    values: dict[str, float] = {}
    when: datetime | None = None
    for name, attr in change.attributes.items():
        parameter = service.water_parameter(name)
        if parameter is None:
            continue
        inst = _default_instance(attr)
        value = _number(inst.get("value")) if inst else None
        if value is None:
            continue
        values[parameter] = value
        when = observed_at(change, inst) if when is None else when
    if not values or when is None:
        return
    station = _station(session, rt, change, "water", when)
    try:
        service.record_water(session, rt, station, values, when)
    except ValueError as exc:  # a value the index refuses (pH 20, negative BOD): logged, never retried forever
        log.warning("water sample of %s at %s skipped: %s", change.id, when.isoformat(), exc)


def _gauge(session: Session, rt: Runtime, change: EntityChange) -> None:
    for name in LEVEL_NAMES:
        inst = _default_instance(change.attributes.get(name))
        value = _number(inst.get("value")) if inst else None
        if value is None:
            continue
        at = observed_at(change, inst)
        station = _station(session, rt, change, "gauge", at)
        cfg = flood.config()
        gauge = cfg.for_entity(change.id)
        if gauge is not None:
            flood.apply_config(station, gauge, cfg, rt.locator(session))
        elif station.level1_m is None:
            _thresholds_from_entity(station, change)
        flood.record_level(session, station, value, at)
        return


def _thresholds_from_entity(station: Any, change: EntityChange) -> None:
    """A gauge not in the configuration: Smart Data Models ``alertLevel`` is level I, ``dangerLevel`` level III."""
    alert = _default_instance(change.attributes.get("alertLevel"))
    danger = _default_instance(change.attributes.get("dangerLevel"))
    low = _number(alert.get("value")) if alert else None
    high = _number(danger.get("value")) if danger else None
    if low is not None and high is not None and high > low:
        station.level1_m, station.level2_m, station.level3_m = low, (low + high) / 2, high
    elif low is not None:
        station.level1_m = low


def _rain(session: Session, rt: Runtime, change: EntityChange) -> None:
    for name in RAIN_NAMES:
        for inst in _instances(change.attributes.get(name)):
            value = _number(inst.get("value"))
            if value is None or value < 0:
                continue
            at = observed_at(change, inst)
            station = _station(session, rt, change, "rain", at)
            flood.record_rain(session, station, value, at)
            return


def handle_report(session: Session, rt: Runtime, report: ReportEvent) -> Incident | None:
    """A citizen report in a pollution category opens an incident (once per report)."""
    kinds: dict[str, str] = incident_config().get("report_categories", {})
    kind = kinds.get(report.category)
    if kind is None:
        return None
    existing = session.scalar(select(Incident).where(Incident.report_id == report.id))
    if existing is not None:
        return existing
    names: dict[str, str] = incident_config().get("category_names", {})
    return incidents.open_incident(
        session,
        kind=kind,
        source="citizen",
        title=f"Phản ánh của người dân: {names.get(report.category, report.category)} (#{report.id})",
        agency_id=rt.settings.incident_agency,
        detected_at=report.created_at,
        key=False,  # a citizen's report becomes a key incident when an officer confirms it
        ward_code=report.ward_code,
        lat=report.lat,
        lon=report.lon,
        report_id=report.id,
        details={"report_category": report.category},
    )


def context_consumer(rt: Runtime) -> Callable[[Session, Event], None]:
    def handle(session: Session, event: Event) -> None:
        try:
            change = EntityChange.model_validate(event.payload)
        except ValidationError:
            log.warning("environment: malformed entity event %s skipped", event.id)
            return
        handle_entity(session, rt, change)

    return handle


def reports_consumer(rt: Runtime) -> Callable[[Session, Event], None]:
    def handle(session: Session, event: Event) -> None:
        try:
            report = ReportEvent.model_validate(event.payload)
        except ValidationError:
            log.warning("environment: malformed report event %s skipped", event.id)
            return
        handle_report(session, rt, report)

    return handle
