"""Conformance regressions of the NGSI-LD broker (ETSI GS CIM 009 v1.8/1.9), found by replaying the
ETSI NGSI-LD test suite (with its "Antares extension" test purposes) against ``ioc serve``.

Each test names the clause it checks and the test purposes (TP ids) it stands for. Both databases.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from .conftest import CORE, LD, Ngsi, link_to

NULL = "urn:ngsi-ld:null"

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
J = "application/json"
GEO = "application/geo+json"
NS = "https://ngsi-ld-test-suite/context#"
TERMS = ["Vehicle", "Building", "speed", "name", "brandName", "street", "address", "isParked", "route"]
CTX: dict[str, Any] = {t: NS + t for t in TERMS}


def kind(r: Any) -> str:
    return str(r.json()["type"]).removeprefix(ERR)


def hosted_link(ngsi: Ngsi) -> str:
    """A Link header naming a context hosted by the broker itself (no network needed)."""
    return link_to(ngsi.host(CTX))


def create(ngsi: Ngsi, eid: str, typ: str = "Vehicle", **attrs: Any) -> Any:
    return ngsi.post(
        "/entities/", json={"id": eid, "type": typ, "@context": CTX, **attrs}, headers={"Content-Type": LD}
    )


# --------------------------------------------------------------------------- HTTP binding (§6.3)


def test_trailing_slash_is_not_significant(ngsi: Ngsi) -> None:
    """The suite builds every URL as ``entities/`` + id, ``types/``, ``.../attrs/``."""
    assert ngsi.post("/entities/", json={"id": "urn:ngsi-ld:Building:s1", "type": "Building"}).status_code == 201
    r = ngsi.get("/entities/", params={"type": "Building"})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == ["urn:ngsi-ld:Building:s1"]
    assert ngsi.get("/types/").json()["typeList"] == ["Building"]
    attr = {"name": {"type": "Property", "value": "a"}}
    assert ngsi.post("/entities/urn:ngsi-ld:Building:s1/attrs/", json=attr).status_code == 204
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:s1/attrs/", json=attr).status_code == 204
    assert ngsi.get("/entities/urn:ngsi-ld:Building:s1").json()["name"]["value"] == "a"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/ld+json, application/json", J),  # 045_02_01: list order of §6.3.4, not header order
        ("application/geo+json, application/json", J),  # 045_02_02
        ("application/json;q=0.1, application/ld+json;q=0.9", LD),  # 045_02_03
        ("application/json;q=0, */*", LD),  # 045_04_01: the most specific range decides (RFC 9110 §12.5.1)
        ("*/*;q=0.9, application/ld+json;q=0.8", J),  # 045_04_03
        ("application/ld+json;q=notanumber", LD),  # 045_04_04: a malformed q keeps weight 1
        ("*/*", J),  # 045_01_01
    ],
)
def test_accept_negotiation(ngsi: Ngsi, accept: str, expected: str) -> None:
    ngsi.create({"id": "urn:ngsi-ld:Building:a1", "type": "Building"})
    r = ngsi.get("/entities/urn:ngsi-ld:Building:a1", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"] == expected


def test_geojson_prefer_body_json_and_204_without_length(ngsi: Ngsi) -> None:
    """§6.3.6 (TP 636_01): Prefer body=json moves the @context to the Link header; 204 has no Content-Length."""
    loc = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 41.2]}}
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:geo636", "type": "Vehicle", "location": loc})
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={"Accept": GEO})
    assert r.headers["content-type"].startswith(GEO) and r.json()["@context"] == CORE
    r = ngsi.get("/entities", params={"type": "Vehicle"}, headers={"Accept": GEO, "Prefer": "body=json"})
    assert r.status_code == 200 and "@context" not in r.json() and CORE in r.headers["Link"]
    assert r.json()["features"][0]["geometry"] == loc["value"]
    r = ngsi.delete("/entities/urn:ngsi-ld:Vehicle:geo636")
    assert r.status_code == 204 and "content-length" not in r.headers


@pytest.mark.parametrize(
    ("method", "path", "tenant"),
    [
        ("POST", "/entities/", None),
        ("PATCH", "/entities/urn:ngsi-ld:Building:411-01/attrs/", None),
        ("PUT", "/entities/urn:ngsi-ld:Building:411-01", None),
        ("POST", "/entities/", "tp46105nosuchtenant"),  # decided before the tenant lookup
    ],
)
def test_length_required(ngsi: Ngsi, method: str, path: str, tenant: str | None) -> None:
    """§6.3.4 (TP 046_01): no Content-Length on POST/PATCH/PUT is "just a 411" without a body."""
    body = b'{"id": "urn:ngsi-ld:Building:411-01", "type": "Building"}'
    headers = {"Content-Type": J, **({"NGSILD-Tenant": tenant} if tenant else {})}
    r = ngsi.request(method, path, content=iter([body]), headers=headers)
    assert r.status_code == 411 and r.content == b""
    assert ngsi.get("/entities", params={"type": "Building"}).status_code == 200  # GET is not concerned


def test_unknown_query_parameter_is_invalid_request(ngsi: Ngsi) -> None:
    """§6.3.20 (TP 059_01): a parameter the operation does not define is 400 InvalidRequest."""
    r = ngsi.post("/entities?invalidParams=invalidValue", json=json.dumps({"id": "urn:a:b", "type": "T"}))
    assert r.status_code == 400 and kind(r) == "InvalidRequest"
    for path in ("/entities?invalidParams=invalidValue&type=Building", "/types?invalidParams=invalidValue"):
        r = ngsi.get(path)
        assert r.status_code == 400 and kind(r) == "InvalidRequest"


def test_tenant_is_echoed_even_on_errors(ngsi: Ngsi) -> None:
    """§5.5.10, §6.3.14 (TPs 5510_01, 414_01)."""
    r = ngsi.get("/entities/", params={"type": "Building"}, headers={"NGSILD-Tenant": "tp5510x"})
    assert r.status_code == 404 and kind(r) == "NonexistentTenant" and r.headers["NGSILD-Tenant"] == "tp5510x"
    r = ngsi.post(
        "/entities/", json={"id": "urn:ngsi-ld:V:t1", "type": "Building"}, headers={"NGSILD-Tenant": "tp5510x"}
    )
    assert r.status_code == 201 and r.headers["NGSILD-Tenant"] == "tp5510x"
    r = ngsi.get("/entities/urn:ngsi-ld:V:t1", headers={"NGSILD-Tenant": "tp5510x"})
    assert r.status_code == 200 and r.headers["NGSILD-Tenant"] == "tp5510x"
    assert ngsi.get("/entities/urn:ngsi-ld:V:t1").status_code == 404


@pytest.fixture
def context_server() -> Iterator[str]:
    """A local HTTP server answering one invalid and one non-JSON "@context" document."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"note": "no context member"}' if self.path == "/invalid.jsonld" else b"this is { not json"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_invalid_remote_context_is_bad_request(ngsi: Ngsi, context_server: str) -> None:
    """§5.5.6 (TP 556_01): a remote @context retrieved but invalid is BadRequestData, not 503."""
    for doc in ("invalid.jsonld", "broken.jsonld"):
        body = {"id": f"urn:ngsi-ld:Vehicle:{doc[:3]}", "type": "Vehicle", "@context": f"{context_server}/{doc}"}
        r = ngsi.post("/entities", json=body, headers={"Content-Type": LD})
        assert r.status_code == 400 and kind(r) == "BadRequestData", r.text
        assert ngsi.get(f"/entities/urn:ngsi-ld:Vehicle:{doc[:3]}").status_code == 404


# --------------------------------------------------------------------------- input validation (§4, §5.5)

BAD_ATTRIBUTES: list[tuple[str, dict[str, Any]]] = [
    ("402_01_01 Property without value", {"speed": {"type": "Property"}}),
    ("402_01_03 bare null value", {"speed": {"type": "Property", "value": None}}),
    (
        "408_01_02 observedAt with an offset",
        {"speed": {"type": "Property", "value": 1, "observedAt": "2020-09-09T16:40:00+02:00"}},
    ),
    (
        "408_01_03 reified observedAt",
        {"speed": {"type": "Property", "value": 1, "observedAt": {"value": "2020-09-09T16:40:00Z"}}},
    ),
    ("451_01_01 datasetId as a name", {"datasetId": {"type": "Property", "value": 1}}),
    ("451_01_03 observedAt as a name", {"observedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"}}),
    (
        "451_01_04 embedded @context",
        {"speed": {"type": "Property", "value": 1, "@context": {"speed": "https://e.x/s"}}},
    ),
    ("452_01_01 Property with object", {"speed": {"type": "Property", "value": 1, "object": "urn:ngsi-ld:O:1"}}),
    ("452_01_04 output-only previousValue", {"speed": {"type": "Property", "value": 1, "previousValue": 0}}),
    (
        "452_01_05 entityIdSealed outside ngsildproof",
        {"speed": {"type": "Property", "value": 1, "entityIdSealed": "urn:x:y"}},
    ),
    ("452_03_03 non-object proof", {"ngsildproof": {"type": "Property", "value": "not-a-proof"}}),
    (
        "453_01_01 Relationship with unitCode",
        {"isParked": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "unitCode": "MTR"}},
    ),
    (
        "453_01_04 previousObject",
        {"isParked": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "previousObject": "urn:x:0"}},
    ),
    (
        "455_01_02 two default instances",
        {"speed": [{"type": "Property", "value": 55}, {"type": "Property", "value": 11, "datasetId": "@none"}]},
    ),
    ("462_01_01 name with a space", {"my attr": {"type": "Property", "value": 1}}),
    (
        "463_01_01 GeometryCollection",
        {"location": {"type": "GeoProperty", "value": {"type": "GeometryCollection", "geometries": []}}},
    ),
    (
        "465_01_02 null languageMap on create",
        {"street": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}},
    ),
    ("471_01_02 unparseable string geometry", {"location": {"type": "GeoProperty", "value": "not a geometry"}}),
    ("471_01_03 location as a Property", {"location": {"type": "Property", "value": 7}}),
    ("4522_01_02 non-URI objectList entry", {"route": {"type": "ListRelationship", "objectList": ["not a uri"]}}),
    (
        "4524_01_02 JsonProperty with unitCode",
        {"street": {"type": "JsonProperty", "json": {"a": 1}, "unitCode": "MTR"}},
    ),
    ("4524_01_04 scalar json", {"street": {"type": "JsonProperty", "json": 5}}),
    ("521_01_01 null value on create", {"speed": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
    (
        "521_01_03 null sub-attribute",
        {"speed": {"type": "Property", "value": 1, "sub": {"type": "Property", "value": "urn:ngsi-ld:null"}}},
    ),
    (
        "5232_01_02 LanguageProperty valueType",
        {"street": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}},
    ),
    ("5232_01_05 empty language tag", {"street": {"type": "LanguageProperty", "languageMap": {"": "x"}}}),
    (
        "554_01_02 nested null in a value",
        {"address": {"type": "Property", "value": {"geo": {"country": "urn:ngsi-ld:null"}}}},
    ),
]


