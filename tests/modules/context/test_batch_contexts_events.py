"""Batch operations, /jsonldContexts, events and the context.upsert consumer (both databases)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from ioc.core.db import Database
from ioc.core.events import OutboxEvent, publish
from ioc.modules.context.contexts import DbContextSource
from ioc.modules.context.events import UPSERT

from .conftest import CORE, LD, Ngsi, vehicle
from .jsonld_server import ContextDocuments

ERR = "https://uri.etsi.org/ngsi-ld/errors/"


def test_batch_create_upsert_update_merge_delete(ngsi: Ngsi) -> None:
    r = ngsi.post("/entityOperations/create", json=[vehicle(1), vehicle(2)])
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    r = ngsi.post("/entityOperations/create", json=[vehicle(3), vehicle(1), {"id": "bad", "type": "V"}])
    assert r.status_code == 207
    body = r.json()
    assert body["success"] == ["urn:ngsi-ld:Vehicle:3"]
    errors = {e["entityId"]: e["error"]["type"] for e in body["errors"]}
    assert errors == {"urn:ngsi-ld:Vehicle:1": ERR + "AlreadyExists", "bad": ERR + "BadRequestData"}
    # upsert: replace by default, 201 with the created ids
    r = ngsi.post(
        "/entityOperations/upsert", json=[{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": 1}, vehicle(4)]
    )
    assert r.status_code == 201 and r.json() == ["urn:ngsi-ld:Vehicle:4"]
    assert "brand" not in ngsi.get("/entities/urn:ngsi-ld:Vehicle:1").json()
    r = ngsi.post(
        "/entityOperations/upsert",
        json=[{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "brand": "b"}],
        params={"options": "update"},
    )
    assert r.status_code == 204
    assert set(ngsi.get("/entities/urn:ngsi-ld:Vehicle:1").json()) >= {"speed", "brand"}
    # update (append semantics) and merge: unknown entities are per-entity errors
    r = ngsi.post(
        "/entityOperations/update",
        json=[{"id": "urn:ngsi-ld:Vehicle:2", "color": "red"}, {"id": "urn:ngsi-ld:Vehicle:99", "color": "red"}],
    )
    assert r.status_code == 207 and r.json()["errors"][0]["error"]["type"] == ERR + "ResourceNotFound"
    r = ngsi.post("/entityOperations/merge", json=[{"id": "urn:ngsi-ld:Vehicle:2", "brand": "urn:ngsi-ld:null"}])
    assert r.status_code == 204
    assert "brand" not in ngsi.get("/entities/urn:ngsi-ld:Vehicle:2").json()
    r = ngsi.post("/entityOperations/delete", json=["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:1"])
    assert r.status_code == 207 and r.json()["success"] == ["urn:ngsi-ld:Vehicle:1"]
    assert ngsi.post("/entityOperations/delete", json=["urn:ngsi-ld:Vehicle:2"]).status_code == 204
    assert ngsi.post("/entityOperations/create", json={"not": "an array"}).status_code == 400
    # query
    r = ngsi.post(
        "/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>35"},
        params={"count": "true"},
    )
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:4"] and r.headers["NGSILD-Results-Count"] == "1"
    assert ngsi.post("/entityOperations/query", json={"type": "Query"}).status_code == 400


def test_batch_of_ten_thousand(ngsi: Ngsi) -> None:
    entities = [
        {"id": f"urn:ngsi-ld:Sensor:{i}", "type": "Sensor", "v": {"type": "Property", "value": i}}
        for i in range(10_000)
    ]
    r = ngsi.post("/entityOperations/upsert", json=entities)
    assert r.status_code == 201 and len(r.json()) == 10_000
    r = ngsi.get("/entities", params={"type": "Sensor", "q": "v>=9990", "count": "true", "limit": "1"})
    assert r.headers["NGSILD-Results-Count"] == "10"


def test_jsonld_contexts(ngsi: Ngsi) -> None:
    listed = ngsi.get("/jsonldContexts").json()
    assert CORE in listed
    r = ngsi.post("/jsonldContexts", json={"@context": {"Room": "http://example.org/Room"}})
    assert r.status_code == 201
    local_id = r.headers["Location"].rsplit("/", 1)[1]
    assert r.headers["Location"] == "/ngsi-ld/v1/jsonldContexts/" + local_id  # a path, as the suite reads it (050_01)
    url = "http://testserver" + r.headers["Location"]
    assert url in ngsi.get("/jsonldContexts").json()  # listed by its URL
    assert ngsi.get("/jsonldContexts/" + local_id).json() == {"@context": {"Room": "http://example.org/Room"}}
    details = ngsi.get("/jsonldContexts/" + local_id, params={"details": "true"}).json()
    assert details["kind"] == "Hosted" and details["localId"] == local_id
    # the hosted context is usable by URL without any network
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    ngsi.create({"id": "urn:ngsi-ld:Room:1", "type": "Room"}, headers={"Link": link})
    assert ngsi.get("/entities/urn:ngsi-ld:Room:1").json()["type"] == "http://example.org/Room"
    # and by the path the Location gave, a reference relative to the broker (053_04)
    room2 = {"id": "urn:ngsi-ld:Room:2", "type": "Room", "@context": r.headers["Location"]}
    assert ngsi.post("/entities", json=room2, headers={"Content-Type": LD}).status_code == 201
    assert ngsi.get("/entities/urn:ngsi-ld:Room:2").json()["type"] == "http://example.org/Room"
    gone = {**room2, "id": "urn:ngsi-ld:Room:3", "@context": "/ngsi-ld/v1/jsonldContexts/nope"}
    assert ngsi.post("/entities", json=gone, headers={"Content-Type": LD}).status_code == 503
    assert (
        ngsi.post(
            "/entities", json={**gone, "@context": "/elsewhere/ctx.jsonld"}, headers={"Content-Type": LD}
        ).status_code
        == 400
    )
    assert [d["kind"] for d in ngsi.get("/jsonldContexts", params={"details": "true", "kind": "Hosted"}).json()] == [
        "Hosted"
    ]
    assert ngsi.get("/jsonldContexts", params={"kind": "Nope"}).status_code == 400
    assert ngsi.post("/jsonldContexts", json={"no": "context"}).status_code == 400
    assert ngsi.delete("/jsonldContexts/" + local_id, params={"reload": "true"}).status_code == 400
    assert ngsi.delete("/jsonldContexts/" + local_id).status_code == 204
    assert ngsi.get("/jsonldContexts/" + local_id).status_code == 404
    assert ngsi.delete("/jsonldContexts/core").status_code == 400
    assert ngsi.get("/jsonldContexts/core", headers={"Accept": LD}).json()["@context"]["Property"] == "ngsi-ld:Property"


def test_hosted_contexts_belong_to_their_tenant(ngsi: Ngsi, db: Database) -> None:
    """TP 5134_01_01..03 (§5.13.2.4-5.13.5.4 with §5.5.10): a Hosted @context added under one tenant
    is not served (nor its details), listed or deleted through another; the cached ones, copies
    of public documents, are every tenant's."""
    a, b = {"NGSILD-Tenant": "tp5134a"}, {"NGSILD-Tenant": "tp5134b"}
    term = {"@context": {"TenantPrivateTerm": "urn:ngsi-ld:attributes:TenantPrivateTerm"}}
    r = ngsi.post("/jsonldContexts", json=term, headers={**a, "Content-Type": "application/json"})
    assert r.status_code == 201
    local_id = r.headers["Location"].rsplit("/", 1)[1]
    for params in ({}, {"details": "true"}):
        r = ngsi.get("/jsonldContexts/" + local_id, params=params, headers=b)
        assert r.status_code == 404 and "TenantPrivateTerm" not in r.text
        assert ngsi.get("/jsonldContexts/" + local_id, params=params, headers=a).status_code == 200
        assert ngsi.get("/jsonldContexts/" + local_id, params=params).status_code == 404  # the default tenant too
    for params in ({}, {"details": "true"}):
        r = ngsi.get("/jsonldContexts", params=params, headers=b)
        assert r.status_code == 200 and local_id not in r.text
        assert local_id in ngsi.get("/jsonldContexts", params=params, headers=a).text
    assert ngsi.delete("/jsonldContexts/" + local_id, headers=b).status_code == 404
    assert "TenantPrivateTerm" in ngsi.get("/jsonldContexts/" + local_id, headers=a).text
    # a cached @context is seen by every tenant
    DbContextSource(db).save("http://example.org/shared.jsonld", {"Shared": "http://example.org/Shared"})
    for headers in (a, b, {}):
        assert "http://example.org/shared.jsonld" in ngsi.get("/jsonldContexts", headers=headers).json()
    assert ngsi.delete("/jsonldContexts/" + local_id, headers=a).status_code == 204


