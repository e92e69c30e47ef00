"""Alarms over HTTP: lifecycle, filters, remit of scoped callers, audit rows and outbox events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ioc.core.alarms import Alarm
from ioc.core.audit import AuditEntry
from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from tests.api.test_role_matrix import assert_problem, bearer, quick_alarm, quick_key, quick_user

URL = "/api/v1/alarms"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app without its lifespan: these tests need no event dispatcher (events are checked
    in the outbox table), and its PostgreSQL listener takes half a second to stop."""
    test_client = TestClient(app)
    yield test_client
    test_client.close()
    app.state.db.dispose()


def flood(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "gauge:song-vinh-cau-cua-tien",
        "type": "flood.level",
        "severity": "MAJOR",
        "title": "Mực nước sông Vinh vượt báo động 2",
        "details": {"level_m": 2.6, "alert_level": 2},
        "ward_code": "16690",
        "agency_id": "ubnd-truong-vinh",
    }
    body.update(extra)
    return body


def _topics(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(OutboxEvent.topic).order_by(OutboxEvent.id)))


def _audit(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "alarm").order_by(AuditEntry.id))
        return [(e.action, e.actor_id, e.object_id) for e in rows]


def test_alarm_lifecycle_over_http(client: TestClient, db: Database) -> None:
    operator = quick_user(db, "operator", username="truc.ban")
    officer = quick_user(db, "ward_officer", agency_id="ubnd-truong-vinh", username="can.bo.truong.vinh")
    op, ward = bearer(operator), bearer(officer)

    r = client.post(URL, json=flood(), headers=op)
    assert r.status_code == 201, r.text
    alarm = r.json()
    alarm_id = alarm["id"]
    assert (alarm["status"], alarm["count"], alarm["module"]) == ("ACTIVE_UNACK", 1, "api")
    assert r.headers["content-type"] == "application/json"

    r = client.post(URL, json=flood(details={"level_m": 2.7}), headers=op)  # the same condition again
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["count"], r.json()["details"]["level_m"]) == (alarm_id, 2, 2.7)

    r = client.post(f"{URL}/{alarm_id}/ack", json={"note": "Đã cử tổ xung kích"}, headers=ward)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["ack_by"]) == ("ACTIVE_ACK", "can.bo.truong.vinh")
    assert_problem(client.post(f"{URL}/{alarm_id}/ack", headers=op), 409, "already-acknowledged")

    r = client.post(URL, json=flood(severity="CRITICAL"), headers=op)  # escalation: must be seen again
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["severity"], r.json()["ack_by"]) == ("ACTIVE_UNACK", "CRITICAL", None)

    r = client.post(f"{URL}/{alarm_id}/clear", headers=ward)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["cleared_by"]) == ("CLEARED_UNACK", "can.bo.truong.vinh")
    assert_problem(client.post(f"{URL}/{alarm_id}/clear", headers=op), 409, "already-cleared")
    assert client.post(f"{URL}/{alarm_id}/ack", headers=op).json()["status"] == "CLEARED_ACK"

    r = client.post(URL, json=flood(), headers=op)  # after clearing: a new alarm
    assert r.status_code == 201
    assert r.json()["id"] != alarm_id

    detail = client.get(f"{URL}/{alarm_id}", headers=op).json()
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("raised", "truc.ban"),
        ("updated", "truc.ban"),
        ("acknowledged", "can.bo.truong.vinh"),
        ("escalated", "truc.ban"),
        ("cleared", "can.bo.truong.vinh"),
        ("acknowledged", "truc.ban"),
    ]
    assert detail["history"][2]["note"] == "Đã cử tổ xung kích"

    assert _topics(db) == [
        "alarm.raised",
        "alarm.updated",
        "alarm.acknowledged",
        "alarm.updated",
        "alarm.cleared",
        "alarm.acknowledged",
        "alarm.raised",
    ]
    op_id, ward_id = f"user:{operator.id}", f"user:{officer.id}"
    assert [(a, who) for a, who, _ in _audit(db)] == [
        ("alarm.raise", op_id),
        ("alarm.updated", op_id),
        ("alarm.acknowledge", ward_id),
        ("alarm.escalated", op_id),
        ("alarm.clear", ward_id),
        ("alarm.acknowledge", op_id),
        ("alarm.raise", op_id),
    ]


