"""Who may call what: every /api/v1 endpoint × every kind of caller -> the expected status.

The table is the access policy written out; a new write endpoint without a row fails
:func:`test_every_write_endpoint_is_in_the_matrix`, so nobody adds one without deciding who
may call it. Callers: the five staff roles, an anonymous client and an integration's API key
(scopes ``alarms:read`` and ``alarms:raise``, no agency).

Each row runs every caller against fresh targets (a new alarm to acknowledge per caller, a
new key to revoke, ...) on one database, and reports all mismatches at once.

Modules bring their own rows: ``tests/modules/<name>/role_matrix.py`` defines
``ROWS: list[Row]`` (built with :class:`Row`, :func:`expect` and :func:`everyone` from here;
``url``/``json`` callables receive the :class:`World` and the caller's role), and those rows
run here like the core's.
"""

from __future__ import annotations

import functools
import importlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ioc.core.alarms import AlarmCreate, Severity, raise_alarm
from ioc.core.auth import AccessPolicy, ApiKey, Role, User, create_api_key, hash_password, issue_access_token
from ioc.core.db import Database
from tests.conftest import PASSWORD, SECRET

# --------------------------------------------------------------------------- shared helpers
# (imported by the other API tests of identity, alarms and bad input)

DEFAULT_AGENCY = {"ward_officer": "ubnd-thanh-vinh", "agency_officer": "so-nnmt"}
PROBLEM_JSON = "application/problem+json"


@functools.cache
def stored_password_hash() -> str:
    """One argon2 hash of the suite's password, computed once (hashing is the slow part)."""
    return hash_password(PASSWORD)


def quick_user(
    db: Database, role: str, *, agency_id: str | None = None, username: str | None = None, active: bool = True
) -> User:
    """A user stored as ``create_user`` stores it, with the precomputed hash of ``PASSWORD``."""
    agency_id = agency_id or DEFAULT_AGENCY.get(role)
    with db.session() as s:
        user = User(
            username=username or f"{role.replace('_', '')}-{uuid.uuid4().hex[:8]}",
            password_hash=stored_password_hash(),
            role=Role(role).value,
            agency_id=agency_id,
            full_name=f"Test {role}",
            active=active,
        )
        s.add(user)
        s.flush()
        return user


def bearer(user: User, minutes: int = 60) -> dict[str, str]:
    """Headers with a real access token of ``user`` (signed with the suite's secret)."""
    return {"Authorization": f"Bearer {issue_access_token(SECRET, user, minutes)}"}


def quick_key(db: Database, scopes: list[str], agency_id: str | None = None) -> tuple[int, str]:
    """A new API key: (id, key)."""
    with db.session() as s:
        row, key = create_api_key(s, AccessPolicy(), name="test key", scopes=scopes, agency_id=agency_id)
        return row.id, key


def quick_alarm(
    db: Database,
    *,
    source: str | None = None,
    type_: str = "test.condition",
    ward_code: str | None = "16681",
    agency_id: str | None = "ubnd-thanh-vinh",
    severity: Severity = Severity.MAJOR,
) -> int:
    """A new open alarm (raised by the system); returns its id."""
    data = AlarmCreate(
        source=source or f"test:{uuid.uuid4().hex[:10]}",
        type=type_,
        severity=severity,
        title="Điều kiện thử nghiệm",
        ward_code=ward_code,
        agency_id=agency_id,
    )
    with db.session() as s:
        alarm, _ = raise_alarm(s, data, module="test")
        return alarm.id


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """``response`` is an RFC 7807 problem of ``status`` with a reason (and ``code``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    assert body["type"].startswith("https://")
    if code is not None:
        assert body["code"] == code, body
    return body


# --------------------------------------------------------------------------- the matrix

ROLES = ("admin", "operator", "agency_officer", "ward_officer", "viewer", "anonymous", "apikey")
STAFF = ("admin", "operator", "agency_officer", "ward_officer", "viewer")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
APIKEY_SCOPES = ["alarms:raise", "alarms:read"]
#: A path parameter with a Starlette converter (``{report_id:int}``): OpenAPI names it ``{report_id}``.
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app without its lifespan: these tests need no event dispatcher (events are checked
    in the outbox table), and its PostgreSQL listener takes half a second to stop."""
    test_client = TestClient(app)
    yield test_client
    test_client.close()
    app.state.db.dispose()


