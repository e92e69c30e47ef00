"""Computing KPI values: measures resolved through the registry or imported values, with lineage.

A measure named in a formula is looked up first among the measures the modules registered
(``registry.measures``: the module that owns the data computes it), then among the imported
indicators (``data/indicators.toml``). The value of a KPI for a period is
``scale × numerator / denominator``; its lineage lists every input, where it came from
(the registering module or the import file and line of each source row), the formula and when
it was computed. Status compares the trend, projected to the target date, with the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core.db import utcnow
from ioc.core.events import Topic, publish
from ioc.core.registry import KpiMeasure

from .definitions import Indicator, KpiDefinition, load_definitions, load_indicators
from .models import IndicatorImport, IndicatorValue, KpiValue
from .periods import Period, last_periods, period_of, today

MAX_LINEAGE_ROWS = 50
HISTORY = 12
STATUSES = ("on_track", "at_risk", "off_track", "no_data")
NGSI_CONTEXT = [
    "https://raw.githubusercontent.com/smart-data-models/dataModel.KeyPerformanceIndicator/master/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
]
FREQUENCY = {"month": "monthly", "quarter": "quarterly", "year": "yearly"}
STANDING = {"on_track": "good", "at_risk": "fair", "off_track": "bad"}


class KpiUpdated(BaseModel):
    """Payload of ``kpi.updated``: the KPI as a normalized NGSI-LD KeyPerformanceIndicator entity."""

    kpi_id: str
    period: str
    entity: dict[str, Any]


KPI_UPDATED = Topic("kpi.updated", KpiUpdated, "A KPI's latest value changed (NGSI-LD KeyPerformanceIndicator)")


@dataclass
class Input:
    """One measure's value in a computation and where it came from."""

    measure: str
    value: float | None
    source: str  # registry | import | missing
    module: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    row_count: int = 0
    #: Where the module lists the rows behind a registered measure's value (its ``source_url``).
    source_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "value": self.value,
            "source": self.source,
            "module": self.module,
            "rows": self.rows,
            "row_count": self.row_count,
            "source_url": self.source_url,
        }


@dataclass
class Computed:
    """A KPI value for a period (city or a ward) with its lineage."""

    kpi: KpiDefinition
    period: Period
    ward: str | None
    value: float | None
    numerator: Input
    denominator: Input | None
    computed_at: datetime

    def lineage(self, rows_url: str = "") -> dict[str, Any]:
        """Where the value came from; ``rows_url`` defaults to the numerator's source rows."""
        return {
            "formula": self.kpi.formula,
            "period": {
                "kind": self.period.kind,
                "label": self.period.label,
                "start": self.period.start.isoformat(),
                "end": self.period.end.isoformat(),
            },
            "ward_code": self.ward,
            "inputs": [i.as_dict() for i in (self.numerator, self.denominator) if i is not None],
            "rows_url": rows_url or self.numerator.source_url or "",
            "computed_at": self.computed_at.isoformat(),
        }


class Resolver:
    """Evaluates named measures: registered by a module, else imported, else missing."""

    def __init__(self, measures: Mapping[str, KpiMeasure], indicators: Mapping[str, Indicator] | None = None) -> None:
        self.measures = measures
        self.indicators = indicators if indicators is not None else load_indicators()

    def evaluate(self, session: Session, name: str, start: date, end: date, ward: str | None) -> Input:
        registered = self.measures.get(name)
        if registered is not None:
            value = registered.fn(session, start, end, ward)
            return Input(
                name,
                None if value is None else float(value),
                "registry",
                name.split(".", 1)[0],
                source_url=registered.source_for(start, end, ward),
            )
        indicator = self.indicators.get(name)
        if indicator is not None:
            return imported(session, indicator, start, end, ward)
        return Input(name, None, "missing")

    def evaluate_many(self, session: Session, name: str, spans: list[Span], ward: str | None) -> list[Input]:
        """:meth:`evaluate` over several periods: a registered measure that offers ``many`` answers them
        with one grouped query, an imported indicator's rows are read once for all."""
        registered = self.measures.get(name)
        if registered is not None and registered.many is not None and len(spans) > 1:
            values = registered.many(session, spans, ward)
            module = name.split(".", 1)[0]
            return [
                Input(
                    name,
                    None if v is None else float(v),
                    "registry",
                    module,
                    source_url=registered.source_for(a, b, ward),
                )
                for (a, b), v in zip(spans, values, strict=True)
            ]
        indicator = self.indicators.get(name)
        if registered is None and indicator is not None:
            return imported_many(session, indicator, spans, ward)
        return [self.evaluate(session, name, start, end, ward) for start, end in spans]


def _row_doc(row: IndicatorValue, filename: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "import_id": row.import_id,
        "file": filename,
        "line": row.line,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "ward_code": row.ward_code or None,
        "value": row.value,
    }


