"""Bad input never reaches the database: every answer is a 4xx RFC 7807 problem with a reason,
never a 500, and nothing is written (DESIGN §4.2).

Each case runs as an admin (so that authorisation is not what refuses it) against a world
with one open alarm, one user and one API key, then checks that no table changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ioc.core.alarms import Alarm, AlarmHistory
from ioc.core.audit import AuditEntry
from ioc.core.auth import Agency, ApiKey, User
from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from tests.api.test_role_matrix import PROBLEM_JSON, bearer, quick_alarm, quick_key, quick_user

TABLES = (Alarm, AlarmHistory, AuditEntry, OutboxEvent, User, Agency, ApiKey)
JSON_TYPE = {"Content-Type": "application/json"}
GOOD_ALARM = {"source": "gauge:x", "type": "flood.level", "severity": "MAJOR", "title": "Ngập"}
GOOD_USER = {"username": "nguoi.moi", "password": "a-long-password-1", "role": "viewer"}


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app without its lifespan: these tests need no event dispatcher (events are checked
    in the outbox table), and its PostgreSQL listener takes half a second to stop.

    A server error is answered as a 500 rather than raised, so that every case is reported.
    """
    test_client = TestClient(app, raise_server_exceptions=False)
    yield test_client
    test_client.close()
    app.state.db.dispose()


@dataclass(frozen=True)
class Bad:
    """A bad request: method, path (``{alarm}``/``{user}``/``{key}`` filled in) and what to send."""

    id: str
    method: str
    path: str
    json: Any = None
    content: str | bytes | None = None
    params: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    status: int = 422


