"""Conformance of the batch operations (``/entityOperations/create|upsert|update|merge|delete|query``)
with the ETSI NGSI-LD test suite's test purposes (TP ids in each docstring), ETSI GS CIM 009 v1.8
§5.6.7-5.6.10, §5.6.20, §5.7.2 via POST (§6.23) and the HTTP binding (§6.3.5).

The suite's entities use its own @context (``ngsi-ld-test-suite-compound.jsonld``); here the same
terms are served by the broker itself as a hosted @context, so no network is needed. The suite's
Robot keywords send batches as ``application/ld+json`` with an ``@context`` in every entity, and
upserts with ``?options=replace``; the requests below do the same. Both databases.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CORE, LD, Ngsi

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
J = "application/json"
GEO = "application/geo+json"
NS = "https://ngsi-ld-test-suite/context#"
TERMS = [
    "Building",
    "Vehicle",
    "City",
    "OffStreetParking",
    "TouristDestination",
    "name",
    "subCategory",
    "airQualityLevel",
    "almostFull",
    "locatedAt",
    "brandName",
]
CTX: dict[str, Any] = {t: NS + t for t in TERMS}

B1, B2, B3 = "urn:ngsi-ld:Building:b1", "urn:ngsi-ld:Building:b2", "urn:ngsi-ld:Building:b3"

# The attributes of the suite's data files (data/entities/*.jsonld).
AQL = {"type": "Property", "value": 4, "unitCode": "C62", "observedAt": "2020-09-09T16:40:00.000Z"}
SENSOR = "urn:ngsi-ld:Sensor:43a1af27-4aa7-44fe-bee9-fe76d56978a4"
SIMPLE: dict[str, Any] = {  # building-simple-attributes, merge/building-merge-data
    "name": {"type": "Property", "value": "Eiffel Tower"},
    "subCategory": {"type": "Property", "value": "tourism"},
    "airQualityLevel": AQL,
    "almostFull": {"type": "Property", "value": False},
}
SECOND: dict[str, Any] = {  # building-simple-attributes-second
    "name": {"type": "Property", "value": "Pisa Tower"},
    "subCategory": {"type": "Property", "value": "tourism"},
    "airQualityLevel": {**AQL, "value": 6, "observedAt": "2020-10-10T16:40:00.000Z"},
    "almostFull": {"type": "Property", "value": True},
}
RELATIONSHIP: dict[str, Any] = {"locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}}
REL_OF_PROP: dict[str, Any] = {  # building-relationship-of-property
    **SIMPLE,
    "airQualityLevel": {**AQL, "hasWeatherObserved": {"type": "Relationship", "object": SENSOR}},
}
POINT = {"type": "Point", "coordinates": [13.3986, 52.5547]}
LOCATION: dict[str, Any] = {  # building-location-attribute
    "name": SIMPLE["name"],
    "subCategory": SIMPLE["subCategory"],
    "location": {"type": "GeoProperty", "value": POINT},
}


def kind(body: dict[str, Any]) -> str:
    return str(body["type"]).removeprefix(ERR)


@pytest.fixture
def ctx_url(ngsi: Ngsi) -> str:
    """The suite's terms as a @context hosted by the broker."""
    return ngsi.host(CTX)


def link(url: str) -> str:
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def entity(eid: str, ctx_url: str, attrs: dict[str, Any] | None = None, typ: Any = "Building") -> dict[str, Any]:
    """A JSON-LD entity of the suite's shape: id, type, attributes and its @context."""
    return {"id": eid, "type": typ, **(attrs or {}), "@context": ctx_url}


def batch(ngsi: Ngsi, op: str, items: list[Any], **kw: Any) -> Any:
    headers = {"Content-Type": LD, **kw.pop("headers", {})}
    if op == "upsert":
        kw.setdefault("params", {"options": "replace"})
    return ngsi.post(f"/entityOperations/{op}", json=items, headers=headers, **kw)


def create(ngsi: Ngsi, ctx_url: str, eid: str, attrs: dict[str, Any] | None = None, typ: Any = "Building") -> None:
    r = ngsi.post("/entities/", json=entity(eid, ctx_url, attrs, typ), headers={"Content-Type": LD})
    assert r.status_code == 201, r.text


def query(ngsi: Ngsi, ctx_url: str, *ids: str) -> dict[str, Any]:
    """Query Entities as the suite checks a batch: ids, ``type=Building``, JSON-LD, the suite's @context."""
    r = ngsi.get(
        "/entities", params={"id": ",".join(ids), "type": "Building"}, headers={"Link": link(ctx_url), "Accept": LD}
    )
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()}