Span = tuple[date, date]


def imported(session: Session, indicator: Indicator, start: date, end: date, ward: str | None) -> Input:
    """An imported indicator over ``[start, end]``: the latest value up to ``end`` (stocks) or the
    sum of the values reported inside the period (flows); for the city, the sum of the wards'
    values when no city value was imported and the indicator is additive."""
    return imported_many(session, indicator, [(start, end)], ward)[0]


def _chosen(
    indicator: Indicator, own: list[IndicatorValue], wards: list[IndicatorValue], span: Span
) -> list[IndicatorValue]:
    """The rows an imported indicator's value over ``span`` is made of (see :func:`imported`)."""
    start, end = span
    if indicator.aggregation == "last":
        upto = [r for r in own if r.period_end <= end]
        if upto:
            return [max(upto, key=lambda r: (r.period_end, r.period_start))]
        upto = [r for r in wards if r.period_end <= end]
        if not upto:
            return []
        last_end = max(r.period_end for r in upto)
        # several wards' rows for the same day but different period starts: keep the newest per ward
        newest: dict[str, IndicatorValue] = {}
        for r in upto:
            if r.period_end == last_end and (
                r.ward_code not in newest or r.period_start > newest[r.ward_code].period_start
            ):
                newest[r.ward_code] = r
        return [newest[w] for w in sorted(newest)]
    inside = sorted((r for r in own if r.period_start >= start and r.period_end <= end), key=lambda r: r.period_start)
    if inside:
        return inside
    return sorted(
        (r for r in wards if r.period_start >= start and r.period_end <= end),
        key=lambda r: (r.period_start, r.ward_code),
    )


def imported_many(session: Session, indicator: Indicator, spans: list[Span], ward: str | None) -> list[Input]:
    """:func:`imported` over several periods, reading the indicator's rows once (one query, plus one
    for the import files named in the lineage)."""
    if not spans:
        return []
    iv = IndicatorValue
    key = ward or ""
    fallback = ward is None and indicator.additive  # the city as the sum of its wards
    conds = [iv.measure == indicator.name, iv.period_end <= max(end for _, end in spans)]
    if indicator.aggregation != "last":
        conds.append(iv.period_start >= min(start for start, _ in spans))
    if not fallback:
        conds.append(iv.ward_code == key)
    rows = list(session.scalars(select(iv).where(*conds).order_by(iv.period_start, iv.ward_code, iv.id)))
    own = [r for r in rows if r.ward_code == key]
    wards = [r for r in rows if r.ward_code != ""] if fallback else []
    chosen = [_chosen(indicator, own, wards, span) for span in spans]
    import_ids = {r.import_id for picked in chosen for r in picked}
    files: dict[int, str] = {}
    if import_ids:
        found = session.execute(
            select(IndicatorImport.id, IndicatorImport.filename).where(IndicatorImport.id.in_(import_ids))
        )
        for import_id, filename in found:  # (a Result is not a mapping source for dict())
            files[import_id] = filename
    out: list[Input] = []
    for picked in chosen:
        if not picked:
            out.append(Input(indicator.name, None, "import"))
            continue
        docs = [_row_doc(r, files.get(r.import_id, "")) for r in picked[:MAX_LINEAGE_ROWS]]
        out.append(Input(indicator.name, float(sum(r.value for r in picked)), "import", None, docs, len(picked)))
    return out


def compute(
    session: Session, resolver: Resolver, kpi: KpiDefinition, period: Period, ward: str | None = None
) -> Computed:
    """The value of ``kpi`` over ``period`` (city, or ``ward``) with its inputs."""
    num = resolver.evaluate(session, kpi.numerator, period.start, period.end, ward)
    den = resolver.evaluate(session, kpi.denominator, period.start, period.end, ward) if kpi.denominator else None
    return _combine(kpi, period, ward, num, den)


def compute_many(
    session: Session, resolver: Resolver, kpi: KpiDefinition, periods: list[Period], ward: str | None = None
) -> list[Computed]:
    """:func:`compute` over several periods; imported inputs are read once for all of them."""
    if not periods:
        return []
    spans = [(p.start, p.end) for p in periods]
    nums = resolver.evaluate_many(session, kpi.numerator, spans, ward)
    dens: list[Input | None] = (
        list(resolver.evaluate_many(session, kpi.denominator, spans, ward)) if kpi.denominator else [None] * len(spans)
    )
    return [_combine(kpi, p, ward, n, d) for p, n, d in zip(periods, nums, dens, strict=True)]


