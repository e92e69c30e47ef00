"""Imports (CSV, XLSX), the push API and the polling connector: row errors, all-or-nothing, idempotence."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select

from ioc.core.audit import AuditEntry
from ioc.core.auth import User, create_api_key
from ioc.core.db import Database
from ioc.modules.services.connectors import poll_due
from ioc.modules.services.models import Connector, Dossier, ImportBatch

HEADER = (
    "code,procedure_code,procedure_name,agency_id,ward_code,service_level,channel,received_at,due_at,resolved_at,status"
)
GOOD = [
    "H-001,1.001193,Đăng ký khai sinh,ubnd-thanh-vinh,,toàn trình,trực tuyến,"
    "2026-03-02 09:00,2026-03-03,2026-03-02 15:00,đã giải quyết",
    "H-002,2.000908,Chứng thực bản sao,ubnd-vinh-phu,16702,một phần,online,02/03/2026 10:00,05/03/2026,,đang xử lý",
    "H-003,1.009972,Cấp giấy phép xây dựng,so-xay-dung,16690,direct,in_person,"
    "2026-03-04T08:00:00+07:00,2026-03-30,2026-03-31 09:00,resolved",
]


def csv_bytes(lines: list[str]) -> bytes:
    return ("\n".join([HEADER, *lines]) + "\n").encode()


def count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def operator(
    client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], dict[str, str]]
) -> dict[str, str]:
    return token_headers(make_user("operator"))


def upload(
    client: TestClient, headers: dict[str, str], content: bytes, name: str = "hoso.csv", kind: str = "dossiers"
) -> Any:
    return client.post(f"/api/v1/services/imports?kind={kind}", files={"file": (name, content)}, headers=headers)


def test_csv_import_then_reimport_changes_nothing(client: TestClient, db: Database, operator: dict[str, str]) -> None:
    r = upload(client, operator, csv_bytes(GOOD))
    assert r.status_code == 200, r.text
    assert r.json() | {"import_id": 0} == {
        "kind": "dossiers",
        "rows": 3,
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "import_id": 0,
    }
    with db.session() as s:
        first = {d.code: (d.updated_at, d.source_ref) for d in s.scalars(select(Dossier))}
        h1 = s.scalar(select(Dossier).where(Dossier.code == "H-001"))
        assert h1 is not None and h1.ward_code == "16681" and h1.service_level == "full" and h1.channel == "online"
        assert h1.source_ref.endswith("line 2")
    again = upload(client, operator, csv_bytes(GOOD))
    assert again.json()["inserted"] == 0 and again.json()["updated"] == 0 and again.json()["unchanged"] == 3
    assert again.json()["import_id"] is None
    assert count(db, ImportBatch) == 1
    with db.session() as s:
        assert {d.code: (d.updated_at, d.source_ref) for d in s.scalars(select(Dossier))} == first
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "services.file")) == 1
    changed = [*GOOD[:2], GOOD[2].replace("2026-03-31 09:00,resolved", ",in_progress")]
    r = upload(client, operator, csv_bytes(changed))
    assert (r.json()["inserted"], r.json()["updated"], r.json()["unchanged"]) == (0, 1, 2)


def test_bad_rows_are_listed_with_lines_and_nothing_is_written(
    client: TestClient, db: Database, operator: dict[str, str]
) -> None:
    lines = [
        GOOD[0],
        "H-010,1.1,X,no-such-agency,,full,online,2026-03-02 09:00,,,",
        "H-011,1.1,X,ubnd-thanh-vinh,,full,fax,2026-03-02 09:00,,,",
        "H-012,1.1,X,ubnd-thanh-vinh,,full,online,hôm qua,,,",
        "H-013,1.1,X,ubnd-thanh-vinh,,direct,online,2026-03-02 09:00,,,",
        "H-014,1.1,X,ubnd-thanh-vinh,,full,online,2026-03-02 09:00,,,resolved",
        "H-001,1.1,X,ubnd-thanh-vinh,,full,online,2026-03-02 09:00,,,",
        "H-015,1.1,X,ubnd-thanh-vinh,99999,full,online,2026-03-02 09:00,,,",
        "H-016,1.1,X,ubnd-thanh-vinh,,full,online,2026-03-02 09:00,2026-03-01,,",
    ]
    r = upload(client, operator, csv_bytes(lines))
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid-rows" and body["error_count"] == 8
    assert [(e["line"], e["column"]) for e in body["errors"]] == [
        (3, "agency_id"),
        (4, "channel"),
        (5, "received_at"),
        (6, "channel"),
        (7, "resolved_at"),
        (8, "code"),
        (9, "ward_code"),
        (10, "due_at"),
    ]
    assert "dòng 3" in body["detail"]
    assert count(db, Dossier) == 0 and count(db, ImportBatch) == 0


def test_unreadable_files_are_refused(client: TestClient, db: Database, operator: dict[str, str]) -> None:
    assert upload(client, operator, b"PK\x03\x04garbage", "x.xlsx").status_code == 422
    assert upload(client, operator, "mã,tên\n".encode("utf-16"), "x.csv").status_code == 422
    assert upload(client, operator, HEADER.encode() + b"\n", "x.csv").json()["code"] == "empty-file"
    assert upload(client, operator, b"a,b\n1,2\n", "x.pdf").status_code == 415
    assert upload(client, operator, b"code,code\n1,2\n").status_code == 422
    assert count(db, Dossier) == 0


def test_xlsx_template_filled_and_imported(client: TestClient, db: Database, operator: dict[str, str]) -> None:
    r = client.get("/api/v1/services/templates/dossiers.xlsx")
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.content))
    sheet = book.worksheets[0]
    assert [c.value for c in sheet[1]] == HEADER.split(",")
    assert book.sheetnames[1] == "Hướng dẫn"
    from datetime import datetime

    sheet.append(
        [
            "X-1",
            "1.001193",
            "Đăng ký khai sinh",
            "ubnd-cua-lo",
            None,
            "mức độ 4",
            "trực tuyến",
            datetime(2026, 3, 2, 9, 0),
            datetime(2026, 3, 3, 17, 0),
            None,
            "đang giải quyết",
        ]
    )
    out = io.BytesIO()
    book.save(out)
    r = upload(client, operator, out.getvalue(), "hoso.xlsx")
    assert r.status_code == 200, r.text
    with db.session() as s:
        row = s.scalar(select(Dossier).where(Dossier.code == "X-1"))
        assert row is not None and row.ward_code == "16732" and row.service_level == "full"
        assert row.received_at.isoformat() == "2026-03-02T02:00:00+00:00"
    assert client.get("/api/v1/services/templates/dossiers.csv").content.decode("utf-8-sig").strip() == HEADER


def test_imports_need_the_permission(
    client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], dict[str, str]]
) -> None:
    assert upload(client, {}, csv_bytes(GOOD)).status_code == 401
    assert upload(client, token_headers(make_user("viewer")), csv_bytes(GOOD)).status_code == 403


def test_push_with_an_api_key(client: TestClient, db: Database) -> None:
    with db.session() as s:
        _, key = create_api_key(s, client.app.state.policy, name="igate", scopes=["services:push"])  # type: ignore[attr-defined]
        _, ward_key = create_api_key(
            s, client.app.state.policy, name="mot-cua-cua-lo", scopes=["services:push"], agency_id="ubnd-cua-lo"
        )  # type: ignore[attr-defined]
    record = dict(zip(HEADER.split(","), GOOD[0].split(","), strict=True))
    r = client.post("/api/v1/services/dossiers", json={"dossiers": [record]}, headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json()["inserted"] == 1
    r = client.post("/api/v1/services/dossiers", json={"dossiers": [record]}, headers={"X-API-Key": key})
    assert r.json()["unchanged"] == 1
    bad = dict(record, code="P-2", channel="pigeon")
    r = client.post(
        "/api/v1/services/dossiers", json={"dossiers": [dict(record, code="P-1"), bad]}, headers={"X-API-Key": key}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 2
    r = client.post(
        "/api/v1/services/dossiers", json={"dossiers": [dict(record, code="P-3")]}, headers={"X-API-Key": ward_key}
    )
    assert r.status_code == 403 and r.json()["code"] == "out-of-remit"
    assert client.post("/api/v1/services/dossiers", json={"dossiers": [record]}).status_code == 401
    assert (
        client.post("/api/v1/services/dossiers", json={"dossiers": []}, headers={"X-API-Key": key}).status_code == 422
    )
    assert count(db, Dossier) == 1
    with db.session() as s:
        pushed = s.scalar(select(Dossier))
        assert pushed is not None and pushed.source == "push" and pushed.source_ref.endswith("item 1")


def test_monitor_api_respects_the_remit(
    client: TestClient,
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
    operator: dict[str, str],
) -> None:
    assert upload(client, operator, csv_bytes(GOOD)).status_code == 200
    ward = token_headers(make_user("ward_officer", agency_id="ubnd-vinh-phu"))
    r = client.get("/api/v1/services/monitor?start=2026-03-01&end=2026-03-31&by=ward", headers=ward)
    assert r.status_code == 200 and r.json()["received"] == 1 and r.json()["filters"]["ward_code"] == "16702"
    assert client.get("/api/v1/services/monitor?ward_code=16681", headers=ward).status_code == 404
    r = client.get("/api/v1/services/monitor?start=2026-03-01&end=2026-03-31", headers=operator)
    assert r.json()["received"] == 3
    assert client.get("/api/v1/services/monitor?start=2026-03-31&end=2026-03-01", headers=operator).status_code == 422
    assert client.get("/api/v1/services/monitor").status_code == 401
    dossiers = client.get(
        "/api/v1/services/dossiers?received_from=2026-03-01&received_to=2026-03-31", headers=ward
    ).json()
    assert [d["code"] for d in dossiers] == ["H-002"]
    page = client.get("/services", headers=operator)
    assert page.status_code == 200 and "<script>" not in page.text and "Giám sát dịch vụ công" in page.text


# --------------------------------------------------------------------------- polling


class _Feed(BaseHTTPRequestHandler):
    payload: bytes = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(type(self).payload)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def feed() -> Iterator[tuple[str, type[_Feed]]]:
    handler = type("Feed", (_Feed,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hoso", handler
    server.shutdown()
    server.server_close()


def igate(items: list[dict[str, Any]]) -> bytes:
    return json.dumps({"data": {"items": items}}).encode()


ITEM = {
    "maHoSo": "IG-1",
    "thuTuc": {"ma": "1.001193", "ten": "Đăng ký khai sinh"},
    "coQuan": "ubnd-vinh-loc",
    "mucDo": "4",
    "kenh": "DVC",
    "ngayNhan": "2026-03-02T09:00:00+07:00",
    "hanXuLy": "2026-03-03T17:00:00+07:00",
    "ngayXong": None,
    "trangThai": "dang_xu_ly",
}
MAPPING = {
    "code": "maHoSo",
    "procedure_code": "thuTuc.ma",
    "procedure_name": "thuTuc.ten",
    "agency_id": "coQuan",
    "service_level": "mucDo",
    "channel": "kenh",
    "received_at": "ngayNhan",
    "due_at": "hanXuLy",
    "resolved_at": "ngayXong",
    "status": "trangThai",
}


def test_polling_connector(
    client: TestClient,
    db: Database,
    feed: tuple[str, type[_Feed]],
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
) -> None:
    url, handler = feed
    admin = token_headers(make_user("admin"))
    body = {
        "name": "igate",
        "url": url,
        "items_path": "data.items",
        "mapping": MAPPING,
        "value_maps": {"channel": {"DVC": "online"}},
        "interval_minutes": 30,
    }
    assert (
        client.post("/api/v1/services/connectors", json=dict(body, mapping={"code": "x"}), headers=admin).status_code
        == 422
    )
    assert (
        client.post("/api/v1/services/connectors", json=body, headers=token_headers(make_user("operator"))).status_code
        == 403
    )
    r = client.post("/api/v1/services/connectors", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    handler.payload = igate([ITEM, dict(ITEM, maHoSo="IG-2", mucDo="3")])
    r = client.post(f"/api/v1/services/connectors/{cid}/run", headers=admin)
    assert r.json() == {"status": "ok", "records": 2, "inserted": 2, "updated": 0, "unchanged": 0}
    with db.session() as s:
        rows = {d.code: d for d in s.scalars(select(Dossier))}
        assert rows["IG-1"].service_level == "full" and rows["IG-2"].service_level == "partial"
        assert rows["IG-1"].channel == "online" and rows["IG-1"].ward_code == "16708" and rows["IG-1"].source == "poll"
    # A bad record: nothing is written, the error is kept on the connector.
    handler.payload = igate(
        [
            dict(ITEM, trangThai="da_giai_quyet", ngayXong="2026-03-03T10:00:00+07:00"),
            dict(ITEM, maHoSo="IG-3", coQuan="x"),
        ]
    )
    r = client.post(f"/api/v1/services/connectors/{cid}/run", headers=admin)
    assert r.json()["status"] == "error" and r.json()["errors"][0]["line"] == 2
    with db.session() as s:
        assert s.scalar(select(Dossier.status).where(Dossier.code == "IG-1")) == "in_progress"
        connector = s.get(Connector, cid)
        assert (
            connector is not None and connector.last_status == "error" and '"line": 2' in (connector.last_error or "")
        )
    # The schedule: not due again within its 30 minutes; due once the interval has passed.
    handler.payload = igate([ITEM, dict(ITEM, maHoSo="IG-2", mucDo="3")])
    assert poll_due(db) == 0
    with db.session() as s:
        connector = s.get(Connector, cid)
        assert connector is not None
        connector.last_run_at = None
    assert poll_due(db) == 1
    with db.session() as s:
        connector = s.get(Connector, cid)
        assert (
            connector is not None
            and connector.last_status == "ok"
            and connector.last_counts == {"records": 2, "inserted": 0, "updated": 0, "unchanged": 2}
        )
    handler.payload = b"not json"
    assert client.post(f"/api/v1/services/connectors/{cid}/run", headers=admin).json()["status"] == "error"
    assert client.delete(f"/api/v1/services/connectors/{cid}", headers=admin).status_code == 204
    assert count(db, Connector) == 0


def test_demo_seed(db: Database) -> None:
    from datetime import date

    from ioc.modules.services.demo import seed_demo
    from ioc.modules.services.monitor import dossier_monitor

    with db.session() as s:
        n = seed_demo(s, today=date(2026, 6, 15), per_day=6)
        assert n > 1000
        assert seed_demo(s) == 0
        m = dossier_monitor(s, date(2026, 1, 1), date(2026, 5, 31))
        assert m.received > 500 and m.resolved.total > 0 and m.procedures is not None and m.procedures.total == 40
        assert 0 < (m.online_share or 0) < 100
