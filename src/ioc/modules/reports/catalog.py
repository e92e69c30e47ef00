"""The city's report categories, routing table (category × ward → agency) and SLA tiers.

All three are city data in ``data/`` (``categories.json``, ``routing.csv``, ``sla.json``), read
once and checked on load: every category has a tier that exists and an agency in each of the
six wards, so a report can always be routed.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from ioc.core.admin_units import CITY_WARD_CODES

from .calendar import WorkingCalendar


@dataclass(frozen=True)
class Category:
    """A kind of problem citizens report (an Open311 service)."""

    code: str
    name: str
    name_en: str
    group: str
    description: str
    description_en: str
    tier: str
    private: bool
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class SlaTier:
    """Deadlines of a tier: acceptance in working hours, resolution in working hours or days."""

    code: str
    name: str
    name_en: str
    accept_hours: float
    resolve_hours: float | None = None
    resolve_days: float | None = None

    def accept_due(self, cal: WorkingCalendar, start: datetime) -> datetime:
        return min(cal.add_hours(start, self.accept_hours), self.resolve_due(cal, start))

    def resolve_due(self, cal: WorkingCalendar, start: datetime) -> datetime:
        if self.resolve_hours is not None:
            return cal.add_hours(start, self.resolve_hours)
        return cal.add_days(start, self.resolve_days or 0)

    def describe(self, lang: str = "vi") -> str:
        """ "Tiếp nhận trong 8 giờ làm việc, xử lý trong 3 ngày làm việc"."""
        if lang == "en":
            resolve = (
                f"{_num(self.resolve_hours)} working hours"
                if self.resolve_hours is not None
                else f"{_num(self.resolve_days or 0)} working days"
            )
            return f"Accepted within {_num(self.accept_hours)} working hours, resolved within {resolve}."
        resolve = (
            f"{_num(self.resolve_hours)} giờ làm việc"
            if self.resolve_hours is not None
            else f"{_num(self.resolve_days or 0)} ngày làm việc"
        )
        return f"Tiếp nhận trong {_num(self.accept_hours)} giờ làm việc, xử lý trong {resolve}."


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def categories() -> dict[str, Category]:
    """Categories by code, in the order of the data file."""
    data: dict[str, Any] = json.loads(_read("categories.json"))
    tiers = sla_tiers()
    out: dict[str, Category] = {}
    for item in data["categories"]:
        cat = Category(
            code=item["code"],
            name=item["name"],
            name_en=item["name_en"],
            group=item["group"],
            description=item["description"],
            description_en=item["description_en"],
            tier=item["tier"],
            private=bool(item["private"]),
            keywords=tuple(item["keywords"]),
        )
        if cat.tier not in tiers:
            raise ValueError(f"category {cat.code}: unknown SLA tier {cat.tier!r}")
        out[cat.code] = cat
    return out


@functools.cache
def sla_tiers() -> dict[str, SlaTier]:
    data: dict[str, Any] = json.loads(_read("sla.json"))
    return {
        code: SlaTier(
            code=code,
            name=t["name"],
            name_en=t["name_en"],
            accept_hours=float(t["accept_hours"]),
            resolve_hours=float(t["resolve_hours"]) if "resolve_hours" in t else None,
            resolve_days=float(t["resolve_days"]) if "resolve_days" in t else None,
        )
        for code, t in data["tiers"].items()
    }


@functools.cache
def nearly_due_fraction() -> float:
    value = float(json.loads(_read("sla.json")).get("nearly_due_fraction", 0.75))
    return min(max(value, 0.0), 1.0)


@functools.cache
def routing_table() -> dict[tuple[str, str], str]:
    """(category, ward code) → agency id; complete for every category and city ward."""
    table: dict[tuple[str, str], str] = {}
    for row in csv.DictReader(io.StringIO(_read("routing.csv"))):
        table[(row["category"], row["ward_code"])] = row["agency_id"]
    for code in categories():
        for ward in CITY_WARD_CODES:
            if (code, ward) not in table:
                raise ValueError(f"routing.csv: no agency for category {code} in ward {ward}")
    return table


def route(category: str, ward_code: str) -> str:
    """The agency responsible for ``category`` in ``ward_code``."""
    return routing_table()[(category, ward_code)]
