"""Conformance of the q query language (ETSI GS CIM 009 v1.8 §4.9), the geo-query grammar (§4.10) and
the representation parameters of Retrieve/Query Entities (§6.3.7, §6.3.20) with the ETSI NGSI-LD test
suite: each test replays the requests of the test purposes (TP ids) named in its docstring, with the
suite's entities on the core @context. Both databases.

A q is answered by a SQL condition (exact, or a superset that Python narrows) and the exact check in
Python; the tests ask each q with ``count=true`` (SQL counts when the condition is exact), page
through the answer, and repeat it with a geo-query (correlated SQL), so both paths must agree.
"""

from __future__ import annotations

from typing import Any

import pytest

from ioc.modules.context.ld import ActiveContext, TermDef
from ioc.modules.context.query import parse_q, q_sql

from .conftest import Ngsi

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
B = "urn:ngsi-ld:Building:"
V = "urn:ngsi-ld:Vehicle:"
T = "/temporal/entities"
#: everywhere on Earth: a geo-query that drives the scan through the grid and correlated q EXISTS
EVERYWHERE = {
    "georel": "within",
    "geometry": "Polygon",
    "coordinates": "[[[-179,-89],[179,-89],[179,89],[-179,89],[-179,-89]]]",
}


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def error(r: Any) -> str:
    return str(r.json()["type"]).removeprefix(ERR)


def matching(ngsi: Ngsi, q: str, prefix: str = B, **extra: str) -> list[str]:
    """The ids (without ``prefix``) that ``q`` selects, checked three ways: the count, one entity per
    page, and the same query narrowed by a geo-query that every located entity meets."""
    params = {"type": "Building", "q": q, **extra}
    r = ngsi.get("/entities", params={**params, "count": "true", "limit": "100"})
    assert r.status_code == 200, r.text
    found = sorted(e["id"].removeprefix(prefix) for e in r.json())
    assert r.headers["NGSILD-Results-Count"] == str(len(found)), q
    pages = []
    for offset in range(len(found) + 1):
        page = ngsi.get("/entities", params={**params, "limit": "1", "offset": str(offset)})
        assert page.status_code == 200, page.text
        pages += [e["id"].removeprefix(prefix) for e in page.json()]
    assert sorted(pages) == found, q
    located = ngsi.get("/entities", params={**params, **EVERYWHERE, "limit": "100"})
    assert located.status_code == 200, located.text
    assert sorted(e["id"].removeprefix(prefix) for e in located.json()) == found, q
    return found


def bad_q(ngsi: Ngsi, q: str) -> str:
    r = ngsi.get("/entities", params={"type": "Building", "q": q})
    assert r.status_code == 400, (q, r.text)
    return error(r)


# --------------------------------------------------------------------------- fixtures


def suite_buildings(ngsi: Ngsi) -> None:
    """building-simple-attributes{,-second,-third}.jsonld (019_07, 019_09, 019_28)."""
    ngsi.create(
        {
            "id": B + "first",
            "type": "Building",
            "name": prop("Eiffel Tower"),
            "subCategory": prop("tourism"),
            "airQualityLevel": prop(4, unitCode="C62", observedAt="2020-09-09T16:40:00.000Z"),
            "almostFull": prop(False),
            "location": point(2.29, 48.85),
        }
    )
    ngsi.create(
        {
            "id": B + "second",
            "type": "Building",
            "name": prop("Pisa Tower"),
            "subCategory": prop("tourism"),
            "airQualityLevel": prop(6, unitCode="C62", observedAt="2020-10-10T16:40:00.000Z"),
            "almostFull": prop(True),
            "location": point(10.39, 43.72),
        }
    )
    ngsi.create(
        {
            "id": B + "third",
            "type": "Building",
            "name": prop("Pisa Tower"),
            "subCategory": prop("sightseeing"),
            "airQualityLevel": prop(7, unitCode="C62", observedAt="2023-10-10T16:40:00.000Z"),
            "almostFull": prop(False),
            "locatedIn": rel("urn:ngsi-ld:City:Pisa"),
            "location": point(10.40, 43.72),
        }
    )


def feature_buildings(ngsi: Ngsi) -> None:
    """building-query-language-features.jsonld and -target.jsonld (019_29), one more language probe
    and a ListRelationship."""
    ngsi.create(
        {
            "id": B + "features",
            "type": "Building",
            "address": prop({"city": "Berlin", "street": "Ulrich Strasse"}),
            "color": {"type": "LanguageProperty", "languageMap": {"fr": "rouge", "en": "red", "de": "rot"}},
            "category": {"type": "VocabProperty", "vocab": "commercial"},
            "managedBy": rel(B + "target"),
            "location": point(13.38, 52.52),
        }
    )
    ngsi.create({"id": B + "target", "type": "Building", "name": prop("Pisa Tower"), "location": point(10.4, 43.7)})
    ngsi.create(
        {
            "id": B + "black",
            "type": "Building",
            "color": {"type": "LanguageProperty", "languageMap": {"fr": ["chat", "rouge"], "en": ["coal", "black"]}},
            "neighbours": {
                "type": "ListRelationship",
                "objectList": [{"object": B + "features"}, {"object": B + "target"}],
            },
            "location": point(13.39, 52.52),
        }
    )


# --------------------------------------------------------------------------- §4.9 the q language


