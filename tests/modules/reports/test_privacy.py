"""Personal data (Law 91/2025/QH15): never public, masked for staff, reveals audited, photos stripped,
rate limits; and a scan of every public answer for the reporter's name, phone and e-mail."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from ioc.app import create_app
from ioc.core import audit
from ioc.core.db import Database
from ioc.settings import Settings
from tests.conftest import MakeUser
from tests.modules.reports.conftest import SECRET_EMAIL, SECRET_NAME, SECRET_PHONE

TokenFn = Any


def jpeg_with_gps() -> bytes:
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "CameraFirmware 1.0"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (18.0, 40.0, 46.0), "E", (105.0, 40.0, 53.0)
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def personal_report(client: TestClient, points: dict[str, tuple[float, float]], **extra: str) -> dict[str, Any]:
    lat, lon = points["16681"]
    data = {
        "category": "rac-thai",
        "description": f"Rác đầy. Gọi tôi: {SECRET_PHONE} hoặc {SECRET_EMAIL}",
        "lat": str(lat),
        "lon": str(lon),
        "name": SECRET_NAME,
        "phone": SECRET_PHONE,
        "email": SECRET_EMAIL,
        **extra,
    }
    r = client.post("/api/v1/reports", data=data, files=[("photos", ("p.jpg", jpeg_with_gps(), "image/jpeg"))])
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def test_photos_lose_exif_and_gps(client: TestClient, points: dict[str, tuple[float, float]]) -> None:
    raw = jpeg_with_gps()
    assert Image.open(io.BytesIO(raw)).getexif().get_ifd(0x8825)  # the upload carries GPS
    created = personal_report(client, points)
    photo_url = client.get(f"/api/v1/reports/public/{created['id']}").json()["photos"][0]["url"]
    stored = client.get(photo_url)
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(stored.content))
    assert dict(img.getexif()) == {} and "exif" not in img.info
    assert b"SecretCam" not in stored.content and b"GPS" not in stored.content


def test_bad_and_too_many_photos_are_refused(client: TestClient, points: dict[str, tuple[float, float]]) -> None:
    lat, lon = points["16681"]
    data = {"category": "rac-thai", "description": "x", "lat": str(lat), "lon": str(lon)}
    r = client.post("/api/v1/reports", data=data, files=[("photos", ("a.jpg", b"not an image", "image/jpeg"))])
    assert r.status_code == 422 and r.json()["code"] == "bad-photo"
    files = [("photos", (f"{i}.jpg", jpeg_with_gps(), "image/jpeg")) for i in range(6)]
    r = client.post("/api/v1/reports", data=data, files=files)
    assert r.status_code == 422 and r.json()["code"] == "too-many-photos"


def test_identity_masked_for_staff_revealed_only_to_allowed_roles_and_audited(
    client: TestClient,
    points: dict[str, tuple[float, float]],
    make_user: MakeUser,
    token_headers: TokenFn,
    db: Database,
) -> None:
    rid = personal_report(client, points)["id"]
    officer_user = make_user("ward_officer", "ubnd-thanh-vinh")
    officer = token_headers(officer_user)
    detail = client.get(f"/api/v1/reports/{rid}", headers=officer).json()
    assert detail["reporter"]["phone"] == "091****678"
    assert SECRET_PHONE not in str(detail["reporter"]) and SECRET_EMAIL not in str(detail["reporter"])
    viewer = token_headers(make_user("viewer"))
    assert client.get(f"/api/v1/reports/{rid}", headers=viewer).json()["reporter"] is None
    assert client.get(f"/api/v1/reports/{rid}/reporter", headers=viewer).status_code == 403
    full = client.get(f"/api/v1/reports/{rid}/reporter", headers=officer).json()
    assert full == {"name": SECRET_NAME, "phone": SECRET_PHONE, "email": SECRET_EMAIL}
    with db.session() as s:
        actions = [e.action for e in audit.entries(s, object_type="report", object_id=str(rid))]
        assert "report.reporter_view" in actions and "report.view" in actions
        reveal = audit.entries(s, action="report.reporter_view")[0]
        assert reveal.actor_name == officer_user.username


def test_anonymous_reports_keep_no_identity(
    client: TestClient, points: dict[str, tuple[float, float]], make_user: MakeUser, token_headers: TokenFn
) -> None:
    rid = personal_report(client, points, anonymous="true")["id"]
    operator = token_headers(make_user("operator"))
    assert client.get(f"/api/v1/reports/{rid}/reporter", headers=operator).json() == {
        "name": None,
        "phone": None,
        "email": None,
    }


def test_no_public_answer_carries_personal_data(
    client: TestClient, points: dict[str, tuple[float, float]], make_user: MakeUser, token_headers: TokenFn
) -> None:
    created = personal_report(client, points)
    rid, code = created["id"], created["code"]
    private = personal_report(client, points, category="an-ninh-trat-tu")
    officer = token_headers(make_user("ward_officer", "ubnd-thanh-vinh"))
    client.post(
        f"/api/v1/reports/{rid}/transition", json={"status": "investigating", "note": "Đã tiếp nhận"}, headers=officer
    )
    public_paths = [
        "/",
        "/bao-cao",
        "/ban-do-phan-anh",
        f"/theo-doi?code={code}",
        f"/theo-doi?code={private['code']}",
        "/api/v1/reports/categories",
        "/api/v1/reports/public.geojson",
        f"/api/v1/reports/public/{rid}",
        f"/api/v1/reports/track/{code}",
        f"/api/v1/reports/nearby?category=rac-thai&lat={points['16681'][0]}&lon={points['16681'][1]}",
    ]
    for fmt in ("xml", "json"):
        public_paths += [
            f"/open311/v2/discovery.{fmt}",
            f"/open311/v2/services.{fmt}",
            f"/open311/v2/services/rac-thai.{fmt}",
            f"/open311/v2/requests.{fmt}",
            f"/open311/v2/requests/{rid}.{fmt}",
            f"/open311/v2/requests.{fmt}?service_request_id={rid},{private['id']}",
            f"/open311/v2/tokens/{code}.{fmt}",
            f"/open311/v2/servicerequestupdates.{fmt}",
        ]
    anonymous = TestClient(client.app)
    for path in public_paths:
        r = anonymous.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        for secret in (SECRET_NAME, SECRET_PHONE, SECRET_EMAIL, "091 234 5678"):
            assert secret not in r.text, (path, secret)
    # the private (public-order) report is nowhere public, not even its description
    assert anonymous.get(f"/api/v1/reports/public/{private['id']}").status_code == 404
    assert anonymous.get(f"/open311/v2/requests/{private['id']}.json").status_code == 404
    # the redacted description still reads well
    assert "[số điện thoại ẩn]" in anonymous.get(f"/api/v1/reports/public/{rid}").json()["description"]


@pytest.fixture
def limited_app(settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("IOC_REPORTS__RATE_LIMIT_PER_HOUR", "3")
    return create_app(settings)


def test_rate_limit_per_client(limited_app: FastAPI, points: dict[str, tuple[float, float]]) -> None:
    lat, lon = points["16690"]
    body = {"category": "rac-thai", "description": "Rác", "lat": lat, "lon": lon}
    with TestClient(limited_app) as c:
        assert [c.post("/api/v1/reports", json=body).status_code for _ in range(3)] == [201, 201, 201]
        r = c.post("/api/v1/reports", json=body)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
