"""scopeQ, the NGSI-LD Scope Query Language (ETSI GS CIM 009 v1.8 §4.19, scopes §4.18): the parser,
the matcher, the SQL prefilter, and scopeQ in queries, purge, temporal queries and subscriptions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from ioc.app import create_app
from ioc.core.auth import User
from ioc.core.db import Database
from ioc.modules.context.errors import NgsiError
from ioc.modules.context.scope import ScopeExpr, matches, parse_scope_query, scope_sql
from ioc.settings import Settings

from . import test_subscriptions as subs
from .conftest import Ngsi
from .test_subscriptions import Listener, create_sub, fast_settings, login, subscription

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
B = "urn:ngsi-ld:Building:"
ONE, MANY, NONE, BARE, VINH, LOWER = (B + n for n in ("one", "many", "none", "bare", "vinh", "lower"))
#: created in this order (the order of query results)
SCOPES: dict[str, Any] = {
    ONE: "/Madrid/Gardens/ParqueNorte",
    MANY: ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"],
    NONE: None,
    BARE: "Madrid/Gardens",  # §4.18: the leading "/" is optional
    VINH: "/Vinh/Hưng_Dũng",
    LOWER: "/madrid/GardensWest",
}


# the fixtures of test_subscriptions: fast delivery settings, this module only, a real HTTP listener
_fast_delivery = subs._fast_delivery
settings = subs.settings
listener = subs.listener


def building(eid: str, scope: Any = None, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "type": "Building", "name": {"type": "Property", "value": eid[len(B) :]}}
    if scope is not None:
        body["scope"] = scope
    body.update(attrs)
    return body


def create_all(ngsi: Ngsi) -> None:
    for eid, scope in SCOPES.items():
        ngsi.create(building(eid, scope))


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()]


def assert_bad(r: Any) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["type"] == ERR + "BadRequestData", r.text


# --------------------------------------------------------------------------- parser and matcher


def scope(*levels: str) -> ScopeExpr:
    return ScopeExpr("scope", levels=levels)


def test_parser_builds_the_expression() -> None:
    assert parse_scope_query("/Madrid/Gardens") == scope("Madrid", "Gardens")
    assert parse_scope_query("Madrid/Gardens") == scope("Madrid", "Gardens")
    assert parse_scope_query("/Madrid/+/#") == scope("Madrid", "+", "#")
    assert parse_scope_query("/#") == scope("#") == parse_scope_query("#")
    # ";" binds tighter than "," and "|" (the two spellings of or)
    assert parse_scope_query("/A;/B,/C") == ScopeExpr(
        "or", items=(ScopeExpr("and", items=(scope("A"), scope("B"))), scope("C"))
    )
    assert parse_scope_query("/A|/B;/C") == ScopeExpr(
        "or", items=(scope("A"), ScopeExpr("and", items=(scope("B"), scope("C"))))
    )
    assert parse_scope_query("(/A,/B);/C") == ScopeExpr(
        "and", items=(ScopeExpr("or", items=(scope("A"), scope("B"))), scope("C"))
    )
    assert parse_scope_query("((/Hưng_Dũng/a1))") == scope("Hưng_Dũng", "a1")


@pytest.mark.parametrize(
    "text",
    ["", "/", "//A", "/A/", "/A//B", "/A#", "/#/A", "/A/#/#", "/A/++", "/9A", "/_A", "/a-b", "/A b", " /A",
     "/A;", ";/A", "/A,,/B", "/A|", "(/A", "/A)", "()", "(/A)(/B)", "/A(/B)", "urn:ngsi-ld:null"],
)  # fmt: skip
def test_parser_refuses_malformed_queries(text: str) -> None:
    with pytest.raises(NgsiError) as info:
        parse_scope_query(text)
    assert info.value.status == 400 and info.value.type_name == "BadRequestData"


@pytest.mark.parametrize(
    ("query", "scope_value", "expected"),
    [
        ("/A/B", "/A/B", True),
        ("/A/B", "A/B", True),
        ("/A/B", "/A/B/C", False),
        ("/A/B", "/A", False),
        ("/A/B", "/a/b", False),
        ("/A/+", "/A/B", True),
        ("/A/+", "/A", False),
        ("/A/+", "/A/B/C", False),
        ("/+/B", "/X/B", True),
        ("/A/#", "/A", True),
        ("/A/#", "/A/B/C", True),
        ("/A/#", "/AB", False),
        ("/A/+/#", "/A", False),
        ("/A/+/#", "/A/B", True),
        ("/#", "/Anything/At/All", True),
        ("/#", None, False),
        ("/#", [], False),
        ("/A;/B", ["/A", "/B"], True),
        ("/A;/B", "/A", False),
        ("/A,/B", "/B", True),
        ("/A/#;/B/+", ["/A/X", "/B/Y"], True),
        ("/A/B", ["/C", "/A/B"], True),
    ],
)
def test_matches(query: str, scope_value: Any, expected: bool) -> None:
    assert matches(parse_scope_query(query), scope_value) is expected


def test_sql_prefilter_is_exact_without_plus() -> None:
    for query, exact in [("/A/B", True), ("/A/#", True), ("/#", True), ("/A;/B,/C/#", True), ("/A/+", False),
                         ("/A,/+/B", False)]:  # fmt: skip
        for dialect in ("sqlite", "postgresql"):
            assert scope_sql(parse_scope_query(query), dialect)[1] is exact, (query, dialect)


# --------------------------------------------------------------------------- Query Entities

CASES: list[tuple[str, list[str]]] = [
    # ETSI TP 019_01_06 and 019_34 (one entity with one scope, one with two)
    ("/Madrid/Gardens/ParqueNorte", [ONE, MANY]),
    ("/Madrid/+/ParqueNorte", [ONE, MANY]),
    ("/CompanyA/#", [MANY]),
    ("/#", [ONE, MANY, BARE, VINH, LOWER]),
    ("/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC", [MANY]),
    ("/Madrid/Gardens/ParqueNorte,/CompanyA/OrganizationB/UnitC", [ONE, MANY]),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)", [MANY]),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)|/Madrid/Gardens/ParqueNorte", [ONE, MANY]),
    ("/CompanyA/OrganizationB/UnitC|/Nowhere/AtAll", [MANY]),
    ("(/Madrid/Gardens/ParqueNorte;/Nowhere/AtAll)", []),
    # exact scopes, whole levels, case, the optional leading "/"
    ("/Madrid", []),
    ("/Madrid/Gardens", [BARE]),
    ("Madrid/Gardens", [BARE]),
    ("/Madrid/#", [ONE, MANY, BARE]),
    ("/Madrid/Gardens/#", [ONE, MANY, BARE]),
    ("/Madrid/Garden/#", []),
    ("/madrid/#", [LOWER]),
    ("/madrid/Gardens", []),
    # one level
    ("/Madrid/+", [BARE]),
    ("/+/Gardens", [BARE]),
    ("/+/+/+", [ONE, MANY]),
    ("/+", []),
    ("/Madrid/+/#", [ONE, MANY, BARE]),
    # Unicode levels
    ("/Vinh/Hưng_Dũng", [VINH]),
    ("/Vinh/#", [VINH]),
    ("/+/Hưng_Dũng", [VINH]),
    ("/Vinh/Hung_Dung", []),
    # combinations
    ("/CompanyA/#;/Madrid/#", [MANY]),
    ("/+/Gardens,/CompanyA/#", [MANY, BARE]),
    ("(/Vinh/#,/madrid/#);/#", [VINH, LOWER]),
]


def test_query_entities_by_scope(ngsi: Ngsi) -> None:
    create_all(ngsi)
    for query, expected in CASES:
        params = {"type": "Building", "scopeQ": query, "count": "true"}
        r = ngsi.get("/entities", params=params)
        assert ids(r) == expected, query
        assert r.headers["NGSILD-Results-Count"] == str(len(expected)), query
        # the same through the exact check in Python (idPattern makes the query non-exact)
        r = ngsi.get("/entities", params={**params, "idPattern": "^urn:"})
        assert ids(r) == expected, query
        assert r.headers["NGSILD-Results-Count"] == str(len(expected)), query
    # the scope is given back as stored
    r = ngsi.get("/entities", params={"type": "Building", "scopeQ": "/CompanyA/#", "options": "keyValues"})
    assert r.json() == [{"id": MANY, "type": "Building", "scope": SCOPES[MANY], "name": "many"}]
    # other filters still apply
    assert ids(ngsi.get("/entities", params={"type": "Building", "scopeQ": "/#", "q": 'name=="bare"'})) == [BARE]
    assert ids(ngsi.get("/entities", params={"type": "Room", "scopeQ": "/#"})) == []


def test_query_paging_and_count(ngsi: Ngsi) -> None:
    create_all(ngsi)
    for query, page, total in [("/#", [MANY, BARE], 5), ("/Madrid/+/#", [MANY, BARE], 3)]:
        r = ngsi.get(
            "/entities",
            params={"type": "Building", "scopeQ": query, "limit": "2", "offset": "1", "count": "true"},
        )
        assert ids(r) == page, query
        assert r.headers["NGSILD-Results-Count"] == str(total), query
        r = ngsi.get("/entities", params={"type": "Building", "scopeQ": query, "limit": "0", "count": "true"})
        assert ids(r) == [] and r.headers["NGSILD-Results-Count"] == str(total), query
    # ordering sorts what scopeQ selected
    r = ngsi.get("/entities", params={"type": "Building", "scopeQ": "/Madrid/#", "orderBy": "name;desc"})
    assert ids(r) == [ONE, MANY, BARE]


def test_malformed_scopeq_is_refused(ngsi: Ngsi) -> None:
    create_all(ngsi)
    for bad in ["/Madrid/", "", "/A;;/B", "(/A"]:
        assert_bad(ngsi.get("/entities", params={"type": "Building", "scopeQ": bad}))
        assert_bad(ngsi.get("/temporal/entities", params={"type": "Building", "scopeQ": bad}))
        assert_bad(ngsi.delete("/entities", params={"scopeQ": bad}))
    assert len(ids(ngsi.get("/entities", params={"type": "Building"}))) == len(SCOPES)  # nothing purged


def test_query_body_scopeq(ngsi: Ngsi) -> None:
    """POST /entityOperations/query: the Query's scopeQ (§5.2.23)."""
    create_all(ngsi)
    query = {"type": "Query", "entities": [{"type": "Building"}], "scopeQ": "/CompanyA/#,/Vinh/#"}
    r = ngsi.post("/entityOperations/query", json=query, params={"count": "true"})
    assert ids(r) == [MANY, VINH] and r.headers["NGSILD-Results-Count"] == "2"
    assert ids(ngsi.post("/entityOperations/query", json={**query, "scopeQ": "/Madrid/+/ParqueNorte"})) == [ONE, MANY]
    assert len(ids(ngsi.post("/entityOperations/query", json={**query, "scopeQ": None}))) == len(SCOPES)
    assert_bad(ngsi.post("/entityOperations/query", json={**query, "scopeQ": ["/A"]}))
    assert_bad(ngsi.post("/entityOperations/query", json={**query, "scopeQ": "/A/"}))