def test_suite_q_queries(ngsi: Ngsi) -> None:
    """TPs 019_09_01..10 (==, ;, |, parentheses, numbers, booleans, a Relationship's object), 019_07_02
    (count with a q) and 019_28_01..06 (Range and ValueList with == and !=, !~=, a Range with an ordering
    operator is 400)."""
    suite_buildings(ngsi)
    for q, expected in [
        ('name=="Eiffel Tower"', ["first"]),
        ('name=="Pisa Tower";almostFull==false', ["third"]),
        ('name=="Pisa Tower"|almostFull==false', ["first", "second", "third"]),
        ('(name=="Pisa Tower"|name=="Eiffel Tower");almostFull==false', ["first", "third"]),
        ("airQualityLevel==4", ["first"]),
        ("airQualityLevel>=4;airQualityLevel<7", ["first", "second"]),
        ("locatedIn==urn:ngsi-ld:City:Pisa", ["third"]),
        ("locatedIn==urn:ngsi-ld:City:Paris", []),
        ("locatedIn==urn:ngsi-ld:City:Pisa|locatedIn==urn:ngsi-ld:City:Paris", ["third"]),
        ("airQualityLevel==6", ["second"]),
        ("airQualityLevel==4..5", ["first"]),
        ("airQualityLevel!=4..5", ["second", "third"]),
        ('name=="Eiffel Tower","Pisa Tower"', ["first", "second", "third"]),
        ('name!="Eiffel Tower","Big Ben"', ["second", "third"]),
        ('name!~="^Eiffel"', ["second", "third"]),
    ]:
        assert matching(ngsi, q) == expected, q
    assert bad_q(ngsi, "airQualityLevel>4..5") == "BadRequestData"


def test_existence_and_non_existence(ngsi: Ngsi) -> None:
    """TP 5744_01_08 on the entity API: ``attr`` selects the entities that have the attribute (§4.9
    EXAMPLE 0/5), ``!attr`` those that do not, alone, with ``;``, ``|`` and parentheses; exact in SQL
    for a plain attribute, decided in Python through a trailing path or a Linked Entity."""
    suite_buildings(ngsi)
    feature_buildings(ngsi)
    everyone = ["black", "features", "first", "second", "target", "third"]
    for q, expected in [
        ("locatedIn", ["third"]),
        ("!locatedIn", sorted(set(everyone) - {"third"})),
        ("!locatedIn;airQualityLevel>4", ["second"]),
        ("airQualityLevel>4;!locatedIn", ["second"]),
        ("!name|locatedIn", ["black", "features", "third"]),
        ("(!locatedIn)", sorted(set(everyone) - {"third"})),
        ("(!name;!color)|almostFull==true", ["second"]),
        ("!name;!color", []),
        ("!address[city]", sorted(set(everyone) - {"features"})),
        ("!address[postcode]", everyone),
        ("!airQualityLevel.observedAt;name", ["target"]),
        ("!managedBy{name}", sorted(set(everyone) - {"features"})),
    ]:
        join = {"join": "inline"} if "{" in q else {}
        assert matching(ngsi, q, **join) == expected, q
    for q in ("!", "!locatedIn==urn:ngsi-ld:City:Pisa", "!(locatedIn)", "!!locatedIn", "locatedIn;!", "name!"):
        assert bad_q(ngsi, q) == "BadRequestData", q


def test_negation_is_pushed_down_only_when_exact() -> None:
    """§4.9 with the SQL prefilter: the complement of an exact condition is exact; the complement of a
    superset is not a superset, so SQL keeps every candidate and Python decides."""
    ctx = ActiveContext({}, "https://uri.etsi.org/ngsi-ld/default-context/", None)
    for q, exact in [
        ("!a", True),
        ("!a;b", True),
        ("!a|b", True),
        ("!a;b==1", False),
        ("!a[b]", False),
        ("!a.observedAt", False),
        ("!a{b}", False),
        ('a[en]=="x"', False),
    ]:
        _cond, got = q_sql(parse_q(q, ctx), "")
        assert got is exact, q
    cond, got = q_sql(parse_q("!a[b]", ctx), "")
    assert not got and str(cond) == "true"


def test_linked_entity_type_hint_is_not_a_compact_iri() -> None:
    """§4.9 EXAMPLE 14 against JSON-LD compact IRIs: ``rel{Type:attr}`` is a type hint unless ``Type``
    is a prefix of the @context (a term whose IRI ends with a gen-delim)."""
    vocab = "https://uri.etsi.org/ngsi-ld/default-context/"
    ctx = ActiveContext({"ex": TermDef("http://example.org/"), "Shop": TermDef("http://example.org/Shop")}, vocab, None)
    hinted = parse_q("a{Building,Shop:name}==1", ctx).path
    assert hinted is not None and hinted.link is not None
    assert hinted.link_types == [vocab + "Building", "http://example.org/Shop"]
    assert hinted.link.attr == vocab + "name"
    curie = parse_q("a{ex:name}==1", ctx).path
    assert curie is not None and curie.link is not None
    assert curie.link_types is None and curie.link.attr == "http://example.org/name"


def test_language_filters(ngsi: Ngsi) -> None:
    """TPs 019_29_04..07, 5744_02_07/08 and 5744_06_07/08 on the entity API (§4.9 Equal/Unequal):
    ``attr[lang]`` reads the value(s) of one language of a LanguageProperty, ``attr[*]`` and the bare
    name any language; values may be arrays."""
    feature_buildings(ngsi)
    for q, expected in [
        ('color[en]=="red"', ["features"]),
        ('color[en]=="rouge"', []),
        ('color[fr]=="rouge"', ["black", "features"]),
        ('color[*]=="rouge"', ["black", "features"]),
        ('color=="rot"', ["features"]),
        ('color[*]!="red"', ["black"]),
        ('color[en]!="red"', ["black"]),
        ('color[en]!="black"', ["features"]),
        ('color[fr]!="chat"', ["features"]),
        ('color[de]=="rot"', ["features"]),
        ('color[de]!="rot"', []),
        ('color[en]=="coal","red"', ["black", "features"]),
        ('color[en]~="^co"', ["black"]),
        ('color[fr]!~="^ch"', ["features"]),
        ("color[it]", []),
        ("color[en]", ["black", "features"]),
    ]:
        assert matching(ngsi, q) == expected, q


