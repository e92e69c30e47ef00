"""The environment API and the public page: readings for everyone without personal data, the
register for staff, clear 4xx answers for bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ioc.core.db import Database
from tests.api.test_role_matrix import assert_problem, bearer, quick_user

from .conftest import Feed, air_change, drain, hour, iso, simple_change

PREFIX = "/api/v1/environment"
SECRETS = ("Trần Thị Riêng Tư", "0987654321", "rieng.tu@example.vn")
PUBLIC = [
    "/stations",
    "/stations?kind=air",
    "/air/now",
    "/air/hourly?ward=16681&from=2025-09-09T00:00:00Z&to=2025-09-11T00:00:00Z",
    "/air/daily?from=2025-09-01&to=2025-09-30",
    "/water/wqi?from=2025-09-01&to=2025-09-30",
    "/flood/gauges",
    "/flood/wards",
    "/flood/zones.geojson",
    "/air/stations.geojson",
    "/flood/gauges.geojson",
    "/rain?at=2025-09-10T03:00:00Z",
    "/incidents/summary?from=2025-01-01&to=2030-12-31",
]


def seed(feed: Feed, points: dict[str, tuple[float, float]]) -> None:
    lat, lon = points["16681"]
    for k in range(1, 5):
        at = hour(k) - timedelta(minutes=30)
        feed(air_change("urn:ngsi-ld:AirQualityObserved:a", at, {"pm25": 30.0}, lat=lat, lon=lon + 0.001))
        feed(air_change("urn:ngsi-ld:AirQualityObserved:b", at, {"pm25": 60.0}, lat=lat, lon=lon - 0.001))
    feed(simple_change("urn:ngsi-ld:FloodMonitoring:ho-goong", "FloodMonitoring", hour(2), currentLevel=1.3))
    feed(
        simple_change(
            "urn:ngsi-ld:WeatherObserved:r", "WeatherObserved", hour(2), precipitation=4.0, location=(lat, lon)
        )
    )


def test_public_readings_carry_no_personal_data(
    app: FastAPI, client: TestClient, feed: Feed, points: dict[str, tuple[float, float]]
) -> None:
    seed(feed, points)
    lat, lon = points["16681"]
    report = {
        "category": "o-nhiem",
        "description": "Mùi hôi nồng nặc ở cuối ngõ",
        "lat": lat,
        "lon": lon,
        "name": SECRETS[0],
        "phone": SECRETS[1],
        "email": SECRETS[2],
    }
    assert client.post("/api/v1/reports", json=report).status_code == 201
    drain(app)
    for path in PUBLIC:
        r = client.get(PREFIX + path)
        assert r.status_code == 200, (path, r.text)
        for secret in SECRETS:
            assert secret not in r.text, path
    summary = client.get(PREFIX + "/incidents/summary?from=2024-01-01&to=2030-12-31").json()
    assert summary["total"] == 1 and summary["by_kind"]["air"] == 1 and summary["by_status"]["new"] == 1
    assert "items" not in summary and "title" not in str(summary)
    page = client.get("/khong-khi")
    assert page.status_code == 200
    for secret in SECRETS:
        assert secret not in page.text


def test_air_endpoints(client: TestClient, feed: Feed, points: dict[str, tuple[float, float]]) -> None:
    seed(feed, points)
    now = client.get(PREFIX + "/air/now").json()
    by_id = {s["entity_id"]: s for s in now["stations"]}
    a, b = by_id["urn:ngsi-ld:AirQualityObserved:a"], by_id["urn:ngsi-ld:AirQualityObserved:b"]
    assert (a["aqi"], b["aqi"]) == (60, 117)  # NowCast 30 and 60 µg/m³ PM2.5
    assert b["band"]["level"] == 3 and b["band"]["name"] == "Kém" and b["band"]["colour"].startswith("#")
    ward = next(w for w in now["wards"] if w["ward_code"] == "16681")
    assert ward["aqi"] == 117 and ward["ward_name"] == "Thành Vinh" and len(ward["stations"]) == 2
    assert len(now["bands"]) == 6
    english = client.get(PREFIX + "/air/now?lang=en").json()
    assert next(s for s in english["stations"] if s["aqi"] == 117)["band"]["name"] == "Poor"

    window = f"&from={iso(hour(0))}&to={iso(hour(6))}"
    rows = client.get(f"{PREFIX}/air/hourly?station_id={a['id']}{window}").json()
    assert [(r["hour_end"], r["aqi"]) for r in rows] == [(iso(hour(k)), 60) for k in (2, 3, 4)]
    worst = client.get(f"{PREFIX}/air/hourly?ward=16681{window}").json()
    assert [(r["aqi"], r["station_id"], r["stations"]) for r in worst] == [(117, b["id"], 2)] * 3
    daily = client.get(PREFIX + "/air/daily?from=2025-09-10&to=2025-09-10").json()
    assert [(d["day"], d["aqi"], d["stations"]) for d in daily] == [("2025-09-10", 117, 2)]
    assert client.get(f"{PREFIX}/air/daily?station_id={a['id']}&from=2025-09-10&to=2025-09-10").json()[0]["aqi"] == 60

    gauges = client.get(PREFIX + "/flood/gauges").json()
    assert [(g["code"], g["alert_level"], g["alert_label"]) for g in gauges] == [("ho-goong", 1, "Báo động I")]
    wards = {w["ward_code"]: w for w in client.get(PREFIX + "/flood/wards?lang=en&at=" + iso(hour(3))).json()}
    assert wards["16681"]["alert_level"] == 1 and wards["16681"]["alert_label"] == "Alert level I"
    assert wards["16681"]["rain_24h_mm"] == 4.0 and wards["16681"]["advice"]
    levels = client.get(f"{PREFIX}/flood/gauges/{gauges[0]['id']}/levels").json()
    assert levels == [{"observed_at": iso(hour(2)), "level_m": 1.3}]
    rain = client.get(PREFIX + "/rain?at=" + iso(hour(2))).json()
    assert [(r["sum_1h_mm"], r["sum_24h_mm"], r["ward_code"]) for r in rain] == [(4.0, 4.0, "16681")]
    zones = client.get(PREFIX + "/flood/zones.geojson")
    assert zones.headers["content-type"].startswith("application/geo+json")
    assert zones.json()["type"] == "FeatureCollection" and zones.json()["features"]


def test_map_layers_follow_the_layer_contract(
    client: TestClient, feed: Feed, points: dict[str, tuple[float, float]]
) -> None:
    seed(feed, points)
    listed = {layer["id"]: layer for layer in client.get("/api/v1/map/layers").json()}
    assert listed["air-stations"]["kind"] == "air" and listed["flood-gauges"]["kind"] == "flood"
    air = client.get(PREFIX + "/air/stations.geojson")
    assert air.headers["content-type"].startswith("application/geo+json")
    props = sorted((f["properties"] for f in air.json()["features"]), key=lambda p: p["label"])
    assert [p["status"] for p in props] == ["band-2", "band-3"]
    assert props[1]["label"].endswith("AQI 117 — Kém") and props[1]["ward"] == "16681"
    assert props[1]["colour"] == client.get(PREFIX + "/air/now").json()["bands"][2]["colour"]
    [gauge] = client.get(PREFIX + "/flood/gauges.geojson?lang=en").json()["features"]
    assert gauge["properties"]["status"] == "level-1" and gauge["properties"]["colour"] == "#f9a825"
    assert gauge["properties"]["label"].endswith("1.30 m — Alert level I")


def test_bad_input_is_a_clear_4xx(client: TestClient) -> None:
    cases: list[tuple[str, int, str | None]] = [
        ("/air/hourly?ward=99999", 422, "unknown-ward"),
        ("/air/hourly?ward=abc", 422, None),
        ("/air/hourly", 422, "missing-filter"),
        ("/air/hourly?ward=16681&from=yesterday", 422, "bad-time"),
        ("/air/hourly?ward=16681&from=2025-01-01T00:00:00Z&to=2025-03-01T00:00:00Z", 422, "bad-range"),
        ("/air/hourly?station_id=999", 404, "not-found"),
        ("/air/daily?from=2025-02-30", 422, "bad-date"),
        ("/air/daily?from=2025-03-01&to=2025-02-01", 422, "bad-range"),
        ("/flood/gauges/999/levels", 404, "not-found"),
        ("/stations?kind=noise", 422, None),
        ("/rain?at=not-a-time", 422, "bad-time"),
    ]
    for path, status, code in cases:
        assert_problem(client.get(PREFIX + path), status, code)


def test_staff_views_need_credentials(client: TestClient, db: Database) -> None:
    assert_problem(client.get(PREFIX + "/incidents"), 401)
    assert_problem(client.get(PREFIX + "/panel"), 401)
    assert_problem(client.get(PREFIX + "/incidents/1"), 401)
    viewer = bearer(quick_user(db, "viewer"))
    assert client.get(PREFIX + "/incidents", headers=viewer).json() == {"items": [], "total": 0}
    panel = client.get(PREFIX + "/panel", headers=viewer)
    assert panel.status_code == 200 and 'data-kpi="open-incidents"' in panel.text
    assert_problem(client.get(PREFIX + "/incidents/12345", headers=viewer), 404)


def test_public_page_and_home_cards(client: TestClient, feed: Feed, points: dict[str, tuple[float, float]]) -> None:
    seed(feed, points)
    page = client.get("/khong-khi")
    assert page.status_code == 200
    text: Any = page.text
    assert "Chất lượng không khí" in text and "Cảnh báo ngập lụt" in text
    assert 'data-ward="16681"' in text and "Thành Vinh" in text and "Báo động I" in text
    assert "leaflet.js" in text and 'id="env-config"' in text and "<script>" not in text
    english = client.get("/khong-khi?lang=en").text
    assert "Air and flooding today" in english and "Alert level I" in english
    home = client.get("/").text
    assert 'href="/khong-khi"' in home and 'href="/khong-khi#lu-lut"' in home
    assert client.get("/assets/environment/air.js").status_code == 200