@pytest.mark.parametrize(("tp", "attrs"), BAD_ATTRIBUTES, ids=[t for t, _ in BAD_ATTRIBUTES])
def test_invalid_attributes_are_bad_request_data(ngsi: Ngsi, tp: str, attrs: dict[str, Any]) -> None:
    """§4.2.2, §4.5.x, §4.6.x, §4.7, §5.2.1, §5.5.4: each is 400 BadRequestData and nothing is created."""
    r = create(ngsi, "urn:ngsi-ld:Vehicle:bad", **attrs)
    assert r.status_code == 400, (tp, r.text)
    assert kind(r) == "BadRequestData" and r.json()["title"]
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:bad").status_code == 404


@pytest.mark.parametrize(
    ("tp", "body"),
    [
        ("418_01_01", {"id": "urn:ngsi-ld:B:1", "type": "Building", "scope": "9bad"}),
        ("418_01_03", {"id": "urn:ngsi-ld:B:1", "type": "Building", "scope": "a-b"}),
        ("418_01_04", {"id": "urn:ngsi-ld:B:1", "type": "Building", "scope": "urn:ngsi-ld:null"}),
        ("418_01_05", {"id": "urn:ngsi-ld:B:1", "type": "Building", "scope": ["/ok", "9bad"]}),
        ("451_02_01", {"id": "urn:ngsi-ld:Vehicle:A\u202eB", "type": "Vehicle"}),
        ("451_02_02", {"id": "urn:ngsi-ld:Vehicle:A\u200bB", "type": "Vehicle"}),
        ("451_02_12", {"id": "urn:ngsi-ld:Vehicle:A\u115fB", "type": "Vehicle"}),
        ("451_02_10", {"id": "urn:ngsi-ld:Vehicle:A\ufdd0B", "type": "Vehicle"}),
        ("462_01_02", {"id": "urn:ngsi-ld:B:1", "type": "9Vehicle"}),
        ("554_01_01", {"id": "urn:ngsi-ld:null", "type": "Vehicle"}),
    ],
)
def test_invalid_ids_scopes_and_types(ngsi: Ngsi, tp: str, body: dict[str, Any]) -> None:
    """§4.5.1 (id is a URI), §4.6.2 (names), §4.18 (Scope grammar)."""
    r = ngsi.post("/entities/", json=body)
    assert r.status_code == 400 and kind(r) == "BadRequestData", (tp, r.text)