@dataclass
class World:
    """The callers of one test and a way to make fresh targets for each."""

    db: Database
    client: TestClient
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def alarm(self, role: str) -> int:
        # In Thành Vinh ward, owned by the ward's committee: in the ward officer's remit, not
        # in the agency officer's (so-nnmt).
        return quick_alarm(self.db, source=f"matrix:{role}:{uuid.uuid4().hex[:6]}")


def expect(ok: int, allowed: tuple[str, ...] | set[str], **special: int) -> dict[str, int]:
    """``ok`` for ``allowed`` callers, 401 for anonymous, 403 for the others, then ``special``."""
    table = {role: (ok if role in allowed else 401 if role == "anonymous" else 403) for role in ROLES}
    table.update(special)
    return table


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


@dataclass(frozen=True)
class Row:
    """One endpoint: how to call it for a caller, and what each caller gets."""

    method: str
    route: str
    expected: dict[str, int]
    url: Callable[[World, str], str] | None = None
    json: Callable[[World, str], Any] | None = None
    form: Callable[[World, str], dict[str, str]] | None = None
    params: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


def _new_user_body(_: World, role: str) -> dict[str, Any]:
    return {"username": f"new.{role}.{uuid.uuid4().hex[:6]}", "password": "a-long-password-1", "role": "viewer"}


def _login_form(world: World, role: str) -> dict[str, str]:
    user = quick_user(world.db, "viewer")
    return {"username": user.username, "password": PASSWORD}


def _target_user(world: World, role: str) -> str:
    return f"/api/v1/users/{quick_user(world.db, 'viewer').id}"


def _target_key(world: World, role: str) -> str:
    key_id, _ = quick_key(world.db, ["alarms:read"])
    return f"/api/v1/api-keys/{key_id}"


def _new_alarm_body(_: World, role: str) -> dict[str, Any]:
    return {
        "source": f"matrix:raise:{role}",
        "type": "test.raise",
        "severity": "MINOR",
        "title": "Thử tạo cảnh báo",
        "ward_code": "16681",
        "agency_id": "ubnd-thanh-vinh",
    }


ALARM_READERS = (*STAFF, "apikey")
#: An alarm of Thành Vinh owned by its committee: the so-nnmt officer sees a 404.
IN_REMIT = {"agency_officer": 404}

CORE_ROWS: list[Row] = [
    # identity
    Row("POST", "/api/v1/auth/token", everyone(200), form=_login_form),
    Row("GET", "/api/v1/me", expect(200, ALARM_READERS)),
    Row("GET", "/api/v1/users", expect(200, {"admin", "operator"})),
    Row("POST", "/api/v1/users", expect(201, {"admin"}), json=_new_user_body),
    Row(
        "PATCH",
        "/api/v1/users/{user_id}",
        expect(200, {"admin"}),
        url=_target_user,
        json=lambda w, r: {"full_name": f"Đổi bởi {r}"},
    ),
    Row("GET", "/api/v1/agencies", expect(200, STAFF)),
    Row(
        "POST",
        "/api/v1/agencies",
        expect(201, {"admin"}),
        json=lambda w, r: {"id": f"so-moi-{r.replace('_', '-')}", "name": "Sở mới", "kind": "department"},
    ),
    Row("GET", "/api/v1/api-keys", expect(200, {"admin"})),
    Row(
        "POST",
        "/api/v1/api-keys",
        expect(201, {"admin"}),
        json=lambda w, r: {"name": f"cảm biến {r}", "scopes": ["alarms:raise"]},
    ),
    Row("DELETE", "/api/v1/api-keys/{key_id}", expect(204, {"admin"}), url=_target_key),
    Row("GET", "/api/v1/audit", expect(200, {"admin"})),
    # alarms
    Row("GET", "/api/v1/alarms", expect(200, ALARM_READERS)),
    Row(
        "GET",
        "/api/v1/alarms/{alarm_id}",
        expect(200, ALARM_READERS, **IN_REMIT),
        url=lambda w, r: f"/api/v1/alarms/{w.alarm(r)}",
    ),
    Row("POST", "/api/v1/alarms", expect(201, {"admin", "operator", "apikey"}), json=_new_alarm_body),
    Row(
        "POST",
        "/api/v1/alarms/{alarm_id}/ack",
        expect(200, STAFF, viewer=403, **IN_REMIT),
        url=lambda w, r: f"/api/v1/alarms/{w.alarm(r)}/ack",
        json=lambda w, r: {"note": f"đã xem ({r})"},
    ),
    Row(
        "POST",
        "/api/v1/alarms/{alarm_id}/clear",
        expect(200, STAFF, viewer=403, **IN_REMIT),
        url=lambda w, r: f"/api/v1/alarms/{w.alarm(r)}/clear",
    ),
    # events: an invalid ``after`` answers 422 once the caller is authorised, so the stream
    # itself (endless) is never opened.
    Row("GET", "/api/v1/events/stream", expect(422, STAFF), params={"after": -1}),
    # public reference data
    Row("GET", "/api/v1/admin-units", everyone(200)),
    Row("GET", "/api/v1/admin-units/locate", everyone(200), params={"lat": 18.6796, "lon": 105.6813}),
    Row("POST", "/api/v1/admin-units/locate", everyone(200), json=lambda w, r: {"points": [[18.6796, 105.6813]]}),
    Row("GET", "/api/v1/admin-units/wards.geojson", everyone(200)),
    Row("GET", "/api/v1/admin-units/crosswalk", everyone(200)),
    Row("GET", "/api/v1/admin-units/{code}", everyone(200), url=lambda w, r: "/api/v1/admin-units/16681"),
]


