"""Linked Entity Retrieval (ETSI GS CIM 009 v1.8 §4.5.23: join, joinLevel, containedBy), Linked Entity
projections of pick/omit (§4.21) and Linked Entity q (§4.9, ``rel{attr}``). Both databases.

The expected bodies are those of the ETSI suite's test purposes named in each test (018_10 …
018_21, 019_13 … 019_24), with the suite's entities rebuilt on the core @context.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import test_subscriptions as subs
from .conftest import Ngsi
from .test_subscriptions import Listener, create_sub

# the fixtures of test_subscriptions: fast delivery settings, this module only, a real HTTP listener
_fast_delivery = subs._fast_delivery
settings = subs.settings
listener = subs.listener

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
B = "urn:ngsi-ld:Building:"
PARIS = "urn:ngsi-ld:City:Paris"
FRANCE = "urn:ngsi-ld:Country:France"


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def get(ngsi: Ngsi, path: str, **params: Any) -> Any:
    r = ngsi.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def error(r: Any) -> str:
    return str(r.json()["type"]).removeprefix(ERR)


def building(ngsi: Ngsi, n: str, city: str = PARIS, **attrs: Any) -> str:
    eid = B + n
    ngsi.create({"id": eid, "type": "Building", "locatedAt": rel(city), **attrs})
    return eid


def paris_and_france(ngsi: Ngsi) -> None:
    """The suite's city-simple-attributes and country-simple-attributes."""
    ngsi.create(
        {
            "id": PARIS,
            "type": "City",
            "name": prop("Paris"),
            "description": prop("Paris is the capital and largest city of France"),
            "isInCountry": rel(FRANCE),
        }
    )
    ngsi.create(
        {
            "id": FRANCE,
            "type": "Country",
            "name": prop("France"),
            "description": prop("France is an European country"),
        }
    )


# --------------------------------------------------------------------------- one and two levels


def test_retrieve_one_level_inline_and_flat(ngsi: Ngsi) -> None:
    """TP 018_10: normalized and keyValues, inline and flat (the answer becomes an array)."""
    eid = building(ngsi, "018-10")
    ngsi.create({"id": PARIS, "type": "City"})
    path = f"/entities/{eid}"
    city = {"id": PARIS, "type": "City"}
    assert get(ngsi, path, join="inline", joinLevel="1") == {
        "id": eid,
        "type": "Building",
        "locatedAt": {"type": "Relationship", "object": PARIS, "entity": city},
    }
    assert get(ngsi, path, join="flat", joinLevel="1") == [
        {"id": eid, "type": "Building", "locatedAt": rel(PARIS)},
        city,
    ]
    assert get(ngsi, path, join="inline", options="keyValues") == {"id": eid, "type": "Building", "locatedAt": city}
    assert get(ngsi, path, join="flat", options="keyValues") == [
        {"id": eid, "type": "Building", "locatedAt": PARIS},
        city,
    ]
    assert get(ngsi, path, join="inline", format="concise")["locatedAt"] == {"object": PARIS, "entity": city}
    # join=@none (and no join at all) leaves the Relationship as it is
    assert get(ngsi, path, join="@none")["locatedAt"] == rel(PARIS)


