"""GeoJSON validation, bbox, distances and the point-in-polygon index."""

from __future__ import annotations

import json
import math
import re
import time
from importlib import resources
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from ioc.core.geo import (
    GeometryError,
    PolygonIndex,
    bbox,
    geojson_bbox,
    geojson_from_shape,
    haversine_m,
    shape_from_geojson,
)

SQUARE = {
    "type": "Polygon",
    "coordinates": [[[105.6, 18.6], [105.7, 18.6], [105.7, 18.7], [105.6, 18.7], [105.6, 18.6]]],
}


def _ward_geometries() -> list[tuple[str, Any]]:
    folder = resources.files("ioc") / "data" / "admin_units"
    items = []
    for code in ("16681", "16690", "16702", "16708", "16732", "17920"):
        entry = next(e for e in folder.iterdir() if e.name.startswith(code) and e.name.endswith(".geojson"))
        feature = json.loads(entry.read_text(encoding="utf-8"))["features"][0]
        items.append((code, shape_from_geojson(feature["geometry"])))
    return items


# --- shape_from_geojson ----------------------------------------------------------------------


VALID = [
    {"type": "Point", "coordinates": [105.68, 18.68]},
    {"type": "Point", "coordinates": [105.68, 18.68, 12.5]},
    {"type": "MultiPoint", "coordinates": [[105.68, 18.68], [105.69, 18.69]]},
    {"type": "LineString", "coordinates": [[105.68, 18.68], [105.69, 18.69]]},
    {"type": "MultiLineString", "coordinates": [[[105.68, 18.68], [105.69, 18.69]]]},
    SQUARE,
    {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]},
    {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [105.68, 18.68]}]},
    {"type": "Point", "coordinates": [180, -90]},
    {"type": "Point", "coordinates": [-180, 90]},
]


@pytest.mark.parametrize("geometry", VALID)
def test_shape_from_geojson_accepts_valid_geometries(geometry: dict[str, Any]) -> None:
    geom = shape_from_geojson(geometry)
    assert geom.geom_type == geometry["type"]
    assert geom.is_valid


def test_shape_from_geojson_unwraps_a_feature() -> None:
    geom = shape_from_geojson({"type": "Feature", "properties": {}, "geometry": SQUARE})
    assert geom.equals(box(105.6, 18.6, 105.7, 18.7))


INVALID = [
    ("not an object", "đối tượng GeoJSON"),
    ({"type": "Circle", "coordinates": [105.6, 18.6]}, "kiểu hình học không hợp lệ"),
    ({"coordinates": [105.6, 18.6]}, "kiểu hình học không hợp lệ"),
    ({"type": "Feature", "geometry": None}, "không có hình học"),
    ({"type": "Point"}, "[lon, lat]"),
    ({"type": "Point", "coordinates": [105.6]}, "[lon, lat]"),
    ({"type": "Point", "coordinates": [105.6, 18.6, 1, 2]}, "[lon, lat]"),
    ({"type": "Point", "coordinates": ["105.6", "18.6"]}, "số hữu hạn"),
    ({"type": "Point", "coordinates": [True, 18.6]}, "số hữu hạn"),
    ({"type": "Point", "coordinates": [math.nan, 18.6]}, "số hữu hạn"),
    ({"type": "Point", "coordinates": [math.inf, 18.6]}, "số hữu hạn"),
    ({"type": "Point", "coordinates": [181, 18.6]}, "kinh độ"),
    ({"type": "Point", "coordinates": [105.6, -90.5]}, "vĩ độ"),
    # lat/lon swapped is the most common client mistake; Vinh's longitude is not a latitude
    ({"type": "Point", "coordinates": [18.6, 105.6]}, "vĩ độ"),
    ({"type": "LineString", "coordinates": [[105.6, 18.6]]}, "ít nhất 2 điểm"),
    (
        {"type": "Polygon", "coordinates": [[[105.6, 18.6], [105.7, 18.6], [105.6, 18.6]]]},
        "ít nhất 4 điểm",
    ),
    ({"type": "Polygon", "coordinates": []}, "không có vòng"),
    ({"type": "Polygon", "coordinates": [105.6, 18.6]}, "phải là một mảng"),
    (
        {
            "type": "Polygon",
            "coordinates": [[[105.6, 18.6], [105.7, 18.6], [105.7, 18.7], [105.6, 18.7]]],
        },
        "chưa khép kín",
    ),
    (
        # a bow-tie: the ring crosses itself
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        "không hợp lệ (invalid geometry): Self-intersection",
    ),
    ({"type": "MultiPoint", "coordinates": []}, "rỗng"),
    ({"type": "GeometryCollection", "geometries": "x"}, "phải là một mảng"),
    (
        {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [500, 0]}]},
        "kinh độ",
    ),
]