def test_listing_filters_and_counts(client: TestClient, db: Database) -> None:
    viewer = bearer(quick_user(db, "viewer"))
    a = quick_alarm(db, source="s:a", ward_code="16681")
    b = quick_alarm(db, source="s:b", ward_code="16690", agency_id="so-nnmt", type_="device.offline")
    c = quick_alarm(db, source="s:c", ward_code="16690", agency_id="so-nnmt")
    operator = quick_user(db, "operator")
    client.post(f"{URL}/{b}/ack", headers=bearer(operator))
    client.post(f"{URL}/{c}/clear", headers=bearer(operator))

    def ids(**params: Any) -> list[int]:
        r = client.get(URL, params=params, headers=viewer)
        assert r.status_code == 200, r.text
        assert int(r.headers["x-total-count"]) >= len(r.json())
        return [x["id"] for x in r.json()]

    assert ids() == [c, b, a]  # most recently changed first
    assert ids(status="active") == [b, a]
    assert ids(status=["active", "unack"]) == [a]
    assert ids(status="cleared") == [c]
    assert ids(ward_code="16690") == [c, b]
    assert ids(source="s:a") == [a]
    assert ids(type="device.offline") == [b]
    assert ids(severity=["MAJOR", "CRITICAL"]) == [c, b, a]
    assert ids(severity="WARNING") == []
    assert ids(limit=1, offset=1) == [b]
    assert ids(since="2999-01-01T00:00:00+07:00") == []
    assert ids(since="2020-01-01T00:00:00Z") == [c, b, a]
    r = client.get(URL, params={"limit": 1}, headers=viewer)
    assert r.headers["x-total-count"] == "3"


def test_officers_see_and_change_only_their_remit(client: TestClient, db: Database) -> None:
    mine = quick_alarm(db, ward_code="16681", agency_id="ubnd-thanh-vinh")
    other_ward = quick_alarm(db, ward_code="16690", agency_id="ubnd-truong-vinh")
    env = quick_alarm(db, ward_code="16690", agency_id="so-nnmt")
    ward = bearer(quick_user(db, "ward_officer"))  # Thành Vinh, 16681
    agency = bearer(quick_user(db, "agency_officer"))  # so-nnmt

    def listed(headers: dict[str, str], **params: Any) -> set[int]:
        r = client.get(URL, params=params, headers=headers)
        assert r.status_code == 200
        assert r.headers["x-total-count"] == str(len(r.json()))
        return {x["id"] for x in r.json()}

    assert listed(ward) == {mine}
    assert listed(ward, ward_code="16690") == set()  # a filter cannot widen the remit
    assert listed(agency) == {env}
    for headers, hidden in ((ward, [other_ward, env]), (agency, [mine, other_ward])):
        for alarm_id in hidden:
            for method, path in (("GET", ""), ("POST", "/ack"), ("POST", "/clear")):
                r = client.request(method, f"{URL}/{alarm_id}{path}", headers=headers)
                assert_problem(r, 404, "alarm-not-found")
    assert client.post(f"{URL}/{mine}/ack", headers=ward).status_code == 200
    assert client.post(f"{URL}/{env}/clear", headers=agency).status_code == 200
    with db.session() as s:
        untouched = s.get(Alarm, other_ward)
        assert untouched is not None and not untouched.acknowledged and not untouched.cleared
    # Officers do not raise alarms (integrations and operators do).
    assert_problem(client.post(URL, json=flood(ward_code="16681"), headers=ward), 403, "forbidden")


def test_scoped_integrations_raise_only_in_their_remit(client: TestClient, db: Database) -> None:
    _, key = quick_key(db, ["alarms:raise", "alarms:read"], agency_id="so-nnmt")
    headers = {"X-API-Key": key}
    body = flood(source="aq:quang-truong", type="aqi.high", agency_id="so-nnmt", ward_code="16681")
    r = client.post(URL, json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert_problem(client.post(URL, json={**body, "agency_id": "so-khcn"}, headers=headers), 403, "out-of-remit")
    assert_problem(client.post(URL, json={**body, "agency_id": None}, headers=headers), 403, "out-of-remit")
    # The same condition is already open for another agency: the key may not rewrite it.
    quick_alarm(db, source="gauge:x", type_="flood.level", agency_id="ubnd-truong-vinh", ward_code="16690")
    r = client.post(URL, json={**body, "source": "gauge:x", "type": "flood.level"}, headers=headers)
    assert_problem(r, 403, "out-of-remit")
    with db.session() as s:
        assert s.scalar(select(Alarm.count).where(Alarm.source == "gauge:x")) == 1
    assert [a for a, _, _ in _audit(db)] == ["alarm.raise", "alarm.raise"]  # the key's and the fixture's


def test_raising_checks_wards_and_agencies(client: TestClient, db: Database) -> None:
    operator = bearer(quick_user(db, "operator"))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ward_code": "99999"}, "unknown-ward"),
        ({"ward_code": "40"}, "validation-error"),  # not a ward code at all
        ({"ward_code": "16663"}, "unknown-ward"),  # Đông Vĩnh, a former unit abolished in 2025
        ({"agency_id": "so-khong-co"}, "unknown-agency"),
    ]
    for changes, code in cases:
        assert_problem(client.post(URL, json=flood(**changes), headers=operator), 422, code)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alarm)) == 0
    assert _topics(db) == []
