"""Identity over HTTP: OAuth2 password flow, tokens, throttling, API keys, web session + CSRF,
user and agency management (with its guards against privilege escalation) and the audit log."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from ioc.app import create_app
from ioc.core.audit import AuditEntry
from ioc.core.auth import TOKEN_ALGORITHM, ApiKey, Role, User, verify_password
from ioc.core.db import Database, utcnow
from ioc.settings import Settings
from tests.api.test_role_matrix import assert_problem, bearer, quick_alarm, quick_key, quick_user
from tests.conftest import PASSWORD, SECRET

TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app without its lifespan: these tests need no event dispatcher (events are checked
    in the outbox table), and its PostgreSQL listener takes half a second to stop."""
    test_client = TestClient(app)
    yield test_client
    test_client.close()
    app.state.db.dispose()


def _login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post(TOKEN_URL, data={"username": username, "password": password})


def _audit_actions(db: Database, **where: str) -> list[str]:
    with db.session() as s:
        stmt = select(AuditEntry.action).order_by(AuditEntry.id)
        for column, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, column) == value)
        return list(s.scalars(stmt))


# --------------------------------------------------------------------------- OAuth2 password flow


def test_password_flow_gives_a_bearer_token(client: TestClient, app: FastAPI, db: Database) -> None:
    user = quick_user(db, "ward_officer", username="thanh.vinh")
    ward_permissions = app.state.policy.for_role(Role.WARD_OFFICER)
    r = client.post(TOKEN_URL, data={"username": "thanh.vinh", "password": PASSWORD, "grant_type": "password"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    assert {"alarms:read", "alarms:write"} <= ward_permissions
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert me == {
        "kind": "user",
        "id": f"user:{user.id}",
        "name": "thanh.vinh",
        "role": "ward_officer",
        "agency_id": "ubnd-thanh-vinh",
        "ward_code": "16681",
        "permissions": sorted(ward_permissions),
        "csrf_token": None,
    }
    with db.session() as s:
        assert s.get(User, user.id).last_login_at is not None  # type: ignore[union-attr]
    assert _audit_actions(db, object_type="user") == ["login"]


def test_failed_logins_do_not_tell_which_accounts_exist(client: TestClient, db: Database) -> None:
    quick_user(db, "viewer", username="co.that")
    quick_user(db, "viewer", username="da.nghi", active=False)
    answers = [
        _login(client, "co.that", "wrong-password-1"),
        _login(client, "khong.co.ai", PASSWORD),
        _login(client, "da.nghi", PASSWORD),  # right password, inactive account
    ]
    bodies = [assert_problem(r, 401, "bad-credentials") for r in answers]
    assert {b["detail"] for b in bodies} == {bodies[0]["detail"]}
    assert all(r.headers["www-authenticate"] == "Bearer" for r in answers)
    assert _audit_actions(db, action="login_failed") == ["login_failed"] * 3


def test_login_is_throttled_with_retry_after(settings: Settings, db: Database) -> None:
    quick_user(db, "viewer", username="bi.doan")
    app = create_app(settings.model_copy(update={"login_attempts_per_minute": 3}))
    with TestClient(app) as client:
        for _ in range(3):
            assert _login(client, "bi.doan", "wrong-password-1").status_code == 401
        blocked = _login(client, "bi.doan", PASSWORD)  # even the right password now waits
        assert_problem(blocked, 429, "too-many-logins")
        assert 1 <= int(blocked.headers["retry-after"]) <= 61
        assert _login(client, "Bi.Doan ", PASSWORD).status_code == 429
        assert _login(client, "nguoi.khac", "wrong-password-1").status_code == 401  # other accounts unaffected


def _forged(user: User, secret: str = SECRET, **claims: Any) -> dict[str, str]:
    token = bearer(user)["Authorization"].removeprefix("Bearer ")
    payload = jwt.decode(token, SECRET, algorithms=[TOKEN_ALGORITHM])
    payload.update(claims)
    return {"Authorization": f"Bearer {jwt.encode(payload, secret, algorithm=TOKEN_ALGORITHM)}"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda u: _forged(u, exp=int(utcnow().timestamp()) - 10), id="expired"),
        pytest.param(lambda u: _forged(u, typ="refresh"), id="wrong-type"),
        pytest.param(lambda u: _forged(u, role="admin", secret="x" * 40), id="other-key"),
        pytest.param(lambda u: {"Authorization": bearer(u)["Authorization"][:-4] + "AAAA"}, id="tampered"),
        pytest.param(lambda u: {"Authorization": "Bearer abc.def.ghi"}, id="garbage"),
    ],
)
def test_bad_tokens_are_401_problems(
    client: TestClient, db: Database, headers: Callable[[User], dict[str, str]]
) -> None:
    user = quick_user(db, "admin")
    r = client.get("/api/v1/alarms", headers=headers(user))
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_a_deactivated_users_token_is_refused(client: TestClient, db: Database) -> None:
    admin, viewer = quick_user(db, "admin"), quick_user(db, "viewer")
    token = bearer(viewer)
    assert client.get("/api/v1/alarms", headers=token).status_code == 200
    r = client.patch(f"/api/v1/users/{viewer.id}", json={"active": False}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    r = client.get("/api/v1/alarms", headers=token)
    assert_problem(r, 401)
    assert "www-authenticate" in r.headers
    assert _login(client, viewer.username).status_code == 401


def test_a_password_change_ends_old_tokens(client: TestClient, db: Database) -> None:
    admin, viewer = quick_user(db, "admin"), quick_user(db, "viewer")
    old = bearer(viewer)
    r = client.patch(f"/api/v1/users/{viewer.id}", json={"password": "a-brand-new-password"}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert_problem(client.get("/api/v1/me", headers=old), 401)
    assert _login(client, viewer.username).status_code == 401
    assert _login(client, viewer.username, "a-brand-new-password").status_code == 200
    with db.session() as s:
        stored = s.get(User, viewer.id)
        assert stored is not None
        assert "a-brand-new-password" not in stored.password_hash
        assert verify_password(stored.password_hash, "a-brand-new-password")
    with db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "user.update")).one()
    assert entry.after is not None and entry.after["password_changed"] is True
    assert "password_hash" not in entry.after