def test_purge_by_scopeq(ngsi: Ngsi) -> None:
    """Purge Entities (§5.6.21) selecting by scopeQ, with a type or the local scope."""
    create_all(ngsi)
    ngsi.create({"id": "urn:ngsi-ld:Room:1", "type": "Room", "scope": "/Madrid/Gardens"})
    assert ngsi.delete("/entities", params={"type": "Building", "scopeQ": "/Madrid/Gardens"}).status_code == 204
    assert ids(ngsi.get("/entities", params={"scopeQ": "/Madrid/Gardens", "local": "true"})) == ["urn:ngsi-ld:Room:1"]
    # scopeQ alone selects nothing (§5.6.21.4: a type, attrs, q, a geo-query or the local scope)
    r = ngsi.delete("/entities", params={"scopeQ": "/Madrid/#"})
    assert r.status_code == 400 and r.json()["type"] == ERR + "BadRequestData"
    assert ngsi.delete("/entities", params={"scopeQ": "/Madrid/#", "local": "true"}).status_code == 204
    left = ids(ngsi.get("/entities", params={"local": "true"}))
    assert left == [NONE, VINH, LOWER]
    r = ngsi.delete("/entities", params={"scopeQ": "/Nowhere/#", "local": "true"})
    assert r.status_code == 404 and r.json()["type"] == ERR + "ResourceNotFound"
    assert ids(ngsi.get("/entities", params={"local": "true"})) == left