def _module_rows() -> list[Row]:
    """The rows that module test packages contribute (``tests/modules/<name>/role_matrix.py``)."""
    rows: list[Row] = []
    for path in sorted((Path(__file__).resolve().parents[1] / "modules").glob("*/role_matrix.py")):
        contributed = importlib.import_module(f"tests.modules.{path.parent.name}.role_matrix")
        rows.extend(contributed.ROWS)
    return rows


MATRIX: list[Row] = CORE_ROWS + _module_rows()


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every /api/v1 route: from the router (routers included lazily by
    recent FastAPI are expanded) and from the OpenAPI document, so neither can hide one."""
    found: set[tuple[str, str]] = set()
    pairs: list[tuple[str | None, set[str] | None]]
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.160: lazy included routers
    except ImportError:  # pragma: no cover - older FastAPI keeps plain APIRoutes
        pairs = [(r.path, r.methods) for r in app.routes if isinstance(r, APIRoute)]
    else:
        pairs = [(c.path, c.methods) for c in iter_route_contexts(app.routes)]
    for path, methods in pairs:
        if path and path.startswith("/api/v1"):
            found |= {(m, _CONVERTER.sub(r"{\1}", path)) for m in (methods or set()) - {"HEAD"}}
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/v1"):
            found |= {(m.upper(), path) for m in operations if m.upper() in {*WRITE_METHODS, "GET"}}
    return found


def test_every_write_endpoint_is_in_the_matrix(app: FastAPI) -> None:
    covered = {(row.method, row.route) for row in MATRIX}
    routes = _api_routes(app)
    missing = sorted((m, p) for m, p in routes if m in WRITE_METHODS and (m, p) not in covered)
    assert not missing, f"write endpoints without a row in the role matrix: {missing}"
    stale = sorted(covered - routes)
    assert not stale, f"rows for endpoints that no longer exist: {stale}"


@pytest.fixture
def world(db: Database, client: TestClient) -> World:
    w = World(db, client)
    for role in STAFF:
        w.headers[role] = bearer(quick_user(db, role))
    w.headers["anonymous"] = {}
    _, key = quick_key(db, APIKEY_SCOPES)
    w.headers["apikey"] = {"X-API-Key": key}
    return w


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: row.id)
def test_role_matrix(world: World, row: Row) -> None:
    mismatches = []
    for role in ROLES:
        url = row.url(world, role) if row.url else row.route
        kwargs: dict[str, Any] = {"headers": world.headers[role], "params": row.params}
        if row.json is not None:
            kwargs["json"] = row.json(world, role)
        if row.form is not None:
            kwargs["data"] = row.form(world, role)
        response = world.client.request(row.method, url, **kwargs)
        wanted = row.expected[role]
        if response.status_code != wanted:
            mismatches.append(f"{role}: {response.status_code} (expected {wanted}) {response.text[:200]}")
            continue
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith(PROBLEM_JSON), (role, response.headers)
            if response.status_code == 401:
                assert response.headers.get("www-authenticate"), role
    assert not mismatches, f"{row.id}:\n" + "\n".join(mismatches)


def test_api_key_scopes_come_from_the_key_not_a_role(world: World) -> None:
    """The matrix's key acts only within its scopes: it reads and raises, nothing else."""
    me = world.client.get("/api/v1/me", headers=world.headers["apikey"]).json()
    assert me["kind"] == "apikey"
    assert me["role"] is None
    assert me["permissions"] == sorted(APIKEY_SCOPES)
    with world.db.session() as s:
        assert s.query(ApiKey).count() == 1