def test_anonymous_gets_401_with_a_challenge(client: TestClient) -> None:
    for method, url in [("GET", "/api/v1/me"), ("GET", "/api/v1/alarms"), ("POST", "/api/v1/users")]:
        r = client.request(method, url, json={})
        assert_problem(r, 401)
        assert r.headers["www-authenticate"]


# --------------------------------------------------------------------------- API keys


def test_admin_creates_an_api_key_shown_once(client: TestClient, db: Database) -> None:
    admin = quick_user(db, "admin")
    r = client.post(
        "/api/v1/api-keys",
        json={"name": "Trạm đo mưa Hưng Dũng", "scopes": ["alarms:raise", "alarms:read"]},
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("ioc_")
    assert created["scopes"] == ["alarms:raise", "alarms:read"]
    assert created["created_by"] == admin.username
    listed = client.get("/api/v1/api-keys", headers=bearer(admin)).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    assert key not in client.get("/api/v1/api-keys", headers=bearer(admin)).text
    with db.session() as s:
        row = s.get(ApiKey, created["id"])
        assert row is not None
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key.split("_", 2)[2] not in f"{row.name}{row.prefix}{row.key_hash}{row.created_by}"
    entry = next(e for e in _entries(db) if e.action == "apikey.create")
    assert entry.after is not None
    assert key not in str(entry.after)


def _entries(db: Database) -> list[AuditEntry]:
    with db.session() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_api_key_headers_and_scopes(client: TestClient, db: Database) -> None:
    _, key = quick_key(db, ["alarms:read"])
    alarm_id = quick_alarm(db)
    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}, {"Authorization": f"apikey  {key} "}):
        assert client.get(f"/api/v1/alarms/{alarm_id}", headers=headers).status_code == 200, headers
    # Outside its scopes: 403, not a silent success.
    r = client.post(f"/api/v1/alarms/{alarm_id}/ack", headers={"X-API-Key": key})
    body = assert_problem(r, 403, "forbidden")
    assert body["permission"] == "alarms:write"
    assert_problem(client.get("/api/v1/users", headers={"X-API-Key": key}), 403)
    # Wrong keys never fall back to anonymous: 401.
    for bad in (key[:-2] + "xx", "ioc_00000000_" + "a" * 43, "not-a-key", ""):
        r = client.get("/api/v1/alarms", headers={"X-API-Key": bad})
        assert_problem(r, 401)
        assert r.headers["www-authenticate"]


