"""Entities: create, retrieve, query, merge, replace, attributes, errors, media types (both databases)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from ioc.core.db import Database
from ioc.modules.context.models import NgsiAttributeHistory

from .conftest import CORE, LD, Ngsi, vehicle

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
E1 = "/entities/urn:ngsi-ld:Vehicle:1"
USER_CTX = {"@context": {"Vehicle": "http://example.org/Vehicle", "speed": "http://example.org/speed"}}

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"


def test_create_retrieve_delete(ngsi: Ngsi, db: Database) -> None:
    r = ngsi.create(vehicle(1))
    assert r.headers["Location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1"
    r = ngsi.get(E1, params={"options": "sysAttrs"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert CORE in r.headers["Link"]
    body = r.json()
    assert body["speed"] == {
        "type": "Property",
        "value": 10,
        "unitCode": "KMH",
        "observedAt": "2025-01-01T00:00:00Z",
        "createdAt": body["speed"]["createdAt"],
        "modifiedAt": body["speed"]["modifiedAt"],
    }
    assert body["createdAt"].endswith("Z")
    assert ngsi.post("/entities", json=vehicle(1)).json()["type"] == ERR + "AlreadyExists"
    assert ngsi.delete(E1).status_code == 204
    r = ngsi.get(E1)
    assert r.status_code == 404
    assert r.json()["type"] == ERR + "ResourceNotFound"
    assert ngsi.delete(E1).status_code == 404
    with db.session() as s:  # 3 created + 3 deleted
        assert s.scalar(select(func.count()).select_from(NgsiAttributeHistory)) == 6


def test_bad_input(ngsi: Ngsi) -> None:
    cases = [
        {"type": "Vehicle"},
        {"id": "not a uri", "type": "Vehicle"},
        {"id": "urn:ngsi-ld:V:1"},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "a": {"type": "Bogus", "value": 1}},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "a": {"type": "Property"}},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "a": {"type": "Relationship", "object": "nope"}},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "location": {"type": "GeoProperty", "value": {"type": "Point"}}},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "a": {"type": "Property", "value": 1, "observedAt": "yesterday"}},
        {"id": "urn:ngsi-ld:V:1", "type": "V", "bad(name)": 1},
    ]
    for body in cases:
        r = ngsi.post("/entities", json=body)
        assert r.status_code == 400, (body, r.text)
        problem = r.json()
        assert problem["type"] == ERR + "BadRequestData"
        assert problem["title"] and problem["detail"] and problem["title"] != problem["detail"]
    r = ngsi.post("/entities", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["type"] == ERR + "InvalidRequest"
    r = ngsi.post("/entities", content=json.dumps(vehicle()), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert ngsi.get(E1, headers={"Accept": "text/csv"}).status_code == 406
    assert ngsi.get("/entities").status_code == 400
    assert ngsi.get("/entities", params={"type": "V", "limit": "5000"}).status_code == 400
    assert ngsi.get("/entities", params={"type": "V", "q": "speed>>"}).status_code == 400
    assert ngsi.get("/entities/not-a-uri").status_code == 400
    assert ngsi.get("/nowhere").json()["type"] == ERR + "ResourceNotFound"


def test_json_ld_rules(ngsi: Ngsi) -> None:
    link = '<http://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    body = {**vehicle(2), **USER_CTX}
    # ld+json with a Link header, ld+json without @context, json with @context: 400
    assert ngsi.post("/entities", json=body, headers={"Content-Type": LD, "Link": link}).status_code == 400
    assert ngsi.post("/entities", json=vehicle(2), headers={"Content-Type": LD}).status_code == 400
    assert ngsi.post("/entities", json=body).status_code == 400
    ngsi.create(body, headers={"Content-Type": LD})
    # Read with the core context: the user's terms come back as IRIs
    plain = ngsi.get("/entities/urn:ngsi-ld:Vehicle:2").json()
    assert plain["type"] == "http://example.org/Vehicle"
    assert "http://example.org/speed" in plain
    # Read with the same inline context: terms again, @context in the body
    r = ngsi.post(
        "/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Vehicle"}], **USER_CTX},
        headers={"Content-Type": LD, "Accept": LD},
    )
    assert r.status_code == 200, r.text
    item = r.json()[0]
    assert item["type"] == "Vehicle" and "speed" in item and item["@context"] == USER_CTX["@context"]
    # An unreachable context: 503 LdContextNotAvailable
    dead = '<http://127.0.0.1:9/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={"Link": dead})
    assert r.status_code == 503
    assert r.json()["type"] == ERR + "LdContextNotAvailable"


def test_representations(ngsi: Ngsi) -> None:
    ngsi.create(
        vehicle(
            1,
            name={"type": "LanguageProperty", "languageMap": {"vi": "Xe", "en": "Car"}},
            owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        )
    )
    kv = ngsi.get(E1, params={"options": "keyValues"}).json()
    assert kv["speed"] == 10 and kv["owner"] == "urn:ngsi-ld:Person:1"
    assert ngsi.get(E1, params={"format": "keyValues", "lang": "en"}).json()["name"] == "Car"
    normalized_en = ngsi.get(E1, params={"lang": "vi"}).json()["name"]
    assert normalized_en == {"type": "Property", "value": "Xe", "lang": "vi"}
    concise = ngsi.get(E1, params={"options": "concise"}).json()
    assert concise["brand"] == "brand1" and concise["owner"] == {"object": "urn:ngsi-ld:Person:1"}
    picked = ngsi.get(E1, params={"pick": "id,speed"}).json()
    assert set(picked) == {"id", "speed"}
    omitted = ngsi.get(E1, params={"omit": "speed,location"}).json()
    assert "speed" not in omitted and "brand" in omitted
    assert ngsi.get(E1, params={"pick": "id", "omit": "type"}).status_code == 400
    ld = ngsi.get(E1, headers={"Accept": LD})
    assert ld.headers["content-type"].startswith(LD) and ld.json()["@context"] == CORE
    geo = ngsi.get("/entities", params={"type": "Vehicle"}, headers={"Accept": "application/geo+json"})
    assert geo.headers["content-type"].startswith("application/geo+json")
    fc = geo.json()
    assert fc["type"] == "FeatureCollection"
    assert fc["features"][0]["geometry"]["type"] == "Point"
    assert fc["features"][0]["properties"]["type"] == "Vehicle"
    # Concise input is accepted and normalized
    ngsi.create(
        {
            "id": "urn:ngsi-ld:Vehicle:9",
            "type": "Vehicle",
            "speed": 5,
            "location": {"type": "Point", "coordinates": [105.7, 18.7]},
        }
    )
    e9 = ngsi.get("/entities/urn:ngsi-ld:Vehicle:9").json()
    assert e9["speed"] == {"type": "Property", "value": 5}
    assert e9["location"]["type"] == "GeoProperty"


def test_attribute_operations(ngsi: Ngsi) -> None:
    ngsi.create(vehicle(1))
    # append with noOverwrite: existing attribute not updated -> 207
    r = ngsi.post(
        E1 + "/attrs",
        json={"speed": {"type": "Property", "value": 99}, "color": {"type": "Property", "value": "red"}},
        params={"options": "noOverwrite"},
    )
    assert r.status_code == 207
    # the UpdateResult names attributes expanded, as the broker knows them (TP 010_04_01)
    assert r.json()["updated"] == [DEFAULT + "color"]
    assert r.json()["notUpdated"][0]["attributeName"] == DEFAULT + "speed"
    assert ngsi.post(E1 + "/attrs", json={"speed": {"type": "Property", "value": 20}}).status_code == 204
    # multi-attribute by datasetId
    r = ngsi.post(E1 + "/attrs", json={"speed": {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:ds:gps"}})
    assert r.status_code == 204
    speeds = ngsi.get(E1).json()["speed"]
    assert isinstance(speeds, list) and {s.get("datasetId") for s in speeds} == {None, "urn:ngsi-ld:ds:gps"}
    # update attrs: existing ones replaced, missing ones appended (011_01_03); deleting a missing one: 207
    r = ngsi.patch(
        E1 + "/attrs", json={"brand": {"type": "Property", "value": "X"}, "nope": {"type": "Property", "value": 1}}
    )
    assert r.status_code == 204, r.text
    assert ngsi.get(E1).json()["nope"] == {"type": "Property", "value": 1}
    r = ngsi.patch(E1 + "/attrs", json={"brand": {"type": "Property", "value": "X"}, "gone": "urn:ngsi-ld:null"})
    assert r.status_code == 207 and r.json()["updated"] == [DEFAULT + "brand"], r.text
    assert r.json()["notUpdated"][0]["attributeName"] == DEFAULT + "gone"
    assert ngsi.delete(E1 + "/attrs/nope").status_code == 204
    # partial update keeps other members
    assert ngsi.patch(E1 + "/attrs/brand", json={"value": "Y"}).status_code == 204
    assert ngsi.get(E1).json()["brand"] == {"type": "Property", "value": "Y"}
    assert ngsi.patch(E1 + "/attrs/nope", json={"value": 1}).status_code == 404
    # replace attribute
    assert ngsi.put(E1 + "/attrs/brand", json={"type": "Property", "value": "Z", "unitCode": "C62"}).status_code == 204
    assert ngsi.get(E1).json()["brand"]["unitCode"] == "C62"
    assert ngsi.put(E1 + "/attrs/nope", json={"type": "Property", "value": 1}).status_code == 404
    # delete attribute by datasetId, then deleteAll
    assert ngsi.delete(E1 + "/attrs/speed", params={"datasetId": "urn:ngsi-ld:ds:gps"}).status_code == 204
    assert ngsi.get(E1).json()["speed"]["value"] == 20
    assert ngsi.delete(E1 + "/attrs/speed", params={"datasetId": "urn:ngsi-ld:ds:gps"}).status_code == 404
    ngsi.post(E1 + "/attrs", json={"speed": [{"type": "Property", "value": 1, "datasetId": "urn:a:b"}]})
    assert ngsi.delete(E1 + "/attrs/speed", params={"deleteAll": "true"}).status_code == 204
    assert "speed" not in ngsi.get(E1).json()
    assert ngsi.delete(E1 + "/attrs/speed").status_code == 404
    assert ngsi.post("/entities/urn:ngsi-ld:Vehicle:404/attrs", json={"a": 1}).status_code == 404


def test_merge_and_replace(ngsi: Ngsi) -> None:
    ngsi.create(vehicle(1, note={"type": "Property", "value": "n", "accuracy": {"type": "Property", "value": 1}}))
    r = ngsi.patch(E1, json={"type": "Car", "brand": "urn:ngsi-ld:null", "note": {"type": "Property", "value": "m"}})
    assert r.status_code == 204, r.text
    body = ngsi.get(E1).json()
    assert set(body["type"]) == {"Vehicle", "Car"}
    assert "brand" not in body
    assert body["note"]["value"] == "m" and body["note"]["accuracy"]["value"] == 1
    r = ngsi.put(E1, json={"type": "Truck", "load": {"type": "Property", "value": 3}})
    assert r.status_code == 204, r.text
    body = ngsi.get(E1).json()
    assert body["type"] == "Truck" and set(body) == {"id", "type", "load"}
    assert ngsi.put(E1, json={"id": "urn:other:1", "type": "T"}).status_code == 400
    assert ngsi.patch("/entities/urn:ngsi-ld:X:404", json={"a": 1}).status_code == 404


def test_query(ngsi: Ngsi) -> None:
    for n in range(1, 6):
        ngsi.create(vehicle(n, address={"type": "Property", "value": {"city": "Vinh" if n < 3 else "Hue"}}))
    ngsi.create({"id": "urn:ngsi-ld:Bus:1", "type": ["Bus", "Vehicle2"], "speed": {"type": "Property", "value": 15}})

    def ids(**params: str) -> list[str]:
        r = ngsi.get("/entities", params=params)
        assert r.status_code == 200, r.text
        return sorted(e["id"].rsplit(":", 1)[1] for e in r.json())

    assert ids(type="Vehicle", q="speed>20") == ["3", "4", "5"]
    assert ids(type="Vehicle", q="speed==20..40") == ["2", "3", "4"]
    assert ids(type="Vehicle", q="speed==10,50") == ["1", "5"]
    assert ids(type="Vehicle", q="speed!=10") == ["2", "3", "4", "5"]
    assert ids(type="Vehicle", q='brand=="brand2"|speed>=50') == ["2", "5"]
    assert ids(type="Vehicle", q="(speed<20|speed>40);brand~=brand.*") == ["1", "5"]
    assert ids(type="Vehicle", q="brand!~=brand[12]") == ["3", "4", "5"]
    assert ids(type="Vehicle", q='address[city]=="Vinh"') == ["1", "2"]
    assert ids(type="Vehicle", q="speed.observedAt>=2024-12-31T00:00:00Z") == ["1", "2", "3", "4", "5"]
    assert ids(type="Vehicle", q="color") == []
    assert ids(type="Vehicle,Bus") == ["1", "1", "2", "3", "4", "5"]
    assert ids(type="Bus;Vehicle2") == ["1"]
    assert ids(type="(Bus;Vehicle)|Vehicle2") == ["1"]
    assert ids(idPattern="Vehicle:[23]$") == ["2", "3"]
    assert ids(id="urn:ngsi-ld:Vehicle:4,urn:ngsi-ld:Bus:1", type="Vehicle,Bus") == ["1", "4"]
    r = ngsi.get("/entities", params={"id": "urn:ngsi-ld:Vehicle:4"})  # ids alone select nothing (019_03_05)
    assert r.status_code == 400 and r.json()["type"].endswith("BadRequestData")
    assert ids(attrs="address") == ["1", "2", "3", "4", "5"]
    # geo: Vehicle n sits at lon 105.68 + n/1000 (about 105 m apart)
    near = {"type": "Vehicle", "georel": "near;maxDistance==150", "geometry": "Point", "coordinates": "[105.681,18.67]"}
    assert ids(**near) == ["1", "2"]
    assert ids(**{**near, "georel": "near;minDistance==250"}) == ["4", "5"]
    poly = "[[[105.6825,18.66],[105.6845,18.66],[105.6845,18.68],[105.6825,18.68],[105.6825,18.66]]]"
    assert ids(type="Vehicle", georel="within", geometry="Polygon", coordinates=poly) == ["3", "4"]
    assert ids(type="Vehicle", georel="disjoint", geometry="Polygon", coordinates=poly) == ["1", "2", "5"]
    assert ids(type="Vehicle", georel="intersects", geometry="Polygon", coordinates=poly) == ["3", "4"]
    assert ids(type="Vehicle", georel="equals", geometry="Point", coordinates="[105.683,18.67]") == ["3"]
    line = "[[105.6815,18.67],[105.6825,18.67]]"
    assert ids(type="Vehicle", georel="intersects", geometry="LineString", coordinates=line) == ["2"]
    assert (
        ngsi.get(
            "/entities", params={"type": "V", "georel": "near", "geometry": "Point", "coordinates": "[1,2]"}
        ).status_code
        == 400
    )
    assert (
        ngsi.get(
            "/entities", params={"type": "V", "georel": "within", "geometry": "Polygon", "coordinates": "[1]"}
        ).status_code
        == 400
    )
    # paging and count
    r = ngsi.get("/entities", params={"type": "Vehicle", "limit": "2", "offset": "1", "count": "true"})
    assert [e["id"][-1] for e in r.json()] == ["2", "3"] and r.headers["NGSILD-Results-Count"] == "5"
    r = ngsi.get("/entities", params={"type": "Vehicle", "q": "brand~=b", "limit": "0", "count": "true"})
    assert r.json() == [] and r.headers["NGSILD-Results-Count"] == "5"
    assert ngsi.get("/entities", params={"type": "Vehicle", "limit": "0"}).status_code == 400


def test_tenants(ngsi: Ngsi) -> None:
    t = {"NGSILD-Tenant": "ward1"}
    assert ngsi.get("/entities", params={"type": "Vehicle"}, headers=t).json()["type"] == ERR + "NonexistentTenant"
    ngsi.create(vehicle(1), headers=t)
    assert len(ngsi.get("/entities", params={"type": "Vehicle"}, headers=t).json()) == 1
    assert ngsi.get("/entities", params={"type": "Vehicle"}).json() == []
    assert ngsi.get("/types", headers={"NGSILD-Tenant": "bad tenant!"}).status_code == 400


def test_discovery(ngsi: Ngsi) -> None:
    ngsi.create(vehicle(1))
    ngsi.create({"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "speed": 1})
    types = ngsi.get("/types").json()
    assert types["type"] == "EntityTypeList" and sorted(types["typeList"]) == ["Bus", "Vehicle"]
    details = ngsi.get("/types", params={"details": "true"}).json()
    assert {d["typeName"] for d in details} == {"Bus", "Vehicle"}
    info = ngsi.get("/types/Vehicle").json()
    assert info["entityCount"] == 1 and {a["attributeName"] for a in info["attributeDetails"]} == {
        "speed",
        "brand",
        "location",
    }
    assert ngsi.get("/types/Nothing").status_code == 404
    attrs = ngsi.get("/attributes").json()
    assert sorted(attrs["attributeList"]) == ["brand", "location", "speed"]
    speed = ngsi.get("/attributes/speed").json()
    assert speed["attributeCount"] == 2 and speed["typeNames"] == ["Bus", "Vehicle"]
    assert ngsi.get("/attributes/nothing").status_code == 404
    assert {a["attributeName"] for a in ngsi.get("/attributes", params={"details": "true"}).json()} == {
        "brand",
        "location",
        "speed",
    }


def test_access(client: object, ngsi: Ngsi) -> None:
    anon = ngsi.client
    r = anon.post("/ngsi-ld/v1/entities", json=vehicle(1))
    assert r.status_code == 401 and r.json()["type"] == ERR + "Unauthorized"
    assert anon.get("/ngsi-ld/v1/entities", params={"type": "Vehicle"}).json() == []
    ngsi.create(vehicle(1))
    assert anon.get("/ngsi-ld/v1" + E1).status_code == 401
