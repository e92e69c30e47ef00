"""NGSI-LD subscriptions: CRUD, matching and delivery to real HTTP listeners and a real MQTT broker."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from ioc.app import create_app
from ioc.core.audit import AuditEntry
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.modules.context.subscriptions_models import NgsiNotification
from ioc.settings import JobsSettings, Settings

from .conftest import CORE, LD, Ngsi, link_to, vehicle

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE_LINK = f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


@pytest.fixture(autouse=True)
def _fast_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_NGSILD_NOTIFY_RETRY_BASE_SECONDS", "0.3")
    monkeypatch.setenv("IOC_NGSILD_NOTIFY_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("IOC_NGSILD_NOTIFY_PERIODIC_TICK_SECONDS", "0.3")
    monkeypatch.setenv("IOC_NGSILD_NOTIFY_SWEEP_SECONDS", "0.3")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Only this module: the other modules' jobs would share the scheduler thread with ours."""
    return settings.model_copy(update={"modules": ["context"]})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Listener:
    """A real HTTP server on a free port that records the notifications it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue[Received] = queue.Queue()
        self.statuses: list[int] = []  # answered in turn, then 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                outer.received.put(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
                )

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def next(self, timeout: float = 30.0) -> Received:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no notification received") from None

    def nothing(self, wait: float = 1.0) -> None:
        try:
            got = self.received.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected notification: {got.body}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def subscription(endpoint: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}},
    }
    body.update(extra)
    return body


def create_sub(ngsi: Ngsi, body: dict[str, Any], **kw: Any) -> str:
    r = ngsi.post("/subscriptions", json=body, **kw)
    assert r.status_code == 201, r.text
    location: str = r.headers["Location"]
    assert location.startswith("/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:")
    return location.rsplit("/", 1)[1]


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def speed(ngsi: Ngsi, n: int, value: Any, **kw: Any) -> None:
    r = ngsi.patch(
        f"/entities/urn:ngsi-ld:Vehicle:{n}/attrs", json={"speed": {"type": "Property", "value": value}}, **kw
    )
    assert r.status_code == 204, r.text


# --------------------------------------------------------------------------- CRUD


def test_crud_and_listing(ngsi: Ngsi) -> None:
    sid = create_sub(ngsi, subscription("http://example.org/notify", watchedAttributes=["speed"], q="speed>50"))
    r = ngsi.get(f"/subscriptions/{sid}")
    assert r.status_code == 200 and r.headers["Link"] == CORE_LINK
    body = r.json()
    assert body["id"] == sid and body["type"] == "Subscription"
    assert body["entities"] == [{"type": "Vehicle"}] and body["watchedAttributes"] == ["speed"]
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]  # the default
    # isActive is shown only when the subscriber gave it (ETSI TP 028_01/031_01 compare member by member)
    assert body["status"] == "active" and "isActive" not in body and body["q"] == "speed>50"
    # members not given (format, showChanges, sysAttrs) keep their defaults without being shown (TP 030_03)
    assert body["notification"] == {"endpoint": {"uri": "http://example.org/notify", "accept": "application/json"}}
    # a given id; 409 when it exists
    mine = "urn:ngsi-ld:Subscription:mine"
    assert create_sub(ngsi, {**subscription("http://example.org/n"), "id": mine}) == mine
    r = ngsi.post("/subscriptions", json={**subscription("http://example.org/n"), "id": mine})
    assert r.status_code == 409 and r.json()["type"] == ERR + "AlreadyExists"
    # listing, paging, count
    r = ngsi.get("/subscriptions", params={"count": "true", "limit": "1"})
    assert r.status_code == 200 and r.headers["NGSILD-Results-Count"] == "2" and [s["id"] for s in r.json()] == [sid]
    assert [s["id"] for s in ngsi.get("/subscriptions", params={"offset": "1"}).json()] == [mine]
    # PATCH merges members; notification members merge one level down
    r = ngsi.patch(
        f"/subscriptions/{mine}",
        json={"isActive": False, "throttling": 5, "notification": {"format": "keyValues"}},
    )
    assert r.status_code == 204, r.text
    body = ngsi.get(f"/subscriptions/{mine}").json()
    assert body["isActive"] is False and body["status"] == "paused" and body["throttling"] == 5
    assert body["notification"]["format"] == "keyValues"
    assert body["notification"]["endpoint"]["uri"] == "http://example.org/n"
    assert ngsi.patch(f"/subscriptions/{mine}", json={"timeInterval": 10}).status_code == 400  # with throttling
    assert ngsi.patch("/subscriptions/urn:ngsi-ld:Subscription:none", json={"isActive": True}).status_code == 404
    # sysAttrs
    body = ngsi.get(f"/subscriptions/{mine}", params={"options": "sysAttrs"}).json()
    assert body["createdAt"].endswith("Z") and body["modifiedAt"] >= body["createdAt"]
    # DELETE
    assert ngsi.delete(f"/subscriptions/{mine}").status_code == 204
    r = ngsi.get(f"/subscriptions/{mine}")
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"
    assert ngsi.delete(f"/subscriptions/{mine}").status_code == 404
    assert ngsi.get("/subscriptions/not-a-uri").status_code == 400
    # another tenant sees none of them, and an unknown tenant is 404
    assert ngsi.get("/subscriptions", headers={"NGSILD-Tenant": "nobody"}).json()["type"] == ERR + "NonexistentTenant"


def test_jsonld_context_is_expanded_on_write_and_compacted_on_read(ngsi: Ngsi) -> None:
    ctx = {"Car": "https://example.org/vocab#Car", "velocity": "https://example.org/vocab#velocity"}
    body = {
        **subscription("http://example.org/n"),
        "entities": [{"type": "Car"}],
        "watchedAttributes": ["velocity"],
        "notification": {"attributes": ["velocity"], "endpoint": {"uri": "http://example.org/n"}},
        "@context": ctx,
    }
    sid = create_sub(ngsi, body, headers={"Content-Type": LD})
    plain = ngsi.get(f"/subscriptions/{sid}").json()  # the core context: full IRIs
    assert plain["entities"] == [{"type": "https://example.org/vocab#Car"}]
    assert plain["watchedAttributes"] == ["https://example.org/vocab#velocity"]
    assert plain["notification"]["attributes"] == ["https://example.org/vocab#velocity"]
    r = ngsi.get(f"/subscriptions/{sid}", headers={"Accept": LD})
    assert r.headers["content-type"].startswith(LD) and r.json()["@context"] == CORE
    # the same names, reached through a hosted context, come back short
    link = link_to(ngsi.host(ctx))
    short = ngsi.get(f"/subscriptions/{sid}", headers={"Link": link}).json()
    assert short["entities"] == [{"type": "Car"}] and short["watchedAttributes"] == ["velocity"]
    # a JSON body with an @context, or JSON-LD without one: 400
    assert ngsi.post("/subscriptions", json=body).status_code == 400
    bare = {k: v for k, v in body.items() if k != "@context"}
    assert ngsi.post("/subscriptions", json=bare, headers={"Content-Type": LD}).status_code == 400


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"type": "Sub"}, "BadRequestData"),
    ({"entities": None, "watchedAttributes": None}, "BadRequestData"),
    ({"entities": [{"id": "urn:ngsi-ld:Vehicle:1"}]}, "BadRequestData"),
    ({"entities": [{"type": "Vehicle", "idPattern": "(["}]}, "BadRequestData"),
    ({"id": "not a uri"}, "BadRequestData"),
    ({"notification": {"endpoint": {"accept": "application/json"}}}, "BadRequestData"),
    ({"notification": {"endpoint": {"uri": "/relative/notify"}}}, "BadRequestData"),
    ({"notification": {"endpoint": {"uri": "ftp://example.org/x"}}}, "BadRequestData"),
    ({"notification": {"endpoint": {"uri": "mqtt://broker.example.org"}}}, "BadRequestData"),
    ({"notification": {"endpoint": {"uri": "http://e.org/n", "accept": "text/plain"}}}, "BadRequestData"),
    ({"notification": {"format": "table", "endpoint": {"uri": "http://e.org/n"}}}, "BadRequestData"),
    (
        {"notification": {"attributes": ["a"], "pick": ["a"], "endpoint": {"uri": "http://e.org/n"}}},
        "BadRequestData",
    ),
    (
        {"notification": {"endpoint": {"uri": "http://e.org/n", "receiverInfo": [{"key": "X-A"}]}}},
        "BadRequestData",
    ),
    ({"notification": None}, "BadRequestData"),
    ({"q": "speed>>"}, "BadRequestData"),
    ({"q": "(speed>1"}, "BadRequestData"),
    ({"geoQ": {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": [1]}}, "BadRequestData"),
    ({"geoQ": {"georel": "beside", "geometry": "Point", "coordinates": [105.6, 18.6]}}, "BadRequestData"),
    ({"timeInterval": 10, "watchedAttributes": ["speed"]}, "BadRequestData"),
    ({"timeInterval": 10, "throttling": 5}, "BadRequestData"),
    ({"throttling": -5}, "BadRequestData"),
    ({"timeInterval": 0}, "BadRequestData"),
    ({"notificationTrigger": ["entityTouched"]}, "BadRequestData"),
    ({"notificationTrigger": []}, "BadRequestData"),
    ({"expiresAt": "2001-01-01T00:00:00Z"}, "BadRequestData"),
    ({"expiresAt": "tomorrow"}, "BadRequestData"),
    ({"isActive": "yes"}, "BadRequestData"),
    ({"scopeQ": "/Vinh/"}, "BadRequestData"),
    ({"temporalQ": {"timerel": "after", "timeAt": "2025-01-01T00:00:00Z"}}, "OperationNotSupported"),
]


def test_invalid_subscriptions(ngsi: Ngsi) -> None:
    for change, error in INVALID:
        body = subscription("http://example.org/notify")
        for key, value in change.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        r = ngsi.post("/subscriptions", json=body)
        assert r.status_code == (422 if error == "OperationNotSupported" else 400), (change, r.text)
        assert r.json()["type"] == ERR + error, change
    assert ngsi.get("/subscriptions").json() == []


def test_malformed_json_and_media_type(ngsi: Ngsi) -> None:
    r = ngsi.post("/subscriptions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "InvalidRequest"
    r = ngsi.post("/subscriptions", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_access_and_audit(
    client: TestClient,
    ngsi: Ngsi,
    make_user: Callable[..., User],
    token_headers: Callable[[User], dict[str, str]],
    db: Database,
) -> None:
    body = subscription("http://example.org/n")
    body["notification"]["endpoint"]["receiverInfo"] = [{"key": "Authorization", "value": "Bearer s3cret"}]
    r = client.post("/ngsi-ld/v1/subscriptions", json=body)
    assert r.status_code == 401 and r.json()["type"] == ERR + "Unauthorized"
    viewer = token_headers(make_user("viewer"))
    r = client.post("/ngsi-ld/v1/subscriptions", json=body, headers=viewer)
    assert r.status_code == 403 and r.json()["type"] == ERR + "Forbidden"
    sid = create_sub(ngsi, body)
    assert client.get("/ngsi-ld/v1/subscriptions").status_code == 401
    assert client.get(f"/ngsi-ld/v1/subscriptions/{sid}").status_code == 401
    assert client.get(f"/ngsi-ld/v1/subscriptions/{sid}", headers=viewer).status_code == 200
    assert client.patch(f"/ngsi-ld/v1/subscriptions/{sid}", json={"isActive": False}, headers=viewer).status_code == 403
    assert client.delete(f"/ngsi-ld/v1/subscriptions/{sid}", headers=viewer).status_code == 403
    assert ngsi.patch(f"/subscriptions/{sid}", json={"isActive": False}).status_code == 204
    assert ngsi.delete(f"/subscriptions/{sid}").status_code == 204
    with db.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.object_type == "ngsild_subscription")))
        assert [r.action for r in rows] == [
            "context.subscription.create",
            "context.subscription.update",
            "context.subscription.delete",
        ]
        assert all(r.object_id == sid and r.actor_kind == "user" for r in rows)
        created = rows[0].after or {}
        assert created["notification"]["endpoint"]["receiverInfo"] == [{"key": "Authorization", "value": "***"}]
        assert "s3cret" not in json.dumps([r.before for r in rows] + [r.after for r in rows])
        assert rows[1].before["isActive"] is True and rows[1].after["isActive"] is False  # type: ignore[index]


def test_anonymous_writes_setting(monkeypatch: pytest.MonkeyPatch, settings: Settings, db: Database) -> None:
    monkeypatch.setenv("IOC_NGSILD_ANONYMOUS_WRITES", "true")
    with TestClient(create_app(settings)) as c:
        r = c.post("/ngsi-ld/v1/subscriptions", json=subscription("http://example.org/n"))
        assert r.status_code == 201
        assert len(c.get("/ngsi-ld/v1/subscriptions").json()) == 1


# --------------------------------------------------------------------------- notifications


def test_http_notification_q_watched_receiver_info_and_counters(ngsi: Ngsi, listener: Listener) -> None:
    ngsi.create(vehicle(1))
    body = subscription(listener.url, watchedAttributes=["speed"], q="speed>50")
    body["notification"]["endpoint"]["receiverInfo"] = [{"key": "X-Api-Key", "value": "k-123"}]
    sid = create_sub(ngsi, body)
    speed(ngsi, 1, 20)  # q false
    r = ngsi.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json={"brand": {"type": "Property", "value": "b"}})
    assert r.status_code == 204  # not watched
    listener.nothing(0.8)
    speed(ngsi, 1, 60)
    got = listener.next()
    assert got.path == "/notify"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["link"] == CORE_LINK
    assert got.headers["x-api-key"] == "k-123"
    assert "ngsild-tenant" not in got.headers
    note = got.body
    assert note["type"] == "Notification" and note["subscriptionId"] == sid
    assert note["id"].startswith("urn:ngsi-ld:Notification:")
    assert datetime.fromisoformat(note["notifiedAt"].replace("Z", "+00:00")) > datetime.now(UTC) - timedelta(minutes=1)
    assert note["triggerReason"] == "attributeUpdated"
    [entity] = note["data"]
    assert entity["id"] == "urn:ngsi-ld:Vehicle:1" and entity["type"] == "Vehicle"
    assert entity["speed"] == {"type": "Property", "value": 60}
    assert entity["brand"] == {"type": "Property", "value": "b"}
    assert "@context" not in entity
    listener.nothing(0.3)

    def counted() -> bool:
        return "lastSuccess" in ngsi.get(f"/subscriptions/{sid}").json()["notification"]

    wait_for(counted)
    status = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
    assert status["status"] == "ok" and status["timesSent"] == 1 and "timesFailed" not in status
    assert status["lastNotification"] == status["lastSuccess"]
    # a new entity of the type: attributeCreated
    ngsi.create(vehicle(9))
    got = listener.next()
    assert got.body["triggerReason"] == "attributeCreated" and got.body["data"][0]["speed"]["value"] == 90
    # another type, or an entity id not selected: nothing
    ngsi.create({"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "speed": 99})
    listener.nothing(0.8)


def test_formats_attributes_show_changes_and_tenant(ngsi: Ngsi, listener: Listener) -> None:
    tenant = {"NGSILD-Tenant": "vinh"}
    ngsi.create(vehicle(1), headers=tenant)
    kv = subscription(
        listener.url + "?kv",
        notification={"format": "keyValues", "attributes": ["speed"], "endpoint": {"uri": listener.url + "?kv"}},
    )
    kv["entities"] = [{"type": "Vehicle", "id": "urn:ngsi-ld:Vehicle:1"}]
    create_sub(ngsi, kv, headers=tenant)
    concise = subscription(listener.url + "?concise")
    concise["entities"] = [{"type": "Vehicle", "idPattern": "Vehicle:1$"}]
    concise["notification"] = {
        "format": "concise",
        "showChanges": True,
        "sysAttrs": True,
        "attributes": ["speed", "location"],
        "endpoint": {"uri": listener.url + "?concise"},
    }
    create_sub(ngsi, concise, headers=tenant)
    normalized = subscription(listener.url + "?changes")
    normalized["notification"] = {
        "showChanges": True,
        "pick": ["id", "speed"],
        "endpoint": {"uri": listener.url + "?changes"},
    }
    create_sub(ngsi, normalized, headers=tenant)
    speed(ngsi, 1, 33, headers=tenant)
    got = {r.path: r for r in (listener.next(), listener.next(), listener.next())}
    listener.nothing(0.5)
    assert all(r.headers["ngsild-tenant"] == "vinh" for r in got.values())
    assert got["/notify?kv"].body["data"] == [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 33}]
    data = got["/notify?concise"].body["data"][0]
    assert data["speed"]["value"] == 33 and data["speed"]["previousValue"] == 10
    assert "type" not in data["speed"] and "createdAt" in data["speed"]
    assert data["location"]["value"]["type"] == "Point" and "brand" not in data
    assert got["/notify?changes"].body["data"] == [
        {"id": "urn:ngsi-ld:Vehicle:1", "speed": {"type": "Property", "value": 33, "previousValue": 10}}
    ]
    # the default tenant has no subscription: a change there notifies nobody
    ngsi.create(vehicle(1))
    speed(ngsi, 1, 34)
    listener.nothing(0.8)


def test_jsonld_notification_carries_the_subscription_context(ngsi: Ngsi, listener: Listener) -> None:
    ctx = {"Car": "https://example.org/vocab#Car", "velocity": "https://example.org/vocab#velocity"}
    car = {"id": "urn:ngsi-ld:Car:1", "type": "Car", "velocity": 5, "@context": ctx}
    assert ngsi.post("/entities", json=car, headers={"Content-Type": LD}).status_code == 201
    ld_sub = {
        "type": "Subscription",
        "entities": [{"type": "Car"}],
        "notification": {"endpoint": {"uri": listener.url, "accept": LD}, "format": "keyValues"},
        "@context": ctx,
    }
    create_sub(ngsi, ld_sub, headers={"Content-Type": LD})
    r = ngsi.patch("/entities/urn:ngsi-ld:Car:1", json={"velocity": 7, "@context": ctx}, headers={"Content-Type": LD})
    assert r.status_code == 204
    got = listener.next()
    assert got.headers["content-type"] == LD and "link" not in got.headers
    assert got.body["@context"] == ctx
    # with JSON-LD every entity of data carries the @context too (ETSI TP 046_14)
    assert got.body["data"] == [{"@context": ctx, "id": "urn:ngsi-ld:Car:1", "type": "Car", "velocity": 7}]


def test_geoq_filters_notifications(ngsi: Ngsi, listener: Listener) -> None:
    body = subscription(
        listener.url,
        geoQ={"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [105.68, 18.67]},
    )
    create_sub(ngsi, body)
    ngsi.create(vehicle(1))  # ~100 m from the point
    got = listener.next()
    assert got.body["data"][0]["id"] == "urn:ngsi-ld:Vehicle:1"
    far = vehicle(2, location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [106.7, 10.8]}})
    ngsi.create(far)
    listener.nothing(0.8)


def test_triggers_deletion_and_attribute_deletion(ngsi: Ngsi, listener: Listener) -> None:
    ngsi.create(vehicle(1))
    body = subscription(listener.url, notificationTrigger=["entityDeleted", "attributeDeleted", "entityCreated"])
    body["notification"]["showChanges"] = True
    create_sub(ngsi, body)
    speed(ngsi, 1, 70)  # an update: not among the triggers
    listener.nothing(0.8)
    assert ngsi.delete("/entities/urn:ngsi-ld:Vehicle:1/attrs/brand").status_code == 204
    got = listener.next()
    assert got.body["triggerReason"] == "attributeDeleted"
    data = got.body["data"][0]
    assert data["brand"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": "brand1"}
    assert data["speed"]["value"] == 70
    assert ngsi.delete("/entities/urn:ngsi-ld:Vehicle:1").status_code == 204
    got = listener.next()
    assert got.body["triggerReason"] == "entityDeleted"
    data = got.body["data"][0]
    assert data["id"] == "urn:ngsi-ld:Vehicle:1" and data["type"] == "Vehicle" and "deletedAt" in data
    assert data["speed"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": 70}
    ngsi.create(vehicle(2))
    assert listener.next().body["triggerReason"] == "entityCreated"


def test_throttling_pause_and_expiry(ngsi: Ngsi, listener: Listener) -> None:
    ngsi.create(vehicle(1))
    throttled = create_sub(ngsi, subscription(listener.url + "?t", throttling=60))
    speed(ngsi, 1, 1)
    assert listener.next().path == "/notify?t"
    speed(ngsi, 1, 2)
    speed(ngsi, 1, 3)
    listener.nothing(0.8)  # within the 60 s window
    assert ngsi.delete(f"/subscriptions/{throttled}").status_code == 204
    # paused, then resumed
    paused = create_sub(ngsi, subscription(listener.url + "?p", isActive=False))
    speed(ngsi, 1, 4)
    listener.nothing(0.8)
    assert ngsi.patch(f"/subscriptions/{paused}", json={"isActive": True}).status_code == 204
    speed(ngsi, 1, 5)
    assert listener.next().body["data"][0]["speed"]["value"] == 5
    assert ngsi.delete(f"/subscriptions/{paused}").status_code == 204
    # expiresAt passes: status expired, nothing sent
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    expiring = create_sub(ngsi, subscription(listener.url + "?e", expiresAt=soon))
    time.sleep(1.7)
    assert ngsi.get(f"/subscriptions/{expiring}").json()["status"] == "expired"
    speed(ngsi, 1, 6)
    listener.nothing(0.8)


def test_retry_after_a_failure(ngsi: Ngsi, listener: Listener, db: Database) -> None:
    listener.statuses = [500]
    ngsi.create(vehicle(1))
    sid = create_sub(ngsi, subscription(listener.url))
    speed(ngsi, 1, 42)
    first = listener.next()
    second = listener.next()  # retried after the 500
    assert first.body["id"] == second.body["id"] and second.body["data"][0]["speed"]["value"] == 42

    def done() -> bool:
        note = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
        return bool(note.get("status") == "ok" and note.get("timesSent") == 2)

    wait_for(done)
    note = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
    assert note["timesFailed"] == 1 and note["lastFailure"] < note["lastSuccess"] == note["lastNotification"]
    with db.session() as s:
        assert s.scalar(select(NgsiNotification.id)) is None  # delivered: nothing left in the queue


def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"jobs": JobsSettings(first_delay_seconds=0, tick_seconds=0.2)})


def login(c: TestClient, user: User) -> Ngsi:
    """An NGSI-LD client on the app of ``c`` with ``user``'s bearer token (apps made in the test)."""
    token = c.post("/api/v1/auth/token", data={"username": user.username, "password": "test-password-123"})
    return Ngsi(c, {"Authorization": f"Bearer {token.json()['access_token']}"})


