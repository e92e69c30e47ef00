"""The pollution incident register: sensor breaches, citizen reports, the staff workflow, KPI 13."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.alarms import Alarm
from ioc.core.audit import AuditEntry
from ioc.core.db import Database
from ioc.modules.environment import incidents
from ioc.modules.environment.listeners import handle_report
from ioc.modules.environment.models import AqiDaily, Incident
from ioc.modules.environment.service import Runtime
from ioc.modules.environment.stations import ensure_station
from ioc.modules.environment.topics import ReportEvent
from tests.api.test_role_matrix import assert_problem, bearer, quick_user

from .conftest import Feed, air_change, drain, hour

STATION = "urn:ngsi-ld:AirQualityObserved:bac-vinh"
PREFIX = "/api/v1/environment"


def open_incidents(db: Database) -> list[Incident]:
    with db.session() as s:
        return list(s.scalars(select(Incident).order_by(Incident.id)))


def aqi_alarm(db: Database) -> Alarm | None:
    with db.session() as s:
        return s.scalars(select(Alarm).where(Alarm.type == "environment.aqi").order_by(Alarm.id.desc())).first()


def test_three_hours_at_151_or_more_open_an_incident_and_an_alarm(
    db: Database, feed: Feed, points: dict[str, tuple[float, float]]
) -> None:
    lat, lon = points["17920"]
    # PM2.5 at 100 µg/m³: hourly AQI 164 from the second hour (NowCast needs two of three hours).
    for k in (1, 2, 3):
        feed(air_change(STATION, hour(k) - timedelta(minutes=30), {"pm25": 100.0}, lat=lat, lon=lon))
    assert open_incidents(db) == [], "two hours at 164 are not yet a sustained breach"
    assert aqi_alarm(db) is None
    feed(air_change(STATION, hour(4) - timedelta(minutes=30), {"pm25": 100.0}))
    [incident] = open_incidents(db)
    assert (incident.kind, incident.source, incident.status, incident.key) == ("air", "sensor", "new", True)
    assert incident.ward_code == "17920" and incident.agency_id == "so-nnmt"
    assert incident.detected_at == hour(4)
    assert incident.details["peak_aqi"] == 164 and incident.details["hours"] == 3
    alarm = aqi_alarm(db)
    assert alarm is not None and not alarm.cleared and alarm.severity == "MAJOR"
    assert alarm.details["incident_id"] == incident.id
    # A fourth hour of the same breach updates the open incident instead of opening another.
    feed(air_change(STATION, hour(5) - timedelta(minutes=30), {"pm25": 130.0}))
    [incident] = open_incidents(db)
    assert incident.details["hours"] == 4 and incident.details["peak_aqi"] > 164
    assert aqi_alarm(db).count == 1  # type: ignore[union-attr]  # same severity: not repeated
    # The air clears: the alarm is cleared, the incident stays for the officers to close.
    feed(air_change(STATION, hour(6) - timedelta(minutes=30), {"pm25": 10.0}))
    alarm = aqi_alarm(db)
    assert alarm is not None and alarm.cleared
    assert [i.status for i in open_incidents(db)] == ["new"]


def test_citizen_report_in_a_pollution_category_opens_an_incident(
    app: FastAPI, client: TestClient, points: dict[str, tuple[float, float]], db: Database
) -> None:
    lat, lon = points["16702"]
    body: dict[str, Any] = {"description": "Khói đen từ lò đốt rác cả buổi sáng", "lat": lat, "lon": lon}
    r = client.post("/api/v1/reports", json={**body, "category": "o-nhiem", "name": "Nguyễn Văn A"})
    assert r.status_code == 201, r.text
    report_id = r.json()["id"]
    r = client.post("/api/v1/reports", json={**body, "category": "chieu-sang"})  # not a pollution category
    assert r.status_code == 201, r.text
    drain(app)
    [incident] = open_incidents(db)
    assert (incident.kind, incident.source, incident.report_id) == ("air", "citizen", report_id)
    assert incident.ward_code == "16702" and incident.status == "new"
    assert incident.key is False, "a citizen's report is a key incident once an officer confirms it"
    assert "Nguyễn" not in incident.title + incident.description + str(incident.details)
    # Delivered again (at least once): still one incident.
    event = ReportEvent(
        id=report_id,
        category="o-nhiem",
        status="for_triage",
        ward_code="16702",
        agency_id="ubnd-vinh-phu",
        public=True,
        lat=lat,
        lon=lon,
        created_at=incident.detected_at,
        updated_at=incident.detected_at,
    )
    with db.session() as s:
        handle_report(s, _rt(), event)
    assert len(open_incidents(db)) == 1


def _rt() -> Runtime:
    from ioc.modules.environment.settings import EnvironmentSettings

    return Runtime(EnvironmentSettings())


def _create(client: TestClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {
        "kind": "air",
        "source": "camera",
        "title": "Camera phát hiện đốt rác ngoài trời",
        "ward_code": "16708",
        **extra,
    }
    r = client.post(PREFIX + "/incidents", json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_staff_confirm_merge_close_with_remit_and_audit(client: TestClient, db: Database) -> None:
    operator = bearer(quick_user(db, "operator"))
    officer = bearer(quick_user(db, "agency_officer", agency_id="so-nnmt"))
    health = bearer(quick_user(db, "agency_officer", agency_id="so-y-te"))
    ward = bearer(quick_user(db, "ward_officer", agency_id="ubnd-vinh-loc"))
    viewer = bearer(quick_user(db, "viewer"))

    first = _create(client, operator, detected_at="2025-09-10T08:00:00+07:00", source="press")
    second = _create(client, officer, detected_at="2025-09-10T10:00:00+07:00")
    assert first["status"] == "new" and first["history"][0]["action"] == "opened"

    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={}, headers=viewer), 403)
    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={}, headers=ward), 403)
    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={}, headers=health), 404)
    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={}), 401)
    # The ward officer reads the incidents of the ward (read only); the other department does not see them.
    assert client.get(f"{PREFIX}/incidents/{second['id']}", headers=ward).status_code == 200
    assert client.get(PREFIX + "/incidents", headers=health).json()["total"] == 0

    r = client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={"kind": "water"}, headers=officer)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["kind"], r.json()["key"]) == ("confirmed", "water", True)
    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/confirm", json={}, headers=officer), 409)

    # The press article (08:00) and the camera (10:00) saw the same event: the press incident is merged
    # into the camera's, which keeps the earliest detection (time and source).
    r = client.post(f"{PREFIX}/incidents/{first['id']}/merge", json={"into": second["id"]}, headers=operator)
    assert r.status_code == 200, r.text
    target = r.json()
    assert target["id"] == second["id"]
    assert target["detected_at"].startswith("2025-09-10T01:00:00") and target["source"] == "press"
    assert target["details"]["merged"] == [first["id"]]
    merged = client.get(f"{PREFIX}/incidents/{first['id']}", headers=operator).json()
    assert (merged["status"], merged["merged_into_id"]) == ("merged", second["id"])
    assert_problem(
        client.post(f"{PREFIX}/incidents/{first['id']}/close", json={"resolution": "xong"}, headers=officer), 409
    )
    assert_problem(
        client.post(f"{PREFIX}/incidents/{second['id']}/merge", json={"into": second["id"]}, headers=officer), 422
    )
    assert_problem(client.post(f"{PREFIX}/incidents/{second['id']}/close", json={}, headers=officer), 422)

    r = client.post(
        f"{PREFIX}/incidents/{second['id']}/close", json={"resolution": "Đã xử phạt, khắc phục."}, headers=officer
    )
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["closed_by"]
    actions = [h["action"] for h in r.json()["history"]]
    assert actions == ["opened", "confirmed", "absorbed", "closed"]

    with db.session() as s:
        audited = [
            (a.action, a.object_id)
            for a in s.scalars(
                select(AuditEntry).where(AuditEntry.object_type == "env_incident").order_by(AuditEntry.id)
            )
        ]
    assert audited == [
        ("environment.incident.open", str(first["id"])),
        ("environment.incident.open", str(second["id"])),
        ("environment.incident.confirmed", str(second["id"])),
        ("environment.incident.merged", str(first["id"])),
        ("environment.incident.absorbed", str(second["id"])),
        ("environment.incident.closed", str(second["id"])),
    ]

    # Bad input: unknown ward, a point outside the city, a time in the future, unknown fields.
    bad = [
        {"kind": "air", "source": "camera", "title": "Khói", "ward_code": "99999"},
        {"kind": "air", "source": "camera", "title": "Khói", "lat": 21.0285, "lon": 105.8542},
        {
            "kind": "air",
            "source": "camera",
            "title": "Khói",
            "ward_code": "16681",
            "detected_at": "2999-01-01T00:00:00Z",
        },
        {"kind": "noise", "source": "camera", "title": "Khói", "ward_code": "16681"},
        {"kind": "air", "source": "camera", "title": "Khói", "ward_code": "16681", "reporter_phone": "0912"},
    ]
    for body in bad:
        assert_problem(client.post(PREFIX + "/incidents", json=body, headers=operator), 422)
    # The other department cannot enter an incident owned by so-nnmt.
    assert_problem(
        client.post(
            PREFIX + "/incidents",
            json={"kind": "air", "source": "camera", "title": "Khói", "ward_code": "16681"},
            headers=health,
        ),
        403,
    )


def test_kpi_measures_on_hand_made_incidents(app: FastAPI, db: Database) -> None:
    measures = app.state.registry.measures
    total, by_it = measures["environment.incidents_total"], measures["environment.incidents_detected_by_it"]
    good_air = measures["environment.good_air_days_share"]
    june = (date(2025, 6, 1), date(2025, 6, 30))

    def at(day: int, hour_: int = 10) -> datetime:
        return datetime(2025, 6, day, hour_, tzinfo=UTC)

    made = [
        # kind, source, key, status, detected, ward
        ("air", "sensor", True, "new", at(2), "16681"),
        ("air", "camera", True, "confirmed", at(5), "16708"),
        ("water", "citizen", True, "closed", at(9), "16690"),
        ("land", "inspection", True, "closed", at(12), "16690"),
        ("water", "press", True, "confirmed", at(20), "16681"),
        ("air", "sensor", True, "merged", at(21), "16681"),  # folded into another: not counted
        ("air", "citizen", True, "dismissed", at(22), "16681"),  # not an incident: not counted
        ("air", "citizen", False, "new", at(23), "16681"),  # not (yet) a key incident
        ("air", "sensor", True, "new", datetime(2025, 6, 30, 18, tzinfo=UTC), "16681"),  # 1 July in Vinh
        ("air", "sensor", True, "new", datetime(2025, 5, 31, 17, 30, tzinfo=UTC), "16681"),  # 1 June 00:30 in Vinh
    ]
    with db.session() as s:
        for kind, source, key, status, detected, ward in made:
            inc = incidents.open_incident(
                s,
                kind=kind,
                source=source,
                title="Sự cố thử",
                agency_id="so-nnmt",
                detected_at=detected,
                key=key,
                ward_code=ward,
            )
            inc.status = status
    with db.session() as s:
        assert total.fn(s, *june, None) == 6
        assert by_it.fn(s, *june, None) == 4  # sensor ×2, camera, citizen (through the app)
        assert total.fn(s, *june, "16690") == 2 and by_it.fn(s, *june, "16690") == 1
        assert total.fn(s, date(2025, 8, 1), date(2025, 8, 31), None) is None  # nothing recorded: no value
        assert good_air.fn(s, *june, None) is None
    assert total.source_for(*june, None) == "/api/v1/environment/incidents?key=true&from=2025-06-01&to=2025-06-30&ward="

    # Good-air days: the worst station of each day decides.
    with db.session() as s:
        a = ensure_station(s, tenant="", entity_id="urn:a", kind="air", seen_at=at(1), locator=None)
        b = ensure_station(s, tenant="", entity_id="urn:b", kind="air", seen_at=at(1), locator=None)
        a.ward_code, b.ward_code = "16681", "16708"
        s.flush()
        for day, va, vb in [(1, 30, 45), (2, 40, 60), (3, 20, None), (4, 55, 70)]:
            s.add(AqiDaily(station_id=a.id, ward_code="16681", day=date(2025, 6, day), aqi=va, sub_indices={}))
            if vb is not None:
                s.add(AqiDaily(station_id=b.id, ward_code="16708", day=date(2025, 6, day), aqi=vb, sub_indices={}))
    with db.session() as s:
        assert good_air.fn(s, *june, None) == 50.0  # days 1 and 3 of 4
        assert good_air.fn(s, *june, "16681") == 75.0  # days 1, 2, 3 of 4