def _deep(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": 1}
    for _ in range(levels):
        doc = {"a": doc}
    return doc


CASES = [
    # --- raising alarms: the body
    Bad("malformed-json", "POST", "/api/v1/alarms", content='{"source": "x", ', headers=JSON_TYPE),
    Bad("json-array", "POST", "/api/v1/alarms", json=[GOOD_ALARM]),
    Bad("json-null", "POST", "/api/v1/alarms", content="null", headers=JSON_TYPE),
    Bad("empty-body", "POST", "/api/v1/alarms", content="", headers=JSON_TYPE),
    Bad("not-json", "POST", "/api/v1/alarms", content="source=x", headers={"Content-Type": "text/plain"}),
    Bad("missing-field", "POST", "/api/v1/alarms", json={k: v for k, v in GOOD_ALARM.items() if k != "title"}),
    Bad("unknown-field", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "colour": "red"}),
    Bad("bad-enum", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "severity": "HUGE"}),
    Bad("lowercase-enum", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "severity": "major"}),
    Bad("number-as-title", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "title": 42}),
    Bad("details-not-object", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "details": "much"}),
    Bad("empty-source", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "source": ""}),
    Bad("long-title", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "title": "x" * 301}),
    Bad("space-in-type", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "type": "flood level"}),
    Bad("nul-in-title", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "title": "Ng\x00p"}),
    Bad("newline-in-source", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "source": "a\nb"}),
    Bad("nul-in-details", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "details": {"k": "v\x00"}}),
    Bad("nan-in-details", "POST", "/api/v1/alarms", headers=JSON_TYPE,
        content=json.dumps({**GOOD_ALARM, "details": {"level": "NAN"}}).replace('"NAN"', "NaN")),
    Bad("infinity-in-details", "POST", "/api/v1/alarms", headers=JSON_TYPE,
        content=json.dumps({**GOOD_ALARM, "details": {"level": 1}}).replace("1}", "1e999}")),
    Bad("too-deep-details", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "details": _deep(40)}),
    Bad("absurdly-deep-json", "POST", "/api/v1/alarms", headers=JSON_TYPE, status=400,
        content='{"details": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}"),
    Bad("huge-integer", "POST", "/api/v1/alarms", headers=JSON_TYPE, status=400,
        content='{"source": "x", "details": {"n": 1' + "0" * 5000 + "}}"),
    Bad("not-utf8", "POST", "/api/v1/alarms", headers=JSON_TYPE, status=400,
        content=b'{"source": "\xff\xfe", "type": "t", "severity": "MAJOR", "title": "x"}'),
    Bad("short-ward-code", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "ward_code": "1668"}),
    Bad("unknown-ward", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "ward_code": "00001"}),
    Bad("unknown-agency", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "agency_id": "so-khong-co"}),
    Bad("agency-with-spaces", "POST", "/api/v1/alarms", json={**GOOD_ALARM, "agency_id": "so nnmt"}),
    # --- acknowledging / clearing
    Bad("ack-malformed-json", "POST", "/api/v1/alarms/{alarm}/ack", content="{note", headers=JSON_TYPE),
    Bad("ack-unknown-field", "POST", "/api/v1/alarms/{alarm}/ack", json={"note": "x", "by": "admin"}),
    Bad("ack-note-wrong-type", "POST", "/api/v1/alarms/{alarm}/ack", json={"note": ["x"]}),
    Bad("ack-note-too-long", "POST", "/api/v1/alarms/{alarm}/ack", json={"note": "x" * 2001}),
    Bad("clear-nul-note", "POST", "/api/v1/alarms/{alarm}/clear", json={"note": "\x00"}),
    Bad("ack-id-not-a-number", "POST", "/api/v1/alarms/abc/ack"),
    Bad("ack-id-zero", "POST", "/api/v1/alarms/0/ack"),
    Bad("ack-id-overflow", "POST", "/api/v1/alarms/99999999999999999999/ack"),
    Bad("ack-id-missing", "POST", "/api/v1/alarms/123456/ack", status=404),
    # --- listing and reading alarms
    Bad("negative-limit", "GET", "/api/v1/alarms", params={"limit": -1}),
    Bad("zero-limit", "GET", "/api/v1/alarms", params={"limit": 0}),
    Bad("huge-limit", "GET", "/api/v1/alarms", params={"limit": 100_000}),
    Bad("negative-offset", "GET", "/api/v1/alarms", params={"offset": -5}),
    Bad("limit-not-a-number", "GET", "/api/v1/alarms", params={"limit": "ten"}),
    Bad("bad-status", "GET", "/api/v1/alarms", params={"status": "burning"}),
    Bad("bad-severity", "GET", "/api/v1/alarms", params={"severity": "HUGE"}),
    Bad("bad-ward-filter", "GET", "/api/v1/alarms", params={"ward_code": "abc"}),
    Bad("nul-in-filter", "GET", "/api/v1/alarms", params={"source": "a\x00b"}),
    Bad("bad-date", "GET", "/api/v1/alarms", params={"since": "yesterday"}),
    Bad("impossible-date", "GET", "/api/v1/alarms", params={"since": "2025-02-30T00:00:00+07:00"}),
    Bad("date-without-offset", "GET", "/api/v1/alarms", params={"since": "2025-07-01T08:00:00"}),
    Bad("read-id-overflow", "GET", "/api/v1/alarms/99999999999999999999"),
    Bad("read-id-negative", "GET", "/api/v1/alarms/-3"),
    # --- users
    Bad("user-bad-role", "POST", "/api/v1/users", json={**GOOD_USER, "role": "superuser"}),
    Bad("user-bad-name", "POST", "/api/v1/users", json={**GOOD_USER, "username": "Tên Có Dấu"}),
    Bad("user-short-password", "POST", "/api/v1/users", json={**GOOD_USER, "password": "short"}),
    Bad("user-extra-field", "POST", "/api/v1/users", json={**GOOD_USER, "is_superuser": True}),
    Bad("user-bad-email", "POST", "/api/v1/users", json={**GOOD_USER, "email": "not-an-email"}),
    Bad("user-nul-name", "POST", "/api/v1/users", json={**GOOD_USER, "full_name": "A\x00"}),
    Bad("user-hash-smuggled", "POST", "/api/v1/users", json={**GOOD_USER, "password_hash": "$argon2id$x"}),
    Bad("patch-null-role", "PATCH", "/api/v1/users/{user}", json={"role": None}),
    Bad("patch-null-active", "PATCH", "/api/v1/users/{user}", json={"active": None}),
    Bad("patch-bool-as-text", "PATCH", "/api/v1/users/{user}", json={"active": "maybe"}),
    Bad("patch-unknown-field", "PATCH", "/api/v1/users/{user}", json={"username": "renamed"}),
    Bad("patch-unknown-agency", "PATCH", "/api/v1/users/{user}", json={"agency_id": "so-khong-co"}),
    Bad("patch-id-overflow", "PATCH", "/api/v1/users/99999999999999999999", json={}),
    # --- agencies, API keys, audit
    Bad("agency-bad-kind", "POST", "/api/v1/agencies", json={"id": "so-x", "name": "Sở X", "kind": "town"}),
    Bad("agency-bad-ward", "POST", "/api/v1/agencies",
        json={"id": "ubnd-x", "name": "X", "kind": "ward", "ward_code": "x"}),
    Bad("agency-bad-id", "POST", "/api/v1/agencies", json={"id": "Sở X", "name": "Sở X", "kind": "department"}),
    Bad("key-no-scopes", "POST", "/api/v1/api-keys", json={"name": "k1", "scopes": []}),
    Bad("key-scopes-as-text", "POST", "/api/v1/api-keys", json={"name": "k1", "scopes": "alarms:read"}),
    Bad("key-unknown-scope", "POST", "/api/v1/api-keys", json={"name": "k1", "scopes": ["alarms:fly"]}),
    Bad("key-unknown-agency", "POST", "/api/v1/api-keys",
        json={"name": "k1", "scopes": ["alarms:read"], "agency_id": "so-khong-co"}),
    Bad("revoke-id-overflow", "DELETE", "/api/v1/api-keys/99999999999999999999"),
    Bad("audit-bad-date", "GET", "/api/v1/audit", params={"since": "01/07/2025"}),
    Bad("audit-negative-limit", "GET", "/api/v1/audit", params={"limit": -1}),
    Bad("audit-until-before-since", "GET", "/api/v1/audit",
        params={"since": "2025-07-02T00:00:00Z", "until": "2025-07-01T00:00:00Z"}),
    # --- login
    Bad("login-no-fields", "POST", "/api/v1/auth/token", data={}),
    Bad("login-json-not-form", "POST", "/api/v1/auth/token", json={"username": "a", "password": "b"}),
    Bad("login-long-username", "POST", "/api/v1/auth/token", data={"username": "a" * 65, "password": "x"}),
    Bad("login-wrong-grant", "POST", "/api/v1/auth/token",
        data={"username": "a", "password": "b", "grant_type": "client_credentials"}),
]  # fmt: skip