def test_revoked_keys_stop_working(client: TestClient, db: Database) -> None:
    admin = quick_user(db, "admin")
    key_id, key = quick_key(db, ["alarms:read"])
    assert client.get("/api/v1/alarms", headers={"X-API-Key": key}).status_code == 200
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=bearer(admin)).status_code == 204
    assert_problem(client.get("/api/v1/alarms", headers={"X-API-Key": key}), 401)
    assert_problem(client.delete(f"/api/v1/api-keys/{key_id}", headers=bearer(admin)), 409, "apikey-revoked")
    assert_problem(client.delete("/api/v1/api-keys/9999", headers=bearer(admin)), 404)
    entry = next(e for e in _entries(db) if e.action == "apikey.revoke")
    assert entry.before is not None and entry.after is not None
    assert entry.before["revoked_at"] is None
    assert entry.after["revoked_at"] is not None


def test_unknown_scopes_are_422(client: TestClient, db: Database) -> None:
    admin = bearer(quick_user(db, "admin"))
    for scopes in (["alarms:fly"], ["*"], ["alarms:read", "everything"]):
        r = client.post("/api/v1/api-keys", json={"name": "k1", "scopes": scopes}, headers=admin)
        assert_problem(r, 422, "bad-scope")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_a_key_cannot_mint_a_stronger_key_or_an_admin(client: TestClient, db: Database) -> None:
    _, manager = quick_key(db, ["apikeys:write", "users:write", "alarms:read"])
    headers = {"X-API-Key": manager}
    r = client.post("/api/v1/api-keys", json={"name": "wider", "scopes": ["audit:read"]}, headers=headers)
    assert_problem(r, 403, "privilege-escalation")
    r = client.post("/api/v1/api-keys", json={"name": "same", "scopes": ["alarms:read"]}, headers=headers)
    assert r.status_code == 201, r.text
    user = {"username": "ke.mao.danh", "password": "a-long-password-1"}
    r = client.post("/api/v1/users", json={**user, "role": "admin"}, headers=headers)
    assert_problem(r, 403, "privilege-escalation")
    r = client.post("/api/v1/users", json={**user, "role": "operator"}, headers=headers)
    assert_problem(r, 403, "privilege-escalation")  # the key lacks alarms:write
    admin = quick_user(db, "admin")
    r = client.patch(f"/api/v1/users/{admin.id}", json={"password": "taken-over-now"}, headers=headers)
    assert_problem(r, 403, "privilege-escalation")  # cannot touch an account above itself


def test_a_scoped_key_stays_in_its_agency(client: TestClient, db: Database) -> None:
    _, scoped = quick_key(db, ["apikeys:write", "alarms:read"], agency_id="so-nnmt")
    headers = {"X-API-Key": scoped}
    body = {"name": "cảm biến", "scopes": ["alarms:read"]}
    assert_problem(client.post("/api/v1/api-keys", json=body, headers=headers), 403, "out-of-remit")
    r = client.post("/api/v1/api-keys", json={**body, "agency_id": "so-khcn"}, headers=headers)
    assert_problem(r, 403, "out-of-remit")
    r = client.post("/api/v1/api-keys", json={**body, "agency_id": "so-nnmt"}, headers=headers)
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- web session and CSRF


def _csrf_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def _browser_login(client: TestClient, username: str) -> None:
    token = _csrf_in(client.get("/login").text)
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/dashboard"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "ioc_session" in client.cookies


def test_cookie_writes_need_the_csrf_header(client: TestClient, db: Database) -> None:
    officer = quick_user(db, "ward_officer")
    first, second = quick_alarm(db), quick_alarm(db)
    _browser_login(client, officer.username)
    # Reads with the cookie alone are fine.
    assert client.get(f"/api/v1/alarms/{first}").status_code == 200
    me = client.get("/api/v1/me").json()
    token = me["csrf_token"]
    assert token
    # A cross-site form could send the cookie, but not the header.
    assert_problem(client.post(f"/api/v1/alarms/{first}/ack"), 403, "csrf")
    assert_problem(client.post(f"/api/v1/alarms/{first}/ack", headers={"X-CSRF-Token": "forged"}), 403, "csrf")
    r = client.post(f"/api/v1/alarms/{first}/ack", headers={"X-CSRF-Token": token})
    assert r.status_code == 200, r.text
    assert r.json()["ack_by"] == officer.username
    # The token the pages carry is the same one.
    page_token = _csrf_in(client.get("/dashboard").text)
    assert client.post(f"/api/v1/alarms/{second}/clear", headers={"X-CSRF-Token": page_token}).status_code == 200
    # Without the cookie the browser is nobody; a bearer token needs no CSRF header.
    client.cookies.clear()
    assert client.get(f"/api/v1/alarms/{first}").status_code == 401
    third = quick_alarm(db)
    assert client.post(f"/api/v1/alarms/{third}/ack", headers=bearer(officer)).status_code == 200