def test_datatype_mismatch_is_unequal(ngsi: Ngsi) -> None:
    """TPs 5744_02_01..03, 5744_06_03/04/06 on the entity API (§4.9): a target value and a Query Term
    value of different datatypes are unequal (so ``!=`` holds) and match neither ``==`` nor an ordering;
    a pattern never matches a value that is not a String; an entity without the attribute matches none."""
    ngsi.create(
        {
            "id": B + "typed",
            "type": "Building",
            "speed": prop(30),
            "route": prop("550"),
            "active": prop(True),
            "address": prop({"city": "Berlin"}),
            "departure": prop("2026-03-01T06:00:00.000Z"),
            "location": point(1, 1),
        }
    )
    ngsi.create({"id": B + "num", "type": "Building", "route": prop(5), "location": point(2, 2)})
    ngsi.create({"id": B + "none", "type": "Building", "other": prop(1), "location": point(3, 3)})
    for q, expected in [
        ('speed=="30"', []),
        ("speed==30", ["typed"]),
        ('speed!="thirty"', ["typed"]),
        ("speed!=true", ["typed"]),
        ("route>100", []),
        ('route>"200"', ["typed"]),
        ('route>"6"', []),
        ('route!="550"', ["num"]),
        ("route!=5", ["typed"]),
        ('route!="x"', ["num", "typed"]),
        ("active!=1", ["typed"]),
        ("active>false", []),
        ('address!="Berlin"', ["typed"]),
        ('address[city]!="Berlin"', []),
        ('speed~="3.*"', []),
        ('speed!~="9.*"', []),
        ('route!~="9.*"', ["typed"]),
        ('departure=="2026-03-01T06:00:00Z"', ["typed"]),
        ("departure==2026-03-01T06:00:00Z", ["typed"]),
        ("departure>2026-02-15T00:00:00Z", ["typed"]),
        ("departure!=2026-03-01T06:00:00Z", []),
        ("departure!=7", ["typed"]),
    ]:
        assert matching(ngsi, q) == expected, q


def test_relationships_only_compare_for_equality(ngsi: Ngsi) -> None:
    """TPs 019_29_11 and 5744_02_04 on the entity API (§4.9): a Relationship or ListRelationship with
    any operator but equal and unequal does not match; equal and unequal compare its object(s)."""
    feature_buildings(ngsi)
    target, features = B + "target", B + "features"
    for q, expected in [
        ('managedBy>"urn:a"', []),
        (f'managedBy>="{target}"', []),
        ('managedBy<"urn:z"', []),
        ('managedBy~="urn.*"', []),
        ('managedBy!~="^x"', []),
        (f'managedBy=="{target}"', ["features"]),
        (f"managedBy=={target}", ["features"]),
        ('managedBy!="urn:a"', ["features"]),
        (f'managedBy!="{target}"', []),
        (f'neighbours=="{features}"', ["black"]),
        (f'neighbours!="{features}"', []),
        ('neighbours!="urn:a"', ["black"]),
        ('neighbours>"urn:a"', []),
        ('neighbours~="Building"', []),
    ]:
        assert matching(ngsi, q) == expected, q


def test_compound_trailing_paths(ngsi: Ngsi) -> None:
    """TPs 019_29_01..03 (§4.9 EXAMPLE 9: ``address[city]``; an undefined member is a non-existent
    target element) and EXAMPLE 10 (a dotted trailing path under a sub-property)."""
    feature_buildings(ngsi)
    ngsi.create(
        {
            "id": B + "sensor",
            "type": "Building",
            "sensor": prop(40, rawdata=prop({"airquality": {"particulate": 40, "PM20": 85}})),
            "location": point(1, 1),
        }
    )
    for q, expected in [
        ('address[city]=="Berlin"', ["features"]),
        ('address[postcode]=="Berlin"', []),
        ("address[city]", ["features"]),
        ('address[city]!="Paris"', ["features"]),
        ("sensor.rawdata[airquality.particulate]==40", ["sensor"]),
        ("sensor.rawdata[airquality.PM20]>80", ["sensor"]),
        ("sensor.rawdata[airquality.missing]", []),
        ("sensor.rawdata[airquality]", ["sensor"]),
    ]:
        assert matching(ngsi, q) == expected, q
    for q in ("address[]", "address[city.]", "address[.city]"):
        assert bad_q(ngsi, q) == "BadRequestData", q


def test_expand_values(ngsi: Ngsi) -> None:
    """TPs 019_29_12/13 (§4.9 EXAMPLE 12): a VocabProperty holds its terms expanded, so a short term
    matches only when ``expandValues`` names the attribute, which expands the query's values
    against the @context first (the lists, ranges and !=, too; the other attributes' values not)."""
    feature_buildings(ngsi)
    vocab = "https://uri.etsi.org/ngsi-ld/default-context/"
    for q, extra, expected in [
        ("category==commercial", {"expandValues": "category"}, ["features"]),
        ("category==commercial", {}, []),
        (f'category=="{vocab}commercial"', {}, ["features"]),
        ("category==residential,commercial", {"expandValues": "category"}, ["features"]),
        ("category!=commercial", {"expandValues": "category"}, []),
        ("category==commercial", {"expandValues": "color"}, []),
        ('category==commercial;address[city]=="Berlin"', {"expandValues": "category"}, ["features"]),
        ('category==commercial;address[city]=="Berlin"', {"expandValues": "category,address"}, []),
    ]:
        assert matching(ngsi, q, **extra) == expected, (q, extra)
    r = ngsi.get(
        "/temporal/entities",
        params={
            "type": "Building",
            "q": "category==commercial",
            "expandValues": "category",
            "timerel": "after",
            "timeAt": "2000-01-01T00:00:00Z",
            "timeproperty": "modifiedAt",
        },
    )
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [B + "features"]