def _combine(kpi: KpiDefinition, period: Period, ward: str | None, num: Input, den: Input | None) -> Computed:
    value: float | None = None
    if num.value is not None:
        if den is None:
            value = kpi.scale * num.value
        elif den.value:
            value = kpi.scale * num.value / den.value
    return Computed(kpi, period, ward, None if value is None else round(value, 4), num, den, utcnow())


# --------------------------------------------------------------------------- trend and status


@dataclass
class Trend:
    """The least-squares trend of a series and where it leads by the deadline."""

    slope_per_month: float | None
    projected: float | None
    deadline: date
    points: int


def trend(points: list[tuple[Period, float]], kpi: KpiDefinition, on: date | None = None) -> Trend:
    """Fit a line through the values (x = end of each period) and project it to the deadline.

    The deadline is the target date (2025-12-31), or — the resolution's targets being the floor
    the city keeps after 2025 — the end of the current year once that date has passed.
    """
    on = on or today()
    deadline = max(kpi.target_date, date(on.year, 12, 31))
    if not points:
        return Trend(None, None, deadline, 0)
    xs = [float(p.end.toordinal()) for p, _ in points]
    ys = [v for _, v in points]
    if len(points) == 1:
        return Trend(None, ys[0], deadline, 1)
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    projected = my + slope * (deadline.toordinal() - mx)
    return Trend(round(slope * 30.4375, 4), round(projected, 4), deadline, len(points))


def status_of(kpi: KpiDefinition, latest: float | None, t: Trend) -> str:
    """on_track: the target is met and the trend keeps it, or the trend reaches it by the deadline;
    at_risk: met now but the trend falls below, or the projection misses by at most the tolerance
    (10 % of the target by default); off_track: otherwise; no_data without a value."""
    if latest is None:
        return "no_data"
    projected = t.projected if t.projected is not None else latest
    if kpi.meets(projected):
        return "on_track"
    if kpi.meets(latest):
        return "at_risk"
    gap = abs(kpi.target - projected)
    return "at_risk" if gap <= kpi.tolerance * abs(kpi.target) else "off_track"


# --------------------------------------------------------------------------- snapshots


def stored_series(session: Session, kpi: KpiDefinition, since: date, ward: str = "") -> dict[date, KpiValue]:
    rows = session.scalars(
        select(KpiValue).where(KpiValue.kpi_id == kpi.id, KpiValue.ward_code == ward, KpiValue.period_start >= since)
    )
    return {r.period_start: r for r in rows if r.period == kpi.period}


def rows_url(kpi: KpiDefinition, period: Period, ward: str | None) -> str:
    if not kpi.rows_url:
        return ""
    url = kpi.rows_url.format(start=period.start.isoformat(), end=period.end.isoformat())
    return url + (f"&ward_code={ward}" if ward and "dossiers" in url else "")


def store(session: Session, c: Computed, status: str) -> tuple[KpiValue, bool]:
    """Write (or update) the stored value of ``c``; returns the row and whether it changed."""
    ward = c.ward or ""
    row = session.scalar(
        select(KpiValue).where(
            KpiValue.kpi_id == c.kpi.id, KpiValue.period_start == c.period.start, KpiValue.ward_code == ward
        )
    )
    lineage = c.lineage(rows_url(c.kpi, c.period, c.ward))
    if row is None:
        row = KpiValue(kpi_id=c.kpi.id, period=c.period.kind, period_start=c.period.start, ward_code=ward)
        session.add(row)
        changed = True
    else:
        changed = row.value != c.value or row.status != status
    row.period_end = c.period.end
    row.value = c.value
    row.numerator = c.numerator.value
    row.denominator = c.denominator.value if c.denominator else None
    row.status = status
    row.lineage = lineage
    row.computed_at = c.computed_at
    session.flush()
    return row, changed


def refresh(
    session: Session,
    resolver: Resolver,
    kpis: list[KpiDefinition] | None = None,
    *,
    history: int = HISTORY,
    recompute_closed: int = 1,
    until: date | None = None,
    force: bool = False,
) -> int:
    """Store the values of the last ``history`` periods of each KPI; returns how many changed.

    The current period and the ``recompute_closed`` periods before it are always recomputed
    (late data); older ones only when missing or empty (or when ``force``). A change of the
    latest value publishes ``kpi.updated`` with the NGSI-LD entity.
    """
    changed_total = 0
    for kpi in kpis or list(load_definitions().values()):
        periods = last_periods(kpi.period, history, until)
        existing = stored_series(session, kpi, periods[0].start)
        points: list[tuple[Period, float]] = []
        latest_row: KpiValue | None = None
        latest_changed = False
        due = [
            p
            for index, p in enumerate(periods)
            if force
            or index >= len(periods) - 1 - recompute_closed
            or existing.get(p.start) is None
            or existing[p.start].value is None
        ]
        computed = dict(zip(due, compute_many(session, resolver, kpi, due), strict=True))
        for period in periods:
            row = existing.get(period.start)
            c = computed.get(period)
            if c is not None:
                if c.value is not None:
                    points.append((period, c.value))
                status = status_of(kpi, c.value, trend(points, kpi, until))
                row, changed = store(session, c, status)
                changed_total += changed
                if row.value is not None:
                    latest_row, latest_changed = row, changed
            elif row is not None and row.value is not None:
                points.append((period, row.value))
                latest_row, latest_changed = row, False
        if latest_row is not None and latest_changed:
            entity = ngsi_entity(kpi, latest_row)
            publish(session, KPI_UPDATED, KpiUpdated(kpi_id=kpi.id, period=period_label(latest_row), entity=entity))
    return changed_total


