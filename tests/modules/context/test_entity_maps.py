"""Entity maps (CIM 009 v1.9 §5.14, §5.2.39, §5.5.9.3, §5.7.1.4, §5.7.3.4, §5.7.4.4): the suite's
EntityMap test purposes (5141_01/02, 5142_01, 5143_01, 5144_01, 5145_01, 5593_01, 5714_01,
5734_01) with their exact requests. Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from ioc.core.audit import AuditEntry
from ioc.core.db import Database
from ioc.modules.context import entity_maps
from ioc.modules.context.models import NgsiEntityMap

from .conftest import Ngsi

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
HEADER = "NGSILD-EntityMap"
WINDOW = {"timerel": "after", "timeAt": "2000-01-01T00:00:00Z", "timeproperty": "createdAt"}


def vehicle(ngsi: Ngsi, eid: str, speed: int, **kw: Any) -> None:
    body = {"id": eid, "type": "Vehicle", "speed": {"type": "Property", "value": speed}}
    r = ngsi.post("/entities", json=body, **kw)
    assert r.status_code == 201, r.text


def map_id(response: Any) -> str:
    """As the suite does: the last segment of the header's location."""
    return str(response.headers[HEADER]).rsplit("/", 1)[-1]


def map_path(mid: str) -> str:
    return "/entityMaps/" + quote(mid, safe="")


def new_map(ngsi: Ngsi, **params: str) -> Any:
    r = ngsi.get("/entityMaps", params=params)
    assert r.status_code == 201, r.text
    return r


def kind(r: Any) -> str:
    return str(r.json()["type"]).removeprefix(ERR)


# --------------------------------------------------------------------------- create for a query (5144_01)


def test_create_for_a_type_query(ngsi: Ngsi) -> None:
    """5144_01_01: matching ids under "@none", 201 and the map's location in the header."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144slow", 30)
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144fast", 90)
    ngsi.create({"id": "urn:ngsi-ld:Building:b1", "type": "Building"})
    r = new_map(ngsi, type="Vehicle")
    body = r.json()
    assert r.headers[HEADER] == "/ngsi-ld/v1/entityMaps/" + body["id"]
    assert body["type"] == "EntityMap" and body["expiresAt"]
    assert body["entityMap"] == {
        "urn:ngsi-ld:Vehicle:em5144slow": ["@none"],
        "urn:ngsi-ld:Vehicle:em5144fast": ["@none"],
    }
    assert body["linkedMaps"] == {}
    expires = datetime.fromisoformat(body["expiresAt"])
    now = datetime.now(UTC)
    assert timedelta(minutes=59) < expires - now <= timedelta(hours=1)  # the default lifetime


def test_query_filters_narrow_the_map(ngsi: Ngsi) -> None:
    """5144_01_02: q applies."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144slow", 30)
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144fast", 90)
    r = new_map(ngsi, type="Vehicle", q="speed>50")
    assert list(r.json()["entityMap"]) == ["urn:ngsi-ld:Vehicle:em5144fast"]


@pytest.mark.parametrize(
    "params",
    [
        {"id": "urn:ngsi-ld:Vehicle:em5144slow"},  # 5144_01_03: too wide
        {"type": "Vehicle", "entityMapLifetime": "1hour"},  # 5144_01_04
        {"type": "Vehicle", "entityMapLifetime": "PT0S"},
        {"type": "Vehicle", "entityMap": "yes"},
        {"type": "Vehicle", "q": "speed>"},
        {"type": "Vehicle", "q": "isConnectedTo{speed}>1"},  # a Linked Entity q without join
    ],
)
def test_bad_create_requests_are_400_and_write_nothing(ngsi: Ngsi, db: Database, params: dict[str, str]) -> None:
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144slow", 30)
    r = ngsi.get("/entityMaps", params=params)
    assert r.status_code == 400, r.text
    assert kind(r) == "BadRequestData"
    assert HEADER not in r.headers
    with db.session() as session:
        assert session.query(NgsiEntityMap).count() == 0