# --------------------------------------------------------------------------- temporal


def test_temporal_query_by_scope(ngsi: Ngsi) -> None:
    create_all(ngsi)
    params = {"type": "Building", "scopeQ": "/Madrid/+/ParqueNorte,/Vinh/#", "count": "true"}
    r = ngsi.get("/temporal/entities", params=params)
    assert ids(r) == [ONE, MANY, VINH] and r.headers["NGSILD-Results-Count"] == "3"
    assert [e["name"][0]["value"] for e in r.json()] == ["one", "many", "vinh"]
    r = ngsi.get("/temporal/entities", params={"type": "Building", "scopeQ": "/CompanyA/#", "lastN": "1"})
    assert ids(r) == [MANY]
    body = {"type": "Query", "entities": [{"type": "Building"}], "scopeQ": "/madrid/#"}
    assert ids(ngsi.post("/temporal/entityOperations/query", json=body)) == [LOWER]
    # an entity created through the temporal API has its scope checked (§4.18) and is selected by it
    temporal = {"id": B + "t", "type": "Building", "name": [{"type": "Property", "value": "t",
                                                            "observedAt": "2025-01-01T00:00:00Z"}]}  # fmt: skip
    assert_bad(ngsi.post("/temporal/entities", json={**temporal, "scope": "/Bad/"}))
    assert_bad(ngsi.post("/temporal/entities", json={**temporal, "scope": [{"type": "Property", "value": "/A/"}]}))
    assert ngsi.post("/temporal/entities", json={**temporal, "scope": ["/Temporal/X"]}).status_code == 201
    assert ids(ngsi.get("/temporal/entities", params={"type": "Building", "scopeQ": "/Temporal/+"})) == [B + "t"]
    assert ids(ngsi.get("/entities", params={"type": "Building", "scopeQ": "/Temporal/#"})) == [B + "t"]


