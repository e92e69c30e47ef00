"""Validation of Smart Data Models entities (IOC_NGSILD_VALIDATE_MODELS): good ones pass, bad ones are 400."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.modules.context import validation
from ioc.settings import Settings
from tests.conftest import PASSWORD

from .conftest import Ngsi

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
DV = "https://uri.etsi.org/ngsi-ld/default-context/"
SDM_CONTEXT = {"pm25": "https://smartdatamodels.org/dataModel.Environment/pm25"}


@pytest.fixture(autouse=True)
def _validation_off_afterwards() -> Iterator[None]:
    yield
    validation.configure(False)


@pytest.fixture
def app(settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("IOC_NGSILD_VALIDATE_MODELS", "true")
    return create_app(settings)


def aq(n: int = 1, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"urn:ngsi-ld:AirQualityObserved:v{n}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 35.2, "unitCode": "GQ", "observedAt": "2026-12-04T01:00:00Z"},
        "relativeHumidity": {"type": "Property", "value": 0.8},
        "typeofLocation": {"type": "Property", "value": "outdoor"},
        "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2026-12-04T01:00:00Z"}},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:aq-1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.66, 18.67]}},
    }
    body.update(attrs)
    return body


def _detail(r: Any) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == ERR + "BadRequestData"
    detail: str = body["detail"]
    return detail


def test_schema_checks() -> None:
    validation.configure(True)
    ok = [
        ("AirQualityObserved", "pm25", {"type": "Property", "value": 0}),
        ("AirQualityObserved", "airQualityIndex", {"type": "Property", "value": 87}),
        ("FloodMonitoring", "currentLevel", {"type": "Property", "value": -0.3}),  # below the reference
        ("WeatherObserved", "precipitation", {"type": "Property", "value": 12.5}),
        ("WeatherObserved", "pressureTendency", {"type": "Property", "value": "falling"}),
        ("Streetlight", "powerState", {"type": "Property", "value": "on"}),
        ("TrafficFlowObserved", "laneId", {"type": "Property", "value": 2}),
        ("TrafficFlowObserved", "congested", {"type": "Property", "value": False}),
        ("Device", "batteryLevel", {"type": "Property", "value": -1}),
        ("Device", "controlledProperty", {"type": "Property", "value": ["pm25", "pm10"]}),
        ("WaterQualityObserved", "pH", {"type": "Property", "value": 7.2}),
        ("Vehicle", "speed", {"type": "Property", "value": -5}),  # not a city data model: unchecked
        ("AirQualityObserved", "myOwnAttribute", {"type": "Property", "value": -5}),  # unknown attribute
    ]
    for type_, attr, doc in ok:
        validation.check([DV + type_], {DV + attr: {"": doc}})
    bad = [
        ("AirQualityObserved", "pm25", {"type": "Property", "value": -1}, "≥ 0"),
        ("AirQualityObserved", "pm25", {"type": "Property", "value": "high"}, "type number"),
        ("AirQualityObserved", "pm10", {"type": "Property", "value": True}, "type number"),
        ("AirQualityObserved", "airQualityIndex", {"type": "Property", "value": 8.5}, "integer"),
        ("AirQualityObserved", "relativeHumidity", {"type": "Property", "value": 80}, "≤ 1"),
        ("AirQualityObserved", "typeofLocation", {"type": "Property", "value": "roof"}, "indoor, outdoor"),
        ("AirQualityObserved", "dateObserved", {"type": "Property", "value": "hôm qua"}, "date-time"),
        ("AirQualityObserved", "refDevice", {"type": "Property", "value": "urn:x"}, "Relationship"),
        ("AirQualityObserved", "pm25", {"type": "Relationship", "object": "urn:x:y"}, "Property"),
        ("WaterQualityObserved", "pH", {"type": "Property", "value": 15}, "≤ 14"),
        ("FloodMonitoring", "currentLevel", {"type": "Property", "value": "2m"}, "number"),
        ("WeatherObserved", "precipitation", {"type": "Property", "value": -2}, "≥ 0"),
        ("Streetlight", "powerState", {"type": "Property", "value": "blinking"}, "bootingUp"),
        ("Streetlight", "illuminanceLevel", {"type": "Property", "value": 1.2}, "≤ 1"),
        ("TrafficFlowObserved", "laneId", {"type": "Property", "value": 0}, "≥ 1"),
        ("TrafficFlowObserved", "occupancy", {"type": "Property", "value": 1.5}, "≤ 1"),
        ("Device", "batteryLevel", {"type": "Property", "value": 2}, "≤ 1"),
        ("Device", "category", {"type": "Property", "value": []}, "at least 1"),
    ]
    for type_, attr, doc, why in bad:
        with pytest.raises(Exception) as info:
            validation.check([DV + type_], {DV + attr: {"": doc}})
        detail = getattr(info.value, "detail", "")
        assert attr in detail and type_ in detail and why in detail, (attr, detail)
    validation.configure(False)
    validation.check([DV + "AirQualityObserved"], {DV + "pm25": {"": {"type": "Property", "value": -1}}})


@pytest.fixture
def ngsi_v(client: TestClient, make_user: Callable[..., User], token_headers: Callable[[User], dict[str, str]]) -> Ngsi:
    return Ngsi(client, token_headers(make_user("operator")))


def test_writes_are_validated(ngsi_v: Ngsi) -> None:
    ngsi = ngsi_v
    assert ngsi.post("/entities", json=aq(1)).status_code == 201
    detail = _detail(ngsi.post("/entities", json=aq(2, pm25={"type": "Property", "value": -4})))
    assert "pm25" in detail and "AirQualityObserved" in detail
    assert ngsi.get("/entities/urn:ngsi-ld:AirQualityObserved:v2").status_code == 404
    # concise input is checked too
    assert "relativeHumidity" in _detail(ngsi.post("/entities", json=aq(3, relativeHumidity=55)))
    # updates of an existing entity are checked against its stored type; nothing is written
    e1 = "/entities/urn:ngsi-ld:AirQualityObserved:v1"
    assert "pm25" in _detail(ngsi.patch(e1 + "/attrs", json={"pm25": {"type": "Property", "value": -1}}))
    assert "pm25" in _detail(ngsi.patch(e1 + "/attrs/pm25", json={"value": -1}))
    assert "pm10" in _detail(ngsi.post(e1 + "/attrs", json={"pm10": {"type": "Property", "value": -9}}))
    assert "pm25" in _detail(ngsi.put(e1 + "/attrs/pm25", json={"type": "Property", "value": "bad"}))
    assert "pm25" in _detail(ngsi.patch(e1, json={"pm25": -3}))
    assert "typeofLocation" in _detail(ngsi.put(e1, json={**aq(1), "typeofLocation": "roof"}))
    assert ngsi.get(e1).json()["pm25"]["value"] == 35.2
    assert ngsi.patch(e1 + "/attrs", json={"pm25": {"type": "Property", "value": 40}}).status_code == 204
    assert ngsi.get(e1).json()["pm25"]["value"] == 40
    # a batch keeps the valid entities and reports the invalid one
    r = ngsi.post("/entityOperations/upsert", json=[aq(4), aq(5, pm10={"type": "Property", "value": -1})])
    assert r.status_code == 207, r.text
    assert r.json()["success"] == ["urn:ngsi-ld:AirQualityObserved:v4"]
    [error] = r.json()["errors"]
    assert error["entityId"] == "urn:ngsi-ld:AirQualityObserved:v5" and "pm10" in error["error"]["detail"]
    assert ngsi.get("/entities/urn:ngsi-ld:AirQualityObserved:v5").status_code == 404
    r = ngsi.post("/entityOperations/update", json=[{"id": "urn:ngsi-ld:AirQualityObserved:v4", "pm25": -1}])
    assert r.status_code == 207 and "pm25" in r.json()["errors"][0]["error"]["detail"]
    # the same attribute reached through the Smart Data Models vocabulary is checked the same way
    body = {**aq(6, pm25={"type": "Property", "value": -2}), "@context": [SDM_CONTEXT]}
    r = ngsi.post("/entities", json=body, headers={"Content-Type": "application/ld+json"})
    assert "pm25" in _detail(r)


def test_telemetry_is_validated(ngsi_v: Ngsi) -> None:
    client = ngsi_v.client
    device = {
        "id": "wl-v",
        "name": "Mực nước thử",
        "entity_type": "Streetlight",
        "attributes": {"state": {"attribute": "powerState"}, "dim": {"attribute": "illuminanceLevel"}},
    }
    assert client.post("/api/v1/devices", json=device, headers=ngsi_v.auth).status_code == 201
    url = "/api/v1/devices/wl-v/telemetry"
    assert client.post(url, json={"state": "on", "dim": 0.6}, headers=ngsi_v.auth).status_code == 200
    r = client.post(url, json={"state": "blinking"}, headers=ngsi_v.auth)
    assert r.status_code == 400 and "powerState" in r.json()["detail"]
    r = client.post(url, json=[{"dim": 0.5}, {"dim": 3}], headers=ngsi_v.auth)  # all or nothing
    assert r.status_code == 400 and "illuminanceLevel" in r.json()["detail"]
    e = ngsi_v.get("/entities/urn:ngsi-ld:Streetlight:wl-v").json()
    assert e["powerState"]["value"] == "on" and e["illuminanceLevel"]["value"] == 0.6


def test_off_by_default(settings: Settings, db: Database, make_user: Callable[..., User]) -> None:
    validation.configure(True)
    app = create_app(settings)  # no IOC_NGSILD_VALIDATE_MODELS: validation goes off
    with TestClient(app) as plain:
        login = {"username": make_user("operator").username, "password": PASSWORD}
        headers = {"Authorization": f"Bearer {plain.post('/api/v1/auth/token', data=login).json()['access_token']}"}
        r = plain.post("/ngsi-ld/v1/entities", json=aq(7, pm25={"type": "Property", "value": -4}), headers=headers)
        assert r.status_code == 201, r.text
