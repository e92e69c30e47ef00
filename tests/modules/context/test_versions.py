"""Backwards compatibility (ETSI GS CIM 009 v1.9.1 §4.3.6.8): ``Prefer: ngsi-ld=<major.minor>``.

The parser and the fallbacks of Table 4.3.6.8-1 on their own, then the API: Retrieve and Query
Entities (GET and POST), their temporal evolution, with the suite's @context hosted by the broker
for the ``Link`` header (TP 436_08). Both databases.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.routing import Match

from ioc.modules.context.errors import DirectRoute
from ioc.modules.context.versions import (
    BROKER_VERSION,
    NATIVE_FROM,
    amend_entity,
    amend_temporal,
    parse_preference,
)

from .conftest import LD, Ngsi, link_to

NS = "https://ngsi-ld-test-suite/context#"
TERMS = ("Building", "name", "vocabProperty", "jsonProperty", "listProperty", "listRelationship", "street")
CTX: dict[str, Any] = {t: NS + t for t in TERMS}
GEO = "application/geo+json"
B = "urn:ngsi-ld:Building:"

#: One attribute of each type Table 4.3.6.8-1 has a fallback for, as written and as read back.
VOCAB = {"type": "VocabProperty", "vocab": "stellio"}
JSON_ATTR = {"type": "JsonProperty", "json": {"floors": 3, "roof": {"kind": "flat"}}}
LIST = {"type": "ListProperty", "valueList": [1, "two", {"three": 3}]}
LIST_REL = {"type": "ListRelationship", "objectList": [{"object": B + "a"}, {"object": B + "b"}]}
LANG = {"type": "LanguageProperty", "languageMap": {"vi": "Tháp nước", "en": "Water tower"}}


# --------------------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        (["ngsi-ld=1.5"], "1.5"),
        (["return=minimal, ngsi-ld=1.5"], "1.5"),  # several preferences: the ngsi-ld one
        (["NGSI-LD=1.4"], "1.4"),  # names are case-insensitive (RFC 7240)
        (['ngsi-ld="1.3"'], "1.3"),  # a quoted value
        (["ngsi-ld=1.7;q=0.5"], "1.7"),  # with parameters
        (["ngsi-ld = 1.6"], "1.6"),  # BWS around "="
        (["respond-async", "body=json, ngsi-ld=1.2"], "1.2"),  # on another Prefer line
        (["ngsi-ld=1.9"], "1.9"),
        (["ngsi-ld=2.0"], "2.0"),
        (["ngsi-ld=1.0"], "1.0"),
    ],
)
def test_preference_is_found(headers: list[str], text: str) -> None:
    pref = parse_preference(headers)
    assert pref is not None
    assert pref.text == text and pref.token == f"ngsi-ld={text}"
    assert pref.version == tuple(int(x) for x in text.split("."))


@pytest.mark.parametrize(
    "headers",
    [
        [],
        ["respond-async"],
        ["body=json"],
        ["ngsi-ld"],  # no value
        ["ngsi-ld="],
        ["ngsi-ld=1"],  # not <major>.<minor>
        ["ngsi-ld=1.9.1"],
        ["ngsi-ld=v1.5"],
        ["ngsi-ld=1.x"],
        ["ngsi-ld=-1.5"],
        ["ngsi-ld=0.9"],  # before 1.0: nothing to fall back to
        ["ngsi-ld=junk, ngsi-ld=1.5"],  # RFC 7240 §2: only the first of a repeated preference counts
        ["ngsi-ld-extra=1.5"],
    ],
)
def test_preference_is_ignored(headers: list[str]) -> None:
    assert parse_preference(headers) is None


def test_versions_that_amend() -> None:
    assert BROKER_VERSION == (1, 9) and NATIVE_FROM == (1, 8)
    amends = {text: parse_preference([f"ngsi-ld={text}"]) for text in ("1.0", "1.3", "1.7", "1.8", "1.9", "2.0")}
    assert {text: pref.amends for text, pref in amends.items() if pref is not None} == {
        "1.0": True,
        "1.3": True,
        "1.7": True,
        "1.8": False,
        "1.9": False,
        "2.0": False,
    }


# --------------------------------------------------------------------------- the fallbacks


def every_type() -> dict[str, Any]:
    return {
        "id": B + "x",
        "type": "Building",
        "scope": "/Vinh/HungDung",
        "vocab": dict(VOCAB),
        "json": dict(JSON_ATTR),
        "list": dict(LIST),
        "rel": dict(LIST_REL),
        "lang": dict(LANG),
        "name": {"type": "Property", "value": "x", "source": {"type": "VocabProperty", "vocab": "survey"}},
    }


def test_each_fallback_of_table_4_3_6_8_1() -> None:
    entity = every_type()
    assert amend_entity(entity, (1, 3))
    assert entity == {
        "id": B + "x",
        "type": "Building",
        "scope": "/Vinh/HungDung",
        "vocab": {"type": "Property", "value": "stellio"},
        "json": {"type": "Property", "value": JSON_ATTR["json"]},
        "list": {"type": "Property", "value": LIST["valueList"]},
        "rel": {"type": "Relationship", "object": [B + "a", B + "b"]},
        "lang": {"type": "Property", "value": LANG["languageMap"]},
        "name": {"type": "Property", "value": "x", "source": {"type": "Property", "value": "survey"}},
    }


def test_a_type_is_amended_only_for_versions_before_it() -> None:
    entity = every_type()
    assert amend_entity(entity, (1, 5))  # LanguageProperty came with 1.4: kept
    assert entity["lang"] == LANG and entity["vocab"] == {"type": "Property", "value": "stellio"}
    for version in ((1, 8), (1, 9), (2, 0)):
        untouched = every_type()
        assert not amend_entity(untouched, version)
        assert untouched == every_type()


def test_instances_and_members_keep_their_place() -> None:
    entity = {
        "id": B + "x",
        "type": "Building",
        "vocab": [
            {"type": "VocabProperty", "vocab": "a", "observedAt": "2025-01-01T00:00:00Z"},
            {"type": "VocabProperty", "vocab": ["b", "c"], "datasetId": "urn:ngsi-ld:Dataset:2"},
        ],
    }
    assert amend_entity(entity, (1, 5))
    assert entity["vocab"] == [
        {"type": "Property", "value": "a", "observedAt": "2025-01-01T00:00:00Z"},
        {"type": "Property", "value": ["b", "c"], "datasetId": "urn:ngsi-ld:Dataset:2"},
    ]
    assert list(entity["vocab"][0]) == ["type", "value", "observedAt"]


def test_concise_members_and_plain_values() -> None:
    entity = {
        "id": B + "x",
        "type": "Building",
        "vocab": {"vocab": "stellio"},
        "json": {"json": {"a": 1}},
        "list": {"valueList": [1, 2]},
        "rel": {"objectList": [{"object": B + "a"}]},
        "lang": {"languageMap": {"vi": "Cầu"}},
        "plain": 3,
        "object": {"value": {"vocab": "not an attribute"}},  # a JSON value is never amended
        "name": {"value": "x", "source": {"vocab": "survey"}},
    }
    assert amend_entity(entity, (1, 3))
    assert entity == {
        "id": B + "x",
        "type": "Building",
        "vocab": {"value": "stellio"},
        "json": {"value": {"a": 1}},
        "list": {"value": [1, 2]},
        "rel": {"object": [B + "a"]},
        "lang": {"value": {"vi": "Cầu"}},
        "plain": 3,
        "object": {"value": {"vocab": "not an attribute"}},
        "name": {"value": "x", "source": {"value": "survey"}},
    }


def test_linked_entities_inline_are_amended() -> None:
    entity = {
        "id": B + "x",
        "type": "Building",
        "owner": {
            "type": "Relationship",
            "object": B + "y",
            "entity": {"id": B + "y", "type": "Building", "v": dict(VOCAB)},
        },
    }
    assert amend_entity(entity, (1, 5))
    assert entity["owner"]["entity"]["v"] == {"type": "Property", "value": "stellio"}


def test_temporal_text_is_amended() -> None:
    normalized = (
        '{"id":"urn:ngsi-ld:Building:x","type":"Building","vocab":[{"type":"VocabProperty","vocab":"a",'
        '"instanceId":"urn:ngsi-ld:i:1"}],"speed":[{"type":"Property","value":1,"instanceId":"urn:ngsi-ld:i:2"}]}'
    )
    bodies, altered = amend_temporal([normalized], parse_preference(["ngsi-ld=1.5"]), "normalized")
    assert altered
    assert '"vocab":[{"type":"Property","value":"a","instanceId":"urn:ngsi-ld:i:1"}]' in bodies[0]
    plain = '{"id":"urn:ngsi-ld:Building:x","type":"Building"}'
    assert amend_temporal([plain], parse_preference(["ngsi-ld=1.5"]), "normalized") == ([plain], False)
    assert amend_temporal([normalized], parse_preference(["ngsi-ld=1.9"]), "normalized") == ([normalized], False)
    assert amend_temporal([normalized], None, "normalized") == ([normalized], False)


# --------------------------------------------------------------------------- the API


def link(ngsi: Ngsi) -> str:
    """A Link header naming the suite's @context, hosted by the broker."""
    return link_to(ngsi.host(CTX))