def test_scoped_context_is_rejected(ngsi: Ngsi) -> None:
    """§5.5.7 (TP 557_01_01)."""
    ctx = {"Vehicle": {"@id": "https://example.org/Vehicle", "@context": {"speed": "https://example.org/x"}}}
    r = ngsi.post(
        "/entities/", json={"id": "urn:ngsi-ld:V:sc", "type": "Vehicle", "@context": ctx}, headers={"Content-Type": LD}
    )
    assert r.status_code == 400 and kind(r) == "BadRequestData"


def test_accepted_input_round_trips(ngsi: Ngsi) -> None:
    """§4.4 (@id/@type in), §4.5.1 (IRI ids), §4.5.2.2 (ngsildproof), §4.5.5.1 (@none), §4.5.22/24, §4.7.2."""
    link = hosted_link(ngsi)
    proof = {"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022", "proofValue": "zQe"}
    body = {
        "@id": "urn:ngsi-ld:Vehicle:ok1",
        "@type": "Vehicle",
        "@context": CTX,
        "speed": [
            {"type": "Property", "value": 55, "datasetId": "@none"},
            {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"},
        ],
        "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:Ciudad:Par\u00eds"},
        "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]},
        "street": {"json": {"speed": 3, "type": "raw"}},
        "location": {"type": "GeoProperty", "value": '{"type": "Point", "coordinates": [17.1, 48.7]}'},
        "ngsildproof": {
            "type": "Property",
            "entityIdSealed": "urn:ngsi-ld:Vehicle:ok1",
            "entityTypeSealed": "Vehicle",
            "value": proof,
        },
        "brandName": {"type": "Property", "value": 1, "valueType": "xsd:double"},
    }
    assert ngsi.post("/entities/", json=body, headers={"Content-Type": LD}).status_code == 201
    got = ngsi.get("/entities/urn:ngsi-ld:Vehicle:ok1", headers={"Link": link}).json()
    assert got["id"] == "urn:ngsi-ld:Vehicle:ok1" and got["type"] == "Vehicle" and "@id" not in got
    defaults = [i for i in got["speed"] if "datasetId" not in i]
    assert [i["value"] for i in defaults] == [55] and "@none" not in json.dumps(got)
    assert got["route"]["objectList"] == [{"object": "urn:ngsi-ld:Road:1"}, {"object": "urn:ngsi-ld:Road:2"}]
    assert got["street"] == {"type": "JsonProperty", "json": {"speed": 3, "type": "raw"}}
    assert got["location"]["value"] == {"type": "Point", "coordinates": [17.1, 48.7]}
    assert got["ngsildproof"]["entityTypeSealed"] == "Vehicle" and got["ngsildproof"]["value"] == proof
    assert got["brandName"]["valueType"] == "xsd:double"
    # §5.5.7: without the creating @context the type is the full IRI
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:ok1").json()["type"] == NS + "Vehicle"


