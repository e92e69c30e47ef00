"""Reports API: creation and routing, every workflow path, remit, re-routing, events and audit."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core import audit
from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.reports.models import Report
from tests.conftest import MakeUser
from tests.modules.reports.conftest import OUTSIDE, CreateFn

TokenFn = Any


def act(
    client: TestClient, headers: dict[str, str], rid: int, path: str, body: dict[str, Any], expect: int = 200
) -> dict[str, Any]:
    r = client.post(f"/api/v1/reports/{rid}/{path}", json=body, headers=headers)
    assert r.status_code == expect, r.text
    result: dict[str, Any] = r.json()
    return result


def test_create_locates_the_ward_and_routes_by_category(client: TestClient, create: CreateFn, db: Database) -> None:
    rubbish = create(ward="16702", category="rac-thai")
    assert (rubbish["ward_code"], rubbish["agency_id"]) == ("16702", "ubnd-vinh-phu")
    light = create(ward="16732", category="chieu-sang")
    assert light["agency_id"] == "so-xay-dung"
    assert "3 ngày làm việc" in rubbish["service_notice"]
    with db.session() as s:
        row = s.get(Report, rubbish["id"])
        assert row is not None and row.status == "for_triage" and row.resolve_due > row.accept_due
        topics = [e.topic for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
        assert topics.count("report.created") == 2
        assert audit.entries(s, object_type="report", action="report.create")


def test_bad_input_is_refused_with_a_reason_and_nothing_written(
    client: TestClient, create: CreateFn, db: Database
) -> None:
    lat, lon = OUTSIDE
    r = client.post("/api/v1/reports", json={"category": "rac-thai", "description": "x", "lat": lat, "lon": lon})
    assert r.status_code == 422 and r.json()["code"] == "outside-city"
    assert create(category="khong-co", expect=422)["code"] == "unknown-category"
    assert create(description="x" * 4001, expect=422)["code"] == "validation-error"
    assert create(lat=None, lon=None, expect=422)["code"] == "validation-error"
    assert create(extra_field=1, expect=422)["code"] == "validation-error"
    assert client.post("/api/v1/reports", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/api/v1/reports", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    # an address naming a ward is enough
    assert create(lat=None, lon=None, address="12 Lê Lợi, phường Vinh Phú")["ward_code"] == "16702"
    with db.session() as s:
        assert len(list(s.scalars(select(Report)))) == 1


def test_full_path_accept_progress_schedule_fix_rate_reopen(
    client: TestClient, create: CreateFn, make_user: MakeUser, token_headers: TokenFn
) -> None:
    created = create(ward="16681", category="rac-thai")
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    rid = created["id"]
    for status in ("investigating", "in_progress", "action_scheduled", "fixed"):
        detail = act(client, officer, rid, "transition", {"status": status, "note": f"→ {status}"})
        assert detail["status"] == status
    assert detail["accepted_at"] and detail["closed_at"] and detail["sla_state"] == "met"
    # a closed report cannot be moved on, except by reopening
    assert act(client, officer, rid, "transition", {"status": "in_progress"}, 409)["code"] == "bad-transition"
    tracked = client.get(f"/api/v1/reports/track/{created['code']}").json()
    assert tracked["can_rate"] and [u["status"] for u in tracked["updates"]][-1] == "fixed"
    r = client.post(f"/api/v1/reports/track/{created['code']}/rating", json={"rating": 5})
    assert r.status_code == 200 and r.json()["rating"] == 5
    assert client.post(f"/api/v1/reports/track/{created['code']}/rating", json={"rating": 4}).status_code == 409
    r = client.post(f"/api/v1/reports/track/{created['code']}/reopen", json={"reason": "Rác lại đầy"})
    assert r.status_code == 200 and r.json()["status"] == "reopened" and r.json()["open311_status"] == "open"
    detail = client.get(f"/api/v1/reports/{rid}", headers=officer).json()
    assert detail["reopen_count"] == 1 and detail["closed_at"] is None


def test_duplicate_not_responsible_and_rejection_need_their_details(
    client: TestClient, create: CreateFn, make_user: MakeUser, token_headers: TokenFn
) -> None:
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    first, second, third, fourth = (create(ward="16681") for _ in range(4))
    assert (
        act(client, officer, second["id"], "transition", {"status": "duplicate"}, 422)["code"]
        == "duplicate-of-required"
    )
    dup = act(client, officer, second["id"], "transition", {"status": "duplicate", "duplicate_of": first["id"]})
    assert dup["duplicate_of"] == first["id"] and dup["open311_status"] == "closed"
    assert act(client, officer, third["id"], "transition", {"status": "not_responsible"}, 422)["code"] == (
        "responsible-unit-required"
    )
    nr = act(
        client,
        officer,
        third["id"],
        "transition",
        {"status": "not_responsible", "responsible_unit": "Công ty Điện lực Nghệ An"},
    )
    assert nr["responsible_unit"] == "Công ty Điện lực Nghệ An" and "Điện lực" in nr["status_notes"]
    assert (
        act(client, officer, fourth["id"], "transition", {"status": "no_further_action"}, 422)["code"]
        == "reason-required"
    )
    rej = act(client, officer, fourth["id"], "transition", {"status": "no_further_action", "note": "Không có vi phạm"})
    assert rej["status_label"] == "Từ chối" and rej["status_notes"] == "Không có vi phạm"


def test_remit_permissions_and_internal_notes(
    client: TestClient, create: CreateFn, make_user: MakeUser, token_headers: TokenFn
) -> None:
    created = create(ward="16681", category="rac-thai")  # → ubnd-thanh-vinh
    rid = created["id"]
    other_ward = token_headers(make_user("ward_officer", "ubnd-vinh-phu"))
    assert client.get(f"/api/v1/reports/{rid}", headers=other_ward).status_code == 404
    assert act(client, other_ward, rid, "transition", {"status": "investigating"}, 404)
    assert client.get("/api/v1/reports", headers=other_ward).json()["total"] == 0
    dept = token_headers(make_user("agency_officer", "so-nnmt"))
    assert client.get(f"/api/v1/reports/{rid}", headers=dept).status_code == 404
    viewer = token_headers(make_user("viewer"))
    assert client.get(f"/api/v1/reports/{rid}", headers=viewer).status_code == 200
    assert act(client, viewer, rid, "transition", {"status": "investigating"}, 403)
    assert client.get(f"/api/v1/reports/{rid}").status_code == 401
    own = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    act(client, own, rid, "comments", {"text": "Gọi lại cho tổ trưởng dân phố", "public": False})
    act(client, own, rid, "comments", {"text": "Đã ghi nhận, sẽ thu gom trong hôm nay", "public": True})
    tracked = client.get(f"/api/v1/reports/track/{created['code']}").json()
    texts = [u["text"] for u in tracked["updates"]]
    assert "Đã ghi nhận, sẽ thu gom trong hôm nay" in texts and "Gọi lại cho tổ trưởng dân phố" not in texts
    assert client.get("/api/v1/reports", headers=own).json()["items"][0]["sla_state"] in ("on_time", "nearly_due")


def test_operator_reroutes_audited_and_announced(
    client: TestClient, create: CreateFn, make_user: MakeUser, token_headers: TokenFn, db: Database
) -> None:
    rid = create(ward="16681", category="rac-thai")["id"]
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    assert act(client, officer, rid, "route", {"agency_id": "so-nnmt"}, 403)
    operator = token_headers(make_user("operator"))
    assert act(client, operator, rid, "route", {"agency_id": "khong-co"}, 422)["code"] == "unknown-agency"
    routed = act(client, operator, rid, "route", {"agency_id": "so-nnmt", "note": "Ô nhiễm do cơ sở sản xuất"})
    assert routed["agency_id"] == "so-nnmt"
    dept = token_headers(make_user("agency_officer", "so-nnmt"))
    assert client.get(f"/api/v1/reports/{rid}", headers=dept).status_code == 200
    with db.session() as s:
        entry = audit.entries(s, object_type="report", action="report.route")[0]
        assert entry.before and entry.before["agency_id"] == "ubnd-thanh-vinh" and entry.after
        assert entry.after["agency_id"] == "so-nnmt"
        assert s.scalar(select(OutboxEvent).where(OutboxEvent.topic == "report.routed")) is not None


def test_abuse_flag_hides_a_report_from_the_public(
    client: TestClient, create: CreateFn, make_user: MakeUser, token_headers: TokenFn
) -> None:
    rid = create()["id"]
    assert client.get(f"/api/v1/reports/public/{rid}").status_code == 200
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    act(client, officer, rid, "abuse", {"abuse": True, "note": "Nội dung xúc phạm"})
    assert client.get(f"/api/v1/reports/public/{rid}").status_code == 404
    assert client.get(f"/open311/v2/requests/{rid}.json").status_code == 404
    assert rid not in [f["id"] for f in client.get("/api/v1/reports/public.geojson").json()["features"]]


def test_categories_show_the_expected_response_time(client: TestClient) -> None:
    cats = {c["code"]: c for c in client.get("/api/v1/reports/categories").json()}
    assert len(cats) == 12
    assert "4 giờ làm việc" in cats["giao-thong"]["expected_response"]
    assert "10 ngày làm việc" in cats["trat-tu-xay-dung"]["expected_response"]