def test_number_of_hits_of_a_cached_context(ngsi: Ngsi) -> None:
    """TP 053_06_01 (§5.13.4): every request naming a cached @context, and every serving of it,
    counts as a use: created with it (1), served (shows 1), created with it again: 3."""
    server = ContextDocuments({"/api/v1/context.jsonld": {"@context": {"Testing": "urn:ngsi-ld:Testing"}}})
    try:
        url = server.url_of("/api/v1/context.jsonld")
        served = "/jsonldContexts/" + quote(url, safe="")

        def create(n: int) -> None:
            body = {"id": f"urn:ngsi-ld:Testing:{n}", "type": "Testing", "@context": url}
            assert ngsi.post("/entities/", json=body, headers={"Content-Type": LD}).status_code == 201

        create(1)
        first = ngsi.get(served, params={"details": "true"})
        assert first.status_code == 200 and first.json()["kind"] == "Cached" and first.json()["numberOfHits"] == 1
        create(2)
        assert ngsi.get(served, params={"details": "true"}).json()["numberOfHits"] == 3
        # a @context listed with others, and one another @context includes, are uses as well
        both = {"id": "urn:ngsi-ld:Testing:3", "type": "Testing", "@context": [url, {"extra": "urn:x:extra"}]}
        assert ngsi.post("/entities", json=both, headers={"Content-Type": LD}).status_code == 201
        server.documents["/wrapper.jsonld"] = {"@context": [url]}
        wrapped = {"id": "urn:ngsi-ld:Testing:4", "type": "Testing", "@context": server.url_of("/wrapper.jsonld")}
        assert ngsi.post("/entities", json=wrapped, headers={"Content-Type": LD}).status_code == 201
        assert ngsi.get(served, params={"details": "true"}).json()["numberOfHits"] == 6
        hosted = ngsi.host({"Testing": "urn:ngsi-ld:Testing"}).rsplit("/", 1)[1]
        assert "numberOfHits" not in ngsi.get("/jsonldContexts/" + hosted, params={"details": "true"}).json()
    finally:
        server.close()


