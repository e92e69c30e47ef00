"""KPI measures of the environment module (read by the kpi module through the registry).

* ``environment.incidents_total`` and ``environment.incidents_detected_by_it``: KPI 13
  ``pollution-detected-by-it`` divides them — key pollution incidents detected in the period
  (not merged, not dismissed), and among them those first detected through IT. Which detection
  sources count as IT is a setting (``IOC_ENVIRONMENT__IT_SOURCES``); by default the KPI's own
  definition: automatic monitoring (sensor), cameras and field reports through the app (citizen).
* ``environment.good_air_days_share``: KPI ``good-air-days`` — share (%) of the days with a
  daily VN_AQI on which the worst station of the city (or of the ward) was "good" (≤ 50).

A measure is None when there is nothing to count in the period (no incident, no daily AQI).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from ioc.core.registry import KpiMeasure

from . import incidents, service
from .settings import EnvironmentSettings

PREFIX = "/api/v1/environment"


def measures(settings: EnvironmentSettings) -> list[KpiMeasure]:
    it_sources = tuple(settings.it_sources)

    def total(session: Session, start: date, end: date, ward: str | None) -> float | None:
        n = incidents.count_key(session, start, end, ward)
        return float(n) if n else None

    def by_it(session: Session, start: date, end: date, ward: str | None) -> float | None:
        if not incidents.count_key(session, start, end, ward):
            return None
        return float(incidents.count_key(session, start, end, ward, it_sources))

    def good_air(session: Session, start: date, end: date, ward: str | None) -> float | None:
        return service.good_air_share(session, start, end, ward)

    rows = PREFIX + "/incidents?key=true&from={start}&to={end}&ward={ward}"
    return [
        KpiMeasure("environment.incidents_total", total, unit="sự cố", source_url=rows),
        KpiMeasure("environment.incidents_detected_by_it", by_it, unit="sự cố", source_url=rows + "&it=true"),
        KpiMeasure(
            "environment.good_air_days_share",
            good_air,
            unit="%",
            source_url=PREFIX + "/air/daily?from={start}&to={end}&ward={ward}",
        ),
    ]