@pytest.mark.parametrize(("geometry", "message"), INVALID)
def test_shape_from_geojson_rejects_bad_geometry_with_a_clear_message(geometry: Any, message: str) -> None:
    with pytest.raises(GeometryError) as info:
        shape_from_geojson(geometry)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # callers may catch plain ValueError


def test_shape_from_geojson_message_says_where() -> None:
    bad = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"], [[[105.6, 18.6], [200, 18.6]]]]}
    with pytest.raises(GeometryError, match=r"geometry\.coordinates\[1\]\[0\]"):
        shape_from_geojson(bad)


def test_shape_from_geojson_refuses_deeply_nested_collections() -> None:
    geometry: dict[str, Any] = {"type": "Point", "coordinates": [0, 0]}
    for _ in range(10):
        geometry = {"type": "GeometryCollection", "geometries": [geometry]}
    with pytest.raises(GeometryError, match="lồng quá sâu"):
        shape_from_geojson(geometry)


def test_geojson_round_trip_gives_plain_lists() -> None:
    geom = shape_from_geojson(SQUARE)
    out = geojson_from_shape(geom)
    assert out == SQUARE
    assert json.loads(json.dumps(out)) == out


# --- bbox and distances ----------------------------------------------------------------------


def test_bbox() -> None:
    assert bbox(shape_from_geojson(SQUARE)) == (105.6, 18.6, 105.7, 18.7)
    assert bbox(shapely.Point(105.68, 18.67)) == (105.68, 18.67, 105.68, 18.67)
    with pytest.raises(GeometryError):
        bbox(Polygon())


@pytest.mark.parametrize("geometry", VALID)
def test_geojson_bbox_is_the_bbox_of_the_checked_shape(geometry: dict[str, Any]) -> None:
    assert geojson_bbox(geometry) == bbox(shape_from_geojson(geometry))


@pytest.mark.parametrize(("geometry", "message"), INVALID)
def test_geojson_bbox_refuses_what_shape_from_geojson_refuses(geometry: Any, message: str) -> None:
    with pytest.raises(GeometryError, match=re.escape(message)):
        geojson_bbox(geometry)


def test_haversine_known_distances() -> None:
    one_degree = math.pi * 6_371_008.8 / 180  # along a meridian, on the sphere
    assert haversine_m(18.0, 105.0, 19.0, 105.0) == pytest.approx(one_degree, rel=1e-9)
    assert haversine_m(0.0, 105.0, 0.0, 106.0) == pytest.approx(one_degree, rel=1e-9)
    assert haversine_m(18.68, 105.68, 18.68, 105.68) == 0.0
    # Vinh (Quảng trường Hồ Chí Minh) to Hoàn Kiếm, Hà Nội: about 262 km as the crow flies.
    assert haversine_m(18.6733, 105.6923, 21.0285, 105.8542) == pytest.approx(262_000, rel=0.01)
    # antipodes: half the circumference, no math domain error from rounding
    assert haversine_m(10.0, 20.0, -10.0, -160.0) == pytest.approx(math.pi * 6_371_008.8, rel=1e-7)


def test_haversine_is_symmetric() -> None:
    assert haversine_m(18.6, 105.6, 18.8, 105.9) == pytest.approx(haversine_m(18.8, 105.9, 18.6, 105.6))


# --- PolygonIndex ----------------------------------------------------------------------------


def test_index_on_simple_squares() -> None:
    index = PolygonIndex([("a", box(0, 0, 1, 1)), ("b", box(1, 0, 2, 1)), ("c", box(10, 10, 11, 11))])
    assert len(index) == 3
    assert index.keys == ["a", "b", "c"]
    assert index.bounds == (0.0, 0.0, 11.0, 11.0)
    assert index.locate(0.5, 0.5) == "a"
    assert index.locate(1.5, 0.5) == "b"
    assert index.locate(10.5, 10.5) == "c"
    assert index.locate(5, 5) is None  # inside the overall bbox, in no polygon
    assert index.locate(-1, 0.5) is None
    assert index.locate(math.nan, 0.5) is None


def test_index_boundary_points_belong_to_the_first_polygon() -> None:
    index = PolygonIndex([("a", box(0, 0, 1, 1)), ("b", box(1, 0, 2, 1))])
    # On the shared edge: inside (never "outside everything"), and the first key wins.
    assert index.locate(1.0, 0.5) == "a"
    assert index.locate(0.0, 0.0) == "a"  # a corner of the outer boundary
    assert list(index.locate_many([1.0, 0.0, 2.0], [0.5, 0.0, 1.0])) == ["a", "a", "b"]