def period_label(row: KpiValue) -> str:
    return Period(row.period_start, row.period_end, row.period).label


# --------------------------------------------------------------------------- views


def series(
    session: Session, resolver: Resolver, kpi: KpiDefinition, *, history: int = HISTORY, live: bool = True
) -> list[dict[str, Any]]:
    """The KPI over its last ``history`` periods: stored values, the current period computed live
    (when ``live``), and any missing past period computed on the fly (not stored)."""
    periods = last_periods(kpi.period, history)
    stored = stored_series(session, kpi, periods[0].start)
    due = [p for i, p in enumerate(periods) if (live and i == len(periods) - 1) or p.start not in stored]
    computed = dict(zip(due, compute_many(session, resolver, kpi, due), strict=True))
    out: list[dict[str, Any]] = []
    for period in periods:
        row = stored.get(period.start)
        c = computed.get(period)
        if c is not None or row is None:
            c = c or compute(session, resolver, kpi, period)
            out.append(
                {
                    "period": period.label,
                    "start": period.start,
                    "end": period.end,
                    "value": c.value,
                    "computed_at": c.computed_at,
                    "stored": False,
                    "lineage": c.lineage(rows_url(kpi, period, None)),
                }
            )
        else:
            out.append(
                {
                    "period": period.label,
                    "start": period.start,
                    "end": period.end,
                    "value": row.value,
                    "computed_at": row.computed_at,
                    "stored": True,
                    "lineage": row.lineage,
                }
            )
    return out


def summarize(kpi: KpiDefinition, points: list[dict[str, Any]], on: date | None = None) -> dict[str, Any]:
    """Latest value, gap to target, trend and status of a series from :func:`series`."""
    valued = [(Period(p["start"], p["end"], kpi.period), p["value"]) for p in points if p["value"] is not None]
    latest = valued[-1] if valued else None
    t = trend(valued, kpi, on)
    value = latest[1] if latest else None
    status = status_of(kpi, value, t)
    return {
        "value": value,
        "period": latest[0].label if latest else None,
        "gap": None if value is None else round(kpi.target - value if kpi.direction == "up" else value - kpi.target, 4),
        "trend": {
            "slope_per_month": t.slope_per_month,
            "projected": t.projected,
            "deadline": t.deadline.isoformat(),
            "points": t.points,
        },
        "status": status,
    }


def ngsi_entity(kpi: KpiDefinition, row: KpiValue) -> dict[str, Any]:
    """The KPI as a normalized NGSI-LD ``KeyPerformanceIndicator`` entity (FIWARE Smart Data Models)."""

    def prop(value: Any, **extra: Any) -> dict[str, Any]:
        return {"type": "Property", "value": value, **extra}

    observed = row.computed_at.isoformat().replace("+00:00", "Z")
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:KeyPerformanceIndicator:vinh:{kpi.id}",
        "type": "KeyPerformanceIndicator",
        "name": prop(kpi.name_vi),
        "alternateName": prop(kpi.name_en),
        "description": prop(kpi.description_vi),
        "category": prop(["quantitative"]),
        "kpiValue": prop(row.value, observedAt=observed, unitCode="P1" if kpi.unit == "%" else kpi.unit),
        "calculationPeriod": prop({"from": row.period_start.isoformat(), "to": row.period_end.isoformat()}),
        "calculationFrequency": prop(FREQUENCY[kpi.period]),
        "calculationMethod": prop("automatic"),
        "calculationFormula": prop(kpi.formula),
        "dateModified": prop({"@type": "DateTime", "@value": observed}),
        "organization": prop({"name": kpi.owner}),
        "area": prop("Vinh, Nghệ An"),
        "target": prop(kpi.target, unitCode="P1" if kpi.unit == "%" else kpi.unit),
        "@context": NGSI_CONTEXT,
    }
    if row.status in STANDING:
        entity["currentStanding"] = prop(STANDING[row.status])
    return entity


def period_for(kpi: KpiDefinition, day: date) -> Period:
    return period_of(day, kpi.period)