# --------------------------------------------------------------------------- operations (§5.6, §5.7)


def test_type_selector_and_scope_as_attribute(ngsi: Ngsi) -> None:
    """§4.17 type selector on one-entity operations (TPs 562/563/564/565/566/5711, 564_01_02); scope
    (§5.6.4.4 as in 564_01_01, §5.6.5.4)."""
    e = "/entities/urn:ngsi-ld:V:ts"
    ngsi.create(
        {"id": "urn:ngsi-ld:V:ts", "type": "Building", "scope": "/Madrid", "name": {"type": "Property", "value": "x"}}
    )
    frag = {"name": {"type": "Property", "value": "y"}}
    assert ngsi.get(e + "?type=Vehicle").status_code == 404
    assert ngsi.post(e + "/attrs/?type=Vehicle", json=frag).status_code == 404
    assert ngsi.patch(e + "/attrs/?type=Vehicle", json=frag).status_code == 404
    assert ngsi.patch(e + "/attrs/name?type=Vehicle", json={"value": "y"}).status_code == 404
    assert ngsi.delete(e + "/attrs/name?type=Vehicle").status_code == 404
    assert ngsi.delete(e + "?type=Vehicle").status_code == 404
    assert ngsi.get(e).json()["name"]["value"] == "x"
    assert ngsi.patch(e + "/attrs/name?type=Building", json={"value": "y"}).status_code == 204
    assert ngsi.get(e).json()["name"]["value"] == "y"
    r = ngsi.patch(e + "/attrs/scope", json={"value": "/Barcelona"})
    assert r.status_code == 400 and kind(r) == "BadRequestData" and ngsi.get(e).json()["scope"] == "/Madrid"
    assert ngsi.delete(e + "/attrs/scope").status_code == 204
    assert "scope" not in ngsi.get(e).json()
    assert ngsi.delete(e + "?type=Building").status_code == 204


def test_update_and_merge_semantics(ngsi: Ngsi) -> None:
    """§5.5.8 (TP 558_01), §5.5.4/§5.5.12 (TP 554_01_03/04)."""
    e = "/entities/urn:ngsi-ld:V:up"
    temp = {"type": "Property", "value": 25, "unitCode": "CEL", "observedAt": "2022-03-14T01:59:26.535Z"}
    ngsi.create({"id": "urn:ngsi-ld:V:up", "type": "Vehicle", "temperature": temp})
    assert ngsi.patch(e + "/attrs/temperature", json={"datasetId": "urn:ngsi-ld:null"}).status_code == 400
    r = ngsi.patch(
        e + "/attrs/", json={"temperature": {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:x"}}
    )
    assert r.status_code == 204
    assert sorted(i["value"] for i in ngsi.get(e).json()["temperature"]) == [25, 30]
    address = {"type": "Property", "value": {"street": "A", "city": "Berlin", "country": "Germany"}}
    assert ngsi.post(e + "/attrs", json={"address": address}).status_code == 204
    r = ngsi.patch(e + "/attrs/address", json={"value": {"country": "urn:ngsi-ld:null"}})
    assert r.status_code == 400 and ngsi.get(e).json()["address"]["value"]["country"] == "Germany"
    r = ngsi.patch(e, json={"address": {"type": "Property", "value": {"street": "B", "country": "urn:ngsi-ld:null"}}})
    assert r.status_code == 204
    assert ngsi.get(e).json()["address"]["value"] == {"street": "B", "city": "Berlin"}


def test_batch_rejects_empty_and_null_items(ngsi: Ngsi) -> None:
    """§5.6.7.4 / §5.6.20.4 (TPs 567_01, 5620_01): the whole request fails, nothing is written."""
    for op in ("create", "merge"):
        r = ngsi.post(f"/entityOperations/{op}", json=[{"id": "urn:ngsi-ld:V:bn", "type": "Vehicle"}, None])
        assert r.status_code == 400 and kind(r) == "BadRequestData"
        assert ngsi.post(f"/entityOperations/{op}", json=[]).status_code == 400
    assert ngsi.get("/entities/urn:ngsi-ld:V:bn").status_code == 404


def test_ordering(ngsi: Ngsi) -> None:
    """§4.23 orderBy, orderFrom, collation (TPs 423_01, 4233_01) and OrderingParams §5.2.43 (TP 5243_01)."""
    for suffix, name, lon, rank in (("A", "A", 8.01, 5), ("b", "b", 9.0, "abc"), ("c", "á", 10.0, None)):
        entity: dict[str, Any] = {
            "id": f"urn:ngsi-ld:Vehicle:o{suffix}",
            "type": "Vehicle",
            "name": {"type": "Property", "value": name},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 40.0]}},
        }
        if rank is not None:
            entity["rankProbe"] = {"type": "Property", "value": rank}
        ngsi.create(entity)

    def names(**params: str) -> list[str]:
        r = ngsi.get("/entities", params={"type": "Vehicle", **params})
        assert r.status_code == 200, r.text
        return [e["name"]["value"] for e in r.json()]

    assert names(orderBy="name") == ["A", "b", "á"]  # codepoint order
    assert names(orderBy="name", collation="und") == ["A", "á", "b"]  # root collation
    assert names(orderBy="location;dist-desc", orderFrom="[8,40]") == ["á", "b", "A"]
    assert names(orderBy="rankProbe") == ["A", "b", "á"]  # numbers, strings, then absent
    assert names(orderBy="name;desc", limit="1", offset="1") == ["b"]
    for bad in ({"orderBy": "location;dist-asc"}, {"orderBy": "name", "collation": "!!nope"}):
        r = ngsi.get("/entities", params={"type": "Vehicle", **bad})
        assert r.status_code == 400 and kind(r) == "BadRequestData"
    query: dict[str, Any] = {"type": "Query", "entities": [{"type": "Vehicle"}]}
    r = ngsi.post(
        "/entityOperations/query",
        json={**query, "ordering": {"orderBy": ["location;dist-asc"], "coordinates": [10, 40]}},
    )
    assert [e["name"]["value"] for e in r.json()] == ["á", "b", "A"]
    for ordering in ({"orderBy": ["location;dist-asc"]}, {"orderBy": ["id"], "collation": "de-u-co-phonebk"}):
        assert ngsi.post("/entityOperations/query", json={**query, "ordering": ordering}).status_code == 400


