"""The KPI API and pages: public vs login, imports, lineage to source rows, NGSI-LD events, reports."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import func, select

from ioc.core.auth import User, create_api_key
from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.kpi.compute import Resolver
from ioc.modules.kpi.models import IndicatorImport, IndicatorValue, KpiValue, SocioEconomicReport
from ioc.modules.kpi.periods import last_periods, today
from ioc.modules.kpi.reports import due_periods, generate

Headers = dict[str, str]


@pytest.fixture
def operator(client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], Headers]) -> Headers:
    return token_headers(make_user("operator"))


def months(n: int) -> list[str]:
    return [p.label for p in last_periods("month", n)]


def camera_csv(covered: list[int], total: int = 200) -> bytes:
    lines = ["measure,period,ward_code,value,note"]
    for label, value in zip(months(len(covered)), covered, strict=True):
        lines += [f"cameras.points_covered,{label},,{value},Công an tỉnh", f"cameras.points_total,{label},,{total},"]
    return ("\n".join(lines) + "\n").encode()


def upload(client: TestClient, headers: Headers, content: bytes, name: str = "camera.csv") -> object:
    return client.post("/api/v1/kpis/imports", files={"file": (name, content)}, headers=headers)


def test_public_kpis_without_login_and_all_with(
    client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], Headers]
) -> None:
    anonymous = client.get("/api/v1/kpis")
    assert anonymous.status_code == 200
    ids = {k["id"] for k in anonymous.json()}
    assert "dossiers-online" in ids and "infrastructure-security" not in ids
    viewer = token_headers(make_user("viewer"))
    every = client.get("/api/v1/kpis", headers=viewer).json()
    assert "infrastructure-security" in {k["id"] for k in every}
    first = every[0]
    assert {"id", "name_vi", "name_en", "target", "value", "unit", "period", "status", "sparkline"} <= set(first)
    assert client.get("/api/v1/kpis/infrastructure-security").status_code == 401
    assert client.get("/api/v1/kpis/infrastructure-security", headers=viewer).status_code == 200
    assert client.get("/api/v1/kpis/no-such-kpi").status_code == 404
    wall = client.get("/kpi")
    assert wall.status_code == 200 and "Chính quyền số" in wall.text and "<script>" not in wall.text
    assert "infrastructure-security" not in wall.text


def test_import_lineage_status_and_event(client: TestClient, db: Database, operator: Headers) -> None:
    r = upload(client, operator, camera_csv([150, 160, 170, 180]))
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 8 and "camera-coverage" in r.json()["kpis_refreshed"]
    detail = client.get("/api/v1/kpis/camera-coverage").json()
    assert detail["value"] == 90.0  # the current month: the latest value known (180 / 200)
    assert [p["value"] for p in detail["series"]][-4:] == [75.0, 80.0, 85.0, 90.0]
    assert detail["status"] == "on_track" and detail["gap"] == -10.0
    inputs = {i["measure"]: i for i in detail["lineage"]["inputs"]}
    covered = inputs["cameras.points_covered"]
    assert covered["source"] == "import" and covered["value"] == 180.0
    assert covered["rows"][0]["file"] == "camera.csv" and covered["rows"][0]["line"] == 8
    with db.session() as s:
        row = s.get(IndicatorValue, covered["rows"][0]["id"])
        assert row is not None and row.value == 180.0 and row.line == 8
        stored = s.scalar(
            select(func.count())
            .select_from(KpiValue)
            .where(KpiValue.kpi_id == "camera-coverage", KpiValue.value.is_not(None))
        )
        assert stored and stored >= 4
        events = list(s.scalars(select(OutboxEvent).where(OutboxEvent.topic == "kpi.updated")))
    entity = next(e.payload["entity"] for e in events if e.payload["kpi_id"] == "camera-coverage")
    assert entity["id"] == "urn:ngsi-ld:KeyPerformanceIndicator:vinh:camera-coverage"
    assert entity["type"] == "KeyPerformanceIndicator"
    assert entity["kpiValue"] == {
        "type": "Property",
        "value": 90.0,
        "observedAt": entity["kpiValue"]["observedAt"],
        "unitCode": "P1",
    }
    assert entity["calculationFrequency"]["value"] == "monthly" and entity["currentStanding"]["value"] == "good"
    assert client.get("/api/v1/kpis/camera-coverage/entity").headers["content-type"].startswith("application/ld+json")
    # Re-importing the same file changes nothing and publishes nothing.
    before = len(events)
    again = upload(client, operator, camera_csv([150, 160, 170, 180]))
    assert again.json()["inserted"] == 0 and again.json()["unchanged"] == 8 and again.json()["import_id"] is None
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(IndicatorImport)) == 1
        assert (
            s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.topic == "kpi.updated")) == before
        )


def test_bad_indicator_file_writes_nothing(client: TestClient, db: Database, operator: Headers) -> None:
    bad = (
        "measure,period,ward_code,value,note\n"
        "cameras.points_covered,2026-05,,10,\n"
        "cameras.no_such,2026-05,,10,\n"
        "cameras.points_total,2026-13,,10,\n"
        "cameras.points_total,2026-05,99999,10,\n"
        "cameras.points_total,2026-05,,-3,\n"
        "cameras.points_total,2026-05,,mười,\n"
        "cameras.points_covered,05/2026,,11,\n"
    ).encode()
    r = upload(client, operator, bad)
    assert r.status_code == 422
    assert [(e["line"], e["column"]) for e in r.json()["errors"]] == [
        (3, "measure"),
        (4, "period"),
        (5, "ward_code"),
        (6, "value"),
        (7, "value"),
        (8, "period"),
    ]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(IndicatorValue)) == 0
        assert s.scalar(select(func.count()).select_from(IndicatorImport)) == 0
    assert upload(client, {}, bad).status_code == 401
    template = client.get("/api/v1/kpis/templates/indicators.xlsx")
    assert [c.value for c in load_workbook(io.BytesIO(template.content)).worksheets[0][1]] == [
        "measure",
        "period",
        "ward_code",
        "value",
        "note",
    ]


def test_push_with_an_api_key_and_services_kpis(client: TestClient, db: Database, operator: Headers) -> None:
    with db.session() as s:
        _, key = create_api_key(s, client.app.state.policy, name="so-y-te", scopes=["kpi:import"])  # type: ignore[attr-defined]
    label = months(1)[0]
    values = [
        {"measure": "health.ehr_citizens", "period": label, "ward_code": "16681", "value": 90},
        {"measure": "population.total", "period": "2020-01-01", "ward_code": "16681", "value": 100},
    ]
    r = client.post("/api/v1/kpis/indicator-values", json={"values": values}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    detail = client.get("/api/v1/kpis/ehr-coverage").json()
    wards = {w["ward_code"]: w["value"] for w in detail["wards"]}
    assert wards["16681"] == 90.0 and wards["16690"] is None
    # The services KPIs read the services module's measures through the registry.
    row = (
        "code,procedure_code,agency_id,service_level,channel,received_at\n"
        f"A1,1.001193,ubnd-thanh-vinh,full,online,{today().isoformat()} 08:00\n"
        f"A2,1.001193,ubnd-thanh-vinh,direct,in_person,{today().isoformat()} 09:00\n"
    )
    assert (
        client.post("/api/v1/services/imports", files={"file": ("h.csv", row.encode())}, headers=operator).status_code
        == 200
    )
    online = client.get("/api/v1/kpis/dossiers-online").json()
    assert online["value"] == 50.0
    assert online["lineage"]["inputs"][0] == online["lineage"]["inputs"][0] | {
        "measure": "services.dossiers_online_service",
        "source": "registry",
        "module": "services",
        "value": 1.0,
    }
    assert online["lineage"]["rows_url"].startswith("/api/v1/services/dossiers?received_from=")
    assert [d["code"] for d in client.get(online["lineage"]["rows_url"], headers=operator).json()] == ["A1"]
    assert client.get("/kpi/dossiers-online").status_code == 200


def test_recompute_needs_admin_rights(
    client: TestClient, operator: Headers, make_user: Callable[..., User], token_headers: Callable[[User], Headers]
) -> None:
    assert client.post("/api/v1/kpis/recompute", json={}, headers=token_headers(make_user("viewer"))).status_code == 403
    r = client.post("/api/v1/kpis/recompute", json={"kpis": ["camera-coverage"], "history": 3}, headers=operator)
    assert r.status_code == 200 and r.json()["kpis"] == ["camera-coverage"]
    assert client.post("/api/v1/kpis/recompute", json={"kpis": ["nope"]}, headers=operator).status_code == 422


def test_reports_on_demand_scheduled_and_history(client: TestClient, db: Database, operator: Headers) -> None:
    upload(client, operator, camera_csv([150, 160, 170]))
    previous_month = (today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    r = client.post("/api/v1/kpi-reports", json={"kind": "monthly", "period": previous_month}, headers=operator)
    assert r.status_code == 201, r.text
    meta = r.json()
    pdf = client.get(meta["pdf_url"], headers=operator)
    assert pdf.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert (
        "Báo cáo kinh tế – xã hội tháng" in text and "Điểm công cộng, giao thông trọng điểm có camera giám sát" in text
    )
    xlsx = load_workbook(io.BytesIO(client.get(meta["xlsx_url"], headers=operator).content))
    assert xlsx.sheetnames == ["Tổng hợp", "Xu hướng", "Chỉ số", "Nguồn"]
    assert len(xlsx["Tổng hợp"]._charts) == 1
    summary = xlsx["Tổng hợp"]
    camera = next(row for row in summary.iter_rows(values_only=True) if row[1] and "camera" in str(row[1]))
    assert camera[3] == 80.0 and camera[4] == 80.0  # November: 160 of 200 points
    # A second on-demand run is kept beside the first (history); the schedule makes one per period only.
    assert (
        client.post(
            "/api/v1/kpi-reports", json={"kind": "monthly", "period": previous_month}, headers=operator
        ).status_code
        == 201
    )
    with db.session() as s:
        res = Resolver(client.app.state.registry.measures)  # type: ignore[attr-defined]
        kind, period = due_periods()[1]
        assert generate(s, res, kind, period, scheduled=True) is not None
    with db.session() as s:
        assert generate(s, res, kind, period, scheduled=True) is None
    listed = client.get("/api/v1/kpi-reports", headers=operator).json()
    assert [x["trigger"] for x in listed] == ["schedule", "on_demand", "on_demand"]
    assert (
        client.post(
            "/api/v1/kpi-reports", json={"kind": "quarterly", "period": previous_month}, headers=operator
        ).status_code
        == 422
    )
    assert (
        client.post("/api/v1/kpi-reports", json={"kind": "monthly", "period": "2099-01"}, headers=operator).status_code
        == 422
    )
    assert client.get("/api/v1/kpi-reports").status_code == 401
    assert client.get("/api/v1/kpi-reports/999/pdf", headers=operator).status_code == 404
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(SocioEconomicReport)) == 3


def test_demo_gives_every_target_a_value_and_a_trend(client: TestClient, db: Database) -> None:
    from ioc.modules.kpi.demo import seed_demo as kpi_demo
    from ioc.modules.services.demo import seed_demo as services_demo

    with db.session() as s:
        services_demo(s, per_day=5)
        assert kpi_demo(s) > 0
        assert kpi_demo(s) == 0
    with TestClient(client.app) as c:
        operator_free = c.get("/api/v1/kpis").json()
    numbered = [k for k in operator_free if k["number"]]
    assert len(numbered) == 12  # infrastructure-security is internal
    for k in numbered:
        assert k["value"] is not None, k["id"]
        assert k["trend"]["points"] >= 3, k["id"]
        assert k["status"] in ("on_track", "at_risk", "off_track"), k["id"]


def test_every_target_is_traceable_to_its_source_rows_on_the_demo(
    client: TestClient, db: Database, operator: Headers
) -> None:
    """Each of the 13 targets has a value on the demo, and each input of that value leads to the rows
    it was computed from: the import file's lines (whose values add up to the input) or the module's
    listing of the records (as many as the input counts)."""
    from ioc.modules.kpi.demo import DEMO_FILE
    from ioc.modules.kpi.demo import seed_demo as kpi_demo
    from ioc.modules.services.demo import seed_demo as services_demo

    with db.session() as s:
        services_demo(s, per_day=5)
        kpi_demo(s)
    listed = client.get("/api/v1/kpis", headers=operator).json()
    numbered = sorted((k for k in listed if k["number"]), key=lambda k: k["number"])
    assert [k["number"] for k in numbered] == list(range(1, 14))
    for k in numbered:
        assert k["value"] is not None, k["id"]
        detail = client.get(f"/api/v1/kpis/{k['id']}", headers=operator).json()
        lineage = detail["lineage"]
        assert lineage["formula"] and lineage["inputs"], k["id"]
        for i in lineage["inputs"]:
            assert i["value"] is not None, (k["id"], i["measure"])
            if i["source"] == "import":
                assert i["rows"] and i["row_count"] == len(i["rows"]), (k["id"], i["measure"])
                assert all(r["file"] == DEMO_FILE and r["line"] >= 2 for r in i["rows"])
                assert sum(r["value"] for r in i["rows"]) == pytest.approx(i["value"]), (k["id"], i["measure"])
                ids = {r["import_id"] for r in i["rows"]}
                with db.session() as s:
                    stored = s.scalars(
                        select(IndicatorValue).where(IndicatorValue.id.in_([r["id"] for r in i["rows"]]))
                    )
                    assert {v.import_id for v in stored} == ids
            else:
                assert i["source"] == "registry" and i["module"] == "services", (k["id"], i["measure"])
                url = i["source_url"]
                assert url, (k["id"], i["measure"])
                rows = client.get(url + "&limit=5000" if "procedures" in url else url + "&limit=1000", headers=operator)
                assert rows.status_code == 200, (url, rows.text)
                assert len(rows.json()) == i["value"], (k["id"], i["measure"], url)
        # The value is the formula applied to the inputs.
        values = {i["measure"]: i["value"] for i in lineage["inputs"]}
        assert lineage["period"]["label"] == detail["period"]
        if len(values) == 2:
            numerator, denominator = (i["value"] for i in lineage["inputs"])
            assert detail["value"] == pytest.approx(round(100 * numerator / denominator, 4)), k["id"]