def test_a_password_change_ends_browser_sessions(client: TestClient, db: Database) -> None:
    viewer = quick_user(db, "viewer")
    _browser_login(client, viewer.username)
    assert client.get("/api/v1/me").status_code == 200
    with db.session() as s:
        s.execute(update(User).where(User.id == viewer.id).values(password_hash="$argon2id$changed"))
    assert_problem(client.get("/api/v1/me"), 401)


# --------------------------------------------------------------------------- users and agencies


def test_admin_manages_users(client: TestClient, db: Database) -> None:
    admin = quick_user(db, "admin")
    h = bearer(admin)
    r = client.post(
        "/api/v1/users",
        json={
            "username": "can.bo.nnmt",
            "password": "mật-khẩu-2025-dài",
            "role": "agency_officer",
            "agency_id": "so-nnmt",
            "full_name": "Cán bộ Sở NN&MT",
            "email": "cb@nnmt.example.vn",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert "password" not in created and "password_hash" not in created
    with db.session() as s:
        stored = s.get(User, created["id"])
        assert stored is not None and stored.password_hash.startswith("$argon2id$")
    r = client.patch(
        f"/api/v1/users/{created['id']}", json={"role": "ward_officer", "agency_id": "ubnd-vinh-phu"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["agency_id"]) == ("ward_officer", "ubnd-vinh-phu")
    r = client.patch(f"/api/v1/users/{created['id']}", json={"email": None}, headers=h)
    assert r.status_code == 200 and r.json()["email"] is None
    assert [u["username"] for u in client.get("/api/v1/users", headers=h).json()] == sorted(
        [admin.username, "can.bo.nnmt"]
    )
    entries = [e for e in _entries(db) if e.object_type == "user" and e.action.startswith("user.")]
    assert [e.action for e in entries] == ["user.create", "user.update", "user.update"]
    assert entries[1].before is not None and entries[1].after is not None
    assert (entries[1].before["role"], entries[1].after["role"]) == ("agency_officer", "ward_officer")
    assert all(e.actor_id == f"user:{admin.id}" for e in entries)


def test_officers_need_a_proper_agency(client: TestClient, db: Database) -> None:
    admin = bearer(quick_user(db, "admin"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"role": "agency_officer"}, "agency-required"),
        ({"role": "ward_officer"}, "agency-required"),
        ({"role": "ward_officer", "agency_id": "so-nnmt"}, "ward-agency-required"),
        ({"role": "viewer", "agency_id": "so-khong-co"}, "unknown-agency"),
    ]
    for body, code in cases:
        r = client.post(
            "/api/v1/users", json={"username": "moi", "password": "a-long-password-1", **body}, headers=admin
        )
        assert_problem(r, 422, code)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1


USER_CHANGES_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"agency_id": None}, "agency-required"),  # an officer losing their agency
    ({"role": "ward_officer"}, "ward-agency-required"),  # so-nnmt is not a ward committee
    ({"agency_id": "so-khong-co"}, "unknown-agency"),
    ({"role": None}, "validation-error"),  # was a 500 (NOT NULL)
    ({"active": None}, "validation-error"),
    ({"full_name": None}, "validation-error"),
    ({"password": None}, "validation-error"),
    ({"password": "short"}, "validation-error"),
]


def test_user_changes_keep_the_rules(client: TestClient, db: Database) -> None:
    admin, officer = quick_user(db, "admin"), quick_user(db, "agency_officer")
    for body, code in USER_CHANGES_REFUSED:
        r = client.patch(f"/api/v1/users/{officer.id}", json=body, headers=bearer(admin))
        assert_problem(r, 422, code)
    with db.session() as s:
        stored = s.get(User, officer.id)
        assert stored is not None
        assert (stored.role, stored.agency_id, stored.active) == ("agency_officer", "so-nnmt", True)
        assert stored.password_hash == officer.password_hash
    assert "user.update" not in _audit_actions(db)