def errors_of(r: Any) -> dict[str, str]:
    return {e["entityId"]: kind(e["error"]) for e in r.json()["errors"]}


# --------------------------------------------------------------------------- Batch Entity Creation (§5.6.7)


@pytest.mark.parametrize(
    "attrs",
    [{}, SIMPLE, RELATIONSHIP, REL_OF_PROP],
    ids=["003_01_01", "003_01_02", "003_01_03", "003_01_04"],
)
def test_create_batch(ngsi: Ngsi, ctx_url: str, attrs: dict[str, Any]) -> None:
    """TPs 003_01_01-04: 201 with the created ids; the entities read back as sent."""
    items = [entity(B1, ctx_url, attrs), entity(B2, ctx_url, attrs)]
    r = batch(ngsi, "create", items)
    assert r.status_code == 201 and r.json() == [B1, B2]
    assert query(ngsi, ctx_url, B1, B2) == {e["id"]: e for e in items}


def test_create_batch_with_an_existing_entity(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 003_02_01: 207, the existing entity is an AlreadyExists error, the others are created."""
    create(ngsi, ctx_url, B3)
    r = batch(ngsi, "create", [entity(B1, ctx_url), entity(B2, ctx_url), entity(B3, ctx_url)])
    assert r.status_code == 207 and r.json()["success"] == [B1, B2]
    assert errors_of(r) == {B3: "AlreadyExists"}
    assert set(query(ngsi, ctx_url, B1, B2)) == {B1, B2}


@pytest.mark.parametrize("op", ["create", "upsert", "update", "merge", "delete"])
def test_invalid_batch_requests(ngsi: Ngsi, op: str) -> None:
    """TPs 003_03_01/02, 004_06_01, 005_04_01, 006_03_01/02, 057_03_01: a body that is not JSON is
    400 InvalidRequest; an empty array (``batch/empty.jsonld``) is 400 BadRequestData (§5.6.7.4)."""
    r = ngsi.post(
        f"/entityOperations/{op}", content=b'[{"id": "urn:ngsi-ld:Building:x",, }]', headers={"Content-Type": LD}
    )
    assert r.status_code == 400 and kind(r.json()) == "InvalidRequest" and r.json()["title"]
    r = ngsi.post(f"/entityOperations/{op}", content=b"[]", headers={"Content-Type": LD})
    assert r.status_code == 400 and kind(r.json()) == "BadRequestData" and r.json()["title"]


@pytest.mark.parametrize("op", ["upsert", "update", "merge"])
def test_invalid_jsonld_entity_is_an_entity_error(ngsi: Ngsi, ctx_url: str, op: str) -> None:
    """TPs 004_06_02, 005_04_02, 057_03_02 (``batch/invalid-json-ld.jsonld``): a null attribute value
    makes that entity a BadRequestData error of a 207 answer."""
    bad = entity("urn:ngsi-ld:Building:randomUUID", ctx_url, {"name": {"type": "Property", "value": None}})
    r = batch(ngsi, op, [bad])
    assert r.status_code == 207 and r.json()["success"] == []
    error = r.json()["errors"][0]
    assert error["entityId"] == bad["id"] and kind(error["error"]) == "BadRequestData" and error["error"]["title"]


def test_json_content_type_takes_the_link_header_context(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 003_04_01/02 (§6.3.5): JSON with a Link header; the terms expand with the Link's @context."""
    body = [{"id": B1, "type": "Building", **SIMPLE}]
    r = ngsi.post("/entityOperations/create", json=body, headers={"Content-Type": J, "Link": link(ctx_url)})
    assert r.status_code == 201 and r.json() == [B1]
    assert "almostFull" in ngsi.get(f"/entities/{B1}", headers={"Link": link(ctx_url)}).json()
    assert NS + "almostFull" in ngsi.get(f"/entities/{B1}").json()


def test_json_content_type_without_link_takes_the_core_context(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 003_05_01/02 (§6.3.5): JSON without a Link header expands with the core @context (the
    default vocabulary), which the suite's @context then compacts to ``ngsi-ld:default-context/...``."""
    r = ngsi.post("/entityOperations/create", json=[{"id": B1, "type": "Building", **SIMPLE}])
    assert r.status_code == 201
    assert "almostFull" in ngsi.get(f"/entities/{B1}").json()
    assert "ngsi-ld:default-context/almostFull" in ngsi.get(f"/entities/{B1}", headers={"Link": link(ctx_url)}).json()


def test_json_content_type_with_a_context_in_the_body(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 003_06_01 (§6.3.5): JSON carrying an @context: that entity is a BadRequestData error (207)."""
    r = ngsi.post("/entityOperations/create", json=[entity(B1, ctx_url, SIMPLE)], headers={"Content-Type": J})
    assert r.status_code == 207 and errors_of(r) == {B1: "BadRequestData"}
    assert r.json()["errors"][0]["error"]["title"]


def test_jsonld_content_type_takes_the_body_context(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 003_07_01/02 (§6.3.5): JSON-LD, the @context of each entity."""
    assert batch(ngsi, "create", [entity(B1, ctx_url, SIMPLE)]).status_code == 201
    assert "almostFull" in ngsi.get(f"/entities/{B1}", headers={"Link": link(ctx_url)}).json()
    assert NS + "almostFull" in ngsi.get(f"/entities/{B1}").json()


def test_jsonld_content_type_without_a_context(ngsi: Ngsi) -> None:
    """TP 003_08_01 (§6.3.5): a JSON-LD entity without @context is a BadRequestData error (207)."""
    r = batch(ngsi, "create", [{"id": B1, "type": "Building", **SIMPLE}])
    assert r.status_code == 207 and errors_of(r) == {B1: "BadRequestData"}


@pytest.mark.parametrize("op", ["create", "upsert", "update", "merge"])
def test_jsonld_content_type_with_a_link_header(ngsi: Ngsi, ctx_url: str, op: str) -> None:
    """TP 003_09_01 (§6.3.5): JSON-LD and a context Link header: 400 BadRequestData for the whole
    request, nothing written (the same rule for the other batch writes)."""
    create(ngsi, ctx_url, B2)
    r = batch(ngsi, op, [entity(B1, ctx_url, SIMPLE), entity(B2, ctx_url, SIMPLE)], headers={"Link": link(ctx_url)})
    assert r.status_code == 400 and kind(r.json()) == "BadRequestData" and r.json()["title"]
    assert ngsi.get(f"/entities/{B1}").status_code == 404
    assert query(ngsi, ctx_url, B2) == {B2: entity(B2, ctx_url)}


def test_create_batch_with_a_repeated_id(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 003_10_01 (§5.5.11): the first occurrence creates, the next one is AlreadyExists."""
    r = batch(ngsi, "create", [entity(B1, ctx_url), entity(B2, ctx_url), entity(B1, ctx_url, SIMPLE)])
    assert r.status_code == 207 and r.json()["success"] == [B1, B2]
    assert errors_of(r) == {B1: "AlreadyExists"}
    assert query(ngsi, ctx_url, B1)[B1] == entity(B1, ctx_url)


# --------------------------------------------------------------------------- Batch Entity Delete (§5.6.10)


def test_delete_batch(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 006_01_01, 006_02_01, 006_04_01: 204 with no body; an unknown id is a ResourceNotFound
    error (207); a repeated id deletes once, then is ResourceNotFound (§5.5.11)."""
    for eid in (B1, B2, B3):
        create(ngsi, ctx_url, eid, SIMPLE)
    r = batch(ngsi, "delete", [B1, B2])
    assert r.status_code == 204 and r.content == b""
    assert query(ngsi, ctx_url, B1, B2) == {}
    r = batch(ngsi, "delete", [B3, "urn:ngsi-ld:Building:new"])
    assert r.status_code == 207 and r.json()["success"] == [B3]
    assert errors_of(r) == {"urn:ngsi-ld:Building:new": "ResourceNotFound"}
    create(ngsi, ctx_url, B1, SIMPLE)
    r = batch(ngsi, "delete", [B1, B1])
    assert r.status_code == 207 and r.json()["success"] == [B1] and errors_of(r) == {B1: "ResourceNotFound"}
    assert query(ngsi, ctx_url, B1, B2, B3) == {}


# --------------------------------------------------------------------------- Batch Entity Merge (§5.6.20)


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ({}, SIMPLE),
        (SECOND, SECOND),
        (RELATIONSHIP, {**SIMPLE, **RELATIONSHIP}),
        (  # merge/building-only-airQualityLevel-value: the other members of the attribute stay
            {"airQualityLevel": {"type": "Property", "value": 1, "observedAt": "2024-01-01T00:00:00.000Z"}},
            {**SIMPLE, "airQualityLevel": {**AQL, "value": 1, "observedAt": "2024-01-01T00:00:00.000Z"}},
        ),
    ],
    ids=["057_01_01", "057_01_02", "057_01_03", "057_01_04"],
)
def test_merge_batch(ngsi: Ngsi, ctx_url: str, fragment: dict[str, Any], expected: dict[str, Any]) -> None:
    """TPs 057_01_01-04: 204 with no body; each entity merged as by Merge Entity (§5.6.17)."""
    create(ngsi, ctx_url, B1, SIMPLE)
    create(ngsi, ctx_url, B2, SIMPLE)
    r = batch(ngsi, "merge", [entity(B1, ctx_url, fragment), entity(B2, ctx_url, fragment)])
    assert r.status_code == 204 and r.content == b""
    assert query(ngsi, ctx_url, B1, B2) == {B1: entity(B1, ctx_url, expected), B2: entity(B2, ctx_url, expected)}


def test_merge_batch_null_deletes_the_attribute(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 5620_01_03 (§5.6.20.4 via §5.6.17): ``urn:ngsi-ld:null`` deletes the attribute; 204."""
    create(ngsi, ctx_url, B1, SIMPLE)
    r = batch(ngsi, "merge", [entity(B1, ctx_url, {"subCategory": "urn:ngsi-ld:null"})])
    assert r.status_code == 204 and r.content == b""
    expected = {k: v for k, v in SIMPLE.items() if k != "subCategory"}
    assert query(ngsi, ctx_url, B1) == {B1: entity(B1, ctx_url, expected)}


# --------------------------------------------------------------------------- Batch Entity Update (§5.6.9)


@pytest.mark.parametrize(
    "fragment",
    [SIMPLE, RELATIONSHIP, REL_OF_PROP],
    ids=["005_01_01", "005_01_02", "005_01_03"],
)
def test_update_batch(ngsi: Ngsi, ctx_url: str, fragment: dict[str, Any]) -> None:
    """TPs 005_01_01-03: 204 with no body; the attributes are appended, existing ones overwritten."""
    create(ngsi, ctx_url, B1, SIMPLE)
    create(ngsi, ctx_url, B2, SIMPLE)
    r = batch(ngsi, "update", [entity(B1, ctx_url, fragment), entity(B2, ctx_url, fragment)])
    assert r.status_code == 204 and r.content == b""
    expected = {**SIMPLE, **fragment}
    assert query(ngsi, ctx_url, B1, B2) == {B1: entity(B1, ctx_url, expected), B2: entity(B2, ctx_url, expected)}


@pytest.mark.parametrize(
    ("fragment", "status", "added"),
    [
        ({**SIMPLE, "name": {"type": "Property", "value": "Other"}}, 207, {}),
        (RELATIONSHIP, 204, RELATIONSHIP),
        (LOCATION, 207, {"location": LOCATION["location"]}),
    ],
    ids=["005_02_01", "005_02_02", "005_02_03"],
)
def test_update_batch_no_overwrite(
    ngsi: Ngsi, ctx_url: str, fragment: dict[str, Any], status: int, added: dict[str, Any]
) -> None:
    """TPs 005_02_01-03 (§5.6.9.4 via §5.6.3): with ``noOverwrite`` existing attributes are kept; an
    entity that had some attributes not appended is not "successfully updated" (207, in the errors),
    while its new attributes are appended."""
    create(ngsi, ctx_url, B1, SIMPLE)
    create(ngsi, ctx_url, B2, SIMPLE)
    r = batch(
        ngsi,
        "update",
        [entity(B1, ctx_url, fragment), entity(B2, ctx_url, fragment)],
        params={"options": "noOverwrite"},
    )
    assert r.status_code == status
    if status == 207:
        assert r.json()["success"] == [] and errors_of(r) == {B1: "BadRequestData", B2: "BadRequestData"}
        assert "noOverwrite" in r.json()["errors"][0]["error"]["detail"]
    expected = {**SIMPLE, **added}
    assert query(ngsi, ctx_url, B1, B2) == {B1: entity(B1, ctx_url, expected), B2: entity(B2, ctx_url, expected)}


@pytest.mark.parametrize("op", ["merge", "update"])
def test_merge_or_update_batch_with_an_unknown_entity(ngsi: Ngsi, ctx_url: str, op: str) -> None:
    """TPs 057_02_01 (merge), 005_03_01 (update): 207, the unknown entity is a ResourceNotFound
    error, the others are merged or updated."""
    create(ngsi, ctx_url, B1, SIMPLE)
    create(ngsi, ctx_url, B2, SIMPLE)
    r = batch(ngsi, op, [entity(eid, ctx_url, REL_OF_PROP) for eid in (B1, B2, B3)])
    assert r.status_code == 207 and r.json()["success"] == [B1, B2]
    assert errors_of(r) == {B3: "ResourceNotFound"}
    assert query(ngsi, ctx_url, B1, B2) == {B1: entity(B1, ctx_url, REL_OF_PROP), B2: entity(B2, ctx_url, REL_OF_PROP)}


def test_update_batch_adds_a_type(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 005_05_01 (§4.16): an update naming another type adds it to the entity's types."""
    create(ngsi, ctx_url, B1)
    create(ngsi, ctx_url, B2)
    r = batch(ngsi, "update", [entity(B1, ctx_url, typ="Vehicle"), entity(B2, ctx_url, typ="Vehicle")])
    assert r.status_code == 204 and r.content == b""
    assert query(ngsi, ctx_url, B1, B2) == {
        B1: entity(B1, ctx_url, typ=["Building", "Vehicle"]),
        B2: entity(B2, ctx_url, typ=["Building", "Vehicle"]),
    }


# --------------------------------------------------------------------------- Batch Entity Upsert (§5.6.8)


@pytest.mark.parametrize(
    "attrs",
    [SIMPLE, RELATIONSHIP, REL_OF_PROP],
    ids=["004_01_01", "004_01_02", "004_01_03"],
)
def test_upsert_batch_creates(ngsi: Ngsi, ctx_url: str, attrs: dict[str, Any]) -> None:
    """TPs 004_01_01-03: 201 with the created ids; the entities read back as sent."""
    items = [entity(B1, ctx_url, attrs), entity(B2, ctx_url, attrs)]
    r = batch(ngsi, "upsert", items)
    assert r.status_code == 201 and r.json() == [B1, B2]
    assert query(ngsi, ctx_url, B1, B2) == {e["id"]: e for e in items}


@pytest.mark.parametrize(
    "attrs",
    [SIMPLE, RELATIONSHIP, REL_OF_PROP],
    ids=["004_02_01", "004_02_02", "004_02_03"],
)
def test_upsert_batch_creates_and_replaces(ngsi: Ngsi, ctx_url: str, attrs: dict[str, Any]) -> None:
    """TPs 004_02_01-03: 201 with only the created id; the existing entities are replaced."""
    create(ngsi, ctx_url, B2, SECOND)
    create(ngsi, ctx_url, B3, SECOND)
    items = [entity(B1, ctx_url, attrs), entity(B2, ctx_url, attrs), entity(B3, ctx_url, attrs)]
    r = batch(ngsi, "upsert", items)
    assert r.status_code == 201 and r.json() == [B1]
    assert query(ngsi, ctx_url, B1, B2, B3) == {e["id"]: e for e in items}


@pytest.mark.parametrize(
    ("attrs", "typ"),
    [
        (SIMPLE, "Building"),
        (RELATIONSHIP, "Building"),
        (REL_OF_PROP, "Building"),
        ({"scope": "/Madrid/Gardens/ParqueNorte"}, "Building"),
        (SIMPLE, ["Building", "TouristDestination"]),
        ({}, ["Building", "Vehicle"]),
    ],
    ids=["004_03_01", "004_03_02", "004_03_03", "004_03_04", "004_03_05", "004_08_01"],
)
def test_upsert_batch_replaces(ngsi: Ngsi, ctx_url: str, attrs: dict[str, Any], typ: Any) -> None:
    """TPs 004_03_01-05, 004_08_01 (§4.16, §4.18): only existing entities: 204 with no body; each is
    replaced, with its scope and types."""
    create(ngsi, ctx_url, B1, SECOND)
    create(ngsi, ctx_url, B2, SECOND)
    items = [entity(B1, ctx_url, attrs, typ), entity(B2, ctx_url, attrs, typ)]
    r = batch(ngsi, "upsert", items)
    assert r.status_code == 204 and r.content == b""
    assert query(ngsi, ctx_url, B1, B2) == {e["id"]: e for e in items}


@pytest.mark.parametrize(
    "attrs",
    [SIMPLE, RELATIONSHIP, REL_OF_PROP],
    ids=["004_04_01", "004_04_02", "004_04_03"],
)
def test_upsert_batch_with_update_option(ngsi: Ngsi, ctx_url: str, attrs: dict[str, Any]) -> None:
    """TPs 004_04_01-03: ``options=update``: 201 with the created id; the existing entity keeps its
    attributes and gets the new ones."""
    create(ngsi, ctx_url, B2, {"subCategory": SIMPLE["subCategory"], "almostFull": SECOND["almostFull"]})
    items = [entity(B1, ctx_url, attrs), entity(B2, ctx_url, attrs)]
    r = batch(ngsi, "upsert", items, params={"options": "update"})
    assert r.status_code == 201 and r.json() == [B1]
    updated = {"subCategory": SIMPLE["subCategory"], "almostFull": SECOND["almostFull"], **attrs}
    assert query(ngsi, ctx_url, B1, B2) == {B1: items[0], B2: entity(B2, ctx_url, updated)}


def test_upsert_batch_with_an_invalid_entity(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 004_05_01: an entity without type is a BadRequestData error (207); the others are created."""
    untyped = {k: v for k, v in entity(B3, ctx_url).items() if k != "type"}
    r = batch(ngsi, "upsert", [entity(B1, ctx_url), entity(B2, ctx_url), untyped])
    assert r.status_code == 207 and r.json()["success"] == [B1, B2]
    assert errors_of(r) == {B3: "BadRequestData"}
    assert query(ngsi, ctx_url, B1, B2, B3) == {B1: entity(B1, ctx_url), B2: entity(B2, ctx_url)}


def test_upsert_batch_with_a_repeated_id(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 004_07_01, 466_01_01 (§5.5.11.2): the first occurrence creates, the later one replaces it;
    201 lists each created id once, and the last occurrence is the entity."""
    first = entity(B1, ctx_url, {**SIMPLE, "almostFull": {"type": "Property", "value": True}})
    r = batch(ngsi, "upsert", [first, entity(B2, ctx_url), entity(B1, ctx_url, SECOND)])
    assert r.status_code == 201 and r.json() == [B1, B2]
    assert query(ngsi, ctx_url, B1) == {B1: entity(B1, ctx_url, SECOND)}
    r = batch(ngsi, "upsert", [first, entity(B1, ctx_url, RELATIONSHIP)])
    assert r.status_code == 204
    assert query(ngsi, ctx_url, B1) == {B1: entity(B1, ctx_url, RELATIONSHIP)}


# --------------------------------------------------------------------------- Query Entities via POST (§6.23)

VEHICLE: dict[str, Any] = {  # vehicle-simple-attributes
    "brandName": {"type": "Property", "value": "Mercedes"},
    "isParked": {
        "type": "Relationship",
        "object": "urn:ngsi-ld:OffStreetParking:Downtown1",
        "observedAt": "2017-07-29T12:00:04Z",
        "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:Bob"},
    },
}
V1, V2 = "urn:ngsi-ld:Vehicle:v1", "urn:ngsi-ld:Vehicle:v2"


def post_query(ngsi: Ngsi, body: dict[str, Any], **headers: str) -> Any:
    return ngsi.post("/entityOperations/query", json={"type": "Query", **body}, headers={"Content-Type": J, **headers})


def test_query_via_post_by_ids_and_id_pattern(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 019_02_01, 019_02_03, 019_02_06: selectors with an id, an idPattern, two ids; no @context
    (the core one), so the type is the full IRI (``building-minimal.json``)."""
    for eid in (B1, B2, B3):
        create(ngsi, ctx_url, eid)
    create(ngsi, ctx_url, "urn:ngsi-ld:Tower:t1")

    def answer(*selectors: dict[str, Any]) -> list[dict[str, Any]]:
        r = post_query(ngsi, {"entities": list(selectors)})
        assert r.status_code == 200 and r.headers["content-type"] == J, r.text
        assert r.headers["Link"] == link(CORE)
        return list(r.json())

    def minimal(*ids: str) -> list[dict[str, Any]]:
        return [{"id": i, "type": NS + "Building"} for i in ids]

    assert answer({"id": B1, "type": NS + "Building"}) == minimal(B1)
    assert answer({"idPattern": "urn:ngsi-ld:Building:.*", "type": NS + "Building"}) == minimal(B1, B2, B3)
    assert answer({"id": B1, "type": NS + "Building"}, {"id": B2, "type": NS + "Building"}) == minimal(B1, B2)


def test_query_via_post_by_type_and_by_attrs(ngsi: Ngsi, ctx_url: str) -> None:
    """TPs 019_02_02 (a type, JSON-LD answer: ``two-vehicles.jsonld``) and 019_02_04 (attrs alone,
    ``vehicle-simple-attributes-core-context.json``); no @context, so the suite's terms stay IRIs and
    those of the default vocabulary compact with the core @context."""
    create(ngsi, ctx_url, B1, SIMPLE)
    create(ngsi, ctx_url, V1, VEHICLE, "Vehicle")
    create(ngsi, ctx_url, V2, VEHICLE, "Vehicle")
    expanded = {"type": NS + "Vehicle", NS + "brandName": VEHICLE["brandName"], "isParked": VEHICLE["isParked"]}
    r = post_query(ngsi, {"entities": [{"type": NS + "Vehicle"}]}, Accept=LD)
    assert r.status_code == 200 and r.headers["content-type"] == LD
    assert r.json() == [{"@context": CORE, "id": v, **expanded} for v in (V1, V2)]
    r = post_query(ngsi, {"attrs": [NS + "brandName", "https://uri.etsi.org/ngsi-ld/default-context/isParked"]})
    assert r.status_code == 200 and r.json() == [{"id": v, **expanded} for v in (V1, V2)]


def test_query_via_post_as_geojson(ngsi: Ngsi, ctx_url: str) -> None:
    """TP 019_02_05 (§6.3.15, §4.5.16): Accept ``application/geo+json`` answers a FeatureCollection
    (``vehicle-parking-019-02-05.geojson``): the geometry of ``location`` or null, the @context in
    the body; ``Prefer: body=json`` moves it to the Link header; ``geometryProperty`` picks another
    GeoProperty."""
    parking = "urn:ngsi-ld:OffStreetParking:p1"
    create(ngsi, ctx_url, V1, VEHICLE, "Vehicle")
    create(ngsi, ctx_url, parking, {"name": SIMPLE["name"], "location": LOCATION["location"]}, "OffStreetParking")
    body = {"entities": [{"type": f"{NS}Vehicle,{NS}OffStreetParking"}]}
    r = post_query(ngsi, body, Accept=GEO, Link=link(ctx_url))
    assert r.status_code == 200 and r.headers["content-type"] == GEO, r.text
    assert r.json() == {
        "type": "FeatureCollection",
        "features": [
            {"id": V1, "type": "Feature", "geometry": None, "properties": {"type": "Vehicle", **VEHICLE}},
            {
                "id": parking,
                "type": "Feature",
                "geometry": POINT,
                "properties": {"type": "OffStreetParking", "name": SIMPLE["name"], "location": LOCATION["location"]},
            },
        ],
        "@context": ctx_url,
    }
    r = post_query(ngsi, body, Accept=GEO, Link=link(ctx_url), Prefer="body=json")
    assert "@context" not in r.json() and r.headers["Link"] == link(ctx_url)
    r = ngsi.post(
        "/entityOperations/query",
        params={"geometryProperty": "name", "options": "keyValues"},
        json={"type": "Query", **body},
        headers={"Accept": GEO, "Link": link(ctx_url)},
    )
    assert [f["geometry"] for f in r.json()["features"]] == [None, None]
    assert r.json()["features"][1]["properties"] == {
        "type": "OffStreetParking",
        "name": "Eiffel Tower",
        "location": POINT,
    }


@pytest.mark.parametrize(
    ("join", "options", "expected"),
    [
        (
            "inline",
            None,
            [
                {
                    "id": "urn:ngsi-ld:Building:019-13-1",
                    "type": "Building",
                    "locatedAt": {
                        "type": "Relationship",
                        "object": "urn:ngsi-ld:City:019-13-1",
                        "entity": {"id": "urn:ngsi-ld:City:019-13-1", "type": "City"},
                    },
                }
            ],
        ),
        (
            "flat",
            None,
            [
                {
                    "id": "urn:ngsi-ld:Building:019-13-1",
                    "type": "Building",
                    "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:019-13-1"},
                },
                {"id": "urn:ngsi-ld:City:019-13-1", "type": "City"},
            ],
        ),
        (
            "inline",
            "keyValues",
            [
                {
                    "id": "urn:ngsi-ld:Building:019-13-1",
                    "type": "Building",
                    "locatedAt": {"id": "urn:ngsi-ld:City:019-13-1", "type": "City"},
                }
            ],
        ),
        (
            "flat",
            "keyValues",
            [
                {"id": "urn:ngsi-ld:Building:019-13-1", "type": "Building", "locatedAt": "urn:ngsi-ld:City:019-13-1"},
                {"id": "urn:ngsi-ld:City:019-13-1", "type": "City"},
            ],
        ),
    ],
    ids=["019_24_01", "019_24_02", "019_24_03", "019_24_04"],
)
def test_query_via_post_with_linked_entities(
    ngsi: Ngsi, ctx_url: str, join: str, options: str | None, expected: list[dict[str, Any]]
) -> None:
    """TPs 019_24_01-04 (§4.5.23, the expectations of 019_13): ``join`` in the Query, ``options`` in
    the URL, the suite's @context in a Link header."""
    building, city = "urn:ngsi-ld:Building:019-13-1", "urn:ngsi-ld:City:019-13-1"
    create(ngsi, ctx_url, building, {"locatedAt": {"type": "Relationship", "object": city}})
    create(ngsi, ctx_url, city, typ="City")
    r = ngsi.post(
        "/entityOperations/query",
        params={"options": options} if options else {},
        json={"type": "Query", "entities": [{"type": "Building"}], "join": join},
        headers={"Link": link(ctx_url)},
    )
    assert r.status_code == 200, r.text
    assert r.json() == expected


def test_query_object_members(ngsi: Ngsi) -> None:
    """TPs 019_32_01-09 (Table 5.2.23-1): q, pick and omit are honoured as in a GET; empty arrays
    (entities, attrs, pick), a q that is not a string, joinLevel 0, a temporalQ (only for the temporal
    operation) and another type are BadRequestData."""
    for eid, speed in (("urn:ngsi-ld:Vehicle:01932-A", 80), ("urn:ngsi-ld:Vehicle:01932-B", 120)):
        ngsi.create(
            {
                "id": eid,
                "type": "Vehicle",
                "speed": {"type": "Property", "value": speed},
                "brand": {"type": "Property", "value": "Mercedes"},
            }
        )
    vehicles = [{"type": "Vehicle"}]
    r = post_query(ngsi, {"entities": vehicles, "q": "speed>100"})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:01932-B"]
    r = post_query(ngsi, {"entities": vehicles, "pick": ["speed"]})
    assert r.status_code == 200 and r.json() == [{"speed": {"type": "Property", "value": v}} for v in (80, 120)]
    r = post_query(ngsi, {"entities": vehicles, "omit": ["speed", "type"]})
    assert r.status_code == 200
    assert [sorted(e) for e in r.json()] == [["brand", "id"], ["brand", "id"]]
    r = post_query(ngsi, {"entities": vehicles, "pick": ["id", "brand"]}, Accept=LD)
    assert [sorted(e) for e in r.json()] == [["@context", "brand", "id"], ["@context", "brand", "id"]]
    invalid: list[dict[str, Any]] = [
        {"entities": []},
        {"entities": vehicles, "attrs": []},
        {"entities": vehicles, "pick": []},
        {"entities": vehicles, "omit": "speed"},
        {"entities": vehicles, "pick": ["speed"], "omit": ["brand"]},
        {"entities": vehicles, "pick": ["speed"], "attrs": ["speed"]},
        {"entities": vehicles, "q": 42},
        {"entities": vehicles, "join": "inline", "joinLevel": 0},
        {"entities": vehicles, "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}},
        {"entities": vehicles, "type": "NotQuery"},
    ]
    for bad in invalid:
        r = ngsi.post("/entityOperations/query", json={"type": "Query", **bad})
        assert r.status_code == 400 and kind(r.json()) == "BadRequestData", bad


def test_query_via_post_with_a_link_header_and_jsonld(ngsi: Ngsi, ctx_url: str) -> None:
    """§6.3.5 on Query Entities via POST: a JSON-LD Query brings its own @context (no Link header)."""
    create(ngsi, ctx_url, B1)
    body = {"type": "Query", "entities": [{"type": "Building"}], "@context": ctx_url}
    r = ngsi.post("/entityOperations/query", json=body, headers={"Content-Type": LD})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [B1]
    r = ngsi.post("/entityOperations/query", json=body, headers={"Content-Type": LD, "Link": link(ctx_url)})
    assert r.status_code == 400 and kind(r.json()) == "BadRequestData"


def test_ordering_params_members(ngsi: Ngsi) -> None:
    """TPs 5243_01_03/04 (Table 5.2.43-1; 5243_01_01/02/05 are in test_conformance_core.test_ordering):
    coordinates is a JSON array and geometry a string."""
    ngsi.create({"id": V1, "type": "Vehicle"})
    for ordering in (
        {"orderBy": ["location;dist-asc"], "coordinates": "8,40"},
        {"orderBy": ["id;asc"], "geometry": 5},
    ):
        r = post_query(ngsi, {"entities": [{"type": "Vehicle"}], "ordering": ordering})
        assert r.status_code == 400 and kind(r.json()) == "BadRequestData", ordering
