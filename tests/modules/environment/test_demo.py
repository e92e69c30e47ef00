"""The demo seeder: a week of data with one pollution episode and one flood episode, shown at once."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.alarms import Alarm, AlarmHistory
from ioc.core.db import Database
from ioc.modules.environment.demo import seed_demo
from ioc.modules.environment.models import Incident
from tests.api.test_role_matrix import bearer, quick_user

from .conftest import drain


def test_demo_week(app: FastAPI, client: TestClient, db: Database) -> None:
    with db.session() as s:
        counts = seed_demo(s)
    assert counts == {"air": 6, "gauge": 14, "rain": 6, "water": 2, "incidents": 4}
    with db.session() as s:
        assert seed_demo(s) == {}, "seeding twice adds nothing"
        sensor = list(s.scalars(select(Incident).where(Incident.source == "sensor")))
        assert len(sensor) == 1 and sensor[0].kind == "air" and sensor[0].details["peak_aqi"] >= 151
        assert sensor[0].details["hours"] >= 3
        flood_alarm = s.scalars(select(Alarm).where(Alarm.source == "gauge:song-vinh-truong-thi")).one()
        steps = [h.severity for h in s.scalars(select(AlarmHistory).where(AlarmHistory.alarm_id == flood_alarm.id))]
        assert "MAJOR" in steps and flood_alarm.cleared, "the Vinh river passed báo động II and receded"
    now = client.get("/api/v1/environment/air/now").json()
    assert len(now["stations"]) == 6 and all(s["aqi"] is not None for s in now["stations"])
    assert {s["ward_code"] for s in now["stations"]} == {"16681", "16690", "16702", "16708", "16732", "17920"}
    wards = {w["ward_code"]: w["alert_level"] for w in client.get("/api/v1/environment/flood/wards").json()}
    assert wards["16690"] >= 1, "Bến Thủy is at báo động I now"
    page = client.get("/khong-khi")
    assert page.status_code == 200 and "KCN Bắc Vinh" in page.text
    # The stations' entities reach the context store once the consumers run.
    drain(app)
    operator = bearer(quick_user(db, "operator"))
    r = client.get("/ngsi-ld/v1/entities?type=AirQualityObserved&limit=100", headers=operator)
    assert r.status_code == 200, r.text
    entities = r.json()
    assert len(entities) == 6 and all("aqi" in e and "pm25" in e and "location" in e for e in entities)