def test_retrieve_two_levels(ngsi: Ngsi) -> None:
    """TP 018_13: joinLevel=2 follows the City's Relationship too; joinLevel=1 stops at the City."""
    eid = building(ngsi, "018-13")
    ngsi.create({"id": PARIS, "type": "City", "locatedAt": rel(FRANCE)})
    ngsi.create({"id": FRANCE, "type": "Country"})
    path = f"/entities/{eid}"
    france = {"id": FRANCE, "type": "Country"}
    paris = {"id": PARIS, "type": "City", "locatedAt": {**rel(FRANCE), "entity": france}}
    assert get(ngsi, path, join="inline", joinLevel="2") == {
        "id": eid,
        "type": "Building",
        "locatedAt": {**rel(PARIS), "entity": paris},
    }
    assert get(ngsi, path, join="flat", joinLevel="2") == [
        {"id": eid, "type": "Building", "locatedAt": rel(PARIS)},
        {"id": PARIS, "type": "City", "locatedAt": rel(FRANCE)},
        france,
    ]
    assert get(ngsi, path, join="inline", joinLevel="2", options="keyValues") == {
        "id": eid,
        "type": "Building",
        "locatedAt": {"id": PARIS, "type": "City", "locatedAt": france},
    }
    assert get(ngsi, path, join="flat", joinLevel="2", options="keyValues") == [
        {"id": eid, "type": "Building", "locatedAt": PARIS},
        {"id": PARIS, "type": "City", "locatedAt": FRANCE},
        france,
    ]
    one_level = get(ngsi, path, join="inline")["locatedAt"]["entity"]
    assert one_level == {"id": PARIS, "type": "City", "locatedAt": rel(FRANCE)}
    assert [e["id"] for e in get(ngsi, path, join="flat", joinLevel="1")] == [eid, PARIS]


def test_missing_target_is_left_as_it_is(ngsi: Ngsi) -> None:
    """TP 018_14: a Relationship to an entity that does not exist; flat stays a single entity."""
    eid = building(ngsi, "018-14")
    expected = {"id": eid, "type": "Building", "locatedAt": rel(PARIS)}
    for join in ("inline", "flat"):
        assert get(ngsi, f"/entities/{eid}", join=join, joinLevel="1") == expected
    assert get(ngsi, f"/entities/{eid}", join="inline", options="keyValues")["locatedAt"] == PARIS


def test_query_inline_and_flat(ngsi: Ngsi) -> None:
    """TPs 019_13 and 019_16 (and 019_24 through POST /entityOperations/query): linking entities
    first, then Linked Entities level by level, each once."""
    for n in ("1", "2"):
        building(ngsi, f"019-16-{n}", f"urn:ngsi-ld:City:019-16-{n}")
        ngsi.create(
            {"id": f"urn:ngsi-ld:City:019-16-{n}", "type": "City", "locatedAt": rel(f"urn:ngsi-ld:Country:019-16-{n}")}
        )
        ngsi.create({"id": f"urn:ngsi-ld:Country:019-16-{n}", "type": "Country"})
    flat = get(ngsi, "/entities", type="Building", join="flat", joinLevel="2")
    assert [e["id"] for e in flat] == [
        B + "019-16-1",
        B + "019-16-2",
        "urn:ngsi-ld:City:019-16-1",
        "urn:ngsi-ld:City:019-16-2",
        "urn:ngsi-ld:Country:019-16-1",
        "urn:ngsi-ld:Country:019-16-2",
    ]
    assert flat[2] == {
        "id": "urn:ngsi-ld:City:019-16-1",
        "type": "City",
        "locatedAt": rel("urn:ngsi-ld:Country:019-16-1"),
    }
    inline = get(ngsi, "/entities", type="Building", join="inline", joinLevel="2", options="keyValues")
    assert inline == [
        {
            "id": B + f"019-16-{n}",
            "type": "Building",
            "locatedAt": {
                "id": f"urn:ngsi-ld:City:019-16-{n}",
                "type": "City",
                "locatedAt": {"id": f"urn:ngsi-ld:Country:019-16-{n}", "type": "Country"},
            },
        }
        for n in ("1", "2")
    ]
    # the count is of the matching entities, not of the Linked Entities
    r = ngsi.get("/entities", params={"type": "Building", "join": "flat", "count": "true", "limit": "1"})
    assert r.headers["NGSILD-Results-Count"] == "2" and [e["id"] for e in r.json()] == [
        B + "019-16-1",
        "urn:ngsi-ld:City:019-16-1",
    ]
    query = {"type": "Query", "entities": [{"type": "Building"}], "join": "inline"}
    r = ngsi.post("/entityOperations/query", json=query, params={"options": "keyValues"})
    assert r.status_code == 200, r.text
    assert [e["locatedAt"] for e in r.json()] == [
        {"id": f"urn:ngsi-ld:City:019-16-{n}", "type": "City", "locatedAt": f"urn:ngsi-ld:Country:019-16-{n}"}
        for n in ("1", "2")
    ]
    r = ngsi.post("/entityOperations/query", json={**query, "join": "flat", "joinLevel": 2})
    assert [e["id"] for e in r.json()] == [e["id"] for e in flat]
    assert ngsi.post("/entityOperations/query", json={**query, "joinLevel": 0}).status_code == 400


