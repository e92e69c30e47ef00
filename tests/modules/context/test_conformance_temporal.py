"""Conformance of the temporal API with the ETSI NGSI-LD test suite (GS CIM 009 v1.8).

Each test replays the requests of the suite's temporal test purposes (TP ids in its docstring)
with the suite's data: the suite's @context (its terms under ``https://ngsi-ld-test-suite/context#``)
is given inline in bodies and hosted by the broker for the ``Link`` header. The suite compares
bodies without ``instanceId``; so do these tests, on exact bodies. Both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from ioc.core.db import Database
from ioc.settings import Settings

from .conftest import BASE, LD, Ngsi, link_to
from .test_temporal import other_app

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
NS = "https://ngsi-ld-test-suite/context#"
TERMS = ("Vehicle", "Bus", "Shop", "speed", "fuelLevel", "street", "name", "isParkedIn", "vocabProperty", "route")
CTX: dict[str, Any] = {t: NS + t for t in TERMS}
T = "/temporal/entities"
Q = "/temporal/entityOperations/query"
NULL = "urn:ngsi-ld:null"
V = "urn:ngsi-ld:Vehicle:"
BEFORE_ALL, AFTER_ALL = "2019-01-01T01:01:00Z", "2021-01-01T01:01:00Z"


def p(value: Any, at: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at, **extra}


def vehicle(
    month: str, speeds: tuple[int, ...] = (120, 80, 100), fuels: tuple[int, ...] = (67, 53, 40)
) -> dict[str, Any]:
    """The suite's 2020-08/2020-09 vehicles: speed at 12:03, 12:05, 12:07; fuelLevel at 12:03, 13:05, 14:07."""
    day = f"2020-{month}-01T"
    return {
        "type": "Vehicle",
        "speed": [p(v, day + t) for v, t in zip(speeds, ("12:03:00Z", "12:05:00Z", "12:07:00Z"), strict=True)],
        "fuelLevel": [p(v, day + t) for v, t in zip(fuels, ("12:03:00Z", "13:05:00Z", "14:07:00Z"), strict=True)],
    }


AUG, SEP = vehicle("08"), vehicle("09")
BUS = {**vehicle("08", (45, 25, 67), (210, 145, 124)), "type": "Bus"}
#: vehicle-temporal-representation.jsonld: two speeds, the last fuelLevel in a dataset
FUEL_DS = "urn:ngsi-ld:Vehicle:12345-fuel"
SEP_DS = {
    "type": "Vehicle",
    "speed": SEP["speed"][:2],
    "fuelLevel": [*SEP["fuelLevel"][:2], {**SEP["fuelLevel"][2], "datasetId": FUEL_DS}],
}
#: 2020-08-vehicle-temporal-representation-multiple-instances.jsonld
MULTI = {
    "type": "Vehicle",
    "speed": [
        p(v, f"2020-08-01T12:{m}:00Z") for v, m in zip((85, 105, 120, 125, 130), (25, 27, 29, 31, 35), strict=True)
    ],
    "fuelLevel": [
        p(v, f"2020-08-01T{t}:00Z")
        for v, t in zip((35, 31, 28, 24, 19), ("20:05", "20:07", "21:03", "21:05", "22:07"), strict=True)
    ],
}


def bare(doc: Any) -> Any:
    """A body as the suite compares it: without instanceId."""
    if isinstance(doc, dict):
        return {k: bare(v) for k, v in doc.items() if k != "instanceId"}
    if isinstance(doc, list):
        return [bare(v) for v in doc]
    return doc


def by_id(entities: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["id"]: bare(e) for e in entities}


