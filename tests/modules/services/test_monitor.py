"""The dossier monitor's arithmetic on a hand-made month with known answers, and the KPI measures."""

from __future__ import annotations

from datetime import UTC, date, datetime
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
