"""End to end: readings in through the NGSI-LD API -> hourly VN_AQI -> alarm -> incident -> KPI 13,
and the AQI written back into the context store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ioc.core.admin_units import VN_TZ
from ioc.core.db import Database, utcnow
from ioc.modules.context.devices import demo_devices
from ioc.settings import Settings
from tests.api.test_role_matrix import bearer, quick_user
from tests.conftest import PASSWORD, SECRET, LiveServer, MakeUser

from .conftest import drain, iso

ENTITY = "urn:ngsi-ld:AirQualityObserved:vinh-bac-vinh"


def test_readings_to_kpi_13(
    app: FastAPI, client: TestClient, db: Database, points: dict[str, tuple[float, float]]
) -> None:
    operator = bearer(quick_user(db, "operator"))
    lat, lon = points["17920"]
    top = utcnow().replace(minute=0, second=0, microsecond=0)
    for k in range(4):  # four hours of heavy PM2.5 (given in mg/m³ for once: unitCode GP)
        observed = iso(top - timedelta(hours=3 - k, minutes=30))
        entity = {
            "id": ENTITY,
            "type": "AirQualityObserved",
            "name": {"type": "Property", "value": "KCN Bắc Vinh"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
            "pm25": {"type": "Property", "value": 0.1, "unitCode": "GP", "observedAt": observed},
            "pm10": {"type": "Property", "value": 140, "unitCode": "GQ", "observedAt": observed},
        }
        r = client.post("/ngsi-ld/v1/entityOperations/upsert?options=update", json=[entity], headers=operator)
        assert r.status_code in (201, 204), r.text
        drain(app)

    stations = client.get("/api/v1/environment/stations?kind=air").json()
    assert [(s["entity_id"], s["ward_code"], s["name"]) for s in stations] == [(ENTITY, "17920", "KCN Bắc Vinh")]
    rows = client.get(
        f"/api/v1/environment/air/hourly?station_id={stations[0]['id']}&from={iso(top - timedelta(hours=6))}"
        f"&to={iso(top + timedelta(hours=1))}"
    ).json()
    assert [r["aqi"] for r in rows] == [164, 164, 164], "100 µg/m³ PM2.5 for three hours with a NowCast"
    assert {r["dominant"] for r in rows} == {"pm25"}

    alarms = client.get("/api/v1/alarms?status=active", headers=operator).json()
    items = alarms["items"] if isinstance(alarms, dict) else alarms
    [alarm] = [a for a in items if a["type"] == "environment.aqi"]
    assert alarm["severity"] == "MAJOR" and alarm["ward_code"] == "17920"

    register = client.get("/api/v1/environment/incidents?status=open", headers=operator).json()
    [incident] = register["items"]
    assert (incident["source"], incident["kind"], incident["key"]) == ("sensor", "air", True)
    assert alarm["details"]["incident_id"] == incident["id"]

    # The AQI went back into the context store, with its observation time (and so into its history).
    stored = client.get(f"/ngsi-ld/v1/entities/{ENTITY}", headers=operator).json()
    assert stored["aqi"]["value"] == 164 and stored["aqi"]["observedAt"] == iso(top)
    assert stored["aqiDominant"]["value"] == "pm25"

    # KPI 13 for the month of the detection: 1 key incident, detected by a sensor -> 100 %.
    detected_local = datetime.fromisoformat(incident["detected_at"]).astimezone(VN_TZ).date()
    kpi = client.get("/api/v1/kpis/pollution-detected-by-it").json()
    point = next(p for p in kpi["series"] if p["start"] <= detected_local.isoformat() <= p["end"])
    assert point["value"] == 100.0
    names = {i["measure"]: i for i in point["lineage"]["inputs"]}
    assert names["environment.incidents_total"]["value"] == 1.0
    assert names["environment.incidents_detected_by_it"]["value"] == 1.0


def test_simulated_episode_over_http_to_kpi_13(
    start_server: Callable[..., LiveServer], make_user: MakeUser, settings: Settings
) -> None:
    """The whole chain between processes: ``ioc simulate`` replays five hours of a pollution episode
    from the demo air station of Thành Vinh as device telemetry over HTTP to a running ``ioc serve``
    → the context broker → hourly VN_AQI → alarm → incident (detected by a sensor) → KPI 13."""
    server = start_server()
    user = make_user("operator")
    token = httpx.post(f"{server.url}/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    staff = {"Authorization": f"Bearer {token.json()['access_token']}"}
    [station] = [d for d in demo_devices() if d.id == "aq-thanh-vinh"]
    r = httpx.post(f"{server.url}/api/v1/devices", json=station.model_dump(mode="json"), headers=staff)
    assert r.status_code == 201, r.text
    key = httpx.post(f"{server.url}/api/v1/devices/{station.id}/keys", headers=staff).json()["key"]

    # Yesterday from 15:00 local time (the evening rush peaks at 18:00), a reading every 10 minutes.
    start = (datetime.now(VN_TZ) - timedelta(days=1)).replace(hour=15, minute=0, second=0, microsecond=0)
    command = [sys.executable, "-m", "ioc", "simulate", "--http", server.url, "--api-key", key, "--seed", "7"]
    command += ["--devices", station.id, "--episode", "pollution", "--from", start.isoformat()]
    command += ["--every", "10m", "--duration", "5h"]
    env = {**os.environ, "IOC_DATABASE_URL": settings.database_url, "IOC_SECRET_KEY": SECRET}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Đã gửi 30 bản tin, 0 lỗi" in done.stdout, done.stdout

    incidents: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not incidents and time.monotonic() < deadline:
        incidents = httpx.get(f"{server.url}/api/v1/environment/incidents?status=open", headers=staff).json()["items"]
        time.sleep(0.3)
    [incident] = incidents
    assert (incident["source"], incident["kind"], incident["ward_code"]) == ("sensor", "air", "16681")
    hourly = httpx.get(
        f"{server.url}/api/v1/environment/air/hourly",
        params={"ward": "16681", "from": iso(start), "to": iso(start + timedelta(hours=6))},
    ).json()
    assert sum(1 for h in hourly if h["aqi"] >= 151) >= 3, hourly
    alarms = httpx.get(f"{server.url}/api/v1/alarms", params={"type": "environment.aqi"}, headers=staff).json()
    assert [a["ward_code"] for a in alarms] == ["16681"] and alarms[0]["details"]["incident_id"] == incident["id"]
    detected = datetime.fromisoformat(incident["detected_at"]).astimezone(VN_TZ).date().isoformat()
    kpi = httpx.get(f"{server.url}/api/v1/kpis/pollution-detected-by-it").json()
    assert next(p for p in kpi["series"] if p["start"] <= detected <= p["end"])["value"] == 100.0