def test_type_wildcard(ngsi: Ngsi) -> None:
    """TP 019_26 (v1.9 Table 6.4.3.2-1): ``type=*`` selects every type (not a type named ``*``), and
    implies local=true, so ``local=false`` with it is 400."""
    ngsi.create({"id": B + "w1", "type": "Building", "name": prop("one")})
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:w2", "type": "Vehicle", "brandName": prop("Mercedes")})
    r = ngsi.get("/entities", params={"type": "*"})
    assert r.status_code == 200
    assert sorted(e["id"] for e in r.json()) == [B + "w1", "urn:ngsi-ld:Vehicle:w2"]
    r = ngsi.get("/entities", params={"type": "*", "q": "brandName"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:w2"]
    assert ngsi.get("/entities", params={"type": "*", "local": "true"}).status_code == 200
    r = ngsi.get("/entities", params={"type": "*", "local": "false"})
    assert r.status_code == 400 and error(r) == "BadRequestData"
    window = {"timerel": "after", "timeAt": "2000-01-01T00:00:00Z", "timeproperty": "createdAt"}
    r = ngsi.get("/temporal/entities", params={"type": "*", **window})
    assert r.status_code == 200 and len(r.json()) == 2


def test_linked_entity_type_hint(ngsi: Ngsi) -> None:
    """TPs 019_29_08..10 (§4.9 EXAMPLE 13/14): ``rel{attr}`` reads the Linked Entity; a leading
    ``Type:`` (or ``Type1,Type2:``) considers only Linked Entities of those types; a compact IRI of
    the @context is a name, not a hint."""
    feature_buildings(ngsi)
    for q, expected in [
        ('managedBy{name}=="Pisa Tower"', ["features"]),
        ('managedBy{Building:name}=="Pisa Tower"', ["features"]),
        ('managedBy{Vehicle,Building:name}=="Pisa Tower"', ["features"]),
        ('managedBy{Vehicle:name}=="Pisa Tower"', []),
        ("managedBy{Vehicle:name}", []),
        ("managedBy{Building:name}", ["features"]),
    ]:
        assert matching(ngsi, q, join="inline", joinLevel="1") == expected, q


# --------------------------------------------------------------------------- §4.10 geo-query grammar


def test_geoquery_grammar_and_semantics(ngsi: Ngsi) -> None:
    """TPs 019_30_01..14 (§4.10): a distance is a finite number greater than 0 and near takes exactly
    one; a polygon hole is outside the polygon; geoproperty picks the GeoProperty (location by default);
    near measures to the nearest point of an extended geometry, in metres at any latitude."""
    ngsi.create({"id": B + "hole", "type": "Building", "location": point(5, 5), "observationSpace": point(8, 40)})
    ngsi.create({"id": B + "shell", "type": "Building", "location": point(2, 2)})
    line = {"type": "LineString", "coordinates": [[0.0, 85.6], [1.0, 85.0]]}
    ngsi.create({"id": B + "highlat", "type": "Building", "location": {"type": "GeoProperty", "value": line}})
    ngsi.create({"id": B + "east", "type": "Building", "location": point(10.0, 60.009)})

    def geo(georel: str, geometry: str, coordinates: str, **extra: str) -> Any:
        params = {"type": "Building", "georel": georel, "geometry": geometry, "coordinates": coordinates}
        return ngsi.get("/entities", params={**params, **extra, "count": "true"})

    for georel in (
        "near;maxDistance==0",
        "near;maxDistance==-100",
        "near;maxDistance==5;minDistance==1",
        "near",
        "touches",
        "near;maxDistance==inf",
        "near;maxDistance==1e400",
        "within;maxDistance==5",
    ):
        r = geo(georel, "Point", "[8,40]")
        assert r.status_code == 400 and error(r) == "BadRequestData", georel
    holed = "[[[0,0],[10,0],[10,10],[0,10],[0,0]],[[4,4],[6,4],[6,6],[4,6],[4,4]]]"
    for args, extra, expected in [
        (("within", "Polygon", holed), {}, ["shell"]),
        (("near;maxDistance==2000", "Point", "[8,40]"), {"geoproperty": "observationSpace"}, ["hole"]),
        (("near;maxDistance==2000", "Point", "[8,40]"), {}, []),
        (("near;maxDistance==2000", "LineString", "[[0,60],[10,60]]"), {}, ["east"]),
        (("near;maxDistance==2000", "LineString", "[[0,61],[10,61]]"), {}, []),
        (("near;maxDistance==20000", "Point", "[0,85]"), {}, ["highlat"]),
        (("near;maxDistance==5000", "Point", "[0,85]"), {}, []),
        (("near;maxDistance==2e4", "Point", "[0,85]"), {}, ["highlat"]),
    ]:
        r = geo(*args, **extra)
        assert r.status_code == 200, r.text
        assert sorted(e["id"].removeprefix(B) for e in r.json()) == expected, args
        assert r.headers["NGSILD-Results-Count"] == str(len(expected))


# --------------------------------------------------------------------------- §5.7.1.4, §5.7.2.4 input errors


def test_query_and_retrieve_input_errors(ngsi: Ngsi) -> None:
    """TPs 019_03_01..04 (§5.7.2.4: invalid ids, idPattern or georel; ``attrs`` naming no Attribute —
    ``id`` and ``type`` are Entity members — is a too wide query), 018_02_01 and 018_03_01 (§5.7.1.4)."""
    ngsi.create({"id": B + "1", "type": "Building", "name": prop("x"), "location": point(1, 1)})
    geo = {"georel": "invalid", "geometry": "Point", "coordinates": "[-8.503,41.202]", "geoproperty": "location"}
    for params in (
        {"type": "Building", "id": "thisisaninvaliduri1,thisisaninvaliduri2"},
        {"type": "Building", "idPattern": "invalid_entity_id_pattern**"},
        {"attrs": "id,type"},
        {"attrs": "createdAt,type"},
        {"type": "Building", **geo},
    ):
        r = ngsi.get("/entities", params=params)
        assert r.status_code == 400 and error(r) == "BadRequestData", params
    r = ngsi.get("/entities", params={"attrs": "id,name"})
    assert r.status_code == 200 and [e["id"] for e in r.json()] == [B + "1"]
    r = ngsi.get("/entities/thisisaninvaliduri")
    assert r.status_code == 400 and error(r) == "BadRequestData"
    r = ngsi.get("/entities/" + B + "unknown")
    assert r.status_code == 404 and error(r) == "ResourceNotFound"


# --------------------------------------------------------------------------- §6.3.20 representation parameters


@pytest.mark.parametrize(
    "params",
    [
        {"format": "invalidFormat"},  # 018_16_01
        {"options": "invalidOptions"},  # 018_16_02
        {"options": "keyValues,invalid"},  # 018_16_03
        {"format": "keyValues", "options": "invalid"},  # 018_16_04
        {"options": "noOverwrite"},  # a write option on a read
        {"options": "update"},
    ],
)
def test_unknown_options_or_format_are_invalid_request(ngsi: Ngsi, params: dict[str, str]) -> None:
    """TP 018_16_01..04 (§6.3.20: an ``options`` or ``format`` value the operation does not define is
    400 InvalidRequest, checked before the entity is looked for), and the same on Query Entities (GET and
    POST /entityOperations/query), as on the temporal API (021_20)."""
    ngsi.create({"id": B + "1", "type": "Building", "name": prop("x")})
    for path in (B + "1", B + "missing"):
        r = ngsi.get("/entities/" + path, params=params)
        assert r.status_code == 400 and error(r) == "InvalidRequest", r.text
    r = ngsi.get("/entities", params={"type": "Building", **params})
    assert r.status_code == 400 and error(r) == "InvalidRequest", r.text
    query = {"type": "Query", "entities": [{"type": "Building"}]}
    r = ngsi.post("/entityOperations/query", json=query, params=params)
    assert r.status_code == 400 and error(r) == "InvalidRequest", r.text


def test_format_and_options_values(ngsi: Ngsi) -> None:
    """TP 018_15_01..07 (§6.3.7: ``format`` keyValues/simplified/normalized, the same ``options``;
    ``format`` wins over ``options``) and 019_04_01."""
    ngsi.create({"id": B + "1", "type": "Building", "name": prop("x")})
    normalized = {"id": B + "1", "type": "Building", "name": prop("x")}
    simplified = {"id": B + "1", "type": "Building", "name": "x"}
    for params, expected in [
        ({"format": "keyValues"}, simplified),
        ({"format": "simplified"}, simplified),
        ({"format": "normalized"}, normalized),
        ({"options": "keyValues"}, simplified),
        ({"options": "simplified"}, simplified),
        ({"options": "normalized"}, normalized),
        ({"format": "keyValues", "options": "normalized"}, simplified),
    ]:
        r = ngsi.get("/entities/" + B + "1", params=params)
        assert r.status_code == 200 and r.json() == expected, params
        r = ngsi.get("/entities", params={"type": "Building", **params})
        assert r.status_code == 200 and r.json() == [expected], params


def test_language_filter_ranges(ngsi: Ngsi) -> None:
    """TPs 018_07_01..06 (§4.15: the best-ranked language present wins; ``*`` alone is any one language,
    the first of the map, reported in ``lang``)."""
    street = {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}
    ngsi.create({"id": B + "1", "type": "Building", "street": street})
    french = {"type": "Property", "value": "Grand Place", "lang": "fr"}
    for params, expected in [
        ({"lang": "fr"}, french),
        ({"lang": "fr-CH,fr"}, french),
        ({"lang": "fr-CH,fr;q=0.9,en;q=0.8,*;q=0.5"}, french),
        ({"lang": "fr", "options": "keyValues"}, "Grand Place"),
        ({"lang": "en;q=0.9,*;q=0.1", "options": "keyValues"}, "Grand Place"),
        ({"lang": "*"}, french),
        ({"lang": "*", "options": "keyValues"}, "Grand Place"),
    ]:
        r = ngsi.get("/entities/" + B + "1", params=params)
        assert r.status_code == 200 and r.json()["street"] == expected, params


# --------------------------------------------------------------------------- the temporal API (same q)


def test_temporal_queries_use_the_same_q(ngsi: Ngsi) -> None:
    """TPs 5744_01_08, 5744_02_02, 5744_02_04, 5744_02_07, 5744_02_08, 5744_06_04, 5744_06_07 and
    5744_06_08: the q of Query Temporal Evolution of Entities (§5.7.4.4) is the q of §4.9."""
    inside = "2026-03-01T12:00:00Z"

    def p(value: Any) -> list[dict[str, Any]]:
        return [{"type": "Property", "value": value, "observedAt": inside}]

    def lang(lm: dict[str, str]) -> list[dict[str, Any]]:
        return [{"type": "LanguageProperty", "languageMap": lm, "observedAt": inside}]

    fixtures: dict[str, dict[str, Any]] = {
        "fast": {"speed": p(30), "heading": p(45)},
        "multi": {"speed": p(60)},
        "typed": {"speed": p(30)},
        "typed2": {"active": p(False)},
        "relv": {"ref": [{"type": "Relationship", "object": "urn:dest:qpA", "observedAt": inside}]},
        "langv": {"label": lang({"en": "red", "fr": "rouge"})},
        "langother": {"label": lang({"en": "black", "fr": "rouge"})},
        "mid": {"name": p("m")},
        "high": {"name": p("z")},
        "numname": {"name": p(5)},
        "lang": {"label": lang({"en": "hello", "fr": "bonjour"})},
    }
    for name, attrs in fixtures.items():
        assert ngsi.post(T, json={"id": V + name, "type": "Vehicle", **attrs}).status_code == 201
    window = {"timerel": "between", "timeAt": "2026-03-01T00:00:00Z", "endTimeAt": "2026-03-02T00:00:00Z"}

    def temporal(q: str) -> list[str]:
        r = ngsi.get(T, params={"type": "Vehicle", "q": q, **window})
        assert r.status_code == 200, r.text
        return sorted(e["id"].removeprefix(V) for e in r.json())

    assert temporal("!heading;speed>25") == ["multi", "typed"]  # 5744_01_08
    assert temporal('speed!="thirty"') == ["fast", "multi", "typed"]  # 5744_02_02
    assert temporal('ref>"urn:a"') == []  # 5744_02_04
    assert temporal('ref=="urn:dest:qpA"') == ["relv"]
    assert temporal('label[en]=="red"') == ["langv"]  # 5744_02_07
    assert temporal('label[fr]=="red"') == []
    assert temporal('label[*]=="rouge"') == ["langother", "langv"]  # 5744_02_08
    assert temporal('name!="m"') == ["high", "numname"]  # 5744_06_04
    assert temporal('label[en]=="hello"') == ["lang"]  # 5744_06_07
    assert temporal('label[*]=="bonjour"') == ["lang"]  # 5744_06_08
    assert temporal('label[en]=="bonjour"') == []


# 019_11: the suite's buildings; the first outline crosses itself near its start (GeoJSON lets it
# through), so the broker stores it as given and computes with its valid form.
BUILDING_1 = [
    [
        [13.2865906, 52.5648645],
        [13.2879639, 52.5648645],
        [13.2797241, 52.4988679],
        [13.477478, 52.4712703],
        [13.5049438, 52.5373084],
        [13.2865906, 52.5648645],
    ]
]
BUILDING_2 = [[[13.315773, 52.4757209], [13.339119, 52.4443421], [13.3892441, 52.4669371], [13.315773, 52.4757209]]]
TRIANGLE = (
    "[[[13.3456421,52.4794848],[13.3641815,52.4428773],[13.4177399,52.4730023],[13.3459854,52.479903],"
    "[13.3456421,52.4794848]]]"
)
WEST = (
    "[[[13.1369019,52.5198225],[13.1365585,52.5200314],[13.131752,52.4980907],[13.1832504,52.5026887],"
    "[13.1369019,52.5198225]]]"
)


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "count"),
    [
        pytest.param("equals", "Polygon", str(BUILDING_1).replace(" ", ""), 1, id="019_11_01"),
        pytest.param("intersects", "Polygon", TRIANGLE, 1, id="019_11_02"),
        pytest.param(
            "contains",
            "Polygon",
            "[[[13.3844376,52.5356966],[13.3844376,52.5356966],[13.381691,52.5123012],[13.4235764,52.5100027],"
            "[13.4331894,52.5273425],[13.3844376,52.5356966]]]",
            1,
            id="019_11_03",
        ),
        pytest.param("contains", "Polygon", WEST, 0, id="019_11_04"),
        pytest.param("disjoint", "Polygon", WEST, 2, id="019_11_05"),
        pytest.param(
            "within",
            "Polygon",
            "[[[13.3023834,52.4903066],[13.3027267,52.4905156],[13.2745743,52.465632],[13.3343124,52.4185447],"
            "[13.4311295,52.47107],[13.3023834,52.4903066]]]",
            1,
            id="019_11_06",
        ),
        pytest.param("overlaps", "Polygon", TRIANGLE, 1, id="019_11_07"),
        pytest.param("contains", "Point", "[13.3442688,52.4650045]", 1, id="019_11_08"),
    ],
)
def test_geo_queries_on_polygons_one_of_which_crosses_itself(
    ngsi: Ngsi, georel: str, geometry: str, coordinates: str, count: int
) -> None:
    """019_11_01..08: Query Entities with Polygon and Point target geometries over two Building
    polygons, the first self-intersecting (accepted: RFC 7946 does not require simple rings)."""
    for n, outline in enumerate((BUILDING_1, BUILDING_2), start=1):
        location = {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": outline}}
        ngsi.create({"id": f"{B}{n}", "type": "Building", "name": prop("Eiffel Tower"), "location": location})
    stored = ngsi.get(f"/entities/{B}1").json()["location"]["value"]
    assert stored == {"type": "Polygon", "coordinates": BUILDING_1}  # kept as given
    params = {"type": "Building", "georel": georel, "geometry": geometry, "coordinates": coordinates, "count": "true"}
    r = ngsi.get("/entities", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["NGSILD-Results-Count"] == str(count)
    assert len(r.json()) == count


def test_retrieve_with_attrs_the_entity_does_not_have_is_not_found(ngsi: Ngsi) -> None:
    """018_03_02: Retrieve Entity whose ``attrs`` name none of its Attributes is 404 ResourceNotFound
    (§5.7.1.4); one of them present is enough, and system members do not count as Attributes."""
    ngsi.create({"id": f"{B}a", "type": "Building", "name": prop("Eiffel Tower")})
    r = ngsi.get(f"/entities/{B}a", params={"attrs": "airQualityLevel,subCategory"})
    assert r.status_code == 404, r.text
    assert r.json()["type"] == ERR + "ResourceNotFound"
    r = ngsi.get(f"/entities/{B}a", params={"attrs": "airQualityLevel,name"})
    assert r.status_code == 200
    assert r.json() == {"id": f"{B}a", "type": "Building", "name": prop("Eiffel Tower")}
    r = ngsi.get(f"/entities/{B}a", params={"attrs": "createdAt"})
    assert r.status_code == 200


def test_retrieve_with_pick_or_omit_leaving_nothing_is_not_found(ngsi: Ngsi) -> None:
    """018_19 (§4.21, v1.8.1): Retrieve Entity whose pick matches no member, or whose omit names
    them all, is 404 ResourceNotFound; a pick or omit leaving one member shows it."""
    ngsi.create({"id": f"{B}p", "type": "Building", "name": prop("Eiffel Tower"), "almostFull": prop(False)})
    for params in ({"pick": "unknown"}, {"omit": "id,type,name,almostFull"}):
        r = ngsi.get(f"/entities/{B}p", params=params)
        assert r.status_code == 404, (params, r.text)
        assert r.json()["type"] == ERR + "ResourceNotFound" and r.json()["title"]
    assert ngsi.get(f"/entities/{B}p", params={"pick": "name,unknown"}).json() == {"name": prop("Eiffel Tower")}
    assert ngsi.get(f"/entities/{B}p", params={"omit": "id,type,name"}).json() == {"almostFull": prop(False)}


def test_query_leaves_out_entities_the_projection_empties(ngsi: Ngsi) -> None:
    """019_17_01 (§4.21): Query Entities with ``pick=name`` over Buildings and a Vehicle answers the
    Buildings' names only; the Vehicle, which has no name, is left out rather than shown as ``{}``."""
    ngsi.create({"id": f"{B}1", "type": "Building", "name": prop("Eiffel Tower")})
    ngsi.create({"id": f"{B}2", "type": "Building", "name": prop("Pisa Tower"), "almostFull": prop(True)})
    ngsi.create({"id": f"{V}1", "type": "Vehicle", "speed": prop(5)})
    r = ngsi.get("/entities", params={"type": "Building,Vehicle", "pick": "name"})
    assert r.status_code == 200
    assert sorted(e["name"]["value"] for e in r.json()) == ["Eiffel Tower", "Pisa Tower"]
    assert all(set(e) == {"name"} for e in r.json())
    r = ngsi.get("/entities", params={"type": "Building,Vehicle", "omit": "id,type,speed,name"})
    assert r.json() == [{"almostFull": prop(True)}]


def test_query_with_geometry_property_needs_geojson(ngsi: Ngsi) -> None:
    """019_27_01: ``geometryProperty`` on Query Entities without ``Accept: application/geo+json`` is 400
    BadRequestData, as on Retrieve Entity (§5.7.2.4); with GeoJSON it picks the Features' geometry."""
    location = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.68, 18.67]}}
    ngsi.create({"id": f"{B}g", "type": "Building", "location": location})
    params = {"type": "Building", "geometryProperty": "location"}
    r = ngsi.get("/entities", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData"
    r = ngsi.get("/entities", params=params, headers={"Accept": "application/geo+json"})
    assert r.status_code == 200, r.text
    assert r.json()["features"][0]["geometry"] == {"type": "Point", "coordinates": [105.68, 18.67]}


FRENCH, SPANISH, GERMAN = (f"urn:ngsi-ld:Dataset:{lang}-name" for lang in ("french", "spanish", "german"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"attrs": "name"}, {"name": [None, FRENCH, GERMAN]}, id="019_12_01"),
        pytest.param({"datasetId": FRENCH}, {"name": [FRENCH]}, id="019_12_02"),
        pytest.param(
            {"datasetId": f"{FRENCH},{SPANISH}"}, {"name": [FRENCH], "subCategory": [SPANISH]}, id="019_12_03"
        ),
        pytest.param({"datasetId": "@none"}, {"name": [None], "subCategory": [None]}, id="019_12_04"),
        pytest.param({"attrs": "name", "datasetId": "@none"}, {"name": [None]}, id="019_12_05"),
        pytest.param({"attrs": "name", "datasetId": GERMAN}, {"name": [GERMAN]}, id="019_12_06"),
        pytest.param({"attrs": "name", "datasetId": SPANISH}, {}, id="019_12_07"),
    ],
)
def test_dataset_id_selects_the_instances_shown(
    ngsi: Ngsi, params: dict[str, str], expected: dict[str, list[str | None]]
) -> None:
    """019_12_01..07: ``datasetId`` on Query Entities (§4.5.5, v1.8.1) shows only those instances of
    each attribute (``@none`` the default one); an entity keeps its place when none is left."""
    ngsi.create(
        {
            "id": f"{B}ds",
            "type": "Building",
            "name": [prop("Eiffel Tower"), prop("Tour Eiffel", datasetId=FRENCH), prop("Eiffelturm", datasetId=GERMAN)],
            "subCategory": [prop(["tourism"]), prop(["turismo"], datasetId=SPANISH)],
        }
    )
    r = ngsi.get("/entities", params={"type": "Building", **params})
    assert r.status_code == 200, r.text
    [entity] = r.json()
    shown: dict[str, list[str | None]] = {}
    for name, value in entity.items():
        if name in ("id", "type"):
            continue
        instances = value if isinstance(value, list) else [value]
        shown[name] = sorted((i.get("datasetId") for i in instances), key=lambda d: d or "")
    assert shown == expected
    assert ngsi.get("/entities", params={"type": "Building", "datasetId": "not a uri"}).status_code == 400


