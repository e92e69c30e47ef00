"""KPI definitions, every formula, imported indicators (stocks, flows, wards), trend and status."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.core.registry import KpiMeasure
from ioc.modules.kpi.compute import Resolver, compute, compute_many, status_of, trend
from ioc.modules.kpi.definitions import load_definitions, load_indicators
from ioc.modules.kpi.imports import apply
from ioc.modules.kpi.periods import Period, parse_period, period_of

THIRTEEN = [
    "online-services-partial",
    "online-services-full",
    "dossiers-online",
    "urban-info-public",
    "infrastructure-security",
    "staff-digital-skills",
    "ehr-coverage",
    "schools-digital",
    "multimedia-classrooms",
    "camera-coverage",
    "tourism-in-app",
    "urban-services-online",
    "pollution-detected-by-it",
]
TARGETS = [85, 40, 50, 80, 85, 100, 80, 80, 20, 80, 70, 70, 50]
JUNE = period_of(date(2026, 6, 15), "month")


def test_the_thirteen_targets_are_defined() -> None:
    defs = load_definitions()
    numbered = [d for d in defs.values() if d.number]
    assert [d.id for d in numbered] == THIRTEEN
    assert [d.target for d in numbered] == TARGETS
    assert defs["pollution-detected-by-it"].comparison == ">"  # "trên 50%"
    assert all(d.reference and d.owner and d.name_vi and d.name_en for d in defs.values())
    assert not defs["infrastructure-security"].public and defs["dossiers-online"].public
    indicators = load_indicators()
    services = {
        "services.procedures_online_partial",
        "services.procedures_online_full",
        "services.procedures_total",
        "services.dossiers_online_service",
        "services.dossiers_received",
    }
    for d in numbered:
        assert set(d.measures) <= services | set(indicators), d.id


def constant(value: float | None) -> Any:
    def fn(session: Session, start: date, end: date, ward: str | None) -> float | None:
        return value

    return fn


@pytest.mark.parametrize("kpi_id", sorted(load_definitions()))
def test_every_formula(db: Database, kpi_id: str) -> None:
    kpi = load_definitions()[kpi_id]
    measures = {kpi.numerator: KpiMeasure(kpi.numerator, constant(30.0))}
    if kpi.denominator:
        measures[kpi.denominator] = KpiMeasure(kpi.denominator, constant(40.0))
    with db.session() as s:
        c = compute(s, Resolver(measures), kpi, JUNE)
        zero = compute(
            s,
            Resolver({**measures, **({kpi.denominator: KpiMeasure("d", constant(0.0))} if kpi.denominator else {})}),
            kpi,
            JUNE,
        )
        missing = compute(s, Resolver({}, {}), kpi, JUNE)
    assert c.value == (75.0 if kpi.denominator else 30.0)
    assert c.numerator.source == "registry" and c.numerator.value == 30.0
    assert (zero.value is None) == bool(kpi.denominator)
    assert missing.value is None and missing.numerator.source == "missing"


def rows(*items: tuple[str, str, str, float]) -> list[tuple[int, dict[str, Any]]]:
    return [(i + 2, {"measure": m, "period": p, "ward_code": w, "value": v}) for i, (m, p, w, v) in enumerate(items)]


def test_imported_stocks_flows_and_wards(db: Database) -> None:
    with db.session() as s:
        apply(
            s,
            None,
            rows(
                ("health.ehr_citizens", "2026-04", "16681", 100.0),
                ("health.ehr_citizens", "2026-05", "16681", 110.0),
                ("health.ehr_citizens", "2026-05", "16690", 50.0),
                ("population.total", "2026", "", 400.0),
                ("environment.incidents_total", "2026-06", "", 4.0),
                ("environment.incidents_total", "2026-05", "", 6.0),
                ("environment.incidents_detected_by_it", "2026-06", "16681", 1.0),
                ("environment.incidents_detected_by_it", "2026-06", "16690", 2.0),
            ),
            source="file",
            filename="so-lieu.csv",
        )
        res = Resolver({})
        defs = load_definitions()
        ehr = compute(s, res, defs["ehr-coverage"], JUNE)
        ehr_ward = compute(s, res, defs["ehr-coverage"], JUNE, "16681")
        pollution = compute(s, res, defs["pollution-detected-by-it"], JUNE)
        q2 = compute(s, res, defs["pollution-detected-by-it"], parse_period("2026-Q2"))
        april = compute(s, res, defs["ehr-coverage"], period_of(date(2026, 4, 1), "month"))
    # Stock: the latest month's ward values summed (110 + 50); the population row of "2026" only counts once
    # that period has ended (31 Dec), so in June the denominator is unknown and so is the value.
    assert (
        ehr.numerator.value == 160.0
        and ehr.denominator is not None
        and ehr.denominator.value is None
        and ehr.value is None
    )
    assert ehr_ward.numerator.value == 110.0
    assert {(r["ward_code"], r["line"], r["file"]) for r in ehr.numerator.rows} == {
        ("16681", 3, "so-lieu.csv"),
        ("16690", 4, "so-lieu.csv"),
    }
    assert april.numerator.value == 100.0
    # Flow: the month's values; the quarter sums the months inside it.
    assert pollution.value == pytest.approx(75.0)
    assert q2.denominator is not None and q2.denominator.value == 10.0 and q2.value == pytest.approx(30.0)


def test_many_periods_at_once_equal_one_by_one(db: Database) -> None:
    """The series reads an imported indicator once for all its periods: the same values and the same
    source rows as period by period, for stocks and flows, the city (wards summed) and a ward."""
    with db.session() as s:
        apply(
            s,
            None,
            rows(
                ("health.ehr_citizens", "2026-03", "16681", 90.0),
                ("health.ehr_citizens", "2026-04", "16681", 100.0),
                ("health.ehr_citizens", "2026-05", "16681", 110.0),
                ("health.ehr_citizens", "2026-05", "16690", 50.0),
                ("health.ehr_citizens", "2026-05-20", "16690", 55.0),
                ("health.ehr_citizens", "2026-06", "", 170.0),
                ("population.total", "2026-02", "", 400.0),
                ("population.total", "2026-05", "16681", 300.0),
                ("environment.incidents_total", "2026-06", "", 4.0),
                ("environment.incidents_total", "2026-05", "", 6.0),
                ("environment.incidents_detected_by_it", "2026-05", "16681", 1.0),
                ("environment.incidents_detected_by_it", "2026-06", "16681", 1.0),
                ("environment.incidents_detected_by_it", "2026-06", "16690", 2.0),
            ),
            source="file",
            filename="nhieu-ky.csv",
        )
        res = Resolver({})
        defs = load_definitions()
        months = [period_of(date(2026, m, 1), "month") for m in range(1, 8)]
        quarters = [parse_period(q) for q in ("2026-Q1", "2026-Q2", "2026-Q3")]
        for kpi_id, periods in (("ehr-coverage", months), ("pollution-detected-by-it", months + quarters)):
            for ward in (None, "16681", "16690"):
                together = compute_many(s, res, defs[kpi_id], periods, ward)
                for period, c in zip(periods, together, strict=True):
                    alone = compute(s, res, defs[kpi_id], period, ward)
                    assert (c.value, c.numerator.rows, c.numerator.row_count) == (
                        alone.value,
                        alone.numerator.rows,
                        alone.numerator.row_count,
                    ), (kpi_id, period, ward)
                    assert c.denominator is not None and alone.denominator is not None
                    assert (c.denominator.value, c.denominator.rows) == (
                        alone.denominator.value,
                        alone.denominator.rows,
                    )
        may = compute_many(s, res, defs["ehr-coverage"], months, None)[4]
        # May, city: no city row yet, so the wards' rows ending last (31 May) are summed: 110 + 50 (the
        # 20 May day row of 16690 ended earlier); the population is the city's own row.
        assert may.numerator.value == 160.0 and may.denominator is not None and may.denominator.value == 400.0
        june = compute_many(s, res, defs["ehr-coverage"], months, None)[5]
        assert june.numerator.value == 170.0 and june.value == pytest.approx(42.5)  # the city row wins


def test_a_day_value_counts_from_that_day(db: Database) -> None:
    with db.session() as s:
        apply(
            s,
            None,
            rows(("population.total", "2026-01-01", "", 500.0), ("health.ehr_citizens", "2026-06", "", 400.0)),
            source="file",
        )
        c = compute(s, Resolver({}), load_definitions()["ehr-coverage"], JUNE)
    assert c.value == 80.0
    assert [i["source"] for i in c.lineage()["inputs"]] == ["import", "import"]


def series(*values: float) -> list[tuple[Period, float]]:
    months = [period_of(date(2026, m, 1), "month") for m in range(1, len(values) + 1)]
    return list(zip(months, values, strict=True))


def test_trend_projection_and_status() -> None:
    kpi = load_definitions()["online-services-full"]  # target >= 40
    on = date(2026, 6, 30)
    rising = trend(series(30, 32, 34, 36, 38, 39), kpi, on)
    assert rising.deadline == date(2026, 12, 31)
    assert rising.slope_per_month == pytest.approx(1.8, rel=0.05)
    assert rising.projected is not None and rising.projected > 40
    assert status_of(kpi, 39, rising) == "on_track"
    flat_short = trend(series(30, 30, 30), kpi, on)
    assert status_of(kpi, 30, flat_short) == "off_track"
    near = trend(series(37, 37, 37), kpi, on)
    assert status_of(kpi, 37, near) == "at_risk"  # 3 points short: within 10 % of 40
    falling = trend(series(50, 46, 42), kpi, on)
    assert status_of(kpi, 42, falling) == "at_risk"  # met now, the trend falls below
    assert status_of(kpi, None, trend([], kpi, on)) == "no_data"
    single = trend(series(45), kpi, on)
    assert single.projected == 45 and status_of(kpi, 45, single) == "on_track"
    strict = load_definitions()["pollution-detected-by-it"]
    assert status_of(strict, 50, trend(series(50, 50), strict, on)) == "at_risk"  # "above 50 %": 50 is not enough


def test_periods() -> None:
    assert parse_period("2026-06") == Period(date(2026, 6, 1), date(2026, 6, 30), "month")
    assert parse_period("06/2026").label == "2026-06"
    assert parse_period("2026-Q4") == Period(date(2026, 10, 1), date(2026, 12, 31), "quarter")
    assert parse_period("2026").end == date(2026, 12, 31)
    assert parse_period("2026-02-28").kind == "day"
    with pytest.raises(ValueError, match="không hợp lệ"):
        parse_period("2026-13")
    with pytest.raises(ValueError, match="không hợp lệ"):
        parse_period("June")
