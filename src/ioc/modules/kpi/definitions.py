"""KPI definitions and the catalogue of importable indicators, read from ``data/`` (TOML)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
PERIODS = ("month", "quarter", "year")
AREAS = ("digital-government", "health", "education", "security-traffic", "tourism", "urban-land", "environment")


@dataclass(frozen=True)
class KpiDefinition:
    """One KPI: what it measures, its target, and its formula over named measures."""

    id: str
    number: int | None
    area: str
    name_vi: str
    name_en: str
    description_vi: str
    target: float
    comparison: str  # ">=" | ">" (direction up) ; "<=" | "<" (direction down)
    unit: str
    direction: str
    period: str
    owner: str
    reference: str
    public: bool
    target_date: date
    numerator: str
    denominator: str | None
    scale: float
    rows_url: str
    tolerance: float

    @property
    def formula(self) -> str:
        if self.denominator:
            return f"{self.scale:g} × {self.numerator} / {self.denominator}"
        return self.numerator if self.scale == 1 else f"{self.scale:g} × {self.numerator}"

    @property
    def measures(self) -> tuple[str, ...]:
        return (self.numerator, self.denominator) if self.denominator else (self.numerator,)

    def meets(self, value: float) -> bool:
        return {
            ">=": value >= self.target,
            ">": value > self.target,
            "<=": value <= self.target,
            "<": value < self.target,
        }[self.comparison]


@dataclass(frozen=True)
class Indicator:
    """An importable indicator (a measure the IOC does not compute itself)."""

    name: str
    name_vi: str
    name_en: str
    unit: str
    aggregation: str  # last | sum
    additive: bool


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{where}: '{key}' missing or of the wrong type")
    return value


def parse_definition(doc: dict[str, Any], where: str) -> KpiDefinition:
    """A definition from its TOML document; raises ValueError naming what is wrong."""
    formula = _need(doc, "formula", dict, where)
    source = doc.get("source", {})
    comparison = doc.get("comparison", ">=")
    direction = doc.get("direction", "up")
    if comparison not in (">=", ">", "<=", "<") or direction not in ("up", "down"):
        raise ValueError(f"{where}: bad comparison/direction")
    if (direction == "up") != (comparison in (">=", ">")):
        raise ValueError(f"{where}: comparison {comparison} does not fit direction {direction}")
    period = doc.get("period", "month")
    if period not in PERIODS:
        raise ValueError(f"{where}: period must be one of {PERIODS}")
    area = _need(doc, "area", str, where)
    if area not in AREAS:
        raise ValueError(f"{where}: area must be one of {AREAS}")
    target = _need(doc, "target", (int, float), where)
    return KpiDefinition(
        id=_need(doc, "id", str, where),
        number=doc.get("number"),
        area=area,
        name_vi=_need(doc, "name_vi", str, where),
        name_en=_need(doc, "name_en", str, where),
        description_vi=doc.get("description_vi", ""),
        target=float(target),
        comparison=comparison,
        unit=doc.get("unit", "%"),
        direction=direction,
        period=period,
        owner=doc.get("owner", ""),
        reference=doc.get("reference", ""),
        public=bool(doc.get("public", False)),
        target_date=doc.get("target_date", date(2025, 12, 31)),
        numerator=_need(formula, "numerator", str, where + " [formula]"),
        denominator=formula.get("denominator") or None,
        scale=float(formula.get("scale", 100.0 if formula.get("denominator") else 1.0)),
        rows_url=str(source.get("rows_url", "")),
        tolerance=float(doc.get("tolerance", 0.1)),
    )


@cache
def load_definitions(directory: Path = DATA / "kpis") -> dict[str, KpiDefinition]:
    """Every KPI definition of ``directory``, by id, ordered by (number, id)."""
    found: list[KpiDefinition] = []
    for path in sorted(directory.glob("*.toml")):
        with path.open("rb") as fh:
            definition = parse_definition(tomllib.load(fh), path.name)
        if definition.id != path.stem:
            raise ValueError(f"{path.name}: id '{definition.id}' must match the file name")
        found.append(definition)
    found.sort(key=lambda d: (d.number or 999, d.id))
    return {d.id: d for d in found}


@cache
def load_indicators(path: Path = DATA / "indicators.toml") -> dict[str, Indicator]:
    """The catalogue of importable indicators, by measure name."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    out = {}
    for name, item in doc.get("indicators", {}).items():
        if item.get("aggregation") not in ("last", "sum"):
            raise ValueError(f"indicator {name}: aggregation must be 'last' or 'sum'")
        out[name] = Indicator(
            name,
            item["name_vi"],
            item["name_en"],
            item.get("unit", ""),
            item["aggregation"],
            bool(item.get("additive", True)),
        )
    return out