def test_index_respects_holes_and_multipolygon_parts() -> None:
    ring = box(0, 0, 10, 10).difference(box(4, 4, 6, 6))
    islands = shapely.MultiPolygon([box(20, 0, 21, 1), box(30, 0, 31, 1)])
    index = PolygonIndex([("ring", ring), ("islands", islands)])
    assert index.locate(5, 5) is None  # in the hole
    assert index.locate(1, 1) == "ring"
    assert index.locate(20.5, 0.5) == "islands"
    assert index.locate(30.5, 0.5) == "islands"
    assert index.locate(25, 0.5) is None  # between the islands, inside their common bbox
    got = index.locate_many(np.array([5, 1, 20.5, 30.5, 25]), np.array([5, 1, 0.5, 0.5, 0.5]))
    assert got.dtype == object
    assert list(got) == [None, "ring", "islands", "islands", None]


def test_index_does_not_modify_the_callers_geometry() -> None:
    geom = box(0, 0, 1, 1)
    PolygonIndex([("a", geom)])
    assert not shapely.is_prepared(geom)


def test_index_rejects_non_polygons() -> None:
    with pytest.raises(GeometryError, match="đa giác"):
        PolygonIndex([("p", shapely.Point(0, 0))])
    with pytest.raises(GeometryError, match="rỗng"):
        PolygonIndex([("e", Polygon())])


def test_locate_many_edge_cases() -> None:
    index = PolygonIndex([("a", box(0, 0, 1, 1))])
    assert index.locate_many(np.array([]), np.array([])).shape == (0,)
    out = index.locate_many([0.5, math.nan, 0.5, math.inf], [0.5, 0.5, math.nan, 0.5])
    assert list(out) == ["a", None, None, None]
    with pytest.raises(ValueError, match="cùng độ dài"):
        index.locate_many(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="1 chiều"):
        index.locate_many(np.zeros((2, 2)), np.zeros((2, 2)))
    empty: PolygonIndex[str] = PolygonIndex([])
    assert empty.bounds is None
    assert empty.locate(0.5, 0.5) is None
    assert list(empty.locate_many([0.5], [0.5])) == [None]


def test_index_with_integer_keys() -> None:
    index = PolygonIndex([(7, box(0, 0, 1, 1))])
    assert index.locate(0.5, 0.5) == 7
    assert list(index.locate_many([0.5, 2], [0.5, 2])) == [7, None]


def test_ward_index_agrees_with_shapely_one_by_one() -> None:
    wards = _ward_geometries()
    index = PolygonIndex(wards)
    assert index.bounds is not None
    min_x, min_y, max_x, max_y = index.bounds
    rng = np.random.default_rng(20250701)
    lons = rng.uniform(min_x - 0.02, max_x + 0.02, 3000)
    lats = rng.uniform(min_y - 0.02, max_y + 0.02, 3000)
    bulk = index.locate_many(lons, lats)
    for lon, lat, got in zip(lons, lats, bulk, strict=True):
        expected = next((code for code, g in wards if g.covers(shapely.Point(lon, lat))), None)
        assert got == expected
        assert index.locate(lon, lat) == expected
    # the sample is meaningful: points both inside several wards and outside
    assert len({c for c in bulk if c is not None}) == 6
    assert any(c is None for c in bulk)


def test_ward_index_throughput_is_at_least_200k_points_per_second() -> None:
    index = PolygonIndex(_ward_geometries())
    assert index.bounds is not None
    min_x, min_y, max_x, max_y = index.bounds
    rng = np.random.default_rng(7)
    n = 300_000
    lons, lats = rng.uniform(min_x, max_x, n), rng.uniform(min_y, max_y, n)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        index.locate_many(lons, lats)
        best = min(best, time.perf_counter() - started)
    assert n / best >= 200_000, f"{n / best:,.0f} points/s"


def test_repair_makes_a_self_intersecting_polygon_valid_instead_of_refusing_it() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    with pytest.raises(GeometryError, match="Self-intersection"):
        shape_from_geojson(bowtie)
    repaired = shape_from_geojson(bowtie, repair=True)
    assert repaired.is_valid
    assert repaired.geom_type == "MultiPolygon"  # the two triangles the ring encloses
    assert repaired.area == pytest.approx(2.0)
    assert shape_from_geojson({"type": "Point", "coordinates": [1, 1]}, repair=True).equals(shapely.Point(1, 1))
