"""HTTP API of administrative units: public, read-only, RFC 7807 errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient

from ioc.core.geo import shape_from_geojson

BASE = "/api/v1/admin-units"
SIX = ["16681", "16690", "16702", "16708", "16732", "17920"]
PUBLIC_FIELDS = {
    "code",
    "name",
    "full_name",
    "name_en",
    "level",
    "parent_code",
    "valid_from",
    "valid_to",
    "in_city",
}


def _problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    if code is not None:
        assert body["code"] == code
    return body


# --- list ------------------------------------------------------------------------------------


def test_list_before_and_after_the_reform(client: TestClient) -> None:
    before = client.get(BASE, params={"at": "2025-06-30", "in_city": "true"})
    assert before.status_code == 200
    units = before.json()
    assert len(units) == 33
    assert set(units[0]) == PUBLIC_FIELDS  # no geometry in lists
    assert {"code": "16663", "full_name": "Phường Đông Vĩnh"}.items() <= units[0].items()

    after = client.get(BASE, params={"at": "2025-07-01", "in_city": "true"})
    assert [u["code"] for u in after.json()] == SIX
    assert after.json()[0]["name_en"] == "Thanh Vinh Ward"


def test_list_defaults_to_today(client: TestClient) -> None:
    # Today is after the reform: the city is the six wards.
    response = client.get(BASE, params={"in_city": "true"})
    assert [u["code"] for u in response.json()] == SIX


def test_list_filters(client: TestClient) -> None:
    wards = client.get(BASE, params={"at": "2025-07-01", "level": "ward"}).json()
    communes = client.get(BASE, params={"at": "2025-07-01", "level": "commune"}).json()
    assert len(wards) + len(communes) == 130
    assert all(u["full_name"].startswith("Phường") for u in wards)
    assert all(u["full_name"].startswith("Xã") for u in communes)
    found = client.get(BASE, params={"at": "2025-06-30", "q": "Dong Vinh"}).json()
    assert [u["code"] for u in found] == ["16663"]
    province = client.get(BASE, params={"level": "province"}).json()
    assert [(u["code"], u["full_name"]) for u in province] == [("40", "Tỉnh Nghệ An")]


@pytest.mark.parametrize("at", ["2025-13-01", "2025-02-30", "20250701", "01/07/2025", "hôm nay", "2025-7-1"])
def test_list_rejects_malformed_dates(client: TestClient, at: str) -> None:
    body = _problem(client.get(BASE, params={"at": at}), 422, "invalid-date")
    assert "YYYY-MM-DD" in body["detail"]


@pytest.mark.parametrize(
    "params",
    [{"level": "city"}, {"in_city": "maybe"}, {"q": "x" * 101}, {"at": "2" * 41}],
)
def test_list_rejects_bad_filters(client: TestClient, params: dict[str, str]) -> None:
    _problem(client.get(BASE, params=params), 422)


# --- locate ----------------------------------------------------------------------------------


def test_locate_each_ward(client: TestClient) -> None:
    collection = client.get(f"{BASE}/wards.geojson").json()
    for feature in collection["features"]:
        point = shapely.point_on_surface(shape_from_geojson(feature["geometry"]))
        response = client.get(f"{BASE}/locate", params={"lat": point.y, "lon": point.x})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ward"]["code"] == feature["properties"]["code"]
        assert set(body["ward"]) == {"code", "name", "full_name", "name_en"}
        assert (body["lat"], body["lon"]) == (point.y, point.x)


def test_locate_city_centre(client: TestClient) -> None:
    body = client.get(f"{BASE}/locate", params={"lat": 18.6796, "lon": 105.6813}).json()
    assert body["ward"] == {
        "code": "16681",
        "name": "Thành Vinh",
        "full_name": "Phường Thành Vinh",
        "name_en": "Thanh Vinh Ward",
    }


@pytest.mark.parametrize(("lat", "lon"), [(18.80, 105.90), (21.03, 105.85), (0, 0)])
def test_locate_outside_the_city(client: TestClient, lat: float, lon: float) -> None:
    body = _problem(client.get(f"{BASE}/locate", params={"lat": lat, "lon": lon}), 404, "outside-city")
    assert "ngoài địa bàn" in body["detail"]
    assert "outside" in body["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"lat": 91, "lon": 105.7},
        {"lat": -90.5, "lon": 105.7},
        {"lat": 18.7, "lon": 181},
        {"lat": 18.7, "lon": -180.01},
        {"lat": "nan", "lon": 105.7},
        {"lat": 18.7, "lon": "inf"},
        {"lat": "abc", "lon": 105.7},
        {"lat": 18.7},
        {"lon": 105.7},
        {},
    ],
)
def test_locate_rejects_bad_coordinates(client: TestClient, params: dict[str, Any]) -> None:
    _problem(client.get(f"{BASE}/locate", params=params), 422)


def test_bulk_locate_agrees_with_one_by_one(client: TestClient) -> None:
    rng = np.random.default_rng(2025)
    points = np.column_stack((rng.uniform(18.63, 18.84, 150), rng.uniform(105.62, 105.98, 150))).tolist()
    points += [[18.6796, 105.6813], [18.80, 105.90], [21.03, 105.85]]
    response = client.post(f"{BASE}/locate", json={"points": points})
    assert response.status_code == 200, response.text
    wards = response.json()["wards"]
    assert len(wards) == len(points)
    assert wards[-3:] == ["16681", None, None]
    for (lat, lon), got in zip(points, wards, strict=True):
        one = client.get(f"{BASE}/locate", params={"lat": lat, "lon": lon})
        expected = one.json()["ward"]["code"] if one.status_code == 200 else None
        assert one.status_code in (200, 404)
        assert got == expected
    assert {w for w in wards if w} <= set(SIX)
    assert len({w for w in wards if w}) >= 4


def test_bulk_locate_empty(client: TestClient) -> None:
    assert client.post(f"{BASE}/locate", json={"points": []}).json() == {"wards": []}


def test_bulk_locate_accepts_the_cap(client: TestClient) -> None:
    # Compact "[0,0]" points keep the body small, so this exercises the point cap itself
    # rather than the service's request-size limit.
    body = '{"points":[' + ",".join(["[0,0]"] * 100_000) + "]}"
    response = client.post(f"{BASE}/locate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    wards = response.json()["wards"]
    assert len(wards) == 100_000
    assert wards[0] is None


def test_bulk_locate_takes_the_cap_at_full_precision(client: TestClient) -> None:
    # 100,000 points as a GPS logger or pandas writes them (~4.4 MB): the request-size limit
    # of the service must let the documented cap through.
    rng = np.random.default_rng(1)
    points = np.column_stack((rng.uniform(18.64, 18.77, 100_000), rng.uniform(105.64, 105.75, 100_000)))
    response = client.post(f"{BASE}/locate", json={"points": points.tolist()})
    assert response.status_code == 200, response.text[:300]
    wards = response.json()["wards"]
    assert len(wards) == 100_000
    assert {w for w in wards if w} <= set(SIX)
    assert len({w for w in wards if w}) >= 4


def test_bulk_locate_refuses_more_than_the_cap(client: TestClient) -> None:
    body = '{"points":[' + ",".join(["[0,0]"] * 100_001) + "]}"
    response = client.post(f"{BASE}/locate", content=body, headers={"content-type": "application/json"})
    problem = _problem(response, 413, "too-many-points")
    assert "100,000" in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"points": [[18.7, 105.7], [91, 105.7]]},
        {"points": [[18.7, 181]]},
        {"points": [[18.7]]},
        {"points": [[18.7, 105.7, 3]]},
        {"points": [["a", "b"]]},
        {"points": "18.7,105.7"},
        {"pts": []},
        [],
    ],
)
def test_bulk_locate_rejects_bad_points(client: TestClient, body: Any) -> None:
    _problem(client.post(f"{BASE}/locate", json=body), 422)


def test_bulk_locate_names_the_bad_point(client: TestClient) -> None:
    body = _problem(client.post(f"{BASE}/locate", json={"points": [[18.7, 105.7], [91, 105.7]]}), 422)
    assert body["code"] == "invalid-coordinates"
    assert body["index"] == 1


@pytest.mark.parametrize("raw", ['{"points": [[NaN, 105.7]]}', '{"points": [[18.7, Infinity]]}', "not json", ""])
def test_bulk_locate_rejects_non_finite_and_broken_json(client: TestClient, raw: str) -> None:
    response = client.post(f"{BASE}/locate", content=raw, headers={"content-type": "application/json"})
    _problem(response, 422)


# --- map, crosswalk, detail ------------------------------------------------------------------


def test_wards_geojson(client: TestClient) -> None:
    response = client.get(f"{BASE}/wards.geojson")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    assert response.headers["cache-control"] == "public, max-age=3600"
    collection = json.loads(response.content)
    assert collection["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in collection["features"]] == SIX
    props = collection["features"][4]["properties"]
    assert {
        "code": "16732",
        "name": "Cửa Lò",
        "full_name": "Phường Cửa Lò",
        "name_en": "Cua Lo Ward",
    }.items() <= (props.items())
    for feature in collection["features"]:
        assert shape_from_geojson(feature["geometry"]).is_valid
    # conditional GET
    again = client.get(f"{BASE}/wards.geojson", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert not again.content


def test_crosswalk(client: TestClient) -> None:
    response = client.get(f"{BASE}/crosswalk")
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 33
    assert rows[0] == {
        "old_code": "16663",
        "old_name": "Phường Đông Vĩnh",
        "new_code": "16681",
        "new_name": "Phường Thành Vinh",
        "effective": "2025-07-01",
    }
    assert {r["new_code"] for r in rows} == set(SIX)


def test_unit_detail_with_geometry(client: TestClient) -> None:
    body = client.get(f"{BASE}/16681").json()
    assert body["full_name"] == "Phường Thành Vinh"
    assert body["geometry"]["type"] == "MultiPolygon"
    assert body["bbox"] == pytest.approx([105.635781, 18.650405, 105.687992, 18.697918])
    assert body["area_km2"] == 15.54
    assert body["valid_from"] == "2025-07-01"


def test_unit_detail_of_a_shared_code_by_date(client: TestClient) -> None:
    body = client.get(f"{BASE}/16681", params={"at": "2025-06-30"}).json()
    assert body["full_name"] == "Phường Quang Trung"
    assert body["valid_to"] == "2025-07-01"
    assert body["geometry"] is None
    assert body["bbox"] is None


def test_unit_detail_of_a_former_unit(client: TestClient) -> None:
    body = client.get(f"{BASE}/16663").json()
    assert body["full_name"] == "Phường Đông Vĩnh"
    assert body["parent_code"] == "412"
    _problem(client.get(f"{BASE}/16663", params={"at": "2025-07-01"}), 404, "unit-not-found")


@pytest.mark.parametrize("code", ["99999", "abc", "%20"])
def test_unknown_unit(client: TestClient, code: str) -> None:
    _problem(client.get(f"{BASE}/{code}"), 404, "unit-not-found")


def test_unit_detail_rejects_a_bad_date_and_a_long_code(client: TestClient) -> None:
    _problem(client.get(f"{BASE}/16681", params={"at": "yesterday"}), 422, "invalid-date")
    _problem(client.get(f"{BASE}/{'1' * 17}"), 422)


def test_reference_endpoints_are_public(client: TestClient) -> None:
    # No credentials at all: the citizen app and the map read these anonymously.
    client.cookies.clear()
    for path in ("", "/locate?lat=18.6796&lon=105.6813", "/wards.geojson", "/crosswalk", "/40"):
        assert client.get(BASE + path).status_code == 200, path