@dataclass
class World:
    db: Database
    client: TestClient
    headers: dict[str, str]
    ids: dict[str, int]


@pytest.fixture
def world(db: Database, client: TestClient) -> World:
    admin = quick_user(db, "admin")
    officer = quick_user(db, "agency_officer")
    key_id, _ = quick_key(db, ["alarms:read"])
    return World(db, client, bearer(admin), {"alarm": quick_alarm(db), "user": officer.id, "key": key_id})


def _counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0 for t in TABLES}


def _snapshot(db: Database) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    with db.session() as s:
        alarms = [(a.id, a.count, a.acknowledged, a.cleared, a.updated_at) for a in s.scalars(select(Alarm))]
        users = [(u.id, u.role, u.agency_id, u.active, u.password_hash) for u in s.scalars(select(User))]
    return _counts(db), alarms + users


def test_bad_input_is_a_problem_and_writes_nothing(world: World) -> None:
    """All the cases on one database: each answers 4xx problem+json and changes no row."""
    before = _snapshot(world.db)
    failures = []
    for case in CASES:
        response = world.client.request(
            case.method,
            case.path.format(**world.ids),
            json=case.json,
            content=case.content,
            params=case.params,
            data=case.data,
            headers={**world.headers, **(case.headers or {})},
        )
        body: dict[str, Any] = {}
        if response.headers.get("content-type", "").startswith(PROBLEM_JSON):
            body = response.json()
        ok = (
            response.status_code == case.status
            and body.get("status") == case.status
            and isinstance(body.get("detail"), str)
            and body["detail"]
            and body.get("type", "").startswith("https://")
        )
        if not ok:
            failures.append(
                f"{case.id}: {response.status_code} {response.headers.get('content-type')} {response.text[:300]}"
            )
        if _snapshot(world.db) != before:
            failures.append(f"{case.id}: wrote to the database")
            before = _snapshot(world.db)
    assert not failures, "\n".join(failures)


def test_validation_problems_say_where(world: World) -> None:
    r = world.client.post("/api/v1/alarms", json={**GOOD_ALARM, "severity": "HUGE"}, headers=world.headers)
    body = r.json()
    assert body["code"] == "validation-error"
    assert "severity" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "severity"]
    assert body["instance"] == "/api/v1/alarms"


def test_oversized_bodies_are_413_before_anything_is_read(world: World) -> None:
    before = _snapshot(world.db)
    payload = json.dumps({**GOOD_ALARM, "details": {"blob": "x" * (1024 * 1024)}})
    declared = world.client.post("/api/v1/alarms", content=payload, headers={**world.headers, **JSON_TYPE})

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        data = payload.encode()
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    streamed = world.client.post("/api/v1/alarms", content=chunks(), headers={**world.headers, **JSON_TYPE})
    for r in (declared, streamed):
        assert r.status_code == 413, r.text[:200]
        assert r.headers["content-type"].startswith(PROBLEM_JSON)
        assert r.json()["code"] == "payload-too-large"
    assert _snapshot(world.db) == before
    # Just under the limit is fine.
    small = {**GOOD_ALARM, "details": {"blob": "x" * (1024 * 1024 - 1000)}}
    assert world.client.post("/api/v1/alarms", json=small, headers=world.headers).status_code == 201


def test_a_nul_username_is_just_a_failed_login(world: World) -> None:
    """Not a 500 on PostgreSQL, and the audit row of the failure is still written."""
    r = world.client.post("/api/v1/auth/token", data={"username": "ad\x00min", "password": "whatever-123"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    with world.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "login_failed")).one()
    assert entry.object_id == "ad\ufffdmin"