def test_the_broker_bounds_the_lifetime(ngsi: Ngsi) -> None:
    """5141_02_03: a ten-year entityMapLifetime is capped (a day by default); a short one is honoured."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5141b", 50)
    now = datetime.now(UTC)
    long = datetime.fromisoformat(new_map(ngsi, type="Vehicle", entityMapLifetime="P3650D").json()["expiresAt"])
    assert now < long <= now + timedelta(days=1, seconds=5)
    short = datetime.fromisoformat(new_map(ngsi, type="Vehicle", entityMapLifetime="PT10M").json()["expiresAt"])
    assert timedelta(minutes=9) < short - now <= timedelta(minutes=10, seconds=5)


def test_the_entity_query_with_the_flag_makes_a_map_that_fixes_the_next_query(ngsi: Ngsi) -> None:
    """5144_01_05: 201, the same entities as without the flag, then the map is echoed (200)."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144slow", 30)
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5144fast", 90)
    r = ngsi.get("/entities", params={"type": "Vehicle", "entityMap": "true"})
    assert r.status_code == 201, r.text
    assert sorted(e["id"] for e in r.json()) == ["urn:ngsi-ld:Vehicle:em5144fast", "urn:ngsi-ld:Vehicle:em5144slow"]
    location = r.headers[HEADER]
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:late", 60)  # made after the map: not considered
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={HEADER: location})
    assert r.status_code == 200
    assert r.headers[HEADER] == location
    assert sorted(e["id"] for e in r.json()) == ["urn:ngsi-ld:Vehicle:em5144fast", "urn:ngsi-ld:Vehicle:em5144slow"]
    # the query's own filters still apply to the map's entities
    r = ngsi.get("/entities", params={"type": "Vehicle", "q": "speed>50"}, headers={HEADER: location})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:em5144fast"]
    # without the header, the query is the ordinary one
    assert len(ngsi.get("/entities", params={"type": "Vehicle"}).json()) == 3


def test_a_dead_reference_on_a_query_makes_a_new_map(ngsi: Ngsi) -> None:
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:a", 30)
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={HEADER: "urn:ngsi-ld:entitymap:dead"})
    assert r.status_code == 201
    assert "dead" not in r.headers[HEADER]
    assert ngsi.get(map_path(map_id(r))).json()["entityMap"] == {"urn:ngsi-ld:Vehicle:a": ["@none"]}


# --------------------------------------------------------------------------- retrieve, update, delete


def test_retrieve(ngsi: Ngsi) -> None:
    """5141_01: the EntityMap object and nothing of the entities; 400 for a non-URI id, 404 unknown."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5141", 50)
    mid = map_id(new_map(ngsi, type="Vehicle"))
    r = ngsi.get(map_path(mid))
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == mid and body["type"] == "EntityMap" and "expiresAt" in body
    assert "urn:ngsi-ld:Vehicle:em5141" in body["entityMap"]
    assert "speed" not in body
    r = ngsi.get(map_path("not a uri"))
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    r = ngsi.get(map_path("urn:ngsi-ld:entitymap:doesnotexist"))
    assert r.status_code == 404 and kind(r) == "ResourceNotFound"
    # JSON-LD with the @context in the body
    r = ngsi.get(map_path(mid), headers={"Accept": "application/ld+json"})
    assert r.headers["content-type"] == "application/ld+json" and "@context" in r.json()


def test_tenants_are_separate(ngsi: Ngsi) -> None:
    """5141_02_01/02: another tenant neither reads nor deletes the map."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5141b", 50)
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:other", 50, headers={"NGSILD-Tenant": "em5141bothertenant"})
    mid = map_id(new_map(ngsi, type="Vehicle"))
    other = {"NGSILD-Tenant": "em5141bothertenant"}
    r = ngsi.get(map_path(mid), headers=other)
    assert r.status_code == 404 and "urn:ngsi-ld:Vehicle:em5141b" not in r.text
    assert ngsi.delete(map_path(mid), headers=other).status_code == 404
    assert ngsi.get(map_path(mid), headers={"NGSILD-Tenant": "nosuchtenant"}).status_code == 404
    r = ngsi.get(map_path(mid))
    assert r.status_code == 200 and "urn:ngsi-ld:Vehicle:em5141b" in r.json()["entityMap"]
    # a map made in the other tenant holds the other tenant's entities only
    r = ngsi.get("/entityMaps", params={"type": "Vehicle"}, headers=other)
    assert list(r.json()["entityMap"]) == ["urn:ngsi-ld:Vehicle:other"]