def test_entity_selectors(ngsi: Ngsi) -> None:
    """EntitySelector §5.2.33 (TP 5233_01): id arrays, id before idPattern, type mandatory."""
    for s in ("A", "B"):
        ngsi.create({"id": f"urn:ngsi-ld:Vehicle:sel-{s}", "type": "Vehicle"})

    def query(sel: dict[str, Any]) -> Any:
        return ngsi.post("/entityOperations/query", json={"type": "Query", "entities": [sel]})

    a, b = "urn:ngsi-ld:Vehicle:sel-A", "urn:ngsi-ld:Vehicle:sel-B"
    assert {e["id"] for e in query({"type": "Vehicle", "id": [a, b]}).json()} == {a, b}
    assert [e["id"] for e in query({"type": "Vehicle", "id": a, "idPattern": "sel-B$"}).json()] == [a]
    for bad in ({"id": a}, {"type": "Vehicle", "id": "not a uri"}, {"type": "Vehicle", "id": [a, 5]}):
        assert query(bad).status_code == 400
    r = ngsi.post(
        "/entityOperations/query",
        json={"type": "Query", "entities": [{"type": "Vehicle", "id": a}, {"type": "Vehicle", "idPattern": "sel-B$"}]},
    )
    assert {e["id"] for e in r.json()} == {a, b}


@pytest.mark.parametrize(
    "qs",
    [
        "attrs=createdAt",  # 5722_01_01: system attributes alone do not narrow a query
        'q=modifiedAt>"2020-01-01T00:00:00Z"',  # 5722_01_02
        'type=Building&q=owner{name}=="x"',  # 5722_01_03: Linked Entity q without join
        'type=Building&q=owner{works{name}}=="x"&join=inline&joinLevel=1',  # 5722_01_04
        "type=Building&csf=))bad((",  # 5722_01_05
    ],
)
def test_query_validation(ngsi: Ngsi, qs: str) -> None:
    """§5.7.2.4."""
    r = ngsi.get("/entities/?" + qs)
    assert r.status_code == 400 and kind(r) == "BadRequestData"


def test_representations(ngsi: Ngsi) -> None:
    """§4.15 language filter (TP 415_01), §4.5.4 keyValues (TP 454_01), §4.5.16 GeoJSON, §5.7.1.4 (TP 5711_01)."""
    e = "/entities/urn:ngsi-ld:Vehicle:rep"
    ngsi.create(
        {
            "id": "urn:ngsi-ld:Vehicle:rep",
            "type": "Vehicle",
            "street": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl-BE": "Grote Markt"}},
            "speed": [
                {"type": "Property", "value": 55},
                {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:D:gps"},
            ],
            "extra": {"type": "JsonProperty", "json": {"a": 1}},
            "category": {"type": "VocabProperty", "vocab": "commercial"},
            "location": [
                {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [9.0, 9.0]},
                    "datasetId": "urn:ngsi-ld:D:gps",
                },
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}},
            ],
        }
    )
    for lang, tag in (("fr;q=0.2,nl;q=0.9", "nl-BE"), ("FR", "fr"), ("nl", "nl-BE")):
        street = ngsi.get(e, params={"lang": lang}).json()["street"]
        assert street["type"] == "Property" and street["lang"] == tag and "languageMap" not in street
    assert ngsi.get(e, params={"lang": "pt"}).json()["street"]["lang"] in ("fr", "nl-BE")
    kv = ngsi.get(e, params={"options": "keyValues"}).json()
    assert kv["speed"] == {"dataset": {"@none": 55, "urn:ngsi-ld:D:gps": 11}}
    assert kv["extra"] == {"json": {"a": 1}} and kv["category"] == {"vocab": "commercial"}
    feature = ngsi.get(e, headers={"Accept": GEO}).json()
    assert feature["geometry"] == {"type": "Point", "coordinates": [1.0, 2.0]} and "id" not in feature["properties"]
    r = ngsi.get(e, params={"geometryProperty": "location"}, headers={"Accept": LD})
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    assert ngsi.get(e, params={"pick": "owner{name}"}).status_code == 400