def test_query_pages_carry_prev_and_next_links(ngsi: Ngsi) -> None:
    """§5.5.9 (TP 019_31, the entity list; 031_02 for subscriptions): a page links the pages before
    and after it by the request's parameters in name order, beside the @context link; the first
    page has no prev, the last no next, limit=0 neither. With count or without (one entity past
    the page tells), and on a filtered scan (q) as on an exact one."""
    for suffix in "ABC":
        r = ngsi.post("/entities", json={"id": f"{B}01931{suffix}", "type": "Building", "h": prop(1)})
        assert r.status_code == 201, r.text
    base = "/ngsi-ld/v1/entities?"
    pattern = f"{B}01931.*"

    def links(**params: str) -> list[str]:
        r = ngsi.get("/entities", params={"type": "Building", "idPattern": pattern, **params})
        assert r.status_code == 200, r.text
        parts = [p.strip() for p in r.headers["Link"].split(",")]
        assert 'rel="http://www.w3.org/ns/json-ld#context"' in parts[0]  # the @context link stays first
        return parts[1:]

    q = f"idPattern={pattern}"
    assert links(limit="1", count="true") == [
        f'<{base}count=true&{q}&limit=1&offset=1&type=Building>;rel="next";type="application/json"'
    ]
    # asked with the trailing slash, as the suite asks: the links name the collection without it
    r = ngsi.get("/entities/", params={"type": "Building", "idPattern": pattern, "limit": "1", "count": "true"})
    assert r.headers["Link"].split(", ")[1:] == [
        f'<{base}count=true&{q}&limit=1&offset=1&type=Building>;rel="next";type="application/json"'
    ]
    assert links(limit="1", offset="1") == [
        f'<{base}{q}&limit=1&offset=0&type=Building>;rel="prev";type="application/json"',
        f'<{base}{q}&limit=1&offset=2&type=Building>;rel="next";type="application/json"',
    ]
    last = f'<{base}{q}&limit=1&offset=1&type=Building>;rel="prev";type="application/json"'
    assert links(limit="1", offset="2") == [last]
    assert links(limit="2") == [f'<{base}{q}&limit=2&offset=2&type=Building>;rel="next";type="application/json"']
    assert links(limit="3") == []
    assert links(limit="0", count="true") == []
    # a q the SQL cannot answer alone: the scan still finds the entity past the page
    assert links(limit="2", q="h==1") == [
        f'<{base}{q}&limit=2&offset=2&q=h%3D%3D1&type=Building>;rel="next";type="application/json"'
    ]
    ld = {"Accept": "application/ld+json"}
    r = ngsi.get("/entities", params={"type": "Building", "idPattern": pattern, "limit": "2"}, headers=ld)
    assert r.headers["Link"] == f'<{base}{q}&limit=2&offset=2&type=Building>;rel="next";type="application/ld+json"'
    assert len(r.json()) == 2