def test_shared_target_is_inlined_under_each_relationship(ngsi: Ngsi) -> None:
    """Two Buildings, and two Relationships of one Building, that name the same City: inline puts the
    City in each of them; flat lists it once."""
    ngsi.create({"id": PARIS, "type": "City", "name": prop("Paris")})
    building(ngsi, "s1", PARIS, owner=rel(PARIS))
    building(ngsi, "s2", PARIS)
    city = {"id": PARIS, "type": "City", "name": "Paris"}
    inline = get(ngsi, "/entities", type="Building", join="inline", options="keyValues")
    assert inline == [
        {"id": B + "s1", "type": "Building", "locatedAt": city, "owner": city},
        {"id": B + "s2", "type": "Building", "locatedAt": city},
    ]
    assert [e["id"] for e in get(ngsi, "/entities", type="Building", join="flat")] == [B + "s1", B + "s2", PARIS]


def test_sys_attrs_and_geojson(ngsi: Ngsi) -> None:
    """TPs 019_14/019_15: sysAttrs reach Linked Entities; GeoJSON: flat adds Features, inline sits in
    the properties."""
    building(ngsi, "g1", location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.6, 18.6]}})
    ngsi.create(
        {
            "id": PARIS,
            "type": "City",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.35, 48.85]}},
        }
    )
    inline = get(ngsi, "/entities", type="Building", join="inline", options="sysAttrs")
    assert {"createdAt", "modifiedAt"} <= set(inline[0]["locatedAt"]["entity"])
    flat = get(ngsi, "/entities", type="Building", join="flat", options="sysAttrs")
    assert all("createdAt" in e for e in flat) and len(flat) == 2
    geo = {"Accept": "application/geo+json"}
    r = ngsi.get(f"/entities/{B}g1", params={"join": "flat"}, headers=geo)
    assert r.status_code == 200
    features = r.json()["features"]
    assert [(f["id"], f["geometry"]["coordinates"]) for f in features] == [
        (B + "g1", [105.6, 18.6]),
        (PARIS, [2.35, 48.85]),
    ]
    feature = ngsi.get(f"/entities/{B}g1", params={"join": "inline", "options": "keyValues"}, headers=geo).json()
    assert feature["type"] == "Feature"
    assert feature["properties"]["locatedAt"]["location"] == {"type": "Point", "coordinates": [2.35, 48.85]}


# --------------------------------------------------------------------------- list relationships, datasets, cycles