def test_purge_entities(ngsi: Ngsi) -> None:
    """Purge Entities §5.6.21 (TP 059_01_08 checks its parameters; 060_01, 060_03_01)."""
    r = ngsi.delete("/entities?invalidParams=invalidValue")
    assert r.status_code == 400 and kind(r) == "InvalidRequest"
    r = ngsi.delete("/entities")
    assert r.status_code == 400 and kind(r) == "BadRequestData" and r.json()["title"]
    for n in (1, 2):
        ngsi.create({"id": f"urn:ngsi-ld:Purge:{n}", "type": "PurgeT"})
    ngsi.create({"id": "urn:ngsi-ld:Keep:1", "type": "KeepT"})
    assert ngsi.delete("/entities", params={"type": "PurgeT"}).status_code == 204
    assert ngsi.get("/entities/urn:ngsi-ld:Purge:1").status_code == 404
    assert ngsi.get("/entities/urn:ngsi-ld:Keep:1").status_code == 200
    assert ngsi.delete("/entities", params={"type": "PurgeT"}).status_code == 404


def building(ngsi: Ngsi, n: int) -> str:
    """The suite's building-simple-attributes entity (as 060_* create it), id ``…:Building:{n}``."""
    eid = f"urn:ngsi-ld:Building:{n}"
    ngsi.create(
        {
            "id": eid,
            "type": "Building",
            "name": {"type": "Property", "value": "Eiffel Tower" if n == 1 else f"Building {n}"},
            "subCategory": {"type": "Property", "value": ["tourism"]},
            "airQualityLevel": {"type": "Property", "value": 4},
            "almostFull": {"type": "Property", "value": False},
        }
    )
    return eid


def test_purge_refuses_a_selection_too_wide_and_deletes_nothing(ngsi: Ngsi) -> None:
    """§5.6.21.4 (TPs 060_02_01, 060_06_01..04, 5621_01_01/02): keep with drop, ids or an id
    pattern alone, attrs or q naming only system Attributes, and Linked Entity attrs or q are
    400 BadRequestData, before anything is deleted."""
    eid = building(ngsi, 1)
    for params in (
        {"type": "Building", "keep": "name", "drop": "subCategory"},
        {"id": eid},
        {"idPattern": ".*"},
        {"attrs": "createdAt"},
        {"q": 'modifiedAt>"2020-01-01T00:00:00Z"'},
        {"scopeQ": "/Madrid/#"},
        {"type": "Building", "q": 'owner{name}=="x"'},
        {"type": "Building", "attrs": "owner{name}"},
    ):
        r = ngsi.delete("/entities", params=params)
        assert r.status_code == 400 and kind(r) == "BadRequestData" and r.json()["title"], params
    body = ngsi.get(f"/entities/{eid}").json()
    assert {"name", "subCategory", "airQualityLevel", "almostFull"} <= set(body)


def test_purge_selects_by_q_by_id_with_type_and_by_the_local_scope(ngsi: Ngsi) -> None:
    """TPs 060_03_02 (q), 060_03_04 (id with type), 060_03_03 and 060_06_05 (local=true alone)."""
    first, second, third = building(ngsi, 1), building(ngsi, 2), building(ngsi, 3)
    assert ngsi.delete("/entities", params={"q": 'name=="Eiffel Tower"'}).status_code == 204
    assert ngsi.get(f"/entities/{first}").status_code == 404
    assert ngsi.get(f"/entities/{second}").status_code == 200
    r = ngsi.delete("/entities", params={"id": second, "type": "Building"})
    assert r.status_code == 204 and r.content == b""
    assert ngsi.get(f"/entities/{second}").status_code == 404
    assert ngsi.get(f"/entities/{third}").status_code == 200
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:9", "type": "Vehicle"})
    assert ngsi.delete("/entities", params={"local": "true"}).status_code == 204
    assert ngsi.get("/entities", params={"local": "true"}).json() == []


def test_purge_drops_or_keeps_attributes_and_keeps_the_entities(ngsi: Ngsi) -> None:
    """TPs 060_04_01 (``drop``) and 060_05_01 (``keep``, with only an id): the entities stay, the
    Attributes named go (or all the others do), each deletion in the history and on the bus."""
    first, second = building(ngsi, 1), building(ngsi, 2)
    ngsi.post(f"/entities/{first}/attrs", json={"name": {"type": "Property", "value": "x", "datasetId": "urn:d:1"}})
    r = ngsi.delete("/entities", params={"type": "Building", "drop": "name"})
    assert r.status_code == 204 and r.content == b""
    for eid in (first, second):
        body = ngsi.get(f"/entities/{eid}").json()
        assert "name" not in body and {"subCategory", "airQualityLevel", "almostFull"} <= set(body)
    assert ngsi.delete("/entities", params={"id": second, "keep": "airQualityLevel"}).status_code == 204
    body = ngsi.get(f"/entities/{second}").json()
    assert set(body) == {"id", "type", "airQualityLevel"}
    assert set(ngsi.get(f"/entities/{first}").json()) == {"id", "type", "subCategory", "airQualityLevel", "almostFull"}
    history = ngsi.get(f"/temporal/entities/{first}", params={"timeproperty": "deletedAt"}).json()
    assert "name" in history  # the dropped instances are deletions in the temporal history