def _kind(r: Any) -> str:
    return str(r.json()["type"]).rsplit("/", 1)[1]


def test_jsonld_contexts_as_the_suite_checks_them(ngsi: Ngsi) -> None:
    """TPs 050_02_01 (no @context member: InvalidRequest), 5132_01 (an @context of another JSON
    type, or an array holding one: BadRequestData), 053_01 (served as application/json, as given),
    051_04 (reload of an unknown or hosted @context: BadRequestData; delete of an unknown one:
    ResourceNotFound), 051_08 and 051_09 (the core @context is never deleted; reloading it is 204)."""
    r = ngsi.post("/jsonldContexts", json={"no": "context"})
    assert r.status_code == 400 and _kind(r) == "InvalidRequest" and r.json()["title"] != r.json()["detail"]
    for value in (5, True, ["http://example.org/c.jsonld", 5]):
        r = ngsi.post("/jsonldContexts", json={"@context": value})
        assert r.status_code == 400 and _kind(r) == "BadRequestData" and "Location" not in r.headers, value
    document = {"@context": {"Room": "http://example.org/Room", "size": "http://example.org/size"}}
    local_id = ngsi.post("/jsonldContexts", json=document).headers["Location"].rsplit("/", 1)[1]
    for params in ({}, {"details": "false"}):
        r = ngsi.get("/jsonldContexts/" + local_id, params=params)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json" and r.json() == document
    for ident, reload, status, kind in (
        ("wrong_id_context", "true", 400, "BadRequestData"),
        ("wrong_id_context", "false", 404, "ResourceNotFound"),
        ("wrong_id_context", None, 404, "ResourceNotFound"),
        ("wrong_id_context", "xxx", 400, "BadRequestData"),
        (local_id, "true", 400, "BadRequestData"),
        (CORE, None, 400, "BadRequestData"),
        (CORE, "false", 400, "BadRequestData"),
    ):
        r = ngsi.delete("/jsonldContexts/" + quote(ident, safe=""), params={"reload": reload} if reload else {})
        assert (r.status_code, _kind(r)) == (status, kind), (ident, reload)
    assert ngsi.delete("/jsonldContexts/" + quote(CORE, safe=""), params={"reload": "true"}).status_code == 204
    r = ngsi.get("/jsonldContexts/" + quote(CORE, safe=""), params={"details": "true"})
    assert r.status_code == 200 and r.json()["kind"] == "Cached"
    assert ngsi.get("/jsonldContexts/" + local_id).status_code == 200  # nothing above deleted it


def _events(db: Database, topic: str) -> list[dict[str, Any]]:
    with db.session() as s:
        return [
            e.payload for e in s.scalars(select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.id))
        ]


def test_events_published(ngsi: Ngsi, db: Database) -> None:
    ngsi.create(vehicle(1))
    ngsi.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json={"speed": {"type": "Property", "value": 42}})
    ngsi.delete("/entities/urn:ngsi-ld:Vehicle:1")
    created = _events(db, "context.entity.created")[0]
    assert created["id"] == "urn:ngsi-ld:Vehicle:1" and created["type"] == ["Vehicle"]
    assert created["attributes"]["speed"]["value"] == 10
    updated = _events(db, "context.entity.updated")[0]
    assert list(updated["attributes"]) == ["speed"] and updated["attributes"]["speed"]["value"] == 42
    deleted = _events(db, "context.entity.deleted")[0]
    assert sorted(deleted["deleted_attributes"]) == ["brand", "location", "speed"]


def test_upsert_consumer(ngsi: Ngsi, db: Database) -> None:
    kpi = {
        "id": "urn:ngsi-ld:KeyPerformanceIndicator:aqi",
        "type": "KeyPerformanceIndicator",
        "kpiValue": {"type": "Property", "value": 87},
    }
    with db.session() as s:
        publish(s, UPSERT, {"entities": [kpi, {"id": "bad"}]})
    deadline = time.monotonic() + 20
    r = ngsi.get("/entities/urn:ngsi-ld:KeyPerformanceIndicator:aqi")
    while r.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
        r = ngsi.get("/entities/urn:ngsi-ld:KeyPerformanceIndicator:aqi")
    assert r.status_code == 200 and r.json()["kpiValue"]["value"] == 87