def test_update(ngsi: Ngsi) -> None:
    """5142_01: expiresAt applied but capped; entityMap ignored; 400 bad DateTime; 404 unknown."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5142", 50)
    mid = map_id(new_map(ngsi, type="Vehicle"))
    fragment = {"expiresAt": "2099-01-01T00:00:00Z", "entityMap": {"urn:ngsi-ld:Vehicle:injected": ["@none"]}}
    r = ngsi.patch(map_path(mid), json=fragment)
    assert r.status_code == 204, r.text
    body = ngsi.get(map_path(mid)).json()
    assert body["expiresAt"] < "2099-01-01T00:00:00Z"
    assert datetime.fromisoformat(body["expiresAt"]) > datetime.now(UTC) + timedelta(hours=23)
    assert list(body["entityMap"]) == ["urn:ngsi-ld:Vehicle:em5142"]
    soon = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ngsi.patch(map_path(mid), json={"expiresAt": soon}).status_code == 204
    assert ngsi.get(map_path(mid)).json()["expiresAt"].startswith(soon[:19])
    r = ngsi.patch(map_path(mid), json={"expiresAt": "tomorrow"})
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    assert ngsi.patch(map_path(mid), json=[1]).status_code == 400
    r = ngsi.patch(map_path("urn:ngsi-ld:entitymap:doesnotexist"), json={"expiresAt": "2099-01-01T00:00:00Z"})
    assert r.status_code == 404 and kind(r) == "ResourceNotFound"


def test_an_expired_map_cannot_be_accessed(ngsi: Ngsi, db: Database) -> None:
    """5141_02_04: expiresAt in the past → 404; a query naming it makes a new map; the sweep deletes it."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5141b", 50)
    r = new_map(ngsi, type="Vehicle")
    mid, location = map_id(r), r.headers[HEADER]
    assert ngsi.patch(map_path(mid), json={"expiresAt": "2000-01-01T00:00:00Z"}).status_code == 204
    r = ngsi.get(map_path(mid))
    assert r.status_code == 404 and kind(r) == "ResourceNotFound"
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={HEADER: location})
    assert r.status_code == 201 and r.headers[HEADER] != location
    entity_maps.sweep(db)
    with db.session() as session:
        assert session.get(NgsiEntityMap, ("", mid)) is None
        assert session.query(NgsiEntityMap).count() == 1  # the live one stays


def test_delete(ngsi: Ngsi) -> None:
    """5143_01: 204 with no body, then 404 on retrieve and on a second delete; 400 for a non-URI id."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5143", 50)
    mid = map_id(new_map(ngsi, type="Vehicle"))
    r = ngsi.delete(map_path("not a uri"))
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    r = ngsi.delete(map_path(mid))
    assert r.status_code == 204 and r.text == ""
    assert ngsi.get(map_path(mid)).status_code == 404
    r = ngsi.delete(map_path(mid))
    assert r.status_code == 404 and kind(r) == "ResourceNotFound"


def test_writes_need_the_right_to_write_and_are_audited(ngsi: Ngsi, client: Any, db: Database) -> None:
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:a", 50)
    mid = map_id(new_map(ngsi, type="Vehicle"))
    anonymous = client.delete("/ngsi-ld/v1" + map_path(mid))
    assert anonymous.status_code == 401
    assert client.get("/ngsi-ld/v1" + map_path(mid)).status_code == 401
    assert ngsi.delete(map_path(mid)).status_code == 204
    with db.session() as session:
        actions = [a.action for a in session.query(AuditEntry).filter(AuditEntry.object_id == mid)]
    assert actions == ["context.entity_map.delete"]


# --------------------------------------------------------------------------- retrieve entity (5714_01)


def test_retrieve_entity_with_the_flag(ngsi: Ngsi) -> None:
    """5714_01_01: 200, the entity unchanged, a new map holding it alone."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5714", 30)
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:other", 30)
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:em5714", params={"entityMap": "true"})
    assert r.status_code == 200
    assert r.json()["id"] == "urn:ngsi-ld:Vehicle:em5714" and "entityMap" not in r.json()
    m = ngsi.get(map_path(map_id(r)))
    assert m.json()["entityMap"] == {"urn:ngsi-ld:Vehicle:em5714": ["@none"]}


