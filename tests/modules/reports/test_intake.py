"""Citizens' submissions: group commit of concurrent reports, batch storing, the caller of a POST."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ioc.core import audit
from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.reports import service
from ioc.modules.reports.models import Report, Reporter, ReportUpdate
from ioc.modules.reports.schemas import ReportCreate
from ioc.modules.reports.settings import ReportsSettings
from tests.conftest import MakeUser
from tests.modules.reports.conftest import CreateFn

TokenFn = Any


def _runtime(db: Database) -> service.Runtime:
    return service.Runtime(settings=ReportsSettings(), db=db, secret="test")


def test_stored_batch_equals_reports_stored_one_by_one(db: Database, points: dict[str, tuple[float, float]]) -> None:
    rt = _runtime(db)
    lat, lon = points["16702"]

    def checked(**extra: Any) -> service.CheckedReport:
        body = {"category": "rac-thai", "description": "Rác ở chợ", "lat": lat, "lon": lon} | extra
        return service.check_report(rt, ReportCreate.model_validate(body), client="10.0.0.9")

    with db.session() as s:
        first, _ = service.store_report(s, rt, checked())
        first_id = first.id
    batch = [checked(), checked(anonymous=False, name="Ông A", phone="0912000111"), checked(category="cay-xanh")]
    with db.session() as s:
        out = service.store_reports(s, rt, batch)
    ids = [r.id for r, _ in out]
    assert ids == sorted(ids) and ids[0] > first_id
    created = [c for _, c in out]
    # duplicates: the earlier report in the database, and the earlier ones of the same batch
    assert [d.id for d in created[0].duplicates] == [first_id]
    assert {d.id for d in created[1].duplicates} == {first_id, ids[0]}
    assert created[2].duplicates == []  # another category
    assert [c.agency_id for c in created] == ["ubnd-vinh-phu", "ubnd-vinh-phu", created[2].agency_id]
    with db.session() as s:
        for rid in ids:
            report = s.get(Report, rid)
            assert report is not None and report.status == "for_triage" and report.ward_code == "16702"
            history = s.scalars(select(ReportUpdate.kind).where(ReportUpdate.report_id == rid)).all()
            assert history == ["created"]
            assert len(audit.entries(s, object_type="report", object_id=str(rid), action="report.create")) == 1
        reporter = s.get(Reporter, ids[1])
        assert reporter is not None and reporter.phone == "0912000111"
        events = s.scalars(select(OutboxEvent.payload).where(OutboxEvent.topic == "report.created")).all()
        assert [e["id"] for e in events] == [first_id, *ids]


def test_concurrent_posts_are_all_stored(client: TestClient, create: CreateFn, db: Database) -> None:
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            for _ in range(4):  # 16 in all: under the rate limit of one client (20 an hour)
                results.append(create())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len({r["id"] for r in results}) == len({r["code"] for r in results}) == 16
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 16
        assert s.scalar(select(func.count()).where(OutboxEvent.topic == "report.created")) == 16


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer not-a-token"}, {"X-API-Key": "not-a-key"}])
def test_bad_credentials_on_a_submission_are_refused_first(
    client: TestClient, headers: dict[str, str], db: Database
) -> None:
    r = client.post("/api/v1/reports", json={"category": "rac-thai"}, headers=headers)  # bad body too
    assert r.status_code == 401, r.text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 0


def test_a_logged_in_officer_submits_as_staff(
    client: TestClient, make_user: MakeUser, token_headers: TokenFn, points: dict[str, tuple[float, float]]
) -> None:
    officer = make_user("ward_officer", "ubnd-vinh-phu")
    lat, lon = points["16702"]
    body = {"category": "rac-thai", "description": "Rác", "lat": lat, "lon": lon}
    r = client.post("/api/v1/reports", json=body, headers=token_headers(officer))
    assert r.status_code == 201, r.text
    with client.app.state.db.session() as s:  # type: ignore[attr-defined]
        report = s.get(Report, r.json()["id"])
        assert report is not None and report.source == "staff"
