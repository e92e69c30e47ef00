"""Overdue escalation with alarms, SLA states, duplicate detection, and the QĐ 766 indicators."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.alarms import Alarm
from ioc.core.db import Database, utcnow
from ioc.modules.reports import kpis, service
from ioc.modules.reports.demo import DEMO_COUNT, seed_demo
from ioc.modules.reports.models import Report
from ioc.modules.reports.schemas import ReportCreate, TransitionIn
from ioc.modules.reports.settings import ReportsSettings
from ioc.modules.reports.workflow import Status
from tests.conftest import MakeUser
from tests.modules.reports.conftest import CreateFn

TokenFn = Any


def runtime(db: Database) -> service.Runtime:
    return service.Runtime(settings=ReportsSettings(), db=db, secret="test")


def make_old(
    db: Database, rt: service.Runtime, points: dict[str, tuple[float, float]], days: int, category: str = "rac-thai"
) -> int:
    lat, lon = points["16681"]
    with db.session() as s:
        report, _ = service.create_report(
            s,
            rt,
            ReportCreate(category=category, description="cũ", lat=lat, lon=lon),
            now=utcnow() - timedelta(days=days),
        )
        return report.id


def test_overdue_reports_are_escalated_once_with_an_alarm_cleared_on_close(
    client: TestClient,
    db: Database,
    points: dict[str, tuple[float, float]],
    make_user: MakeUser,
    token_headers: TokenFn,
) -> None:
    rt = runtime(db)
    old = make_old(db, rt, points, days=10)
    fresh = make_old(db, rt, points, days=0)
    with db.session() as s:
        report = s.get(Report, old)
        assert report is not None and service.sla_state(report) == "overdue"
        fresh_row = s.get(Report, fresh)
        assert fresh_row is not None and service.sla_state(fresh_row) in ("on_time", "nearly_due")
    operator = token_headers(make_user("operator"))
    assert client.post("/api/v1/reports/escalations/run", headers=operator).json() == {"escalated": 1}
    assert client.post("/api/v1/reports/escalations/run", headers=operator).json() == {"escalated": 0}
    with db.session() as s:
        alarm = s.scalar(select(Alarm).where(Alarm.source == f"report:{old}"))
        assert alarm is not None and not alarm.cleared and alarm.ward_code == "16681" and alarm.type == "report.overdue"
    overdue = client.get("/api/v1/reports", params={"sla": "overdue"}, headers=operator).json()
    assert [i["id"] for i in overdue["items"]] == [old] and overdue["items"][0]["escalated_at"]
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    client.post(
        f"/api/v1/reports/{old}/transition",
        json={"status": "no_further_action", "note": "Đã kiểm tra"},
        headers=officer,
    )
    with db.session() as s:
        alarm = s.scalar(select(Alarm).where(Alarm.source == f"report:{old}"))
        assert alarm is not None and alarm.cleared
        closed = s.get(Report, old)
        assert closed is not None and service.sla_state(closed) == "missed"


def test_duplicates_within_50_m_are_offered_and_merged(
    client: TestClient,
    create: CreateFn,
    points: dict[str, tuple[float, float]],
    make_user: MakeUser,
    token_headers: TokenFn,
) -> None:
    lat, lon = points["16690"]
    first = create(ward="16690", category="ngap-ung")
    near = create(ward="16690", category="ngap-ung", lat=lat + 0.0002, lon=lon)  # ~22 m north
    assert [d["id"] for d in near["duplicates"]] == [first["id"]] and 15 < near["duplicates"][0]["distance_m"] < 30
    far = create(ward="16690", category="ngap-ung", lat=lat + 0.001, lon=lon)  # ~111 m
    assert far["duplicates"] == []
    other = create(ward="16690", category="rac-thai", lat=lat, lon=lon)
    assert other["duplicates"] == []
    offered = client.get("/api/v1/reports/nearby", params={"category": "ngap-ung", "lat": lat, "lon": lon}).json()
    assert {d["id"] for d in offered} == {first["id"], near["id"]}
    operator = token_headers(make_user("operator"))
    client.post(
        f"/api/v1/reports/{near['id']}/transition",
        json={"status": "duplicate", "duplicate_of": first["id"]},
        headers=operator,
    )
    offered = client.get("/api/v1/reports/nearby", params={"category": "ngap-ung", "lat": lat, "lon": lon}).json()
    assert [d["id"] for d in offered] == [first["id"]]  # a merged duplicate is closed


def test_indicators_follow_qd_766_and_rank_only_units_with_10_reports(
    client: TestClient,
    db: Database,
    points: dict[str, tuple[float, float]],
    make_user: MakeUser,
    token_headers: TokenFn,
) -> None:
    rt = runtime(db)
    ids = [make_old(db, rt, points, days=1) for _ in range(10)]
    late = make_old(db, rt, points, days=20)
    other = make_old(db, rt, points, days=1, category="chieu-sang")  # so-xay-dung: a single report
    with db.session() as s:
        for n, rid in enumerate([*ids, late, other]):
            report = s.get(Report, rid)
            assert report is not None
            service.transition(s, report, TransitionIn(status=Status.INVESTIGATING), None)
            service.transition(s, report, TransitionIn(status=Status.FIXED), None)
            if n < 4:
                service.rate(s, report, 5 if n < 3 else 2, None)
    today = date.today()
    measures = {m.name: m for m in kpis.measures(rt)}
    with db.session() as s:
        on_time = measures["reports.on_time_rate"].fn(s, today - timedelta(days=1), today + timedelta(days=1), None)
        assert on_time == round(100 * 11 / 12, 2)  # the 20-day-old one closed late
        assert (
            measures["reports.satisfaction_rate"].fn(s, today - timedelta(days=1), today + timedelta(days=1), None)
            == 75.0
        )
        assert measures["reports.on_time_rate"].fn(s, today, today, "16732") is None  # no data: no figure
    viewer = token_headers(make_user("viewer"))
    start = (today - timedelta(days=30)).isoformat()
    body = client.get("/api/v1/reports/indicators", params={"by": "agency", "start": start}, headers=viewer).json()
    units = {u["unit"]: u for u in body["units"]}
    assert units["ubnd-thanh-vinh"]["reports"] == 11 and units["ubnd-thanh-vinh"]["ranked"]
    assert not units["so-xay-dung"]["ranked"] and body["ranking"] == ["ubnd-thanh-vinh"]
    assert units["ubnd-thanh-vinh"]["accept_hours_median"] is not None


def test_demo_seeder(db: Database) -> None:
    with db.session() as s:
        assert seed_demo(s) == DEMO_COUNT
    with db.session() as s:
        rows = list(s.scalars(select(Report)))
        assert len(rows) == DEMO_COUNT and len({r.ward_code for r in rows}) == 6
        assert len({r.status for r in rows}) >= 5 and all(r.agency_id for r in rows)
        assert seed_demo(s) == 0  # idempotent