def problem(r: Any, status: int, name: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == ERR + name and r.json()["title"], r.text


@pytest.fixture
def link(ngsi: Ngsi) -> dict[str, str]:
    """A Link header naming the suite's @context, hosted by the broker."""
    return {"Link": link_to(ngsi.host(CTX))}


@pytest.fixture
def create(ngsi: Ngsi) -> Callable[..., None]:
    """Create Temporal Representation Of Entity (as the suite: JSON-LD with its @context)."""

    def make(eid: str, body: dict[str, Any]) -> None:
        r = ngsi.post(T, json={"id": eid, **body, "@context": CTX}, headers={"Content-Type": LD})
        assert r.status_code == 201, r.text

    return make


# --------------------------------------------------------------------------- provision


def test_create_update_and_delete(ngsi: Ngsi, link: dict[str, str]) -> None:
    """TP 007_01_01, 007_01_02 (§5.6.11: 201, empty body; read back as written, with or without a
    @context), 008_01_01 (an upsert: instances at an observedAt given again replace the earlier
    ones, the others are added), 009_01_01, 009_03_01 (§5.6.16)."""
    eid = V + "007"
    r = ngsi.post(T, json={"id": eid, **SEP_DS, "@context": CTX}, headers={"Content-Type": LD})
    assert r.status_code == 201 and r.content == b"" and r.headers["Location"] == f"{BASE}{T}/{eid}"
    assert bare(ngsi.get(f"{T}/{eid}", headers=link).json()) == {"id": eid, **SEP_DS}

    plain = V + "007-json"
    assert ngsi.post(T, json={"id": plain, **SEP}).status_code == 201
    assert bare(ngsi.get(f"{T}/{plain}").json()) == {"id": plain, **SEP}

    update = vehicle("09", speeds=(121, 80, 100))
    r = ngsi.post(T, json={"id": eid, **update, "@context": CTX}, headers={"Content-Type": LD})
    assert r.status_code == 204 and r.content == b""
    body = bare(ngsi.get(f"{T}/{eid}", headers=link).json())
    assert body["speed"] == update["speed"]
    fuel = [(i["value"], i["observedAt"], i.get("datasetId")) for i in body["fuelLevel"]]
    assert fuel == [
        (67, "2020-09-01T12:03:00Z", None),
        (53, "2020-09-01T13:05:00Z", None),
        (40, "2020-09-01T14:07:00Z", FUEL_DS),
        (40, "2020-09-01T14:07:00Z", None),
    ]
    assert ngsi.post(T, json={"id": eid, **update}).status_code == 204  # the same payload again: nothing repeated
    assert len(ngsi.get(f"{T}/{eid}", headers=link).json()["speed"]) == 3

    r = ngsi.delete(f"{T}/{eid}")
    assert r.status_code == 204 and r.content == b""
    problem(ngsi.get(f"{T}/{eid}", headers=link), 404, "ResourceNotFound")
    problem(ngsi.delete(f"{T}/{V}unknown"), 404, "ResourceNotFound")


def test_create_and_delete_refusals(ngsi: Ngsi) -> None:
    """TP 007_02_01, 007_02_02 (invalid or empty JSON: 400 InvalidRequest), 007_03_01, 007_03_02
    (empty or invalid id: 400), 009_02_01 (DELETE on the collection: 405), 009_02_02 (400)."""
    broken = b'{"id": "urn:ngsi-ld:Vehicle:1",, "type": "Vehicle"}'
    problem(ngsi.post(T, content=broken, headers={"Content-Type": LD}), 400, "InvalidRequest")
    problem(ngsi.post(T, content=b"", headers={"Content-Type": LD}), 400, "InvalidRequest")
    for eid in ("", "invalidId"):
        problem(
            ngsi.post(T, json={"id": eid, **SEP, "@context": CTX}, headers={"Content-Type": LD}), 400, "BadRequestData"
        )
    problem(ngsi.delete(f"{T}/"), 405, "MethodNotAllowed")
    problem(ngsi.delete(f"{T}/invalidId"), 400, "BadRequestData")


def test_add_delete_and_modify_attributes(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 014_01_01 (§5.6.12), 014_02_01/02, 014_03_01, 014_04_01/02, 015_01_01/02/03 (§5.6.13: the
    default instance, a datasetId, deleteAll), 015_02_01/02/03, 015_03_01/02, 015_04_01/02/03 (a
    dot-segment name is not a name), 016_01_01 (§5.6.14), 016_02_01..06, 016_03_01..03, 017_01_01
    (§5.6.15), 017_02_01..05, 017_03_01..03."""
    eid = V + "014"
    create(eid, SEP_DS)
    added = [p(120, "2020-09-01T12:03:00Z"), p(80, "2020-09-01T12:05:00Z"), p(100, "2020-09-01T12:07:00Z")]
    frag = {"added_attribute": added, "@context": CTX}
    r = ngsi.post(f"{T}/{eid}/attrs", json=frag, headers={"Content-Type": LD})
    assert r.status_code == 204 and r.content == b""
    assert bare(ngsi.get(f"{T}/{eid}", headers=link).json()) == {"id": eid, **SEP_DS, "added_attribute": added}
    for bad in ("", "thisIsAninvalidId"):
        problem(ngsi.post(f"{T}/{bad}/attrs", json=frag, headers={"Content-Type": LD}), 400, "BadRequestData")
    problem(ngsi.post(f"{T}/{V}none/attrs", json=frag, headers={"Content-Type": LD}), 404, "ResourceNotFound")
    for content in (b'{"speed": [],, }', b""):
        problem(ngsi.post(f"{T}/{eid}/attrs", content=content, headers={"Content-Type": LD}), 400, "InvalidRequest")

    # modify, then delete, one instance (the first of speed)
    first = ngsi.get(f"{T}/{eid}", headers=link).json()["speed"][0]["instanceId"]
    new = {"type": "Property", "value": 129, "observedAt": "2020-09-01T12:03:00Z"}
    r = ngsi.patch(f"{T}/{eid}/attrs/speed/{first}", json=new, headers=link)
    assert r.status_code == 204 and r.content == b""
    speed = ngsi.get(f"{T}/{eid}", headers=link).json()["speed"]
    assert speed[0]["instanceId"] == first and bare(speed) == [new, SEP_DS["speed"][1]]
    for path, status in [
        (f"invalidId/attrs/speed/{first}", 400),
        (f"/attrs/speed/{first}", 400),
        (f"{eid}/attrs/speed/invalidId", 400),
        (f"{eid}/attrs/speed/", 405),
        (f"{eid}/attrs/invalid(Id/{first}", 400),
        (f"{eid}/attrs//{first}", 405),
        (f"{V}none/attrs/speed/{first}", 404),
        (f"{eid}/attrs/speed2/{first}", 404),
        (f"{eid}/attrs/speed/urn:ngsi-ld:01234567890123456789", 404),
    ]:
        assert ngsi.patch(f"{T}/{path}", json=new, headers=link).status_code == status, path
    for path, status in [
        (f"invalidId/attrs/speed/{first}", 400),
        (f"/attrs/speed/{first}", 400),
        (f"{eid}/attrs/speed/invalidId", 400),
        (f"{eid}/attrs/invalid(Name/{first}", 400),
        (f"{eid}/attrs//{first}", 400),
        (f"{V}none/attrs/speed/{first}", 404),
        (f"{eid}/attrs/speed2/{first}", 404),
        (f"{eid}/attrs/speed/urn:ngsi-ld:01234567890123456789", 404),
    ]:
        assert ngsi.delete(f"{T}/{path}", headers=link).status_code == status, path
    r = ngsi.delete(f"{T}/{eid}/attrs/speed/{first}", headers=link)
    assert r.status_code == 204 and r.content == b""
    assert bare(ngsi.get(f"{T}/{eid}", headers=link).json()["speed"]) == [SEP_DS["speed"][1]]

    # delete an attribute: the default instance, a datasetId, every instance
    for params, left in [
        ({}, [SEP_DS["fuelLevel"][2]]),
        ({"datasetId": FUEL_DS}, SEP_DS["fuelLevel"][:2]),
        ({"deleteAll": "true"}, None),
    ]:
        other = V + f"015-{len(params)}-{next(iter(params), '')}"
        create(other, SEP_DS)
        r = ngsi.delete(f"{T}/{other}/attrs/fuelLevel", params=params, headers=link)
        assert r.status_code == 204 and r.content == b""
        body = bare(ngsi.get(f"{T}/{other}", headers=link).json())
        assert body.get("fuelLevel") == left and body["speed"] == SEP_DS["speed"]
    for path in ("/attrs/speed", "invalidId/attrs/speed", f"{eid}/attrs/invalid(Name", f"{eid}/attrs/%2e%2e"):
        problem(ngsi.delete(f"{T}/{path}"), 400, "BadRequestData")
    problem(ngsi.delete(f"{T}/{eid}/attrs/%2e"), 400, "BadRequestData")
    problem(ngsi.delete(f"{T}/{eid}/attrs/%252e%252e"), 400, "BadRequestData")
    assert ngsi.get(f"{T}/{eid}").status_code == 200  # the dot segments deleted nothing
    problem(ngsi.delete(f"{T}/{V}none/attrs/fuelLevel", headers=link), 404, "ResourceNotFound")
    problem(ngsi.delete(f"{T}/{eid}/attrs/notExistingAttribute", headers=link), 404, "ResourceNotFound")


# --------------------------------------------------------------------------- retrieve


def test_retrieve(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 020_01_01 (no @context: expanded names), 020_02_01, 020_03_01/02 (attrs), 020_04_01/02/03
    (timerel: an attribute without an instance in range is left out), 020_05_01/02 (lastN),
    020_06_01, 020_07_01, 020_08_01 (attrs the entity does not have: 404), 020_09_01/02/03,
    020_10_01 (temporalValues)."""
    eid, multi = V + "020", V + "020-multi"
    create(eid, AUG)
    create(multi, MULTI)
    url = f"{T}/{eid}"

    def get(path: str = url, **params: Any) -> Any:
        r = ngsi.get(path, params=params, headers=link)
        assert r.status_code == 200, r.text
        return bare(r.json())

    expanded = bare(ngsi.get(url).json())
    assert expanded == {
        "id": eid,
        "type": NS + "Vehicle",
        NS + "speed": AUG["speed"],
        NS + "fuelLevel": AUG["fuelLevel"],
    }
    assert get() == {"id": eid, **AUG}
    assert get(attrs="fuelLevel") == {"id": eid, "type": "Vehicle", "fuelLevel": AUG["fuelLevel"]}
    assert get(attrs="fuelLevel,speed") == {"id": eid, **AUG}
    assert get(timerel="after", timeAt="2020-08-01T13:03:00Z") == {
        "id": eid,
        "type": "Vehicle",
        "fuelLevel": AUG["fuelLevel"][1:],
    }
    assert get(timerel="before", timeAt="2020-08-01T12:05:00Z") == {
        "id": eid,
        "type": "Vehicle",
        "speed": AUG["speed"][:1],
        "fuelLevel": AUG["fuelLevel"][:1],
    }
    between = get(timerel="between", timeAt="2020-08-01T12:00:00Z", endTimeAt="2020-08-01T13:00:00Z")
    assert between == {"id": eid, "type": "Vehicle", "speed": AUG["speed"], "fuelLevel": AUG["fuelLevel"][:1]}
    assert get(f"{T}/{multi}", lastN="4") == {
        "id": multi,
        "type": "Vehicle",
        "speed": MULTI["speed"][1:],
        "fuelLevel": MULTI["fuelLevel"][1:],
    }
    assert get(f"{T}/{multi}", lastN="7") == {"id": multi, **MULTI}
    assert get(options="temporalValues") == {
        "id": eid,
        "type": "Vehicle",
        "speed": {"type": "Property", "values": [[i["value"], i["observedAt"]] for i in AUG["speed"]]},
        "fuelLevel": {"type": "Property", "values": [[i["value"], i["observedAt"]] for i in AUG["fuelLevel"]]},
    }

    problem(ngsi.get(f"{T}/invalidUri"), 400, "BadRequestData")
    problem(ngsi.get(f"{T}/{V}unknowEntity"), 404, "ResourceNotFound")
    problem(ngsi.get(url, params={"attrs": "unknownAttribute"}, headers=link), 404, "ResourceNotFound")
    for params in (
        {"timerel": "after"},
        {"timerel": "before"},
        {"timerel": "between", "timeAt": "2020-08-01T12:00:00Z"},
    ):
        problem(ngsi.get(url, params=params), 400, "BadRequestData")


def test_aggregated_values(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 020_11_01..04 and 021_17_01..04 (§4.5.19: one bucket per period that has instances, period
    bounds in whole seconds, averages as numbers with a fraction)."""
    create(V + "020-11", AUG)
    create(V + "020-11-b", AUG)
    hour = ("2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z", "2020-08-01T14:03:00Z", "2020-08-01T15:03:00Z")
    speed_avg = {"type": "Property", "avg": [[100.0, hour[0], hour[1]]]}
    fuel_avg = {
        "type": "Property",
        "avg": [[67.0, hour[0], hour[1]], [53.0, hour[1], hour[2]], [40.0, hour[2], hour[3]]],
    }
    day = ("2020-08-01T12:03:00Z", "2020-08-02T12:03:00Z")
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        ({"aggrMethods": "avg", "aggrPeriodDuration": "PT1H"}, {"speed": speed_avg, "fuelLevel": fuel_avg}),
        ({"aggrMethods": "avg", "aggrPeriodDuration": "PT1H", "attrs": "fuelLevel"}, {"fuelLevel": fuel_avg}),
        (
            {"aggrMethods": "avg,max", "aggrPeriodDuration": "PT1H"},
            {
                "speed": {**speed_avg, "max": [[120.0, hour[0], hour[1]]]},
                "fuelLevel": {
                    **fuel_avg,
                    "max": [[v, s, e] for (_, s, e), v in zip(fuel_avg["avg"], (67.0, 53.0, 40.0), strict=True)],
                },
            },
        ),
        (
            {"aggrMethods": "min,max", "aggrPeriodDuration": "P1D"},
            {
                "speed": {"type": "Property", "min": [[80.0, *day]], "max": [[120.0, *day]]},
                "fuelLevel": {"type": "Property", "min": [[40.0, *day]], "max": [[67.0, *day]]},
            },
        ),
    ]
    for params, attrs in cases:
        one = ngsi.get(f"{T}/{V}020-11", params={"options": "aggregatedValues", **params}, headers=link)
        assert one.status_code == 200 and one.json() == {"id": V + "020-11", "type": "Vehicle", **attrs}, params
        query = {"type": "Vehicle", "timerel": "after", "timeAt": "2020-01-01T12:03:00Z"}
        many = ngsi.get(T, params={**query, "options": "aggregatedValues", **params}, headers=link)
        assert many.status_code == 200 and many.json()[0] == {"id": V + "020-11", "type": "Vehicle", **attrs}


def test_aggregation_params_in_a_query_body(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 5244_01_01..03 (v1.9.1 §5.2.44): a Query's ``aggrParams`` asks for the aggregated
    representation, its methods and period checked as the URL's are."""
    create(V + "5244-A", AUG)
    window = {"timerel": "after", "timeAt": "2020-08-01T12:00:00Z"}

    def query(aggr: dict[str, Any]) -> Any:
        body = {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": window, "aggrParams": aggr}
        return ngsi.post(Q, json=body, headers=link)

    r = query({"aggrMethods": ["avg"], "aggrPeriodDuration": "PT0S"})
    assert r.status_code == 200 and "instanceId" not in r.text
    (found,) = r.json()  # PT0S: one period, from the first instance to the last
    assert found["speed"] == {"type": "Property", "avg": [[100.0, "2020-08-01T12:03:00Z", "2020-08-01T12:07:00Z"]]}
    assert found["fuelLevel"]["avg"] == [[160 / 3, "2020-08-01T12:03:00Z", "2020-08-01T14:07:00Z"]]
    for aggr, named in (
        ({"aggrMethods": ["bogus"]}, "aggrMethods"),
        ({"aggrMethods": ["avg"], "aggrPeriodDuration": "notADuration"}, "aggrPeriodDuration"),
        ({"aggrMethods": []}, "aggrMethods"),
        ({"aggrMethods": "avg"}, "aggrMethods"),
    ):
        r = query(aggr)
        problem(r, 400, "BadRequestData")
        assert named in r.text, aggr
    problem(
        ngsi.post(Q, json={"type": "Query", "temporalQ": window, "aggrParams": 5}, headers=link), 400, "BadRequestData"
    )


def test_query_order_by(ngsi: Ngsi) -> None:
    """TP 021_23_01..09 (v1.9.1 §5.7.4, §4.23): orderBy sorts the temporal query's entities by their
    current values, as Query Entities does; without it they come as created."""
    terms = {**CTX, "Building": NS + "Building", "subProperty": NS + "subProperty"}
    link = {"Link": link_to(ngsi.host(terms))}
    b1, b2, b3 = (f"urn:ngsi-ld:Building:{i}" for i in (1, 2, 3))
    for n, eid in ((2, b2), (1, b1), (3, b3)):
        name = {"type": "Property", "value": "ABC"[n - 1], "subProperty": {"type": "Property", "value": n}}
        body = {"id": eid, "type": "Building", "name": name, "@context": terms}
        assert ngsi.post("/entities/", json=body, headers={"Content-Type": LD}).status_code == 201
    asc, desc, created = [b1, b2, b3], [b3, b2, b1], [b2, b1, b3]
    query = {"type": "Building", "timerel": "after", "timeAt": "1970-01-01T00:00:00Z", "timeproperty": "createdAt"}
    for order_by, expected in (
        (None, created),
        ("name", asc),
        ("id", asc),
        ("name.subProperty", asc),
        ("name;asc", asc),
        ("name;desc", desc),
        ("type,name", asc),
        ("type;asc,name.subProperty;desc,name;asc", desc),
    ):
        params = query if order_by is None else {**query, "orderBy": order_by}
        r = ngsi.get(T, params=params, headers=link)
        assert r.status_code == 200 and [e["id"] for e in r.json()] == expected, order_by
    r = ngsi.get(T, params={**query, "orderBy": "name;desc", "limit": 2, "offset": 1, "count": "true"}, headers=link)
    assert [e["id"] for e in r.json()] == [b2, b1] and r.headers["NGSILD-Results-Count"] == "3"
    body = {
        "type": "Query",
        "entities": [{"type": "Building"}],
        "temporalQ": query,
        "ordering": {"orderBy": ["name;desc"]},
    }
    assert [e["id"] for e in ngsi.post(Q, json=body, headers=link).json()] == desc
    problem(ngsi.get(T, params={**query, "orderBy": "name;sideways"}, headers=link), 400, "BadRequestData")


def test_language_json_vocab_geo_and_list_properties(
    ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]
) -> None:
    """TP 020_12_01/02, 020_15_01/02, 020_16_01/02 (§4.5.9: a languageMap, json or vocab value in the
    simplified form is the object of its member) and 459_01 (GeoProperty pairs under values; the bare
    lists of a ListProperty and a ListRelationship)."""
    at = ("2020-08-01T12:03:00Z", "2020-08-01T12:05:00Z", "2020-08-01T12:07:00Z")
    maps = [{"fr": "Grand Place", "nl": "Grote Markt"}, {"fr": "Grand Place", "es": "Gran Mercado"}, {"it": "Grande"}]
    street = [{"type": "LanguageProperty", "languageMap": m, "observedAt": t} for m, t in zip(maps, at, strict=True)]
    jsons = [
        {"type": "JsonProperty", "json": {"value": v}, "observedAt": t} for v, t in zip((120, 80, 100), at, strict=True)
    ]
    vocabs = ["monument", "sightseeing", ["monument", "sightseeing"]]
    vocab = [{"type": "VocabProperty", "vocab": v, "observedAt": t} for v, t in zip(vocabs, at, strict=True)]
    geo = [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}, "observedAt": at[0]}]
    tyres = {"type": "ListProperty", "valueList": [1.2, 3.4], "observedAt": at[0]}
    route = {
        "type": "ListRelationship",
        "objectList": ["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"],
        "observedAt": at[0],
    }
    eid = V + "020-12"
    create(eid, {"type": "Vehicle", "street": street, "speed": jsons, "vocabProperty": vocab})
    create(V + "459", {"type": "Vehicle", "location": geo, "tyreTreadDepths": tyres, "route": route})
    body = {"id": eid, "type": "Vehicle", "street": street, "speed": jsons, "vocabProperty": vocab}
    assert bare(ngsi.get(f"{T}/{eid}", headers=link).json()) == body
    simple = ngsi.get(f"{T}/{eid}", params={"options": "temporalValues"}, headers=link).json()
    assert simple["street"] == {
        "type": "LanguageProperty",
        "languageMaps": [[{"languageMap": m}, t] for m, t in zip(maps, at, strict=True)],
    }
    assert simple["speed"] == {"type": "JsonProperty", "jsons": [[{"json": i["json"]}, i["observedAt"]] for i in jsons]}
    assert simple["vocabProperty"] == {
        "type": "VocabProperty",
        "vocabs": [[{"vocab": v}, t] for v, t in zip(vocabs, at, strict=True)],
    }
    lists = ngsi.get(f"{T}/{V}459", params={"options": "temporalValues"}, headers=link).json()
    assert lists["location"] == {"type": "GeoProperty", "values": [[geo[0]["value"], at[0]]]}
    assert lists["tyreTreadDepths"] == {"type": "ListProperty", "valueLists": [[[1.2, 3.4], at[0]]]}
    assert lists["route"] == {"type": "ListRelationship", "objectLists": [[route["objectList"], at[0]]]}


def test_deleted_attributes(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 020_17_01/02/03 and 020_18_01/02/03 (§4.5.7, §5.2.1: ``timeproperty=deletedAt`` gives each
    deletion of an attribute, its value ``urn:ngsi-ld:null`` and ``deletedAt``; other attributes are
    left out)."""
    types = {
        "type": "Vehicle",
        "isParkedIn": [
            {
                "type": "Relationship",
                "object": "urn:ngsi-ld:OffStreetParking:Commerce",
                "observedAt": "2024-12-01T12:00:00Z",
            },
            {
                "type": "Relationship",
                "object": "urn:ngsi-ld:OffStreetParking:Graslin",
                "observedAt": "2024-12-05T12:00:00Z",
            },
        ],
        "name": [
            {"type": "LanguageProperty", "languageMap": {"fr": "Ma voiture"}, "observedAt": "2024-12-01T12:00:00Z"}
        ],
        "fuelLevel": [p(67, "2020-08-01T12:03:00Z"), p(53, "2020-08-01T13:05:00Z")],
    }
    cases = [
        ("fuelLevel", "Property", "value", NULL, "values"),
        ("isParkedIn", "Relationship", "object", NULL, "objects"),
        ("name", "LanguageProperty", "languageMap", {"@none": NULL}, "languageMaps"),
    ]
    for attr, kind, member, null, key in cases:
        eid = f"{V}020-17-{attr}"
        create(eid, types)
        r = ngsi.delete(f"/entities/{eid}/attrs/{attr}", params={"deleteAll": "false"}, headers=link)
        assert r.status_code == 204, r.text
        body = ngsi.get(f"{T}/{eid}", params={"timeproperty": "deletedAt"}, headers=link).json()
        (deletion,) = body[attr]
        deleted_at = deletion.pop("deletedAt")
        assert datetime.fromisoformat(deleted_at) and deleted_at.endswith("Z")
        assert bare(body) == {"id": eid, "type": "Vehicle", attr: [{"type": kind, member: null}]}
        simple = ngsi.get(f"{T}/{eid}", params={"timeproperty": "deletedAt", "options": "temporalValues"}, headers=link)
        value = {"languageMap": null} if kind == "LanguageProperty" else null
        assert simple.json() == {"id": eid, "type": "Vehicle", attr: {"type": kind, key: [[value, deleted_at]]}}


def test_pagination(settings: Settings, monkeypatch: pytest.MonkeyPatch, db: Database) -> None:
    """TP 020_13_01..10, 020_14_01/02, 021_15_01..08, 021_16_01 (§6.3.10), with the server's limit at
    10 instances per attribute: 206 and ``Content-Range: date-time <start>-<end>/<size>``; an
    attribute whose instances the cut left out is there, empty."""

    def series(n: int, day: str, first: int = 1) -> list[dict[str, Any]]:
        return [p(i, f"2020-01-{day}T01:{first + i - 1:02d}:00Z") for i in range(1, n + 1)]

    twenty = {"type": "Vehicle", "speed": series(20, "01"), "fuelLevel": series(20, "01", first=3)}
    sixty = {"type": "Vehicle", "speed": series(59, "01"), "fuelLevel": series(59, "02")}
    with other_app(settings, monkeypatch, anonymous_writes="true", temporal_max_instances="10") as c:
        for eid, body in ((V + "twenty", twenty), (V + "sixty", sixty), (V + "sep", SEP)):
            assert c.post(f"{BASE}{T}", json={"id": eid, **body}).status_code == 201

        def paged(path: str, **params: Any) -> tuple[str, Any]:
            r = c.get(f"{BASE}{path}", params=params)
            assert r.status_code == 206, r.text
            return r.headers["Content-Range"], r.json()

        def rng(start: str, end: str, size: str = "*") -> str:
            return f"date-time {start.replace('Z', '.000Z')}-{end.replace('Z', '.000Z')}/{size}"

        one = f"{T}/{V}twenty"
        lastn, after = {"lastN": "20"}, {"timerel": "after", "timeAt": BEFORE_ALL}
        before = {"timerel": "before", "timeAt": AFTER_ALL}
        between = {"timerel": "between", "timeAt": BEFORE_ALL, "endTimeAt": AFTER_ALL}
        t = "2020-01-01T01:{:02d}:00Z".format
        assert paged(one)[0] == rng(t(1), t(10))
        assert paged(one, **lastn)[0] == rng(t(22), t(13), "20")
        assert paged(one, **lastn, **before)[0] == rng(AFTER_ALL, t(13), "20")
        assert paged(one, **lastn, **between)[0] == rng(AFTER_ALL, t(13), "20")
        assert paged(one, **lastn, **after)[0] == rng(t(22), t(13), "20")
        assert paged(one, **before)[0] == rng(t(1), t(10))
        assert paged(one, **between)[0] == rng(BEFORE_ALL, t(10))
        assert paged(one, **after)[0] == rng(BEFORE_ALL, t(10))
        header, body = paged(one, options="temporalValues", **after)
        assert header == rng(BEFORE_ALL, t(10)) and body["fuelLevel"]["values"][-1] == [8, t(10)]
        assert paged(one, options="temporalValues", **lastn, **between)[0] == rng(AFTER_ALL, t(13), "20")

        assert paged(f"{T}/{V}sixty", **after)[1]["fuelLevel"] == []
        assert paged(f"{T}/{V}sixty", lastN="100", **before)[1]["speed"] == []

        vehicles = {"type": "Vehicle", "id": f"{V}twenty,{V}sep"}
        assert paged(T, **vehicles, **lastn, **before)[0] == rng(AFTER_ALL, t(13), "20")
        assert paged(T, **vehicles, **lastn, **between)[0] == rng(AFTER_ALL, t(13), "20")
        assert paged(T, **vehicles, **lastn, **after)[0] == rng("2020-09-01T14:07:00Z", t(13), "20")
        header, body = paged(T, **vehicles, **before)
        assert header == rng(t(1), t(10)) and {e["id"]: e["speed"] for e in body}[V + "sep"] == []
        assert paged(T, **vehicles, **between)[0] == rng(BEFORE_ALL, t(10))
        assert paged(T, **vehicles, **after)[0] == rng(BEFORE_ALL, t(10))
        assert paged(T, **vehicles, options="temporalValues", **after)[0] == rng(BEFORE_ALL, t(10))
        assert paged(T, **vehicles, options="temporalValues", **lastn, **between)[0] == rng(AFTER_ALL, t(13), "20")
        query = {
            "type": "Query",
            "entities": [{"type": "Vehicle"}],
            "temporalQ": {"timerel": "before", "timeAt": "2020-08-02T12:05:00Z"},
        }
        r = c.post(f"{BASE}{Q}", json=query)
        assert r.status_code == 206 and r.headers["Content-Range"].startswith("date-time ")


# --------------------------------------------------------------------------- pick and omit


def test_pick_and_omit(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 020_21_01..04, 021_21_01..06 (§4.21), 020_22_01..03, 021_22_01..03 (pick with omit, or
    either with attrs: 400), 020_23_01/02 (nothing left: 404), 5731_01_01, 5741_01_02 (a Linked
    Entity projection needs join, which the temporal API does not define: 400)."""
    eid = V + "020-21"
    create(eid, AUG)
    create(V + "021-21-B", SEP)
    create("urn:ngsi-ld:Bus:021-21-C", BUS)
    url = f"{T}/{eid}"

    def get(path: str = url, **params: str) -> Any:
        r = ngsi.get(path, params=params, headers=link)
        assert r.status_code == 200, r.text
        return bare(r.json())

    assert get(pick="speed") == {"speed": AUG["speed"]}
    assert get(omit="speed") == {"id": eid, "type": "Vehicle", "fuelLevel": AUG["fuelLevel"]}
    assert get(pick="id,speed") == {"id": eid, "speed": AUG["speed"]}
    assert get(omit="type,speed") == {"id": eid, "fuelLevel": AUG["fuelLevel"]}
    window = {"type": "Bus,Vehicle", "timerel": "after", "timeAt": "1970-01-01T00:00:00Z"}
    assert get(T, pick="speed", **window) == [{"speed": b["speed"]} for b in (AUG, SEP, BUS)]
    assert [set(e) for e in get(T, omit="speed", **window)] == [{"id", "type", "fuelLevel"}] * 3
    assert get(T, pick="id", **window) == [{"id": eid}, {"id": V + "021-21-B"}, {"id": "urn:ngsi-ld:Bus:021-21-C"}]
    assert [set(e) for e in get(T, omit="type", **window)] == [{"id", "speed", "fuelLevel"}] * 3
    assert [set(e) for e in get(T, pick="id,speed", **window)] == [{"id", "speed"}] * 3
    assert [set(e) for e in get(T, omit="type,speed", **window)] == [{"id", "fuelLevel"}] * 3

    for params in (
        {"pick": "speed", "omit": "speed"},
        {"pick": "speed", "attrs": "fuelLevel"},
        {"omit": "speed", "attrs": "fuelLevel"},
    ):
        problem(ngsi.get(url, params=params, headers=link), 400, "BadRequestData")
        problem(ngsi.get(T, params={**window, **params}, headers=link), 400, "BadRequestData")
    problem(ngsi.get(url, params={"pick": "unknown"}, headers=link), 404, "ResourceNotFound")
    problem(ngsi.get(url, params={"omit": "id,type,fuelLevel,speed"}, headers=link), 404, "ResourceNotFound")
    problem(ngsi.get(f"{T}/urn:ngsi-ld:Building:5731", params={"pick": "owner{name}"}), 400, "BadRequestData")
    problem(ngsi.get(T, params={**window, "pick": "owner{name}"}), 400, "BadRequestData")


# --------------------------------------------------------------------------- query


def test_query_selectors_and_time_relations(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 021_01_01/02/03, 021_02_01 (attrs), 021_03_01 (lastN), 021_04_01, 021_05_01 (type),
    021_06_01 (id), 021_07_01 (idPattern), 021_08_01 (q), 021_11_01/02 (limit), 021_12_01, 021_24
    (ids alone do not qualify a query, as for Query Entities, 019_03_05), 021_25 (local=true), 021_26_01..09 (bounds,
    fraction spellings, grammar)."""
    a, b, bus = V + "021-A", V + "021-B", "urn:ngsi-ld:Bus:021-C"
    create(a, AUG)
    create(b, SEP)
    create(bus, BUS)

    def query(**params: str) -> dict[str, Any]:
        r = ngsi.get(T, params=params, headers=link)
        assert r.status_code == 200, r.text
        return by_id(r.json())

    def entity(eid: str, body: dict[str, Any], speed: slice = slice(None), fuel: slice = slice(None)) -> dict[str, Any]:
        out = {"id": eid, "type": body["type"]}
        if body["speed"][speed]:
            out["speed"] = body["speed"][speed]
        if body["fuelLevel"][fuel]:
            out["fuelLevel"] = body["fuelLevel"][fuel]
        return out

    after_july = {"timerel": "after", "timeAt": "2020-07-01T12:05:00Z"}
    assert query(type="Vehicle", timerel="after", timeAt="2020-08-01T12:04:00Z") == {
        a: entity(a, AUG, slice(1, None), slice(1, None)),
        b: entity(b, SEP),
    }
    assert query(type="Vehicle", timerel="before", timeAt="2020-09-01T13:06:00Z") == {
        a: entity(a, AUG),
        b: entity(b, SEP, fuel=slice(2)),
    }
    between = {"timerel": "between", "timeAt": "2020-08-01T12:04:00Z", "endTimeAt": "2020-09-01T13:06:00Z"}
    assert query(type="Vehicle", **between) == {
        a: entity(a, AUG, slice(1, None), slice(1, None)),
        b: entity(b, SEP, fuel=slice(2)),
    }
    speeds = query(type="Vehicle", attrs="speed", **after_july)
    assert speeds == {a: entity(a, AUG, fuel=slice(0)), b: entity(b, SEP, fuel=slice(0))}
    lastn = query(type="Vehicle", lastN="4", **after_july)
    assert lastn == {a: entity(a, AUG), b: entity(b, SEP)}
    assert query(type="Vehicle", **after_july) == {a: entity(a, AUG), b: entity(b, SEP)}
    assert query(type="Bus", **after_july) == {bus: entity(bus, BUS)}
    assert query(type="Vehicle", id=a, **after_july) == {a: entity(a, AUG)}
    assert list(query(type="Vehicle", idPattern="urn:ngsi-ld:Vehicle:.*", **after_july)) == [a, b]
    assert list(query(type="Vehicle", q="speed>90", **after_july)) == [a, b]
    assert list(query(type="Vehicle", q="speed<90", **after_july)) == []  # q on the current state (100)
    for limit in (2, 3):
        found = ngsi.get(T, params={"type": "Bus,Vehicle", "limit": str(limit), **after_july}, headers=link).json()
        assert len(found) == limit
    problem(ngsi.get(T, params=after_july, headers=link), 400, "BadRequestData")
    problem(ngsi.get(T, params={"id": f"{a},{b}", **after_july}, headers=link), 400, "BadRequestData")
    assert list(query(id=f"{a},{b}", type="Vehicle", **after_july)) == [a, b]
    assert list(query(local="true", **after_july)) == [a, b, bus]

    def observed(**params: str) -> list[str]:
        return [i["observedAt"] for i in query(id=a, attrs="speed", **params).get(a, {}).get("speed", [])]

    assert observed(timerel="after", timeAt="2020-08-01T12:05:00Z") == ["2020-08-01T12:05:00Z", "2020-08-01T12:07:00Z"]
    assert observed(timerel="after", timeAt="2020-08-01T12:05:00.000Z") == [
        "2020-08-01T12:05:00Z",
        "2020-08-01T12:07:00Z",
    ]
    assert observed(timerel="before", timeAt="2020-08-01T12:05:00Z") == ["2020-08-01T12:03:00Z"]
    assert observed(timerel="before", timeAt="2020-08-01T12:05:00.000Z") == ["2020-08-01T12:03:00Z"]
    window = {"timerel": "between", "timeAt": "2020-08-01T12:03:00Z", "endTimeAt": "2020-08-01T12:05:00Z"}
    assert observed(**window) == ["2020-08-01T12:03:00Z"]
    assert observed(**{k: v.replace(":00Z", ":00.000Z") for k, v in window.items()}) == ["2020-08-01T12:03:00Z"]
    for params in (
        {"timerel": "during", "timeAt": "2020-08-01T12:05:00Z"},
        {"timerel": "between", "timeAt": "2020-08-01T12:05:00Z"},
        {"timerel": "after", "timeAt": "2020-08-01"},
    ):
        problem(ngsi.get(T, params={"id": a, "attrs": "speed", **params}), 400, "BadRequestData")


def test_query_leaves_out_entities_without_instances_in_range(
    ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]
) -> None:
    """TP 021_13_01..04 (POST query: an entity none of whose instances matches the temporal query is
    not part of the answer, §5.7.4.4), 5744_01_01..07, 09..13 and 5744_05_01..03 (q on entities with
    instances in the window; the count and the pages hold only those), 021_18_07 (no instance of the
    datasetId asked for: no entity)."""
    a, b, bus = V + "021-13-A", V + "021-13-B", "urn:ngsi-ld:Bus:021-13-A"
    create(a, AUG)
    create(b, SEP)
    create(bus, BUS)

    def post(query: dict[str, Any]) -> dict[str, Any]:
        r = ngsi.post(Q, json={"type": "Query", **query}, headers=link)
        assert r.status_code == 200, r.text
        return by_id(r.json())

    vehicles = {"entities": [{"type": "Vehicle"}]}
    after = {"timerel": "after", "timeAt": "2020-08-02T12:05:00Z"}
    assert post({**vehicles, "temporalQ": after}) == {b: {"id": b, **SEP}}
    assert post({**vehicles, "temporalQ": {**after, "timerel": "before"}}) == {a: {"id": a, **AUG}}
    between = {**after, "timerel": "between", "endTimeAt": "2020-09-01T13:06:00Z"}
    sep_fuel = {**SEP, "fuelLevel": SEP["fuelLevel"][:2]}
    assert post({**vehicles, "temporalQ": between}) == {b: {"id": b, **sep_fuel}}
    both = {"entities": [{"type": "Vehicle"}, {"type": "Bus"}], "temporalQ": after}
    assert post(both) == {b: {"id": b, **SEP}}

    window = {"timerel": "between", "timeAt": "2026-03-01T00:00:00Z", "endTimeAt": "2026-03-02T00:00:00Z"}
    inside, outside = "2026-03-01T12:00:00Z", "2026-01-05T00:00:00Z"
    fixtures = {
        "fast": {"speed": [p(30, inside), p(90, outside)], "heading": [p(45, inside)], "route": [p("550", inside)]},
        "slow": {"speed": [p(10, inside), p(80, outside)], "heading": [p(170, inside)]},
        "nowin": {"speed": [p(99, outside)]},
        "multi": {"speed": [p(5, inside), p(60, inside, datasetId="urn:ngsi-ld:Dataset:qp1")]},
        "decoy": {"speed": [p(90, "2026-02-28T23:00:00Z"), p(5, inside)]},
    }
    for name, attrs in fixtures.items():
        assert ngsi.post(T, json={"id": f"{V}qp-{name}", "type": "Vehicle", **attrs}).status_code == 201

    def matching(q: str, **extra: str) -> list[str]:
        r = ngsi.get(T, params={"type": "Vehicle", "q": q, **window, **extra})
        assert r.status_code == 200, r.text
        return [e["id"].removeprefix(f"{V}qp-") for e in r.json()]

    assert matching("speed>25") == ["fast", "multi"]  # multi: its instance of the dataset qp1 (60)
    r = ngsi.get(T, params={"type": "Vehicle", "q": "speed>25", **window})
    assert inside in r.text and outside not in r.text  # only the instances in the window
    assert matching("speed>=5;heading<90") == ["fast"]
    assert matching("speed>25|heading>100") == ["fast", "slow", "multi"]
    assert matching("speed!=10") == ["fast", "multi", "decoy"]
    assert matching("speed==10..40") == ["fast", "slow"]
    assert matching("speed>50") == ["multi"]
    assert matching('route=="550","551"') == ["fast"]
    r = ngsi.get(T, params={"type": "Vehicle", "q": "speed>1", "count": "true", "limit": "1", **window})
    assert r.headers["NGSILD-Results-Count"] == "4" and [e["id"] for e in r.json()] == [f"{V}qp-fast"]
    pages = [matching("speed>1", limit="1", offset=str(n)) for n in range(5)]
    assert pages == [["fast"], ["slow"], ["multi"], ["decoy"], []]
    assert b"qp-nowin" not in ngsi.get(T, params={"type": "Vehicle", "q": "speed>25", **window}).content

    r = ngsi.get(T, params={"type": "Vehicle", "attrs": "speed", "datasetId": "urn:ngsi-ld:Dataset:fuel"})
    assert r.status_code == 200 and r.json() == []


def test_query_representations_and_datasets(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 021_14_01..03 (temporalValues), 021_18_01..06 (datasetId: ``@none`` the default instance,
    several with commas; in the simplified form one object per datasetId), 021_19_01..03 (format wins
    over options), 021_20_01..04 (an invalid format or option is 400 InvalidRequest, §6.3.20)."""
    a, b = V + "021-14-A", V + "021-14-B"
    create(a, AUG)
    create(b, SEP)

    def simple(body: dict[str, Any], speed: slice = slice(None), fuel: slice = slice(None)) -> dict[str, Any]:
        out: dict[str, Any] = {"type": body["type"]}
        for name, part in (("speed", speed), ("fuelLevel", fuel)):
            if body[name][part]:
                out[name] = {"type": "Property", "values": [[i["value"], i["observedAt"]] for i in body[name][part]]}
        return out

    def query(**params: str) -> dict[str, Any]:
        r = ngsi.get(T, params={"type": "Vehicle", **params}, headers=link)
        assert r.status_code == 200, r.text
        return by_id(r.json())

    assert query(options="temporalValues", timerel="after", timeAt="2020-08-01T12:04:00Z") == {
        a: {"id": a, **simple(AUG, slice(1, None), slice(1, None))},
        b: {"id": b, **simple(SEP)},
    }
    assert query(options="temporalValues", timerel="before", timeAt="2020-09-01T13:06:00Z") == {
        a: {"id": a, **simple(AUG)},
        b: {"id": b, **simple(SEP, fuel=slice(2))},
    }
    after = {"timerel": "after", "timeAt": "2020-01-01T12:03:00Z"}
    expected = {a: {"id": a, **simple(AUG)}, b: {"id": b, **simple(SEP)}}
    assert query(format="temporalValues", **after) == expected
    assert query(format="temporalValues", options="aggregatedValues", aggrMethods="sum", **after) == expected
    assert query(options="temporalValues", **after) == expected
    for params in (
        {"format": "invalidFormat"},
        {"options": "invalidOptions"},
        {"options": "temporalValues,invalidOptions"},
        {"format": "temporalValues", "options": "aggregatedValues,invalidOptions"},
    ):
        problem(ngsi.get(T, params={"type": "Vehicle", **after, **params}, headers=link), 400, "InvalidRequest")

    ds = V + "021-18-A"
    common, speed_ds, fuel_ds = "urn:ngsi-ld:Dataset:Common", "urn:ngsi-ld:Dataset:Speed", "urn:ngsi-ld:Dataset:fuel"
    at = "2020-09-01T{}:00Z".format
    create(
        ds,
        {
            "type": "Vehicle",
            "speed": [
                p(120, at("12:03")),
                p(80, at("12:05"), datasetId=common),
                p(90, at("13:05"), datasetId=common),
                p(60, at("12:05"), datasetId=speed_ds),
                p(62, at("12:15"), datasetId=speed_ds),
            ],
            "fuelLevel": [
                p(67, at("12:03")),
                p(68, "2020-09-01T12:03:30Z"),
                p(53, at("13:05"), datasetId=common),
                p(40, at("14:07"), datasetId=fuel_ds),
            ],
        },
    )

    def values(dataset: str | None, *pairs: tuple[Any, str]) -> dict[str, Any]:
        head = {"type": "Property"} if dataset is None else {"type": "Property", "datasetId": dataset}
        return {**head, "values": [list(pair) for pair in pairs]}

    def datasets(**params: str) -> dict[str, Any]:
        r = ngsi.get(
            T,
            params={
                "type": "Vehicle",
                "id": ds,
                "options": "temporalValues",
                "timerel": "after",
                "timeAt": "2020-08-01T12:04:00Z",
                **params,
            },
            headers=link,
        )
        assert r.status_code == 200, r.text
        (body,) = r.json()
        return {k: v for k, v in body.items() if k not in ("id", "type")}

    speed_default = values(None, (120, at("12:03")))
    speed_common = values(common, (80, at("12:05")), (90, at("13:05")))
    speed_speed = values(speed_ds, (60, at("12:05")), (62, at("12:15")))
    assert datasets(attrs="speed") == {"speed": [speed_default, speed_common, speed_speed]}
    assert datasets(datasetId=common) == {"speed": speed_common, "fuelLevel": values(common, (53, at("13:05")))}
    assert datasets(datasetId=f"{common},{speed_ds}") == {
        "speed": [speed_common, speed_speed],
        "fuelLevel": values(common, (53, at("13:05"))),
    }
    assert datasets(datasetId="@none") == {
        "speed": speed_default,
        "fuelLevel": values(None, (67, at("12:03")), (68, "2020-09-01T12:03:30Z")),
    }
    assert datasets(attrs="speed", datasetId="@none") == {"speed": speed_default}
    assert datasets(attrs="fuelLevel", datasetId=fuel_ds) == {"fuelLevel": values(fuel_ds, (40, at("14:07")))}
    problem(ngsi.get(T, params={"type": "Vehicle", "datasetId": "not a uri"}), 400, "BadRequestData")


def test_query_validation(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 5741_01_01 (attrs naming only system attributes do not qualify a query), 5741_01_03 (a
    Linked Entity q needs join), 5741_01_04, 5741_01_05 (an invalid csf: 400), 021_27_01..09
    (the TemporalQuery of a Query body, §5.2.21), 5744_01_03 (observedAt with an offset: 400)."""
    window = {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}
    for params in (
        {"attrs": "createdAt"},
        {"type": "Building", "q": 'owner{name}=="x"'},
        {"type": "Building", "id": "not a uri"},
        {"type": "Building", "csf": "))bad(("},
    ):
        problem(ngsi.get(T, params={**window, **params}, headers={"Accept": LD}), 400, "BadRequestData")

    create(V + "021-27-A", AUG)

    def post(temporal_q: dict[str, Any]) -> Any:
        return ngsi.post(
            Q, json={"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": temporal_q}, headers=link
        )

    base = {"timerel": "after", "timeAt": "2020-08-01T12:00:00Z"}
    r = post({**base, "lastN": 1})
    assert r.status_code == 200 and "2020-08-01T12:07:00Z" in r.text and "2020-08-01T12:03:00Z" not in r.text
    for bad in (
        {**base, "lastN": 0},
        {**base, "lastN": 2.5},
        {**base, "timerel": "during"},
        {**base, "timerel": "between"},
        {**base, "timeproperty": "bornAt"},
    ):
        problem(post(bad), 400, "BadRequestData")
    r = post({**base, "aggrPeriodDuration": "one hour"})
    assert r.status_code == 400 and "aggrPeriodDuration" in r.text
    # 021_27_07/08: aggrMethods in the TemporalQuery, an array or a comma-separated string, aggregate
    for methods in (["avg", "max"], "avg,max"):
        r = post({**base, "aggrMethods": methods, "aggrPeriodDuration": "PT1H"})
        assert r.status_code == 200 and "instanceId" not in r.text, methods
        hour = ["2020-08-01T12:00:00Z", "2020-08-01T13:00:00Z"]  # periods from timeAt
        assert r.json()[0]["speed"]["avg"] == [[100.0, *hour]]
        assert r.json()[0]["speed"]["max"] == [[120.0, *hour]]

    offset = {"id": f"{V}offset", "type": "Vehicle", "speed": [p(50, "2026-03-01T02:00:00+03:00")]}
    problem(ngsi.post(T, json=offset), 400, "BadRequestData")


def test_query_geo_and_values_in_the_window(ngsi: Ngsi, link: dict[str, str], create: Callable[..., None]) -> None:
    """TP 021_09_01/02 (geo-query on the current location), 5744_04_01..07 and 5744_02_14 (a geometry
    only out of the window never matches: the entity has no instance in it), 5744_02_01, 03, 05, 06,
    09..13 and 5744_06_01, 02, 03, 05, 06 (the q operators on values and their datatypes)."""
    create(V + "021-09-A", AUG)
    located = {
        **vehicle("10", (150, 90, 127), (89, 78, 62)),
        "location": [
            {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [2.35, 42.22]},
                "observedAt": "2020-10-01T12:03:00Z",
            },
            {
                "type": "GeoProperty",
                "value": {"type": "Point", "coordinates": [-8.5, 41.2]},
                "observedAt": "2020-10-01T12:05:00Z",
            },
        ],
    }
    create(V + "021-09-B", located)
    july = {"type": "Vehicle", "timerel": "after", "timeAt": "2020-07-01T12:05:00Z"}
    near = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": "[-8.503,41.202]"}
    polygon = "[[[-13.503,47.202],[6.541, 52.961],[20.37,44.653],[9.46,32.57],[-13.503,32.57],[-13.503,47.202]]]"
    within = {"georel": "within", "geometry": "Polygon", "coordinates": polygon, "geoproperty": "location"}
    for geo in (near, within):
        r = ngsi.get(T, params={**july, **geo}, headers=link)
        assert r.status_code == 200 and by_id(r.json()) == {V + "021-09-B": {"id": V + "021-09-B", **located}}

    inside, outside = "2026-03-01T12:00:00Z", "2026-01-05T00:00:00Z"

    def geo_at(lon: float, lat: float, at: str = inside, name: str = "location") -> dict[str, Any]:
        return {
            name: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}, "observedAt": at}]
        }

    fixtures: dict[str, dict[str, Any]] = {
        "typed": {
            "speed": [p(30, inside)],
            "route": [p("550", inside)],
            "active": [p(True, inside)],
            "departure": [p("2026-03-01T06:00:00Z", inside)],
        },
        "second": {"active": [p(False, inside)], "departure": [p("2026-02-01T00:00:00Z", inside)]},
        "arrv": {"tags": [p(["a", "b"], inside)]},
        "fastest": {"speed": [p(99, inside)]},
        "mm": {"name": [p("m", inside)]},
        "zz": {"name": [p("z", inside)]},
        "num": {"name": [p(5, inside)]},
        "paris": geo_at(2.29, 48.85),
        "far": geo_at(10.0, 50.0),
        "outw": geo_at(2.29, 48.85, outside),
        "obs": geo_at(2.29, 48.85, name="observationSpace"),
        "geoin": geo_at(17.1001, 48.1001),
        "geoout": {
            "location": [
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10.0, 40.0]}, "observedAt": inside},
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [17.1, 48.1]}, "observedAt": outside},
            ]
        },
    }
    for name, attrs in fixtures.items():
        assert ngsi.post(T, json={"id": f"{V}w-{name}", "type": "Vehicle", **attrs}).status_code == 201
    window = {
        "type": "Vehicle",
        "timerel": "between",
        "timeAt": "2026-03-01T00:00:00Z",
        "endTimeAt": "2026-03-02T00:00:00Z",
    }

    def matching(**params: str) -> list[str]:
        r = ngsi.get(T, params={**window, **params})
        assert r.status_code == 200, r.text
        return sorted(e["id"].removeprefix(f"{V}w-") for e in r.json())

    paris = "[[[2.0,48.5],[2.6,48.5],[2.6,49.2],[2.0,49.2],[2.0,48.5]]]"
    assert matching(georel="near;maxDistance==2000", geometry="Point", coordinates="[2.29,48.85]") == ["paris"]
    assert matching(georel="within", geometry="Polygon", coordinates=paris) == ["paris"]
    assert matching(georel="intersects", geometry="Polygon", coordinates=paris) == ["paris"]
    assert matching(georel="disjoint", geometry="Polygon", coordinates=paris) == ["far", "geoin", "geoout"]
    assert matching(georel="equals", geometry="Point", coordinates="[2.29,48.85]") == ["paris"]
    observation = {"geoproperty": "observationSpace", "geometry": "Point", "coordinates": "[2.29,48.85]"}
    assert matching(georel="near;maxDistance==2000", **observation) == ["obs"]
    assert matching(georel="near;maxDistance==1000", geometry="Point", coordinates="[17.1,48.1]") == ["geoin"]

    for q, expected in [
        ('speed=="30"', []),
        ("speed==30", ["typed"]),
        ("route>100", []),
        ('route>"200"', ["typed"]),
        ('speed~="3.*"', []),
        ('route~="5.*"', ["typed"]),
        ('route!~="9.*"', ["typed"]),
        ('route!~="5.*"', []),
        ('tags=="b","z"', ["arrv"]),
        ('tags=="x","z"', []),
        ("speed!=10..40", ["fastest"]),
        ('departure>"2026-02-15T00:00:00Z"', ["typed"]),
        ("active==true", ["typed"]),
        ("active==false", ["second"]),
        ('(speed>25|route=="551");active==true', ["typed"]),
        ('name>"m"', ["zz"]),
        ('name>="m"', ["mm", "zz"]),
        ('name>"z"', []),
        ('tags!="c"', ["arrv"]),
        ('tags!="a"', []),
        ('name!="m","z"', ["num"]),
    ]:
        assert matching(q=q) == expected, q


def test_a_deleted_instance_is_recorded_in_the_evolution_but_is_no_value(ngsi: Ngsi) -> None:
    """TP 5611_01_01 (§4.5.7, §5.5.4, §5.6.11.4): an upsert onto a temporal evolution unions the
    types and adds an instance whose value is NGSI-LD Null, the record of a deletion; the
    retrieval shows both instances. It is no value: the current state keeps the last value, the
    aggregations leave it out, and given a value it counts as one."""
    eid = f"{V}5611n"
    assert ngsi.post(T, json={"id": eid, "type": "Vehicle", "speed": [p(1, "2026-01-01T00:00:00Z")]}).status_code == 201
    second = {"id": eid, "type": ["Vehicle", "Truck"], "speed": [p(NULL, "2026-01-02T00:00:00Z")]}
    r = ngsi.post(T, json=second)
    assert r.status_code == 204, r.text
    r = ngsi.get(f"{T}/{eid}", params={"timerel": "before", "timeAt": "2030-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["type"]) == {"Vehicle", "Truck"}
    assert [(i["value"], i["observedAt"]) for i in body["speed"]] == [
        (1, "2026-01-01T00:00:00Z"),
        (NULL, "2026-01-02T00:00:00Z"),
    ]
    current = ngsi.get(f"/entities/{eid}").json()
    assert current["speed"]["value"] == 1 and NULL not in str(current)
    aggr = {
        "options": "aggregatedValues",
        "aggrMethods": "totalCount,sum,max",
        "aggrPeriodDuration": "P1Y",
        "timerel": "after",
    }
    r = ngsi.get(f"{T}/{eid}", params={**aggr, "timeAt": "2025-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    assert {k: v[0][0] for k, v in r.json()["speed"].items() if k != "type"} == {"totalCount": 1, "sum": 1, "max": 1}

    # a deletion is a first-level value member only: nothing else of the instance is Null
    bad = {"id": eid, "type": "Vehicle", "speed": [{"type": "Property", "value": NULL, "observedAt": "2026"}]}
    problem(ngsi.post(T, json=bad), 400, "BadRequestData")
    # only deletions given for a new entity's attribute: recorded, no current value
    other = f"{V}5611m"
    assert (
        ngsi.post(T, json={"id": other, "type": "Vehicle", "speed": [p(NULL, "2026-01-02T00:00:00Z")]}).status_code
        == 201
    )
    assert "speed" not in ngsi.get(f"/entities/{other}").json()
    got = ngsi.get(f"{T}/{other}").json()["speed"]
    got = got if isinstance(got, list) else [got]
    assert [i["value"] for i in got] == [NULL]

    # the record given a value: an instance like the others
    null_id = body["speed"][1]["instanceId"]
    r = ngsi.patch(f"{T}/{eid}/attrs/speed/{null_id}", json={"value": 5, "observedAt": "2026-01-02T00:00:00Z"})
    assert r.status_code == 204, r.text
    r = ngsi.get(f"{T}/{eid}", params={**aggr, "timeAt": "2025-01-01T00:00:00Z"})
    assert {k: v[0][0] for k, v in r.json()["speed"].items() if k != "type"} == {"totalCount": 2, "sum": 6, "max": 5}


def test_null_is_not_a_temporal_attribute(ngsi: Ngsi) -> None:
    """TP 5611_01_02 (§5.2.1: ``urn:ngsi-ld:null`` as a first-level member is refused outside a merge
    or a partial update; nothing is stored)."""
    eid = f"{V}5611"
    body = {"id": eid, "type": "Vehicle", "expiresAt": NULL, "speed": [p(1, "2026-01-01T00:00:00Z")]}
    problem(ngsi.post(T, json=body), 400, "BadRequestData")
    problem(
        ngsi.get(f"{T}/{eid}", params={"timerel": "before", "timeAt": "2030-01-01T00:00:00Z"}), 404, "ResourceNotFound"
    )