def test_list_relationship_and_datasets(ngsi: Ngsi) -> None:
    """A ListRelationship gets ``entityList`` (the ids found, in order); in keyValues each found id is
    replaced by its entity. Each datasetId instance of a Relationship gets its own target."""
    for n in ("1", "2"):
        ngsi.create({"id": f"urn:ngsi-ld:City:c{n}", "type": "City"})
    eid = B + "l1"
    ngsi.create(
        {
            "id": eid,
            "type": "Building",
            "near": {
                "type": "ListRelationship",
                "objectList": [
                    {"object": "urn:ngsi-ld:City:c2"},
                    {"object": "urn:ngsi-ld:City:gone"},
                    {"object": "urn:ngsi-ld:City:c1"},
                ],
            },
            "locatedAt": [rel("urn:ngsi-ld:City:c1"), {**rel("urn:ngsi-ld:City:c2"), "datasetId": "urn:ngsi-ld:ds:2"}],
        }
    )
    c1, c2 = ({"id": f"urn:ngsi-ld:City:c{n}", "type": "City"} for n in ("1", "2"))
    body = get(ngsi, f"/entities/{eid}", join="inline")
    assert body["near"]["entityList"] == [c2, c1]
    assert body["locatedAt"] == [
        {**rel("urn:ngsi-ld:City:c1"), "entity": c1},
        {**rel("urn:ngsi-ld:City:c2"), "datasetId": "urn:ngsi-ld:ds:2", "entity": c2},
    ]
    kv = get(ngsi, f"/entities/{eid}", join="inline", options="keyValues")
    assert kv["near"] == [c2, "urn:ngsi-ld:City:gone", c1]
    assert kv["locatedAt"] == {"dataset": {"@none": c1, "urn:ngsi-ld:ds:2": c2}}
    # flat: by attribute name, then datasetId, each entity once
    assert [e["id"] for e in get(ngsi, f"/entities/{eid}", join="flat")] == [
        eid,
        "urn:ngsi-ld:City:c1",
        "urn:ngsi-ld:City:c2",
    ]


def test_cycles_end(ngsi: Ngsi) -> None:
    """A → B → A: an entity is never inlined inside itself, flat lists each entity once, whatever
    joinLevel; containedBy names entities that are not retrieved."""
    a, b = "urn:ngsi-ld:Thing:A", "urn:ngsi-ld:Thing:B"
    ngsi.create({"id": a, "type": "Thing", "next": rel(b)})
    ngsi.create({"id": b, "type": "Thing", "next": rel(a), "self": rel(b)})
    assert get(ngsi, f"/entities/{a}", join="inline", joinLevel="50") == {
        "id": a,
        "type": "Thing",
        "next": {**rel(b), "entity": {"id": b, "type": "Thing", "next": rel(a), "self": rel(b)}},
    }
    assert [e["id"] for e in get(ngsi, f"/entities/{a}", join="flat", joinLevel="50")] == [a, b]
    assert get(ngsi, f"/entities/{a}", join="inline", containedBy=b)["next"] == rel(b)
    # both are matches of the query: each gets the other inlined
    both = get(ngsi, "/entities", type="Thing", join="inline", joinLevel="3", options="keyValues")
    assert both == [
        {"id": a, "type": "Thing", "next": {"id": b, "type": "Thing", "next": a, "self": b}},
        {"id": b, "type": "Thing", "next": {"id": a, "type": "Thing", "next": b}, "self": b},
    ]
    assert [e["id"] for e in get(ngsi, "/entities", type="Thing", join="flat", joinLevel="3")] == [a, b]


def test_other_tenants_and_unreadable_types_do_not_leak(ngsi: Ngsi, client: Any) -> None:
    """A Relationship to an id that only exists in another tenant is left as it is; an anonymous
    reader of a public type does not see Linked Entities of other types."""
    ngsi.create({"id": PARIS, "type": "City", "name": prop("Paris")})
    t = {"NGSILD-Tenant": "other"}
    assert (
        ngsi.post(
            "/entities", json={"id": B + "t1", "type": "Building", "locatedAt": rel(PARIS)}, headers=t
        ).status_code
        == 201
    )
    for join in ("inline", "flat"):
        r = ngsi.get(f"/entities/{B}t1", params={"join": join}, headers=t)
        assert r.json() == {"id": B + "t1", "type": "Building", "locatedAt": rel(PARIS)}
    r = ngsi.get("/entities", params={"type": "Building", "q": 'locatedAt{name}=="Paris"', "join": "inline"}, headers=t)
    assert r.json() == []
    # and in the default tenant the same Relationship finds Paris
    building(ngsi, "t1")
    assert get(ngsi, f"/entities/{B}t1", join="inline")["locatedAt"]["entity"]["name"] == prop("Paris")