def test_ngsi_ld_null_deletes_a_relationship_in_update_and_partial_update(ngsi: Ngsi) -> None:
    """§5.5.4 / TP 046_22_10: ``"object": "urn:ngsi-ld:null"`` in Update Attributes (§5.6.2) and in
    a partial attribute update (§5.6.4) deletes the Relationship, as ``"value"`` does a Property."""
    rel = {"type": "Relationship", "object": "urn:ngsi-ld:Building:b1"}
    body = {"id": "urn:ngsi-ld:Vehicle:null-rel", "type": "Vehicle", "isParked": rel, "owner": rel}
    ngsi.create(body)
    r = ngsi.patch("/entities/urn:ngsi-ld:Vehicle:null-rel/attrs", json={"isParked": {**rel, "object": NULL}})
    assert r.status_code == 204, r.text
    r = ngsi.patch("/entities/urn:ngsi-ld:Vehicle:null-rel/attrs/owner", json={"object": NULL})
    assert r.status_code == 204, r.text
    entity = ngsi.get("/entities/urn:ngsi-ld:Vehicle:null-rel").json()
    assert "isParked" not in entity and "owner" not in entity


# --------------------------------------------------------------------------- found by replaying more TPs


LOCATION = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.68, 18.67]}}


def test_ngsi_ld_null_deletes_a_geoproperty_as_any_other_attribute(ngsi: Ngsi) -> None:
    """TPs 056_03_03 (Merge Entity), 011_07_03 (Update Attributes), 012_05_03 (Partial Attribute
    Update): ``"value": "urn:ngsi-ld:null"`` on a GeoProperty deletes it (§5.5.4)."""
    null_geo = {"type": "GeoProperty", "value": NULL}
    for n in (1, 2, 3):
        assert (
            create(ngsi, f"urn:ngsi-ld:Building:{n}", "Building", location=LOCATION, name=prop("x")).status_code == 201
        )
    merge = {"id": "urn:ngsi-ld:Building:1", "type": "Building", "location": null_geo, "@context": CTX}
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:1", json=merge, headers={"Content-Type": LD}).status_code == 204
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:2/attrs", json={"location": null_geo}).status_code == 204
    assert ngsi.patch("/entities/urn:ngsi-ld:Building:3/attrs/location", json=null_geo).status_code == 204
    for n in (1, 2, 3):
        body = ngsi.get(f"/entities/urn:ngsi-ld:Building:{n}").json()
        assert "location" not in body, n
    r = ngsi.post("/entities", json={"id": "urn:ngsi-ld:Building:9", "type": "Building", "location": null_geo})
    assert r.status_code == 400 and kind(r) == "BadRequestData"  # a null only deletes; it creates nothing


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def test_attribute_operations_refuse_what_they_cannot_do(ngsi: Ngsi) -> None:
    """TPs 055_03_05 (Replace Attribute of scope: 400, not a 500), 012_02_03 (a Partial Attribute
    Update does not turn a Property into a Relationship), 013_02_03 (DELETE on .../attrs/: 405),
    054_02_02 and 056_02_02 (PUT or PATCH /entities/ without an id: 400)."""
    assert create(ngsi, "urn:ngsi-ld:Vehicle:1", speed=prop(5), scope="/A").status_code == 201
    e = "/entities/urn:ngsi-ld:Vehicle:1"
    r = ngsi.put(e + "/attrs/scope", json={"scope": "/Company123/UnitA"})
    assert r.status_code == 400 and kind(r) == "BadRequestData"
    rel = {"type": "Relationship", "object": "urn:ngsi-ld:Entity:01", "@context": CTX}
    r = ngsi.patch(e + "/attrs/speed", json=rel, headers={"Content-Type": LD})
    assert r.status_code == 400 and kind(r) == "BadRequestData" and r.json()["title"]
    r = ngsi.delete(e + "/attrs/", params={"deleteAll": "false"})
    assert r.status_code == 405 and kind(r) == "MethodNotAllowed"
    body = {"id": "", "type": "Building", "name": prop("Pisa Tower")}
    for method in ("PUT", "PATCH"):
        r = ngsi.request(method, "/entities/", json=body)
        assert r.status_code == 400 and kind(r) == "BadRequestData", method
    after = ngsi.get(e, headers={"Link": hosted_link(ngsi)}).json()
    assert after["speed"] == prop(5) and after["scope"] == "/A"


def test_an_entity_type_that_is_a_keyword_alias_is_refused(ngsi: Ngsi) -> None:
    """TP 001_02_04: ``"type": "type"`` under the core @context names the keyword @type, not a type."""
    body = {"id": "urn:ngsi-ld:Building:1", "type": "type", "@context": [CORE]}
    r = ngsi.post("/entities/", json=body, headers={"Content-Type": LD})
    assert r.status_code == 400 and kind(r) == "BadRequestData" and r.json()["title"]
    assert ngsi.get("/entities/urn:ngsi-ld:Building:1").status_code == 404


