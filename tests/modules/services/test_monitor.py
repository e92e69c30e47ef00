"""The dossier monitor's arithmetic on a hand-made month with known answers, and the KPI measures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.modules.services.models import Dossier, Procedure
from ioc.modules.services.monitor import (
    MEASURES,
    dossier_monitor,
    monitor_breakdown,
    procedure_shares,
)
from ioc.modules.services.records import Reference, fingerprint, validate_dossier, validate_procedure

NOW = datetime(2026, 4, 10, 3, 0, tzinfo=UTC)
MARCH = (date(2026, 3, 1), date(2026, 3, 31))

# code, received, due, resolved, status, channel, level, ward
CASES: list[tuple[str, str, str | None, str | None, str, str, str, str]] = [
    (
        "A",
        "2026-02-20 08:00",
        "2026-03-05 17:00",
        "2026-03-03 10:00",
        "resolved",
        "online",
        "full",
        "16681",
    ),  # carried, early
    (
        "B",
        "2026-02-25 08:00",
        "2026-03-04 17:00",
        "2026-02-28 10:00",
        "resolved",
        "online",
        "full",
        "16681",
    ),  # closed before
    ("C", "2026-03-02 09:00", "2026-03-10 17:00", "2026-03-10 15:00", "resolved", "online", "full", "16681"),  # on time
    ("D", "2026-03-05 09:00", "2026-03-12 17:00", "2026-03-13 09:00", "resolved", "online", "partial", "16681"),  # late
    ("E", "2026-03-10 09:00", "2026-03-20 17:00", None, "in_progress", "in_person", "direct", "16690"),  # pending late
    ("F", "2026-03-25 09:00", "2026-04-02 17:00", None, "in_progress", "online", "full", "16681"),  # nearly late
    ("G", "2026-03-28 09:00", "2026-04-15 17:00", None, "received", "post", "direct", "16690"),  # not yet due
    (
        "H",
        "2026-03-15 09:00",
        None,
        "2026-04-03 09:00",
        "resolved",
        "in_person",
        "direct",
        "16681",
    ),  # open at end, no due
    (
        "I",
        "2026-03-18 09:00",
        "2026-03-25 17:00",
        "2026-03-20 09:00",
        "withdrawn",
        "online",
        "partial",
        "16681",
    ),  # other
    ("J", "2026-04-02 09:00", "2026-04-09 17:00", None, "in_progress", "online", "full", "16681"),  # after the period
    ("K", "2026-01-10 09:00", "2026-01-20 17:00", None, "in_progress", "in_person", "direct", "16681"),  # carried, late
]


def add_dossiers(session: Session, cases: list[tuple[str, str, str | None, str | None, str, str, str, str]]) -> None:
    ref = Reference.load(session)
    for code, received, due, resolved, status, channel, level, ward in cases:
        agency = "ubnd-thanh-vinh" if ward == "16681" else "ubnd-truong-vinh"
        row: dict[str, Any] = {
            "code": code,
            "procedure_code": "1.001193",
            "procedure_name": "Đăng ký khai sinh",
            "agency_id": agency,
            "ward_code": ward,
            "service_level": level,
            "channel": channel,
            "received_at": received,
            "due_at": due,
            "resolved_at": resolved,
            "status": status,
        }
        clean = validate_dossier(row, ref)
        session.add(Dossier(**clean, source="import", source_ref="test"))
    session.flush()


@pytest.fixture
def march(db: Database) -> Database:
    with db.session() as s:
        add_dossiers(s, CASES)
        ref = Reference.load(s)
        for row in (
            {"code": "P1", "name": "Một", "partial_since": "2026-01-01", "full_since": "2026-03-15"},
            {"code": "P2", "name": "Hai", "partial_since": "2026-03-31"},
            {"code": "P3", "name": "Ba"},
            {
                "code": "P4",
                "name": "Bốn (bãi bỏ)",
                "partial_since": "2025-01-01",
                "valid_from": "2020-01-01",
                "valid_to": "2026-02-01",
            },
            {"code": "P5", "name": "Năm (chưa hiệu lực)", "full_since": "2026-01-01", "valid_from": "2026-04-15"},
        ):
            s.add(Procedure(**validate_procedure(row, ref)))
    return db


def test_month_figures_match_the_hand_count(march: Database) -> None:
    with march.session() as s:
        m = dossier_monitor(s, *MARCH, now=NOW)
    assert (m.received, m.carried_over, m.to_handle) == (7, 2, 9)
    assert (m.resolved.total, m.resolved.early, m.resolved.on_time, m.resolved.late) == (3, 1, 1, 1)
    assert m.closed_other == 1
    assert (m.in_progress.total, m.in_progress.late, m.in_progress.nearly_late, m.in_progress.not_due) == (5, 2, 1, 2)
    assert m.resolved.total + m.closed_other + m.in_progress.total == m.to_handle
    assert m.on_time_rate == pytest.approx(66.67)
    assert m.late_rate == pytest.approx(37.5)
    assert (m.received_online, m.received_full, m.received_online_service) == (4, 2, 4)
    assert m.online_share == pytest.approx(57.14)
    assert m.full_share == pytest.approx(28.57)
    assert m.online_service_share == pytest.approx(57.14)
    assert m.procedures is not None
    assert (m.procedures.total, m.procedures.partial_or_full, m.procedures.full) == (3, 2, 1)
    assert m.procedures.partial_share == pytest.approx(66.67)
    assert m.procedures.full_share == pytest.approx(33.33)


def test_during_the_period_pending_is_judged_now(march: Database) -> None:
    # On 2026-03-21 10:00 (+07) E is already late, F/G not due, H, A... the period is still open.
    now = datetime(2026, 3, 21, 3, 0, tzinfo=UTC)
    with march.session() as s:
        m = dossier_monitor(s, *MARCH, now=now, nearly_late_hours=24)
    # D (resolved 13 Mar) and C, A are resolved; I withdrawn; E late; H, F, G, K pending (F, G received later
    # but still count as received in the period by its definition: the query does not cut at "now").
    assert m.resolved.total == 3
    assert m.in_progress.late == 2  # E (due 20 Mar) and K
    assert m.in_progress.nearly_late == 0


def test_filters_and_breakdown(march: Database) -> None:
    with march.session() as s:
        ward = dossier_monitor(s, *MARCH, ward_code="16690", now=NOW)
        by_ward = {b.key: b for b in monitor_breakdown(s, *MARCH, "ward", now=NOW)}
        agency = dossier_monitor(s, *MARCH, agency_id="ubnd-truong-vinh", now=NOW)
        none = dossier_monitor(s, *MARCH, procedure_code="9.999999", now=NOW)
    assert (ward.received, ward.carried_over, ward.in_progress.late, ward.in_progress.not_due) == (2, 0, 1, 1)
    assert by_ward["16690"].to_handle == 2 and by_ward["16681"].to_handle == 7
    assert agency.to_handle == 2
    assert none.to_handle == 0 and none.on_time_rate is None and none.online_share is None


def test_measures_for_the_kpis(march: Database) -> None:
    with march.session() as s:
        values = {name: fn(s, *MARCH, None) for name, (fn, _unit) in MEASURES.items()}
        ward = MEASURES["services.dossiers_received"][0](s, *MARCH, "16690")
        catalogue_ward = MEASURES["services.procedures_total"][0](s, *MARCH, "16690")
    assert values["services.procedures_total"] == 3
    assert values["services.procedures_online_partial"] == 2
    assert values["services.procedures_online_full"] == 1
    assert values["services.dossiers_received"] == 7
    assert values["services.dossiers_online_service"] == 4
    assert values["services.dossiers_full"] == 2
    assert values["services.dossiers_resolved"] == 3
    assert values["services.dossiers_resolved_on_time"] == 2
    assert ward == 2
    assert catalogue_ward is None  # the catalogue has no ward breakdown


def test_procedure_shares_over_time(march: Database) -> None:
    with march.session() as s:
        january = procedure_shares(s, date(2026, 1, 31))
    # P4 still valid, P5 not yet: P1 partial, P4 partial → 2 of 4
    assert (january.total, january.partial_or_full, january.full) == (4, 2, 0)


def test_fingerprint_is_stable() -> None:
    row = {"a": date(2026, 1, 1), "b": "x"}
    assert fingerprint(row, ("a", "b")) == fingerprint(dict(row), ("a", "b"))


@pytest.mark.parametrize("ward", [None, "16681"])
def test_each_measure_lists_exactly_the_records_it_counts(
    march: Database, client: Any, make_user: Any, token_headers: Any, ward: str | None
) -> None:
    """The source URL of every measure (the lineage's link) lists as many records as the measure counts."""
    from ioc.modules.services import SOURCES

    viewer = token_headers(make_user("viewer"))
    for name, (fn, _unit) in MEASURES.items():
        with march.session() as s:
            value = fn(s, *MARCH, ward)
        url = SOURCES[name].format(start=MARCH[0].isoformat(), end=MARCH[1].isoformat(), ward=ward or "")
        r = client.get(url + "&limit=1000", headers=viewer)
        assert r.status_code == 200, (url, r.text)
        if value is None:  # the catalogue has no ward breakdown
            assert ward is not None and name.startswith("services.procedures")
            continue
        assert len(r.json()) == value, (name, url, [d.get("code") for d in r.json()])
    # The hand-made cases behind the on-time listing: C (on time) and A (early); not D (late).
    r = client.get(SOURCES["services.dossiers_resolved_on_time"].format(start="2026-03-01", end="2026-03-31", ward=""))
    assert r.status_code == 401  # source records are for staff
    on_time = client.get(
        "/api/v1/services/dossiers?resolved_from=2026-03-01&resolved_to=2026-03-31&status=resolved&on_time=true",
        headers=viewer,
    ).json()
    late = client.get(
        "/api/v1/services/dossiers?resolved_from=2026-03-01&resolved_to=2026-03-31&on_time=false", headers=viewer
    ).json()
    assert sorted(d["code"] for d in on_time) == ["A", "C"] and [d["code"] for d in late] == ["D"]


def test_many_periods_in_one_query_equal_one_by_one(march: Database) -> None:
    """A KPI series asks the dossier measures for twelve periods at once: the grouped answer is the
    per-period one (months, a quarter; a span that is not whole months falls back period by period)."""
    from ioc.modules.services.monitor import MANY

    months = [(date(2026, m, 1), date(2026, m + 1, 1) - timedelta(days=1)) for m in range(1, 5)]
    for spans in (months, [(date(2026, 1, 1), date(2026, 3, 31))], [(date(2026, 3, 5), date(2026, 3, 20)), *months]):
        for ward in (None, "16681", "16690"):
            with march.session() as s:
                for name, many in MANY.items():
                    fn = MEASURES[name][0]
                    assert many(s, spans, ward) == [fn(s, a, b, ward) for a, b in spans], (name, spans, ward)
    with march.session() as s:
        march_only = MANY["services.dossiers_received"](s, months, None)
    assert march_only[2] == 7 and march_only[3] == 1  # the hand count: 7 received in March, J in April
