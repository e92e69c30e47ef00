"""Query Entities with a geo-query and a q (``search.run_query``): the candidates that SQL and their
bounding boxes decide (a point near a point, a q on typed columns) and those Python decides (other
geometries, compound values, several instances) give together the exact answer, on both databases.

The expected answer is computed here from the entities as written (a haversine of our own), away
from any distance bound, so a wrong shortcut shows as a missing or extra id.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .conftest import Ngsi

CENTRE = (105.68, 18.67)
RADIUS = 2000.0


def metres(lon: float, lat: float) -> float:
    """Great-circle distance from the centre (WGS 84 sphere, radius 6,371,008.8 m)."""
    p1, p2 = math.radians(CENTRE[1]), math.radians(lat)
    dp, dl = p2 - p1, math.radians(lon - CENTRE[0])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def place(rnd: random.Random) -> tuple[float, float]:
    """A point within ~4.5 km of the centre, not within 50 m of the query's 2 km bound."""
    while True:
        lon = CENTRE[0] + rnd.uniform(-0.04, 0.04)
        lat = CENTRE[1] + rnd.uniform(-0.04, 0.04)
        if abs(metres(lon, lat) - RADIUS) > 50:
            return lon, lat


def geo(kind: str, lon: float, lat: float) -> dict[str, Any]:
    if kind == "line":  # a short segment: its distance is its first vertex's, give or take 1 m
        return {"type": "LineString", "coordinates": [[lon, lat], [lon + 0.000005, lat]]}
    return {"type": "Point", "coordinates": [lon, lat]}


def population(n: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Stations of every shape the query meets, and the ids that match ``m0>100`` within 2 km."""
    rnd = random.Random(11)
    entities, expected = [], set()
    for i in range(n):
        eid = f"urn:ngsi-ld:AirQualityObserved:s{i:04d}"
        e: dict[str, Any] = {"id": eid, "type": "AirQualityObserved"}
        shape = rnd.choice(["point", "point", "point", "line", "two"])
        lon, lat = place(rnd)
        e["location"] = {"type": "GeoProperty", "value": geo("line" if shape == "line" else "point", lon, lat)}
        near = metres(lon, lat) < RADIUS
        if shape == "two":  # a second instance elsewhere: the entity is near if either is
            lon2, lat2 = place(rnd)
            e["location"] = [
                e["location"],
                {"type": "GeoProperty", "value": geo("point", lon2, lat2), "datasetId": "urn:ngsi-ld:Dataset:gps"},
            ]
            near = near or metres(lon2, lat2) < RADIUS
        value_shape = rnd.choice(["num", "num", "num", "array", "text"])
        x = rnd.uniform(0, 200)
        if value_shape == "array":  # a compound value: any element may match (§4.9)
            e["m0"] = {"type": "Property", "value": [1, x]}
        elif value_shape == "text":  # a string is no number: never greater
            e["m0"] = {"type": "Property", "value": str(round(x))}
        else:
            e["m0"] = {"type": "Property", "value": x}
        if near and value_shape != "text" and x > 100:
            expected.add(eid)
        entities.append(e)
    return entities, expected


def first_vertices(entity: dict[str, Any]) -> list[tuple[float, float]]:
    """The first vertex of each instance of the entity's location."""
    instances = entity["location"] if isinstance(entity["location"], list) else [entity["location"]]
    out = []
    for inst in instances:
        coords = inst["value"]["coordinates"]
        lon, lat = coords[0] if inst["value"]["type"] == "LineString" else coords
        out.append((lon, lat))
    return out


def near_query(**extra: str) -> dict[str, str]:
    return {
        "type": "AirQualityObserved",
        "q": "m0>100",
        "georel": f"near;maxDistance=={RADIUS:g}",
        "geometry": "Point",
        "coordinates": f"[{CENTRE[0]},{CENTRE[1]}]",
        **extra,
    }


def test_near_with_q_agrees_with_the_exact_check_on_every_shape(ngsi: Ngsi) -> None:
    entities, expected = population(600)
    r = ngsi.post("/entityOperations/create", json=entities)
    assert r.status_code == 201, r.text
    assert 20 < len(expected) < 300  # the draw covers both answers

    r = ngsi.get("/entities", params=near_query(limit="1000", count="true"))
    assert r.status_code == 200, r.text
    assert {e["id"] for e in r.json()} == expected
    assert r.headers["NGSILD-Results-Count"] == str(len(expected))

    # pages of 7 in creation order, without count: the scan stops early and resumes right
    paged: list[str] = []
    for offset in range(0, len(expected) + 7, 7):
        page = ngsi.get("/entities", params=near_query(limit="7", offset=str(offset)))
        assert page.status_code == 200, page.text
        paged += [e["id"] for e in page.json()]
    assert paged == sorted(expected)  # ids were created in order

    # the complement of the q, and a q the typed columns decide alone (an existence test)
    r = ngsi.get("/entities", params=near_query(q="!m0", limit="1000"))
    assert r.json() == []
    r = ngsi.get("/entities", params=near_query(q="m0", limit="1000", count="true"))
    near_ids = {e["id"] for e in entities if any(metres(*vertex) < RADIUS for vertex in first_vertices(e))}
    assert {e["id"] for e in r.json()} == near_ids
    assert len(near_ids) > len(expected)