def test_periodic_time_interval(
    settings: Settings, db: Database, listener: Listener, make_user: Callable[..., User]
) -> None:
    user = make_user("operator")
    with TestClient(create_app(fast_settings(settings))) as c:
        ngsi = login(c, user)
        ngsi.create(vehicle(1))
        ngsi.create(vehicle(2, speed={"type": "Property", "value": 5}))
        sid = create_sub(ngsi, subscription(listener.url, timeInterval=1, q="speed>=10"))
        first = listener.next()
        second = listener.next()
        for got in (first, second):
            assert got.body["subscriptionId"] == sid and "triggerReason" not in got.body
            assert [e["id"] for e in got.body["data"]] == ["urn:ngsi-ld:Vehicle:1"]
        gap = datetime.fromisoformat(second.body["notifiedAt"][:-1]) - datetime.fromisoformat(
            first.body["notifiedAt"][:-1]
        )
        assert gap >= timedelta(seconds=0.7)
        speed(ngsi, 1, 3)  # no longer matches q, and a change does not notify a periodic subscription
        time.sleep(0.2)
        while not listener.received.empty():
            listener.received.get()
        listener.nothing(1.5)


def test_pending_notification_survives_a_restart(
    settings: Settings, db: Database, listener: Listener, make_user: Callable[..., User]
) -> None:
    user = make_user("operator")
    listener.statuses = [503] * 100  # down for the first app

    with TestClient(create_app(settings)) as c:
        ngsi = login(c, user)
        ngsi.create(vehicle(1))
        sid = create_sub(ngsi, subscription(listener.url))
        speed(ngsi, 1, 77)
        assert listener.next().body["data"][0]["speed"]["value"] == 77  # answered 503

        def failed_once() -> bool:
            with db.session() as s:
                return (s.scalar(select(NgsiNotification.attempts)) or 0) >= 1

        wait_for(failed_once)  # the failure is recorded and the notification stays queued, durably
    listener.statuses = []
    while not listener.received.empty():
        listener.received.get()
    with TestClient(create_app(fast_settings(settings))) as c:
        got = listener.next()
        assert got.body["subscriptionId"] == sid and got.body["data"][0]["speed"]["value"] == 77
        ngsi = login(c, user)
        wait_for(lambda: ngsi.get(f"/subscriptions/{sid}").json()["notification"].get("status") == "ok")
        note = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
        assert note["timesFailed"] >= 1 and note["timesSent"] == note["timesFailed"] + 1
    with db.session() as s:
        assert s.scalar(select(NgsiNotification.id)) is None