# --------------------------------------------------------------------------- subscriptions


def test_subscription_keeps_and_validates_scopeq(ngsi: Ngsi) -> None:
    sid = create_sub(ngsi, subscription("http://example.org/n", scopeQ="/Madrid/#"))
    assert ngsi.get(f"/subscriptions/{sid}").json()["scopeQ"] == "/Madrid/#"
    assert ngsi.patch(f"/subscriptions/{sid}", json={"scopeQ": "/CompanyA/+;/Madrid/#"}).status_code == 204
    assert ngsi.get(f"/subscriptions/{sid}").json()["scopeQ"] == "/CompanyA/+;/Madrid/#"
    assert_bad(ngsi.patch(f"/subscriptions/{sid}", json={"scopeQ": "/CompanyA/"}))
    assert ngsi.get(f"/subscriptions/{sid}").json()["scopeQ"] == "/CompanyA/+;/Madrid/#"
    assert ngsi.patch(f"/subscriptions/{sid}", json={"scopeQ": None}).status_code == 204
    assert "scopeQ" not in ngsi.get(f"/subscriptions/{sid}").json()
    for bad in ["/A/", "", 7, ["/A"]]:
        assert_bad(ngsi.post("/subscriptions", json=subscription("http://example.org/n", scopeQ=bad)))


def test_notifications_only_for_matching_scopes(ngsi: Ngsi, listener: Listener) -> None:
    body = subscription(
        listener.url,
        entities=[{"type": "Building"}],
        scopeQ="/CompanyA/#",
        notificationTrigger=["entityCreated", "entityUpdated", "entityDeleted"],
    )
    create_sub(ngsi, body)
    ngsi.create(building(ONE, SCOPES[ONE]))
    ngsi.create(building(NONE))
    listener.nothing(1.0)
    ngsi.create(building(MANY, SCOPES[MANY]))
    got = listener.next()
    assert got.body["triggerReason"] == "entityCreated"
    assert [(e["id"], e["scope"]) for e in got.body["data"]] == [(MANY, SCOPES[MANY])]
    # an update of an entity outside the scopes: nothing; moving it into them: notified
    r = ngsi.patch(f"/entities/{ONE}/attrs", json={"name": {"type": "Property", "value": "renamed"}})
    assert r.status_code == 204
    listener.nothing(1.0)
    assert ngsi.patch(f"/entities/{ONE}", json={"scope": "/CompanyA/Moved"}).status_code == 204
    got = listener.next()
    assert got.body["triggerReason"] == "entityUpdated"
    assert [(e["id"], e["scope"], e["name"]["value"]) for e in got.body["data"]] == [
        (ONE, "/CompanyA/Moved", "renamed")
    ]
    # a deleted entity is matched against the scope it had
    assert ngsi.delete(f"/entities/{NONE}").status_code == 204
    assert ngsi.delete(f"/entities/{MANY}").status_code == 204
    got = listener.next()
    assert got.body["triggerReason"] == "entityDeleted" and [e["id"] for e in got.body["data"]] == [MANY]
    listener.nothing(1.0)


def test_periodic_notification_selects_by_scope(
    settings: Settings, db: Database, listener: Listener, make_user: Callable[..., User]
) -> None:
    user = make_user("operator")
    with TestClient(create_app(fast_settings(settings))) as c:
        ngsi = login(c, user)
        create_all(ngsi)
        sid = create_sub(
            ngsi, subscription(listener.url, entities=[{"type": "Building"}], timeInterval=1, scopeQ="/Madrid/+")
        )
        got = listener.next()
        assert got.body["subscriptionId"] == sid and [e["id"] for e in got.body["data"]] == [BARE]


def test_scopes_stored_with_escaped_characters_still_match(ngsi: Ngsi, db: Database) -> None:
    """A SQLite row written before the JSON codec spells non-ASCII characters as ``\\uXXXX``
    escapes (the standard library's default); scopeQ finds it under both spellings."""
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps JSONB, whose text form never depended on the writer")
    create_all(ngsi)
    with db.session() as s:
        s.execute(
            text("UPDATE ngsild_entities SET scope = :scope WHERE entity_id = :id"),
            {"scope": json.dumps(SCOPES[VINH]), "id": VINH},
        )
        assert "\\u01b0" in s.scalar(text("SELECT scope FROM ngsild_entities WHERE entity_id = :id"), {"id": VINH})
    for query in ("/Vinh/Hưng_Dũng", "/Vinh/#", "/+/Hưng_Dũng"):
        assert ids(ngsi.get("/entities", params={"type": "Building", "scopeQ": query})) == [VINH], query