def test_discovery_refuses_parameters_it_does_not_define_before_looking(ngsi: Ngsi) -> None:
    """TPs 5710_01_03 and 577_01_02 (§6.3.20): the lists take ``details`` (and ``local``), one type
    or attribute only ``local``; anything else is 400 InvalidRequest, found or not."""
    assert create(ngsi, "urn:ngsi-ld:Building:1", "Building", name=prop("x")).status_code == 201
    for path, params in (
        ("/attributes", {"limit": "5"}),
        ("/attributes/temperature", {"details": "true"}),
        ("/types/Building", {"details": "true"}),
        ("/types", {"offset": "1"}),
    ):
        r = ngsi.get(path, params=params)
        assert r.status_code == 400 and kind(r) == "InvalidRequest", path
    assert ngsi.get("/types", params={"details": "true", "local": "true"}).status_code == 200
    assert ngsi.get("/attributes", params={"details": "true"}).status_code == 200


def test_a_batch_whose_context_cannot_be_loaded_fails_each_entity(ngsi: Ngsi) -> None:
    """TP 043_01_04: an @context that cannot be loaded is each entity's LdContextNotAvailable (207)."""
    gone = ["http://127.0.0.1:9/ngsi-ld-core-context-non-existing.jsonld"]
    batch = [{"id": f"urn:ngsi-ld:Building:{n}", "type": "Building", "@context": gone} for n in (1, 2)]
    r = ngsi.post("/entityOperations/create", json=batch, headers={"Content-Type": LD})
    assert r.status_code == 207 and r.json()["success"] == []
    errors = r.json()["errors"]
    assert [e["entityId"] for e in errors] == ["urn:ngsi-ld:Building:1", "urn:ngsi-ld:Building:2"]
    assert all(e["error"]["type"] == ERR + "LdContextNotAvailable" and e["error"]["title"] for e in errors)


def test_update_attributes_replaces_a_scope_and_adds_none(ngsi: Ngsi) -> None:
    """TPs 011_05_01 (an entity with a scope gets the new one: 204) and 011_05_02 (one without keeps
    none: 207, scope not updated); Append Attributes is what adds a scope."""
    assert create(ngsi, "urn:ngsi-ld:Vehicle:1", scope="/Madrid").status_code == 201
    assert create(ngsi, "urn:ngsi-ld:Vehicle:2").status_code == 201
    fragment = {"scope": "/CompanyA/OrganizationB/UnitC"}
    r = ngsi.patch("/entities/urn:ngsi-ld:Vehicle:1/attrs", json=fragment)
    assert r.status_code == 204 and r.content == b""
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:1").json()["scope"] == "/CompanyA/OrganizationB/UnitC"
    r = ngsi.patch("/entities/urn:ngsi-ld:Vehicle:2/attrs", json=fragment)
    assert r.status_code == 207 and r.json() == {
        "updated": [],
        "notUpdated": [{"attributeName": "scope", "reason": r.json()["notUpdated"][0]["reason"]}],
    }
    assert "scope" not in ngsi.get("/entities/urn:ngsi-ld:Vehicle:2").json()
    assert ngsi.post("/entities/urn:ngsi-ld:Vehicle:2/attrs", json=fragment).status_code == 204
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:2").json()["scope"] == "/CompanyA/OrganizationB/UnitC"


def test_append_attributes_with_no_overwrite_adds_the_scope(ngsi: Ngsi) -> None:
    """TP 010_07_01 (§4.18, §5.6.3): with options=noOverwrite the scope is added to the entity's
    scopes, once; without it, it replaces them."""
    eid = "urn:ngsi-ld:Vehicle:010-07"
    assert create(ngsi, eid, typ="Building", scope="/Madrid/Gardens/ParqueNorte").status_code == 201
    link = {"Link": hosted_link(ngsi)}
    fragment = {"scope": "/CompanyA/OrganizationB/UnitC"}
    r = ngsi.post(f"/entities/{eid}/attrs/", params={"options": "noOverwrite"}, json=fragment)
    assert r.status_code == 204 and r.content == b""
    both = ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]
    assert ngsi.get(f"/entities/{eid}", headers=link).json() == {"id": eid, "type": "Building", "scope": both}
    again = {"scope": ["/CompanyA/OrganizationB/UnitC", "/Hue"]}
    assert ngsi.post(f"/entities/{eid}/attrs", params={"options": "noOverwrite"}, json=again).status_code == 204
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == [*both, "/Hue"]
    assert ngsi.post(f"/entities/{eid}/attrs", json=fragment).status_code == 204
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == "/CompanyA/OrganizationB/UnitC"


def test_update_attributes_adds_the_types_it_names(ngsi: Ngsi) -> None:
    """TPs 011_06_01, 011_06_02, 011_06_04 (§4.16, §5.6.2): a type in the fragment is added to the
    entity's types (they only grow); one it has already is kept once."""
    link = {"Link": hosted_link(ngsi)}
    for tp, types, expected in (
        ("011_06_01", "Vehicle", ["Building", "Vehicle"]),
        ("011_06_02", ["Vehicle", "Car"], ["Building", "Vehicle", "Car"]),
        ("011_06_04", ["Building", "Vehicle"], ["Building", "Vehicle"]),
    ):
        eid = f"urn:ngsi-ld:Building:{tp}"
        assert ngsi.post("/entities/", json={"id": eid, "type": "Building"}, headers=link).status_code == 201
        fragment = {"type": types, "@context": [CTX]}
        r = ngsi.patch(f"/entities/{eid}/attrs/", json=fragment, headers={"Content-Type": LD})
        assert r.status_code == 204 and r.content == b"", tp
        assert ngsi.get(f"/entities/{eid}", headers=link).json() == {"id": eid, "type": expected}, tp