def test_retrieve_entity_with_a_dead_then_a_live_reference(ngsi: Ngsi) -> None:
    """5714_01_02/03: a dead reference makes a new map (not echoed); a live one is echoed unchanged."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5714", 30)
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:em5714", headers={HEADER: "urn:ngsi-ld:entitymap:em5714dead"})
    assert r.status_code == 200 and "em5714dead" not in r.headers[HEADER]
    location = r.headers[HEADER]
    r = ngsi.get("/entities/urn:ngsi-ld:Vehicle:em5714", headers={HEADER: location})
    assert r.status_code == 200 and r.headers[HEADER] == location
    assert r.json()["id"] == "urn:ngsi-ld:Vehicle:em5714"
    # neither flag nor header: no map
    assert HEADER not in ngsi.get("/entities/urn:ngsi-ld:Vehicle:em5714").headers


# --------------------------------------------------------------------------- pagination (5593_01)


def test_pagination_over_a_map(ngsi: Ngsi) -> None:
    """5593_01: pages fill to the maximum, links walk the original query (no ids, no entityMap), a
    deleted entity is pruned from the map, and the count is over the map."""
    prefix = "urn:ngsi-ld:Vehicle:em5593"
    for i in range(5):
        vehicle(ngsi, f"{prefix}-{i}", 50)
    r = ngsi.get("/entities", params={"type": "Vehicle", "entityMap": "true", "limit": "2"})
    assert r.status_code == 201
    assert "entityMap" not in r.headers["Link"] and "offset=2" in r.headers["Link"]
    location, mid = r.headers[HEADER], map_id(r)
    assert len(ngsi.get(map_path(mid)).json()["entityMap"]) == 5  # every match, not only the first page
    headers = {HEADER: location}

    r = ngsi.get("/entities", params={"type": "Vehicle", "limit": "2"}, headers=headers)
    assert r.status_code == 200 and len(r.json()) == 2
    link = r.headers["Link"]
    assert 'rel="next"' in link and "offset=2" in link and prefix not in link
    r = ngsi.get("/entities", params={"type": "Vehicle", "limit": "2", "offset": "4"}, headers=headers)
    assert len(r.json()) == 1
    link = r.headers["Link"]
    assert 'rel="next"' not in link and 'rel="prev"' in link and "offset=2" in link

    assert ngsi.delete(f"/entities/{prefix}-1").status_code == 204
    r = ngsi.get("/entities", params={"type": "Vehicle", "limit": "3"}, headers=headers)
    assert [e["id"] for e in r.json()] == [f"{prefix}-0", f"{prefix}-2", f"{prefix}-3"]
    kept = ngsi.get(map_path(mid)).json()["entityMap"]
    assert f"{prefix}-1" not in kept and f"{prefix}-0" in kept and len(kept) == 4

    r = ngsi.get("/entities", params={"type": "Vehicle", "limit": "2", "count": "true"}, headers=headers)
    assert len(r.json()) == 2 and r.headers["NGSILD-Results-Count"] == "4"


# --------------------------------------------------------------------------- temporal (5145_01, 5734_01)


def test_temporal_map_needs_a_temporal_query(ngsi: Ngsi) -> None:
    """5145_01_01 and 5145_01_02: the window decides which entities are candidates."""
    vehicle(ngsi, "urn:ngsi-ld:Vehicle:em5145", 50)
    r = ngsi.get("/temporal/entityMaps", params={"type": "Vehicle"})
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    params = {"type": "Vehicle", "timerel": "before", "timeAt": "2999-01-01T00:00:00Z", "timeproperty": "createdAt"}
    r = ngsi.get("/temporal/entityMaps", params=params)
    assert r.status_code == 201 and HEADER in r.headers
    assert r.json()["type"] == "EntityMap" and "urn:ngsi-ld:Vehicle:em5145" in r.json()["entityMap"]
    r = ngsi.get("/temporal/entityMaps", params={**params, "timeAt": "2000-01-01T00:00:00Z"})
    assert r.status_code == 201 and r.json()["entityMap"] == {}


def test_temporal_retrieve_and_query_use_maps(ngsi: Ngsi) -> None:
    """5734_01: retrieve with the flag maps the entity alone; a map made narrowed to one id fixes a
    broader query; a dead reference makes a new map (201)."""
    one, two = "urn:ngsi-ld:Vehicle:em5734one", "urn:ngsi-ld:Vehicle:em5734two"
    vehicle(ngsi, one, 30)
    vehicle(ngsi, two, 90)
    r = ngsi.get(f"/temporal/entities/{one}", params={**WINDOW, "entityMap": "true"})
    assert r.status_code == 200
    assert ngsi.get(map_path(map_id(r))).json()["entityMap"] == {one: ["@none"]}

    r = ngsi.get("/temporal/entities", params={"type": "Vehicle", "id": one, **WINDOW, "entityMap": "true"})
    assert r.status_code == 201, r.text
    location = r.headers[HEADER]
    r = ngsi.get("/temporal/entities", params={"type": "Vehicle", **WINDOW}, headers={HEADER: location})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [one]
    assert r.headers[HEADER] == location
    assert len(ngsi.get("/temporal/entities", params={"type": "Vehicle", **WINDOW}).json()) == 2

    r = ngsi.get(
        "/temporal/entities", params={"type": "Vehicle", **WINDOW}, headers={HEADER: "urn:ngsi-ld:entitymap:dead"}
    )
    assert r.status_code == 201 and "dead" not in r.headers[HEADER]
    assert sorted(ngsi.get(map_path(map_id(r))).json()["entityMap"]) == [one, two]
