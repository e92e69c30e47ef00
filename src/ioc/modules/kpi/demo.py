"""Demo indicator imports: a year of monthly (or quarterly) values with a trend, city-wide or per ward."""

from __future__ import annotations

import csv
import io
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .compute import Resolver, refresh
from .definitions import load_definitions, load_indicators
from .imports import COLUMNS, import_file
from .models import IndicatorImport
from .periods import last_periods

DEMO_FILE = "demo-chi-tieu-vinh-2026.csv"
WARD_POPULATION = {
    "16681": 140_000,
    "16690": 120_000,
    "16702": 90_000,
    "16708": 80_000,
    "16732": 70_000,
    "17920": 60_000,
}
#: measure -> (period kind, value at the start of the year, value at its end) for the city
CITY: dict[str, tuple[str, float, float]] = {
    "opendata.urban_info_total": ("month", 120, 120),
    "opendata.urban_info_published": ("month", 70, 101),
    "security.systems_total": ("quarter", 40, 42),
    "security.systems_approved": ("quarter", 29, 35),
    "staff.officials_total": ("quarter", 2400, 2410),
    "staff.officials_skilled": ("quarter", 1900, 2260),
    "education.schools_total": ("quarter", 180, 181),
    "education.schools_digital": ("quarter", 118, 149),
    "education.classrooms_total": ("quarter", 3600, 3640),
    "education.classrooms_multimedia": ("quarter", 500, 780),
    "cameras.points_total": ("month", 250, 250),
    "cameras.points_covered": ("month", 150, 206),
    "tourism.sites_total": ("month", 90, 92),
    "tourism.sites_in_app": ("month", 49, 67),
    "urban.services_total": ("month", 24, 24),
    "urban.services_online": ("month", 12, 17),
}


def demo_csv(today: date | None = None) -> bytes:
    """The demo import file: 13 months of values, ward rows for health, monthly incidents."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    months = last_periods("month", 13, today)[:-1]
    for measure, (kind, first, last) in CITY.items():
        periods = last_periods(kind, 5 if kind == "quarter" else 13, today)[:-1]
        for i, p in enumerate(periods):
            value = round(first + (last - first) * i / max(len(periods) - 1, 1))
            writer.writerow([measure, p.label, "", value, "Số liệu mẫu (demo)"])
    for i, p in enumerate(months):
        share = 0.58 + 0.21 * i / (len(months) - 1)
        for k, (ward, people) in enumerate(WARD_POPULATION.items()):
            writer.writerow(["population.total", p.label, ward, people + 40 * i, "Dân số mẫu"])
            writer.writerow(
                ["health.ehr_citizens", p.label, ward, round(people * (share + 0.02 * (k - 2))), "Sở Y tế (mẫu)"]
            )
        total = 8 + (i * 5) % 7
        detected = round(total * (0.38 + 0.25 * i / (len(months) - 1)))
        writer.writerow(["environment.incidents_total", p.label, "", total, "Sở NN&MT (mẫu)"])
        writer.writerow(
            ["environment.incidents_detected_by_it", p.label, "", detected, "Quan trắc tự động, phản ánh, camera"]
        )
    return out.getvalue().encode()


def seed_demo(session: Session) -> int:
    """Import the demo indicators once and store the values of the KPIs they feed (idempotent)."""
    if session.scalar(select(func.count()).select_from(IndicatorImport).where(IndicatorImport.filename == DEMO_FILE)):
        return 0
    outcome = import_file(session, None, DEMO_FILE, demo_csv(), source="demo")
    imported = set(load_indicators())
    own = [k for k in load_definitions().values() if set(k.measures) <= imported]
    refresh(session, Resolver({}), own, force=True)
    return int(outcome["inserted"])