# --------------------------------------------------------------------------- §4.21 projection depth


TWO_HOPS = "locatedAt{owner{name}}"
ELEVEN_HOPS = "a{a{a{a{a{a{a{a{a{a{a{name}}}}}}}}}}}"


@pytest.mark.parametrize(
    "params",
    [
        {"pick": TWO_HOPS, "join": "inline", "joinLevel": "1"},  # 019_33_01
        {"omit": TWO_HOPS, "join": "inline", "joinLevel": "1"},  # 019_33_02
        {"pick": TWO_HOPS},  # 019_33_03
        {"pick": ELEVEN_HOPS, "join": "inline", "joinLevel": "10"},  # 019_33_04
        {"omit": ELEVEN_HOPS, "join": "inline", "joinLevel": "10"},  # 019_33_05
        {"pick": TWO_HOPS, "join": "flat"},  # joinLevel defaults to 1
        {"pick": "a{" * 2000 + "name" + "}" * 2000, "join": "inline", "joinLevel": "100"},
    ],
)
def test_projection_deeper_than_join_level_is_bad_request(ngsi: Ngsi, params: dict[str, str]) -> None:
    """TP 019_33_01..05 (§4.21, §5.7.2.4): each ``{...}`` of a pick/omit is one Linked Entity hop, so a
    projection nested deeper than ``joinLevel`` (or without ``join``) is 400 BadRequestData with a title;
    the same on Retrieve Entity and on the Query of POST /entityOperations/query."""
    ngsi.create({"id": B + "019_33", "type": "Building", "name": prop("x"), "locatedAt": rel("urn:ngsi-ld:City:P")})
    for r in (
        ngsi.get("/entities", params={"type": "Building", **params}),
        ngsi.get(f"/entities/{B}019_33", params=params),
        ngsi.post(
            "/entityOperations/query",
            json={
                "type": "Query",
                "entities": [{"type": "Building"}],
                **{k: [v] if k in ("pick", "omit") else v for k, v in params.items()},
            },
        ),
    ):
        assert r.status_code == 400 and error(r) == "BadRequestData", r.text
        assert r.json()["title"]


def test_projection_as_deep_as_join_level_with_the_pipe_operator_is_answered(ngsi: Ngsi) -> None:
    """§4.21: ``|`` is the or-operator between terms as ``,`` is, and a projection of exactly
    ``joinLevel`` hops is accepted (the bound of 019_33 is inclusive)."""
    ngsi.create({"id": B + "019_33", "type": "Building", "name": prop("x"), "locatedAt": rel("urn:ngsi-ld:City:P")})
    params = {"pick": "id|" + TWO_HOPS, "join": "inline", "joinLevel": "2"}
    r = ngsi.get("/entities", params={"type": "Building", **params})
    assert r.status_code == 200 and r.json() == [{"id": B + "019_33", "locatedAt": rel("urn:ngsi-ld:City:P")}]
    body = {"type": "Query", "entities": [{"type": "Building"}], "pick": ["id|" + TWO_HOPS], "join": "inline"}
    r = ngsi.post("/entityOperations/query", json={**body, "joinLevel": 2})
    assert r.status_code == 200 and r.json() == [{"id": B + "019_33", "locatedAt": rel("urn:ngsi-ld:City:P")}]
