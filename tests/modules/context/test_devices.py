"""The device registry, device keys, telemetry over HTTP and MQTT, and the offline alarm."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.app import create_app
from ioc.core.admin_units import ward_locator
from ioc.core.alarms import Alarm
from ioc.core.audit import AuditEntry
from ioc.core.auth import AccessPolicy, User, create_api_key
from ioc.core.db import Database, utcnow
from ioc.core.events import OutboxEvent
from ioc.core.mqtt import MqttPublisher
from ioc.modules.context.contexts import DbContextSource
from ioc.modules.context.devices import demo_devices, demo_seeder
from ioc.modules.context.devices_models import Device
from ioc.modules.context.ingest import Ingestor, parse_topic, telemetry_topic
from ioc.modules.context.ld import ContextLoader
from ioc.modules.context.models import NgsiAttributeHistory
from ioc.settings import MqttSettings, Settings

DEVICES = "/api/v1/devices"
PROBLEM = "application/problem+json"
AQ_ATTRS = {
    "pm25": {"attribute": "pm25", "unitCode": "GQ"},
    "pm10": {"attribute": "pm10", "unitCode": "GQ"},
    "t": {"attribute": "temperature", "unitCode": "CEL"},
}


def air_station(device_id: str = "aq-test", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": device_id,
        "name": "Trạm thử Quảng trường",
        "entity_type": "AirQualityObserved",
        "attributes": AQ_ATTRS,
        "location": {"lat": 18.67797, "lon": 105.66202},
        "agency_id": "so-nnmt",
        "expected_interval_seconds": 60,
    }
    body.update(extra)
    return body


@pytest.fixture
def staff(make_user: Callable[..., User], token_headers: Callable[[User], dict[str, str]]) -> dict[str, dict[str, str]]:
    return {role: token_headers(make_user(role)) for role in ("admin", "operator", "viewer", "ward_officer")}


def loader_of(db: Database) -> ContextLoader:
    return ContextLoader(lambda: DbContextSource(db), timeout=5, refresh_seconds=3600, max_bytes=2_000_000)


def entity(client: TestClient, headers: dict[str, str], entity_id: str) -> dict[str, Any]:
    r = client.get(f"/ngsi-ld/v1/entities/{entity_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def history(db: Database, entity_id: str, name: str) -> list[NgsiAttributeHistory]:
    with db.session() as s:
        rows = s.scalars(
            select(NgsiAttributeHistory)
            .where(NgsiAttributeHistory.entity_id == entity_id, NgsiAttributeHistory.name.endswith("/" + name))
            .order_by(NgsiAttributeHistory.id)
        )
        return list(rows)


def test_registry_crud_errors_and_audit(client: TestClient, staff: dict[str, dict[str, str]], db: Database) -> None:
    admin, operator, viewer = staff["admin"], staff["operator"], staff["viewer"]
    assert client.post(DEVICES, json=air_station()).status_code == 401
    r = client.post(DEVICES, json=air_station(), headers=viewer)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = client.post(DEVICES, json=air_station(), headers=operator)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["entity_id"] == "urn:ngsi-ld:AirQualityObserved:aq-test"
    assert created["ward_code"] == "16681"  # located from the point
    assert created["status"] == "never" and created["last_seen_at"] is None
    assert created["location"] == {"type": "Point", "coordinates": [105.66202, 18.67797]}
    # its entity exists at once, with name and location
    e = entity(client, viewer, created["entity_id"])
    assert e["type"] == "AirQualityObserved" and e["name"]["value"] == "Trạm thử Quảng trường"
    assert e["location"]["value"]["coordinates"] == [105.66202, 18.67797]

    assert client.post(DEVICES, json=air_station(), headers=admin).status_code == 409
    bad = [
        air_station("bad/id"),
        air_station("x1", agency_id="no-such-agency"),
        air_station("x2", ward_code="99999"),
        air_station("x3", attributes={}),
        air_station("x4", attributes={"pm25": {"attribute": "pm 25"}}),
        air_station("x5", entity_id="not a uri"),
        air_station("x6", expected_interval_seconds=1),
        air_station("x7", unknown_field=1),
    ]
    for body in bad:
        r = client.post(DEVICES, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)

    # reads: any staff role; filters
    listed = client.get(DEVICES, headers=staff["ward_officer"]).json()
    assert [d["id"] for d in listed] == ["aq-test"]
    assert client.get(DEVICES, params={"status": "online"}, headers=viewer).json() == []
    assert len(client.get(DEVICES, params={"status": "never", "ward_code": "16681"}, headers=viewer).json()) == 1
    assert client.get(DEVICES).status_code == 401
    assert client.get(DEVICES + "/nope", headers=viewer).status_code == 404

    r = client.patch(DEVICES + "/aq-test", json={"name": "Trạm mới", "location": {"lat": 18.72462, "lon": 105.68843}})
    assert r.status_code == 401
    r = client.patch(
        DEVICES + "/aq-test",
        json={"name": "Trạm mới", "location": {"lat": 18.72462, "lon": 105.68843}},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    assert r.json()["ward_code"] == "16702" and r.json()["name"] == "Trạm mới"
    assert entity(client, viewer, created["entity_id"])["name"]["value"] == "Trạm mới"
    assert client.patch(DEVICES + "/aq-test", json={"enabled": False}, headers=viewer).status_code == 403
    r = client.patch(DEVICES + "/aq-test", json={"enabled": False}, headers=admin)
    assert r.json()["status"] == "disabled"

    assert client.delete(DEVICES + "/aq-test", headers=viewer).status_code == 403
    assert client.delete(DEVICES + "/aq-test", headers=operator).status_code == 204
    assert client.get(DEVICES + "/aq-test", headers=viewer).status_code == 404
    assert client.delete(DEVICES + "/aq-test", headers=operator).status_code == 404
    # the entity and its data stay
    assert entity(client, viewer, created["entity_id"])["name"]["value"] == "Trạm mới"
    with db.session() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry).where(AuditEntry.object_type == "device"))]
    assert actions == ["device.create", "device.update", "device.update", "device.delete"]


def test_keys_and_telemetry_auth(client: TestClient, staff: dict[str, dict[str, str]], db: Database) -> None:
    operator = staff["operator"]
    assert client.post(DEVICES, json=air_station("aq-a"), headers=operator).status_code == 201
    assert client.post(DEVICES, json=air_station("aq-b"), headers=operator).status_code == 201
    assert client.post(DEVICES + "/aq-a/keys", headers=staff["viewer"]).status_code == 403
    assert client.post(DEVICES + "/nope/keys", headers=operator).status_code == 404
    r = client.post(DEVICES + "/aq-a/keys", headers=operator)
    assert r.status_code == 201, r.text
    key_a, key_id = r.json()["key"], r.json()["id"]
    assert key_a.startswith("iocd_")
    key_b = client.post(DEVICES + "/aq-b/keys", headers=operator).json()["key"]
    with db.session() as s:  # only the digest is stored
        from ioc.modules.context.devices_models import DeviceKey

        stored = [k.key_hash for k in s.scalars(select(DeviceKey))]
    assert key_a not in stored and all(len(h) == 64 for h in stored)

    url = DEVICES + "/aq-a/telemetry"
    reading = {"pm25": 12.5}
    assert client.post(url, json=reading, headers={"X-Device-Key": key_a}).status_code == 200
    assert client.post(url, json=reading, headers={"Authorization": f"Bearer {key_a}"}).status_code == 200
    r = client.post(url, json=reading, headers={"X-Device-Key": key_b})  # another device's key
    assert r.status_code == 401 and r.headers["www-authenticate"]
    assert client.post(url, json=reading, headers={"X-Device-Key": "iocd_00000000_nope"}).status_code == 401
    assert client.post(url, json=reading).status_code == 401
    assert client.post(url, json=reading, headers=staff["viewer"]).status_code == 403
    assert client.post(url, json=reading, headers=operator).status_code == 200  # context:write
    with db.session() as s:
        _, api_key = create_api_key(s, AccessPolicy(), name="gateway", scopes=["alarms:read"])
    assert client.post(url, json=reading, headers={"X-API-Key": api_key}).status_code == 403
    # revoked
    assert client.delete(f"{DEVICES}/aq-b/keys/{key_id}", headers=operator).status_code == 404  # not aq-b's
    assert client.delete(f"{DEVICES}/aq-a/keys/{key_id}", headers=operator).status_code == 204
    assert client.post(url, json=reading, headers={"X-Device-Key": key_a}).status_code == 401
    # a disabled device is refused
    client.patch(DEVICES + "/aq-b", json={"enabled": False}, headers=operator)
    assert client.post(DEVICES + "/aq-b/telemetry", json=reading, headers={"X-Device-Key": key_b}).status_code == 409


def test_telemetry_shapes_to_entity_history_and_events(
    client: TestClient, staff: dict[str, dict[str, str]], db: Database
) -> None:
    operator = staff["operator"]
    assert client.post(DEVICES, json=air_station(), headers=operator).status_code == 201
    key = client.post(DEVICES + "/aq-test/keys", headers=operator).json()["key"]
    dev = {"X-Device-Key": key}
    url = DEVICES + "/aq-test/telemetry"
    eid = "urn:ngsi-ld:AirQualityObserved:aq-test"

    # 1. {"ts", "values"}
    r = client.post(url, json={"ts": "2026-12-04T01:00:00Z", "values": {"pm25": 30.5, "t": 24.0}}, headers=dev)
    assert r.status_code == 200, r.text
    assert r.json() == {"device_id": "aq-test", "entity_id": eid, "readings": 1, "ignored": []}
    e = entity(client, operator, eid)
    assert e["pm25"] == {"type": "Property", "value": 30.5, "observedAt": "2026-12-04T01:00:00.000Z", "unitCode": "GQ"}
    assert e["temperature"]["unitCode"] == "CEL" and e["temperature"]["value"] == 24.0
    assert e["dateObserved"]["value"] == {"@type": "DateTime", "@value": "2026-12-04T01:00:00.000Z"}

    # 2. a flat object (epoch seconds), with a key the map does not know
    r = client.post(url, json={"ts": 1764810000, "pm25": 41, "pm10": 60, "battery": 3.7}, headers=dev)
    assert r.status_code == 200 and r.json()["ignored"] == ["battery"]
    e = entity(client, operator, eid)
    assert e["pm25"]["value"] == 41 and e["pm25"]["observedAt"] == "2025-12-04T01:00:00.000Z"
    assert "battery" not in e

    # 3. a list of readings, out of order: the newest ends as the current value, all in history
    batch = [
        {"ts": "2026-12-04T03:00:00+07:00", "values": {"pm25": 55.0}},
        {"ts": "2026-12-04T02:00:00+07:00", "pm25": 50.0},
        {"ts": 1764820800000, "values": {"pm25": 60.0}},  # epoch milliseconds, 2025-12-04T04:00Z
    ]
    r = client.post(url, json=batch, headers=dev)
    assert r.status_code == 200 and r.json()["readings"] == 3
    rows = history(db, eid, "pm25")
    # each payload's readings are applied oldest first (2025-12-04T04:00Z, then 2026-12-03T19:00Z, 20:00Z)
    assert [h.value_num for h in rows] == [30.5, 41, 60.0, 50.0, 55.0]
    observed = [h.observed_at.isoformat() for h in rows if h.observed_at]
    assert "2026-12-03T19:00:00+00:00" in observed and "2026-12-03T20:00:00+00:00" in observed
    e = entity(client, operator, eid)
    assert e["pm25"]["value"] == 55.0  # the newest reading of the last payload

    # every reading is an event on the bus (the environment module listens to these)
    with db.session() as s:
        events = [
            ev.payload
            for ev in s.scalars(select(OutboxEvent).where(OutboxEvent.topic.like("context.entity.%")))
            if ev.payload["id"] == eid and "pm25" in ev.payload["attributes"]
        ]
    assert [ev["attributes"]["pm25"]["value"] for ev in events] == [30.5, 41, 60.0, 50.0, 55.0]

    # the device is online now
    d = client.get(DEVICES + "/aq-test", headers=operator).json()
    assert d["status"] == "online" and d["last_seen_at"] is not None
    assert d["last_observed_at"] == "2026-12-04T01:00:00Z"  # the newest time ever reported

    # bad payloads: 400 with a reason, nothing written
    before = len(history(db, eid, "pm25"))
    for body in (
        b"not json",
        b"[]",
        b'{"pm25": null}',
        b'{"ts": "yesterday", "pm25": 1}',
        b'{"ts": "2999-01-01T00:00:00Z", "pm25": 1}',
        b'{"values": 5}',
        b'[{"pm25": 1}, 7]',
        b"{}",
    ):
        r = client.post(url, content=body, headers={**dev, "Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"].startswith(PROBLEM) and r.json()["detail"]
    assert len(history(db, eid, "pm25")) == before


def test_offline_alarm_raised_after_missed_reports_and_cleared_on_return(
    client: TestClient, staff: dict[str, dict[str, str]], db: Database
) -> None:
    operator = staff["operator"]
    assert client.post(DEVICES, json=air_station(), headers=operator).status_code == 201
    assert client.post(DEVICES, json=air_station("aq-silent"), headers=operator).status_code == 201
    ingestor = Ingestor(loader_of(db), misses=3)
    url = DEVICES + "/aq-test/telemetry"
    assert client.post(url, json={"pm25": 10}, headers=operator).status_code == 200
    with db.session() as s:
        seen = s.get(Device, "aq-test")
        assert seen is not None and seen.last_seen_at is not None
        last = seen.last_seen_at
    # two missed reports (interval 60 s): still online; a never-seen device raises nothing
    with db.session() as s:
        assert ingestor.check_offline(s, now=last + timedelta(seconds=179)) == []
    with db.session() as s:
        assert ingestor.check_offline(s, now=last + timedelta(seconds=180)) == ["aq-test"]
    with db.session() as s:
        assert ingestor.check_offline(s, now=last + timedelta(seconds=900)) == []  # raised once
        alarm = s.scalar(select(Alarm).where(Alarm.source == "device:aq-test", Alarm.type == "device.offline"))
        assert alarm is not None and not alarm.cleared
        assert alarm.ward_code == "16681" and alarm.agency_id == "so-nnmt" and alarm.module == "context"
        assert alarm.details["missed_reports"] == 3
    assert client.get(DEVICES + "/aq-test", headers=operator).json()["status"] == "offline"
    assert [d["id"] for d in client.get(DEVICES, params={"status": "offline"}, headers=operator).json()] == ["aq-test"]
    assert client.get(DEVICES + "/map.geojson").status_code == 401  # the devices layer is for staff
    layer = client.get(DEVICES + "/map.geojson", headers=staff["viewer"])
    assert layer.headers["content-type"].startswith("application/geo+json")
    marks = {f["properties"]["status"]: f["properties"] for f in layer.json()["features"]}
    assert set(marks) == {"offline", "never"} and marks["offline"]["label"].endswith("mất kết nối / offline")
    assert marks["offline"]["colour"] != marks["never"]["colour"] and "time" in marks["offline"]
    assert all(m["colour"].startswith("#") and m["ward"] == "16681" for m in marks.values())
    # the device comes back: the alarm is cleared
    assert client.post(url, json={"pm25": 11}, headers=operator).status_code == 200
    with db.session() as s:
        alarm = s.scalar(select(Alarm).where(Alarm.source == "device:aq-test"))
        assert alarm is not None and alarm.cleared and alarm.cleared_by == "system"
    assert client.get(DEVICES + "/aq-test", headers=operator).json()["status"] == "online"
    with db.session() as s:
        assert ingestor.check_offline(s, now=utcnow() + timedelta(seconds=60)) == []
    # a device taken out of service is no longer missed: its open alarm is cleared
    with db.session() as s:
        assert ingestor.check_offline(s, now=utcnow() + timedelta(seconds=600)) == ["aq-test"]
    assert client.patch(DEVICES + "/aq-test", json={"enabled": False}, headers=operator).status_code == 200
    with db.session() as s:
        open_alarms = s.scalars(select(Alarm).where(Alarm.source == "device:aq-test", Alarm.cleared.is_(False)))
        assert list(open_alarms) == []
        assert ingestor.check_offline(s, now=utcnow() + timedelta(seconds=6000)) == []


def test_demo_devices_stand_in_their_wards(db: Database, client: TestClient, staff: dict[str, dict[str, str]]) -> None:
    devices = demo_devices()
    assert len(devices) == 24
    kinds = {d.entity_type for d in devices}
    assert kinds == {"AirQualityObserved", "FloodMonitoring", "WeatherObserved", "Streetlight"}
    locator = ward_locator(db)
    for d in devices:
        assert d.location is not None
        assert locator.locate(d.location.lat, d.location.lon) == d.ward_code, d.id
    assert len({d.ward_code for d in devices}) == 6
    seed = demo_seeder(Ingestor(loader_of(db)))
    with db.session() as s:
        assert seed(s) == 24
    with db.session() as s:
        assert seed(s) == 0  # idempotent
    listed = client.get(DEVICES, params={"limit": 1000}, headers=staff["viewer"]).json()
    assert len(listed) == 24
    water = client.get(
        "/ngsi-ld/v1/entities", params={"type": "FloodMonitoring", "limit": 100}, headers=staff["viewer"]
    ).json()
    assert len(water) == 6 and all("location" in e for e in water)


def test_topics() -> None:
    assert telemetry_topic("ioc", "", "wl-1") == "ioc/default/devices/wl-1/telemetry"
    assert parse_topic("ioc", "ioc/default/devices/wl-1/telemetry") == ("", "wl-1")
    assert parse_topic("city/ioc", "city/ioc/hanoi/devices/x/telemetry") == ("hanoi", "x")
    assert parse_topic("ioc", "ioc/default/devices/wl-1/status") is None
    assert parse_topic("ioc", "other/default/devices/wl-1/telemetry") is None


# --------------------------------------------------------------------------- MQTT, through the real broker


@pytest.fixture
def mqtt_app(settings: Settings, db: Database, mqtt_url: str) -> tuple[FastAPI, str]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    mqtt_settings = settings.model_copy(update={"mqtt": MqttSettings(url=mqtt_url, topic_prefix=prefix)})
    return create_app(mqtt_settings), prefix


def test_mqtt_round_trip(
    mqtt_app: tuple[FastAPI, str], mqtt_url: str, make_user: Callable[..., User], db: Database
) -> None:
    app, prefix = mqtt_app
    with TestClient(app) as client:
        r = client.post(
            "/api/v1/auth/token", data={"username": make_user("operator").username, "password": "test-password-123"}
        )
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = air_station("aq-mqtt")
        assert client.post(DEVICES, json=body, headers=headers).status_code == 201
        assert app.state.mqtt_ingest.subscribed.wait(15), "the app did not subscribe"
        publisher = MqttPublisher(mqtt_url, client_id=f"test-{uuid.uuid4().hex[:8]}")
        try:
            topic = telemetry_topic(prefix, "", "aq-mqtt")
            publisher.publish(topic, b'{"ts": "2026-12-04T05:00:00Z", "values": {"pm25": 77.7, "t": 29}}')
            publisher.publish(
                topic, b'[{"ts": "2026-12-04T05:05:00Z", "pm25": 80.1}, {"ts": "2026-12-04T05:10:00Z", "pm25": 82.2}]'
            )
            publisher.publish(topic, b"garbage")  # logged and skipped
            publisher.publish(telemetry_topic(prefix, "", "unknown-device"), b'{"pm25": 1}')
            publisher.publish(topic.replace("/default/", "/other-tenant/"), b'{"pm25": 999}')
        finally:
            publisher.close()
        eid = "urn:ngsi-ld:AirQualityObserved:aq-mqtt"
        deadline = time.monotonic() + 20
        e: dict[str, Any] = {}
        while time.monotonic() < deadline:
            e = client.get(f"/ngsi-ld/v1/entities/{eid}", headers=headers).json()
            if e.get("pm25", {}).get("value") == 82.2:
                break
            time.sleep(0.1)
        assert e["pm25"]["value"] == 82.2 and e["pm25"]["observedAt"] == "2026-12-04T05:10:00.000Z"
        assert e["temperature"]["value"] == 29
        assert [h.value_num for h in history(db, eid, "pm25")] == [77.7, 80.1, 82.2]
        assert client.get(DEVICES + "/aq-mqtt", headers=headers).json()["status"] == "online"