def test_mqtt_notification(ngsi: Ngsi, mqtt_url: str) -> None:
    broker = urlsplit(mqtt_url)
    topic = f"ioc-test/{uuid.uuid4().hex}/notify"
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, msg: messages.put(json.loads(msg.payload))
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect(broker.hostname or "127.0.0.1", broker.port or 1883)
    client.loop_start()
    try:
        assert subscribed.wait(10)
        ngsi.create(vehicle(1))
        body = subscription(f"mqtt://{broker.hostname}:{broker.port or 1883}/{topic}")
        endpoint = body["notification"]["endpoint"]
        endpoint["notifierInfo"] = [{"key": "MQTT-QoS", "value": "1"}]
        endpoint["receiverInfo"] = [{"key": "X-Ward", "value": "Vinh Phu"}]
        sid = create_sub(ngsi, body)
        speed(ngsi, 1, 55)
        message = messages.get(timeout=10)
        assert set(message) == {"metadata", "body"}
        assert message["metadata"]["Content-Type"] == "application/json"
        assert message["metadata"]["Link"] == CORE_LINK and message["metadata"]["X-Ward"] == "Vinh Phu"
        assert message["body"]["type"] == "Notification" and message["body"]["subscriptionId"] == sid
        assert message["body"]["data"][0]["speed"] == {"type": "Property", "value": 55}
        wait_for(lambda: ngsi.get(f"/subscriptions/{sid}").json()["notification"].get("status") == "ok")
    finally:
        client.loop_stop()
        client.disconnect()