def test_anonymous_reader_sees_public_linked_entities_only(
    ngsi: Ngsi, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from ioc.app import create_app

    building(ngsi, "p1")
    ngsi.create({"id": PARIS, "type": "City", "name": prop("Paris")})
    monkeypatch.setenv("IOC_NGSILD_PUBLIC_TYPES", '["Building"]')
    with TestClient(create_app(settings)) as anon:
        url = f"/ngsi-ld/v1/entities/{B}p1"
        assert anon.get(url, params={"join": "inline"}).json()["locatedAt"] == rel(PARIS)
        assert anon.get(url, params={"join": "flat"}).json() == {
            "id": B + "p1",
            "type": "Building",
            "locatedAt": rel(PARIS),
        }
        q = {"type": "Building", "q": 'locatedAt{name}=="Paris"', "join": "inline"}
        assert anon.get("/ngsi-ld/v1/entities", params=q).json() == []
    monkeypatch.setenv("IOC_NGSILD_PUBLIC_TYPES", '["Building", "City"]')
    with TestClient(create_app(settings)) as anon:
        entity = anon.get(f"/ngsi-ld/v1/entities/{B}p1", params={"join": "inline"}).json()["locatedAt"]["entity"]
        assert entity["id"] == PARIS


# --------------------------------------------------------------------------- pick and omit (§4.21)


def test_pick_and_omit_on_linked_entities(ngsi: Ngsi) -> None:
    """TPs 018_20 and 018_21: braces project the Linked Entity; a Relationship that the projection
    drops is not followed; members without braces only project their own level."""
    eid = building(ngsi, "018-20")
    paris_and_france(ngsi)
    path = f"/entities/{eid}"
    name = prop("Paris")
    picked = get(ngsi, path, join="inline", joinLevel="2", pick="id,locatedAt{id,name}")
    assert picked == {"id": eid, "locatedAt": {**rel(PARIS), "entity": {"id": PARIS, "name": name}}}
    flat = get(ngsi, path, join="flat", joinLevel="2", pick="id,locatedAt{id,name}")
    assert flat == [{"id": eid, "locatedAt": rel(PARIS)}, {"id": PARIS, "name": name}]
    deep = "id,locatedAt{id,name,isInCountry{id,description}}"
    france = {"id": FRANCE, "description": prop("France is an European country")}
    assert get(ngsi, path, join="inline", joinLevel="2", pick=deep) == {
        "id": eid,
        "locatedAt": {
            **rel(PARIS),
            "entity": {"id": PARIS, "name": name, "isInCountry": {**rel(FRANCE), "entity": france}},
        },
    }
    assert get(ngsi, path, join="flat", joinLevel="2", pick=deep) == [
        {"id": eid, "locatedAt": rel(PARIS)},
        {"id": PARIS, "name": name, "isInCountry": rel(FRANCE)},
        france,
    ]
    omitted = get(ngsi, path, join="flat", joinLevel="2", omit="type,locatedAt{name,isInCountry{description}}")
    assert omitted == [
        {"id": eid, "locatedAt": rel(PARIS)},
        {
            "id": PARIS,
            "type": "City",
            "description": prop("Paris is the capital and largest city of France"),
            "isInCountry": rel(FRANCE),
        },
        {"id": FRANCE, "type": "Country", "name": prop("France")},
    ]
    # without braces the Linked Entity is whole (019_21_01); a picked-out Relationship is not followed (019_20_01)
    whole = get(ngsi, path, join="inline", omit="type")["locatedAt"]["entity"]
    assert set(whole) == {"id", "type", "name", "description", "isInCountry"}
    assert get(ngsi, path, join="flat", pick="id") == {"id": eid}


@pytest.mark.parametrize(
    "params",
    [
        {"pick": "id;name", "join": "inline"},  # 018_18_04
        {"pick": "id,locatedAt{name", "join": "inline"},  # 018_18_05
        {"pick": "id,locatedAt{{name}", "join": "inline"},  # 018_18_06
        {"pick": "id,,name", "join": "inline"},  # 018_18_07
        {"pick": "id,locatedAt{,name}", "join": "inline"},  # 018_18_08
        {"pick": "id,locatedAt{}", "join": "inline"},  # 018_18_09
        {"pick": "id,locatedAt{name}}", "join": "inline"},
        {"omit": "locatedAt{name}"},  # braces without join
        {"join": "deep"},
        {"join": "inline", "joinLevel": "0"},
        {"join": "inline", "joinLevel": "two"},
        {"join": "inline", "joinLevel": "101"},
        {"join": "inline", "containedBy": "not a uri"},
        {"pick": "id", "attrs": "name"},  # 018_18_02
        {"omit": "name", "attrs": "name"},  # 018_18_03
    ],
)
def test_invalid_parameters(ngsi: Ngsi, params: dict[str, str]) -> None:
    eid = building(ngsi, "bad")
    for path, extra in ((f"/entities/{eid}", {}), ("/entities", {"type": "Building"})):
        r = ngsi.get(path, params={**params, **extra})
        assert r.status_code == 400 and error(r) == "BadRequestData", r.text


# --------------------------------------------------------------------------- Linked Entity q (§4.9)


def test_linked_entity_q(ngsi: Ngsi) -> None:
    """``rel{attr}``: an entity matches when an entity its Relationship targets matches; deeper with
    joinLevel; needs a join at least as deep as the q (§5.7.2.4)."""
    paris_and_france(ngsi)
    ngsi.create({"id": "urn:ngsi-ld:City:Hanoi", "type": "City", "name": prop("Hà Nội"), "population": prop(8)})
    building(ngsi, "q1", PARIS)
    building(ngsi, "q2", "urn:ngsi-ld:City:Hanoi")
    building(ngsi, "q3", "urn:ngsi-ld:City:nowhere")
    ngsi.create(
        {
            "id": B + "q4",
            "type": "Building",
            "near": {"type": "ListRelationship", "objectList": [{"object": "urn:ngsi-ld:City:Hanoi"}]},
        }
    )

    def ids(q: str, join: str = "flat", level: str = "1", **more: str) -> list[str]:
        params = {"type": "Building", "q": q, "join": join, "joinLevel": level, **more}
        r = ngsi.get("/entities", params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json() if e["type"] == "Building"]

    assert ids('locatedAt{name}=="Paris"') == [B + "q1"]
    assert ids('locatedAt{name}=="Paris"', join="inline") == [B + "q1"]
    assert ids("locatedAt{population}>5") == [B + "q2"]
    assert ids('locatedAt{name}!="Paris"') == [B + "q2"]  # a missing target matches nothing
    assert ids("locatedAt{population}") == [B + "q2"]
    assert ids('locatedAt{name}=="Paris"|near{population}==8') == [B + "q1", B + "q4"]
    assert ids('locatedAt{name}=="Paris";locatedAt{description}~=capital') == [B + "q1"]
    assert ids('locatedAt{isInCountry{name}}=="France"', level="2") == [B + "q1"]
    assert ids('locatedAt{name}=="Paris"', count="true", limit="1") == [B + "q1"]
    r = ngsi.get(
        "/entities", params={"type": "Building", "q": 'locatedAt{name}=="Paris"', "count": "true", "join": "inline"}
    )
    assert r.headers["NGSILD-Results-Count"] == "1"
    body = {"type": "Query", "entities": [{"type": "Building"}], "q": "locatedAt{population}==8", "join": "inline"}
    r = ngsi.post("/entityOperations/query", json=body)
    assert [e["id"] for e in r.json()] == [B + "q2"]
    assert r.json()[0]["locatedAt"]["entity"]["id"] == "urn:ngsi-ld:City:Hanoi"
    for bad in ({**body, "join": "@none"}, {**body, "q": "locatedAt{isInCountry{name}}==1"}):
        r = ngsi.post("/entityOperations/query", json=bad)
        assert r.status_code == 400 and error(r) == "BadRequestData"
    for q in ("locatedAt{name", "locatedAt{}==1", "locatedAt.x{name}==1", "{name}==1"):
        r = ngsi.get("/entities", params={"type": "Building", "q": q, "join": "inline"})
        assert r.status_code == 400 and error(r) == "BadRequestData", q


# --------------------------------------------------------------------------- notifications


def test_notifications_with_linked_entities(ngsi: Ngsi, listener: Listener) -> None:
    """TPs 046_23 … 046_30: NotificationParams join/joinLevel; the subscription reads back as written."""
    paris_and_france(ngsi)
    eid = building(ngsi, "n1")
    city = {
        "id": PARIS,
        "type": "City",
        "name": prop("Paris"),
        "description": prop("Paris is the capital and largest city of France"),
        "isInCountry": rel(FRANCE),
    }
    notes = {
        "flat": {"join": "flat", "joinLevel": 1},
        "inline": {"join": "inline", "attributes": ["locatedAt"]},
        "kv": {"join": "inline", "joinLevel": 2, "format": "keyValues", "attributes": ["locatedAt"]},
    }
    for key, note in notes.items():
        endpoint = {"uri": f"{listener.url}?{key}", "accept": "application/json"}
        sid = create_sub(
            ngsi,
            {
                "type": "Subscription",
                "entities": [{"type": "Building"}],
                "notification": {**note, "endpoint": endpoint},
            },
        )
        stored = ngsi.get(f"/subscriptions/{sid}").json()["notification"]
        assert {k: stored[k] for k in note} == note
    assert ngsi.post(f"/entities/{eid}/attrs", json={"name": prop("Tour Eiffel")}).status_code == 204
    got = {g.path.rsplit("?", 1)[1]: g.body["data"] for g in (listener.next(), listener.next(), listener.next())}
    assert got["flat"] == [{"id": eid, "type": "Building", "locatedAt": rel(PARIS), "name": prop("Tour Eiffel")}, city]
    assert got["inline"] == [{"id": eid, "type": "Building", "locatedAt": {**rel(PARIS), "entity": city}}]
    france = {"id": FRANCE, "type": "Country", "name": "France", "description": "France is an European country"}
    kv_city = {"id": PARIS, "type": "City", "name": "Paris", "description": city["description"]["value"]}
    assert got["kv"] == [{"id": eid, "type": "Building", "locatedAt": {**kv_city, "isInCountry": france}}]
    bad = {"type": "Subscription", "entities": [{"type": "Building"}], "notification": {"join": "deep"}}
    bad["notification"]["endpoint"] = {"uri": listener.url}
    assert ngsi.post("/subscriptions", json=bad).status_code == 400
    bad["notification"] = {"join": "flat", "joinLevel": 0, "endpoint": {"uri": listener.url}}
    assert ngsi.post("/subscriptions", json=bad).status_code == 400


def test_subscription_linked_entity_q(ngsi: Ngsi, listener: Listener) -> None:
    """TP 49_01: a subscription's ``rel{attr}`` q reads the Linked Entity from the broker's storage."""
    for name, level in (("low", 0.3), ("full", 0.95)):
        ngsi.create({"id": f"urn:ngsi-ld:Device:{name}", "type": "Device", "batteryLevel": prop(level)})
    sub = {
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "q": "isConnectedTo{batteryLevel}<0.5",
        "notification": {"endpoint": {"uri": listener.url, "accept": "application/json"}},
    }
    create_sub(ngsi, sub)
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:ok", "type": "Vehicle", "isConnectedTo": rel("urn:ngsi-ld:Device:full")})
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:low", "type": "Vehicle", "isConnectedTo": rel("urn:ngsi-ld:Device:low")})
    assert [e["id"] for e in listener.next().body["data"]] == ["urn:ngsi-ld:Vehicle:low"]
    listener.nothing()
