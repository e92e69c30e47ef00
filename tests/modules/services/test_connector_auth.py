"""The polling connector's request headers against a real local HTTP server that requires them.

The credentials go out with each poll (API run and the scheduled job), never come back in an
answer of the API, and never reach the audit log in clear.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.audit import AuditEntry
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.modules.services.connectors import MASK, poll_due
from ioc.modules.services.models import Connector, Dossier

TOKEN = "tok-3f9a1c7e55d2b8a04c6e"
API_KEY = "key-77c1d0e9a2b4f6081357"
NEW_KEY = "key-rotated-5e6f7a8b9c0d"


class _Guarded(BaseHTTPRequestHandler):
    """Answers the records only to a caller sending both credentials; 401 otherwise."""

    token = TOKEN
    api_key = API_KEY
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.headers.get("Authorization") != f"Bearer {self.token}" or self.headers.get("X-API-Key") != self.api_key:
            self.send_response(401)
            self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            return
        body = json.dumps({"data": {"items": [ITEM]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


ITEM = {
    "id": "AUTH-1",
    "proc": "1.001193",
    "agency": "ubnd-vinh-loc",
    "level": "4",
    "channel": "online",
    "received": "2026-03-02T09:00:00+07:00",
}
MAPPING = {
    "code": "id",
    "procedure_code": "proc",
    "agency_id": "agency",
    "service_level": "level",
    "channel": "channel",
    "received_at": "received",
}


@pytest.fixture
def guarded() -> Iterator[tuple[str, type[_Guarded]]]:
    handler = type("Guarded", (_Guarded,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/hoso", handler
    server.shutdown()
    server.server_close()


def _audit_text(db: Database) -> str:
    with db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "connector").order_by(AuditEntry.id))
        return json.dumps([[r.action, r.before, r.after] for r in rows], ensure_ascii=False)


def test_connector_headers_are_sent_and_never_shown(
    client: TestClient,
    db: Database,
    guarded: tuple[str, type[_Guarded]],
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
) -> None:
    url, handler = guarded
    admin = token_headers(make_user("admin"))
    base = {"url": url, "items_path": "data.items", "mapping": MAPPING}

    # Without the credentials the endpoint refuses: the run records the 401, nothing is written.
    r = client.post("/api/v1/services/connectors", json={"name": "no-auth", **base}, headers=admin)
    assert r.status_code == 201 and r.json()["headers"] == {}
    outcome = client.post(f"/api/v1/services/connectors/{r.json()['id']}/run", headers=admin).json()
    assert outcome["status"] == "error" and "HTTP 401" in outcome["error"]

    # With them: created, answered masked (names in clear, the scheme kept, no secret).
    headers = {"Authorization": f"Bearer {TOKEN}", "X-API-Key": API_KEY}
    body = {"name": "igate-auth", **base, "headers": headers}
    r = client.post("/api/v1/services/connectors", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["headers"] == {"Authorization": f"Bearer {MASK}", "X-API-Key": MASK}
    assert TOKEN not in r.text and API_KEY not in r.text
    cid = r.json()["id"]
    listed = client.get("/api/v1/services/connectors", headers=admin)
    assert TOKEN not in listed.text and API_KEY not in listed.text
    assert [c["headers"] for c in listed.json() if c["id"] == cid] == [r.json()["headers"]]

    r = client.post(f"/api/v1/services/connectors/{cid}/run", headers=admin)
    assert r.json() == {"status": "ok", "records": 1, "inserted": 1, "updated": 0, "unchanged": 0}
    sent = handler.seen[-1]
    assert sent["authorization"] == f"Bearer {TOKEN}" and sent["x-api-key"] == API_KEY
    with db.session() as s:
        assert s.scalar(select(Dossier.source).where(Dossier.code == "AUTH-1")) == "poll"

    # Rotating the API key: the Authorization value is sent back as shown (masked) and kept.
    handler.api_key = NEW_KEY
    r = client.patch(
        f"/api/v1/services/connectors/{cid}",
        json={"headers": {"Authorization": f"Bearer {MASK}", "X-API-Key": NEW_KEY}},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert NEW_KEY not in r.text and r.json()["headers"]["X-API-Key"] == MASK
    with db.session() as s:
        stored = s.get(Connector, cid)
        assert stored is not None and stored.headers == {"Authorization": f"Bearer {TOKEN}", "X-API-Key": NEW_KEY}
    # The scheduled job sends them too.
    with db.session() as s:
        stored = s.get(Connector, cid)
        assert stored is not None
        stored.last_run_at = None
    before = len(handler.seen)
    assert poll_due(db) >= 1
    mine = [h for h in handler.seen[before:] if h.get("x-api-key") == NEW_KEY]
    assert mine and mine[0]["authorization"] == f"Bearer {TOKEN}"
    with db.session() as s:
        stored = s.get(Connector, cid)
        assert stored is not None and stored.last_status == "ok", stored.last_error if stored else None

    # The audit log has every change (names, what changed), never a secret.
    audit = _audit_text(db)
    for secret in (TOKEN, API_KEY, NEW_KEY):
        assert secret not in audit
    with db.session() as s:
        update = s.scalar(
            select(AuditEntry).where(AuditEntry.action == "services.connector.update", AuditEntry.object_id == str(cid))
        )
        assert update is not None and update.after is not None
        assert update.after["headers_changed"] == ["X-API-Key"]
        assert update.after["headers"] == {"Authorization": f"Bearer {MASK}", "X-API-Key": MASK}
    assert client.delete(f"/api/v1/services/connectors/{cid}", headers=admin).status_code == 204
    assert NEW_KEY not in _audit_text(db) and TOKEN not in _audit_text(db)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Host": "evil.example"}, "set by the connector itself"),
        ({"Bad Name": "x"}, "not a valid header name"),
        ({"X-API-Key": "abc\r\nX-Injected: 1"}, "printable ASCII"),
        ({"X-API-Key": ""}, "printable ASCII"),
    ],
)
def test_bad_headers_are_refused_without_echoing_values(
    client: TestClient,
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
    headers: dict[str, str],
    fragment: str,
) -> None:
    admin = token_headers(make_user("admin"))
    body = {"name": "bad-headers", "url": "http://127.0.0.1:9/x", "mapping": MAPPING, "headers": headers}
    r = client.post("/api/v1/services/connectors", json=body, headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "bad-headers" and fragment in r.text
    assert "X-Injected" not in r.text and "evil.example" not in r.text


def test_patch_validates_and_needs_admin(
    client: TestClient,
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
) -> None:
    admin = token_headers(make_user("admin"))
    body = {"name": "patch-me", "url": "http://127.0.0.1:9/x", "mapping": MAPPING, "headers": {"X-API-Key": API_KEY}}
    cid = client.post("/api/v1/services/connectors", json=body, headers=admin).json()["id"]
    operator = token_headers(make_user("operator"))
    r = client.patch(f"/api/v1/services/connectors/{cid}", json={"enabled": False}, headers=operator)
    assert r.status_code == 403
    r = client.patch(f"/api/v1/services/connectors/{cid}", json={"mapping": {"code": "id"}}, headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "bad-mapping"
    r = client.patch(f"/api/v1/services/connectors/{cid}", json={"interval_minutes": 5, "headers": {}}, headers=admin)
    assert r.status_code == 200 and r.json()["interval_minutes"] == 5 and r.json()["headers"] == {}
    assert client.patch("/api/v1/services/connectors/999999", json={}, headers=admin).status_code == 404