def test_nobody_locks_themselves_out_or_edits_themselves_without_the_right(client: TestClient, db: Database) -> None:
    admin, viewer = quick_user(db, "admin"), quick_user(db, "viewer")
    for body in ({"active": False}, {"role": "viewer"}):
        assert_problem(client.patch(f"/api/v1/users/{admin.id}", json=body, headers=bearer(admin)), 409, "self-lockout")
    assert (
        client.patch(f"/api/v1/users/{admin.id}", json={"full_name": "Quản trị"}, headers=bearer(admin)).status_code
        == 200
    )
    # A viewer cannot promote (or otherwise change) themselves.
    r = client.patch(f"/api/v1/users/{viewer.id}", json={"role": "admin"}, headers=bearer(viewer))
    assert_problem(r, 403, "forbidden")
    with db.session() as s:
        assert s.get(User, viewer.id).role == "viewer"  # type: ignore[union-attr]
    assert_problem(client.patch("/api/v1/users/99999", json={}, headers=bearer(admin)), 404)
    r = client.post(
        "/api/v1/users",
        json={"username": viewer.username, "password": "a-long-password-1", "role": "viewer"},
        headers=bearer(admin),
    )
    assert_problem(r, 409, "username-taken")


def test_agencies(client: TestClient, db: Database) -> None:
    admin = quick_user(db, "admin")
    h = bearer(admin)
    r = client.post("/api/v1/agencies", json={"id": "so-tc", "name": "Sở Tài chính", "kind": "department"}, headers=h)
    assert r.status_code == 201, r.text
    assert_problem(
        client.post("/api/v1/agencies", json={"id": "so-tc", "name": "Lặp", "kind": "department"}, headers=h), 409
    )
    bad = [
        ({"id": "ubnd-x", "name": "UBND X", "kind": "ward"}, "ward-code-required"),
        ({"id": "ubnd-x", "name": "UBND X", "kind": "ward", "ward_code": "99999"}, "ward-code-required"),
        ({"id": "so-x", "name": "Sở X", "kind": "department", "ward_code": "16681"}, "unexpected-ward"),
    ]
    for body, code in bad:
        assert_problem(client.post("/api/v1/agencies", json=body, headers=h), 422, code)
    r = client.post(
        "/api/v1/agencies", json={"id": "ubnd-x", "name": "UBND X", "kind": "ward", "ward_code": "16681"}, headers=h
    )
    assert r.status_code == 201, r.text
    ids = [a["id"] for a in client.get("/api/v1/agencies", headers=bearer(quick_user(db, "viewer"))).json()]
    assert {"so-tc", "ubnd-x", "so-nnmt", "ubnd-thanh-vinh"} <= set(ids)
    assert _audit_actions(db, object_type="agency") == ["agency.create", "agency.create"]


# --------------------------------------------------------------------------- audit endpoint


def test_audit_log_is_for_admins(client: TestClient, db: Database) -> None:
    admin, operator = quick_user(db, "admin"), quick_user(db, "operator")
    alarm_id = quick_alarm(db)
    client.post(f"/api/v1/alarms/{alarm_id}/ack", headers=bearer(operator))
    assert_problem(client.get("/api/v1/audit", headers=bearer(operator)), 403)
    rows = client.get("/api/v1/audit", headers=bearer(admin)).json()
    assert [r["action"] for r in rows] == ["alarm.acknowledge", "alarm.raise"]
    ack = rows[0]
    assert (ack["actor_kind"], ack["actor_id"], ack["actor_name"]) == ("user", f"user:{operator.id}", operator.username)
    assert (ack["object_type"], ack["object_id"]) == ("alarm", str(alarm_id))
    assert ack["before"]["acknowledged"] is False and ack["after"]["acknowledged"] is True
    assert ack["ip"]
    filtered = client.get("/api/v1/audit", params={"action": "alarm.raise"}, headers=bearer(admin)).json()
    assert [r["action"] for r in filtered] == ["alarm.raise"]
    later = client.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00+07:00"}, headers=bearer(admin)).json()
    assert later == []
    r = client.get(
        "/api/v1/audit",
        params={"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"},
        headers=bearer(admin),
    )
    assert_problem(r, 422, "bad-period")
