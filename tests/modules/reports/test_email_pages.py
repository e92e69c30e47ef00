"""E-mail notification through a real (local) SMTP server, and the module's web pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.core.db import Database
from ioc.settings import Settings
from tests.conftest import PASSWORD, MakeUser, free_port
from tests.modules.reports.conftest import CreateFn

TokenFn = Any


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    box = Inbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("IOC_REPORTS__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("IOC_REPORTS__SMTP_PORT", str(port))
    yield box
    controller.stop()


def test_reporter_is_emailed_on_status_change(
    inbox: Inbox, settings: Settings, db: Database, points: dict[str, tuple[float, float]], make_user: MakeUser
) -> None:
    officer = make_user("ward_officer", "ubnd-thanh-vinh")
    lat, lon = points["16681"]
    with TestClient(create_app(settings)) as c:
        created = c.post(
            "/api/v1/reports",
            json={"category": "rac-thai", "description": "Rác", "lat": lat, "lon": lon, "email": "dan@example.vn"},
        ).json()
        silent = c.post(
            "/api/v1/reports", json={"category": "rac-thai", "description": "Rác", "lat": lat, "lon": lon}
        ).json()
        token = c.post("/api/v1/auth/token", data={"username": officer.username, "password": PASSWORD}).json()[
            "access_token"
        ]
        auth = {"Authorization": f"Bearer {token}"}
        for rid in (created["id"], silent["id"]):
            r = c.post(
                f"/api/v1/reports/{rid}/transition",
                json={"status": "investigating", "note": "Đã tiếp nhận"},
                headers=auth,
            )
            assert r.status_code == 200
        deadline = time.monotonic() + 15
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(inbox.messages) == 1
    mail = inbox.messages[0]
    assert mail["To"] == "dan@example.vn" and created["code"] in mail["Subject"]
    body = mail.get_body().get_content()  # type: ignore[union-attr]
    assert "Đã tiếp nhận" in body and f"/theo-doi?code={created['code']}" in body


def test_no_smtp_no_consumer(client: TestClient) -> None:
    status = client.app.state.bus.consumer_status()
    assert all(c["name"] != "reports.notify-email" for c in status)


def _inline_scripts(html: str) -> list[str]:
    return list(re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html))


def test_citizen_pages_report_and_follow(client: TestClient, points: dict[str, tuple[float, float]]) -> None:
    for path in ("/bao-cao", "/theo-doi", "/ban-do-phan-anh"):
        r = client.get(path)
        assert r.status_code == 200 and r.text.startswith("<!doctype html>") and 'lang="vi"' in r.text
        assert _inline_scripts(r.text) == [], path
        for asset in re.findall(r'(?:src|href)="(/assets/reports/[^"]+)"', r.text):
            assert client.get(asset).status_code == 200, asset
    page = client.get("/bao-cao").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    lat, lon = points["16708"]
    form = {
        "category": "cay-xanh",
        "description": "Cây đổ chắn đường",
        "lat": str(lat),
        "lon": str(lon),
        "public": "true",
    }
    assert client.post("/bao-cao", data=form).status_code == 403  # no CSRF token
    sent = client.post("/bao-cao", data={**form, "csrf_token": csrf.group(1)})
    assert sent.status_code == 200 and "Đã gửi phản ánh" in sent.text
    code = re.search(r'id="tracking-code">(PA-[0-9A-Z]+)<', sent.text)
    assert code is not None
    bad = client.post("/bao-cao", data={**form, "lat": "21.03", "lon": "105.85", "csrf_token": csrf.group(1)})
    assert bad.status_code == 422 and "ngoài địa bàn" in bad.text and "Cây đổ chắn đường" in bad.text
    follow = client.get("/theo-doi", params={"code": code.group(1)})
    assert follow.status_code == 200 and "Chờ tiếp nhận" in follow.text and "Cây đổ chắn đường" in follow.text
    assert client.get("/theo-doi", params={"code": "PA-KHONGCO"}).status_code == 404


def test_officer_pages(client: TestClient, create: CreateFn, make_user: MakeUser) -> None:
    rid = create(ward="16681")["id"]
    assert client.get("/workspace", follow_redirects=False).status_code == 303
    user = make_user("ward_officer", "ubnd-thanh-vinh")
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    client.post(
        "/login",
        data={"username": user.username, "password": PASSWORD, "csrf_token": csrf.group(1), "next": "/workspace"},
    )
    queue = client.get("/workspace")
    assert queue.status_code == 200 and f'href="/workspace/{rid}"' in queue.text and "sla--" in queue.text
    detail = client.get(f"/workspace/{rid}")
    assert detail.status_code == 200 and _inline_scripts(detail.text) == []
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', detail.text)
    assert token is not None
    # the page's fetch: cookie auth + X-CSRF-Token
    r = client.post(f"/api/v1/reports/{rid}/transition", json={"status": "investigating"})
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/reports/{rid}/transition", json={"status": "investigating"}, headers={"X-CSRF-Token": token.group(1)}
    )
    assert r.status_code == 200 and r.json()["status"] == "investigating"
    overview = client.get("/workspace/tong-quan")
    assert overview.status_code == 200 and 'id="kpi-open">1<' in overview.text
    panel = client.get("/api/v1/reports/panel")
    assert panel.status_code == 200 and 'data-kpi="open">1<' in panel.text