def building(ngsi: Ngsi, **attrs: Any) -> str:
    """A Building with a random id (as the suite's ``Generate Random Building Entity Id``)."""
    eid = f"{B}{uuid.uuid4().hex[:12]}"
    r = ngsi.post(
        "/entities", json={"id": eid, "type": "Building", **attrs, "@context": CTX}, headers={"Content-Type": LD}
    )
    assert r.status_code == 201, r.text
    return eid


def test_436_08_01(ngsi: Ngsi) -> None:
    """TP 436_08_01: VocabProperty came with 1.8; preferring 1.5 gives it as a Property, with
    Preference-Applied and 203 for the altered payload."""
    eid = building(ngsi, vocabProperty={"type": "VocabProperty", "vocab": "stellio"})
    r = ngsi.get(f"/entities/{eid}", headers={"Link": link(ngsi), "Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 203
    assert r.headers.get("Preference-Applied") == "ngsi-ld=1.5"
    assert r.json()["vocabProperty"]["type"] == "Property"
    assert r.json()["vocabProperty"] == {"type": "Property", "value": "stellio"}


def test_436_08_02(ngsi: Ngsi) -> None:
    """TP 436_08_02: preferring the native version leaves the payload untouched (200), with
    Preference-Applied confirming the version."""
    eid = building(ngsi, vocabProperty={"type": "VocabProperty", "vocab": "stellio"})
    r = ngsi.get(f"/entities/{eid}", headers={"Link": link(ngsi), "Prefer": "ngsi-ld=1.9"})
    assert r.status_code == 200
    assert r.headers.get("Preference-Applied") == "ngsi-ld=1.9"
    assert r.json()["vocabProperty"]["type"] == "VocabProperty"
    assert r.json()["vocabProperty"] == {"type": "VocabProperty", "vocab": "stellio"}


def api_entity() -> dict[str, Any]:
    return {
        "vocabProperty": VOCAB,
        "jsonProperty": JSON_ATTR,
        "listProperty": LIST,
        "listRelationship": LIST_REL,
        "name": {**LANG, "street": {"type": "VocabProperty", "vocab": "Building"}},
    }


def test_retrieve_each_fallback(ngsi: Ngsi) -> None:
    """Table 4.3.6.8-1 through Retrieve Entity: a vocab shown compacted, as it is rendered; a
    sub-attribute amended too; 1.5 keeps the LanguageProperty (1.4), 1.3 does not."""
    eid = building(ngsi, **api_entity())
    lk = link(ngsi)
    r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Prefer": "ngsi-ld=1.3"})
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.3"
    assert r.json() == {
        "id": eid,
        "type": "Building",
        "vocabProperty": {"type": "Property", "value": "stellio"},
        "jsonProperty": {"type": "Property", "value": JSON_ATTR["json"]},
        "listProperty": {"type": "Property", "value": LIST["valueList"]},
        "listRelationship": {"type": "Relationship", "object": [B + "a", B + "b"]},
        "name": {"type": "Property", "value": LANG["languageMap"], "street": {"type": "Property", "value": "Building"}},
    }
    r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 203
    assert r.json()["name"] == {**LANG, "street": {"type": "Property", "value": "Building"}}
    r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Prefer": "ngsi-ld=1.8"})
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "ngsi-ld=1.8"
    assert r.json() == ngsi.get(f"/entities/{eid}", headers={"Link": lk}).json()


def test_retrieve_concise_and_key_values(ngsi: Ngsi) -> None:
    """concise: the member of the type becomes value/object; keyValues is left as it is (200)."""
    eid = building(ngsi, **api_entity())
    lk = link(ngsi)
    r = ngsi.get(f"/entities/{eid}", params={"format": "concise"}, headers={"Link": lk, "Prefer": "ngsi-ld=1.3"})
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.3"
    assert r.json() == {
        "id": eid,
        "type": "Building",
        "vocabProperty": {"value": "stellio"},
        "jsonProperty": {"value": JSON_ATTR["json"]},
        "listProperty": {"value": LIST["valueList"]},
        "listRelationship": {"object": [B + "a", B + "b"]},
        "name": {"value": LANG["languageMap"], "street": {"value": "Building"}},
    }
    plain = ngsi.get(f"/entities/{eid}", params={"options": "keyValues"}, headers={"Link": lk})
    r = ngsi.get(f"/entities/{eid}", params={"options": "keyValues"}, headers={"Link": lk, "Prefer": "ngsi-ld=1.3"})
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "ngsi-ld=1.3"
    assert r.json() == plain.json()


def test_retrieve_geojson_and_json_ld(ngsi: Ngsi) -> None:
    """The Feature's properties and a JSON-LD body are the amended entity."""
    eid = building(ngsi, vocabProperty=VOCAB)
    lk = link(ngsi)
    r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Accept": GEO, "Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert r.json()["properties"]["vocabProperty"] == {"type": "Property", "value": "stellio"}
    r = ngsi.get(f"/entities/{eid}", headers={"Accept": LD, "Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 203
    assert r.json()[NS + "vocabProperty"] == {"type": "Property", "value": "stellio"}  # the core @context
    assert "@context" in r.json()


def test_query_entities_with_a_mix(ngsi: Ngsi) -> None:
    """Query Entities (GET and POST): 203 when one of the entities was amended, 200 when none
    needed it; Preference-Applied either way; the count and page links are kept."""
    lk = link(ngsi)
    plain = building(ngsi, name={"type": "Property", "value": "plain"})
    vocab = building(ngsi, vocabProperty=VOCAB, name={"type": "Property", "value": "vocab"})
    headers = {"Link": lk, "Prefer": "ngsi-ld=1.5"}
    r = ngsi.get("/entities", params={"type": "Building", "count": "true", "limit": 1}, headers=headers)
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert [e["id"] for e in r.json()] == [plain]  # the first page needs no amending
    assert r.headers["NGSILD-Results-Count"] == "2" and 'rel="next"' in r.headers["Link"]
    r = ngsi.get("/entities", params={"type": "Building"}, headers=headers)
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    by_id = {e["id"]: e for e in r.json()}
    assert by_id[plain]["name"] == {"type": "Property", "value": "plain"}
    assert by_id[vocab]["vocabProperty"] == {"type": "Property", "value": "stellio"}
    body = {"type": "Query", "entities": [{"type": "Building"}]}
    r = ngsi.post("/entityOperations/query", json=body, headers=headers)
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert {e["id"]: e for e in r.json()}[vocab]["vocabProperty"] == {"type": "Property", "value": "stellio"}
    r = ngsi.post("/entityOperations/query", json=body, headers={**headers, "Accept": GEO})
    assert r.status_code == 203
    features = {f["id"]: f for f in r.json()["features"]}
    assert features[vocab]["properties"]["vocabProperty"] == {"type": "Property", "value": "stellio"}
    r = ngsi.get("/entities", params={"type": "Building", "options": "concise"}, headers=headers)
    assert r.status_code == 203
    assert {e["id"]: e for e in r.json()}[vocab]["vocabProperty"] == {"value": "stellio"}


def test_linked_entity_inline(ngsi: Ngsi) -> None:
    """A Linked Entity retrieved inline (join=inline, §4.5.23) is Entity data too."""
    lk = link(ngsi)
    target = building(ngsi, vocabProperty=VOCAB)
    eid = building(ngsi, street={"type": "Relationship", "object": target})
    r = ngsi.get(f"/entities/{eid}", params={"join": "inline"}, headers={"Link": lk, "Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 203
    assert r.json()["street"]["entity"]["vocabProperty"] == {"type": "Property", "value": "stellio"}


def test_several_preferences(ngsi: Ngsi) -> None:
    """``Prefer`` with several preferences, on one line or two: the ngsi-ld one is honoured."""
    eid = building(ngsi, vocabProperty=VOCAB)
    lk = link(ngsi)
    for prefer in ("return=minimal, ngsi-ld=1.5", 'respond-async, NGSI-LD="1.5";q=0.5'):
        r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Prefer": prefer})
        assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5", prefer
        assert r.json()["vocabProperty"]["type"] == "Property"
    r = ngsi.client.get(
        f"/ngsi-ld/v1/entities/{eid}",
        headers=[*ngsi.auth.items(), ("Link", lk), ("Prefer", "return=minimal"), ("Prefer", "ngsi-ld=1.5")],
    )
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"


@pytest.mark.parametrize(
    "prefer", ["ngsi-ld=1.x", "ngsi-ld=1", "ngsi-ld=1.9.1", "ngsi-ld=0.9", "ngsi-ld=", "body=json"]
)
def test_a_preference_not_honoured_changes_nothing(ngsi: Ngsi, prefer: str) -> None:
    """A version that is not <major>.<minor>, or before 1.0: no Preference-Applied, the payload as it is."""
    eid = building(ngsi, vocabProperty=VOCAB)
    lk = link(ngsi)
    r = ngsi.get(f"/entities/{eid}", headers={"Link": lk, "Prefer": prefer})
    assert r.status_code == 200 and "Preference-Applied" not in r.headers
    assert r.json()["vocabProperty"] == VOCAB
    r = ngsi.get("/entities", params={"type": "Building"}, headers={"Link": lk, "Prefer": prefer})
    assert r.status_code == 200 and "Preference-Applied" not in r.headers


def test_without_prefer_nothing_changes(ngsi: Ngsi) -> None:
    """No Prefer: the native payload, 200, no Preference-Applied (the direct route of Retrieve
    Entity, with and without a Link header)."""
    eid = building(ngsi, vocabProperty=VOCAB)
    for headers in ({"Link": link(ngsi)}, {}):
        r = ngsi.get(f"/entities/{eid}", headers=headers)
        assert r.status_code == 200 and "Preference-Applied" not in r.headers
        assert r.json()[next(k for k in r.json() if k.endswith("vocabProperty"))]["type"] == "VocabProperty"
    r = ngsi.get("/entities", params={"type": "Building"}, headers={"Link": link(ngsi)})
    assert r.status_code == 200 and "Preference-Applied" not in r.headers


def test_retrieve_entity_is_honoured_on_its_direct_route(ngsi: Ngsi) -> None:
    """Retrieve Entity is answered by its DirectRoute (errors.direct_routes), which reads the
    request itself: the preference is read there, on the event loop (no Link) or in a thread."""
    scope = {"type": "http", "method": "GET", "path": f"/ngsi-ld/v1/entities/{B}x", "root_path": ""}
    first = next(r for r in ngsi.client.app.router.routes if r.matches(scope)[0] == Match.FULL)
    assert isinstance(first, DirectRoute) and first.name == "retrieve_entity"
    eid = building(ngsi, vocabProperty=VOCAB)
    for headers in ({}, {"Link": link(ngsi)}):
        r = ngsi.get(f"/entities/{eid}", headers={**headers, "Prefer": "ngsi-ld=1.7"})
        assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.7"


def test_errors_are_not_amended(ngsi: Ngsi) -> None:
    """An error stays an error: its status, no Preference-Applied."""
    r = ngsi.get(f"/entities/{B}missing", headers={"Prefer": "ngsi-ld=1.5"})
    assert r.status_code == 404 and "Preference-Applied" not in r.headers


def test_temporal_evolution(ngsi: Ngsi) -> None:
    """Retrieve and Query Temporal Evolution: instances (normalized, concise) and the simplified
    form (temporalValues: vocabs → values, the wrapping object of §4.5.9 removed)."""
    lk = link(ngsi)
    eid = building(ngsi, vocabProperty={**VOCAB, "observedAt": "2025-01-01T00:00:00Z"})
    r = ngsi.patch(
        f"/entities/{eid}/attrs",
        json={"vocabProperty": {"type": "VocabProperty", "vocab": "orion", "observedAt": "2025-01-02T00:00:00Z"}},
        headers={"Link": lk},
    )
    assert r.status_code == 204, r.text
    headers = {"Link": lk, "Prefer": "ngsi-ld=1.5"}
    r = ngsi.get(f"/temporal/entities/{eid}", headers=headers)
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    instances = r.json()["vocabProperty"]
    assert [(i["type"], i["value"]) for i in instances] == [("Property", "stellio"), ("Property", "orion")]
    assert all("vocab" not in i and "instanceId" in i for i in instances)
    r = ngsi.get(f"/temporal/entities/{eid}", params={"options": "concise"}, headers=headers)
    assert r.status_code == 203 and [i["value"] for i in r.json()["vocabProperty"]] == ["stellio", "orion"]
    r = ngsi.get(f"/temporal/entities/{eid}", params={"options": "temporalValues"}, headers=headers)
    assert r.status_code == 203
    assert r.json()["vocabProperty"] == {
        "type": "Property",
        "values": [["stellio", "2025-01-01T00:00:00Z"], ["orion", "2025-01-02T00:00:00Z"]],
    }
    r = ngsi.get("/temporal/entities", params={"type": "Building"}, headers=headers)
    assert r.status_code == 203 and r.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert r.json()[0]["vocabProperty"][0]["type"] == "Property"
    r = ngsi.get(f"/temporal/entities/{eid}", headers={"Link": lk, "Prefer": "ngsi-ld=1.9"})
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "ngsi-ld=1.9"
    assert r.json()["vocabProperty"][0]["type"] == "VocabProperty"
    r = ngsi.get(f"/temporal/entities/{eid}", headers={"Link": lk})
    assert r.status_code == 200 and "Preference-Applied" not in r.headers
