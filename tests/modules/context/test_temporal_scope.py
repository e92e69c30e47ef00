"""The Entity Scope in the temporal API (ETSI GS CIM 009 v1.8 §4.18, §4.5.6, §5.7.3, §5.7.4, annex C.5.16):
its history from every write, its temporal representations, scope instances in temporal writes, and
scopeQ on temporal queries with the validity of each scope over time (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, select

from ioc.core.db import Database
from ioc.modules.context.entity import SCOPE
from ioc.modules.context.models import NgsiAttributeHistory

from .conftest import LD, Ngsi, link_to
from .test_conformance_temporal import CTX, bare

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
T = "/temporal/entities"
V = "urn:ngsi-ld:Vehicle:"
#: what a scope instance may carry (§4.5.6)
SCOPE_MEMBERS = {"type", "value", "instanceId", "createdAt", "modifiedAt", "deletedAt", "observedAt"}


def prop(value: Any, at: str) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at}


def now() -> datetime:
    return datetime.now(UTC)


def when(text: str) -> datetime:
    """A DateTime of a response: UTC, milliseconds, ``Z``."""
    assert text.endswith("Z") and len(text) == len("2026-01-01T00:00:00.000Z"), text
    return datetime.fromisoformat(text)


def between(text: str, start: datetime, end: datetime) -> None:
    t = when(text)
    assert start.replace(microsecond=start.microsecond // 1000 * 1000) <= t <= end, (text, start, end)


def link(ngsi: Ngsi) -> dict[str, str]:
    return {"Link": link_to(ngsi.host(CTX))}


def problem(r: Any, status: int, name: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == ERR + name, r.text


def scope_values(ngsi: Ngsi, eid: str, **params: str) -> list[list[Any]]:
    """The ``[value, time]`` pairs of the scope's temporal evolution (temporalValues)."""
    r = ngsi.get(f"{T}/{eid}", params={"options": "temporalValues", **params})
    assert r.status_code == 200, r.text
    scope = r.json().get("scope")
    if scope is None:
        return []
    assert set(scope) == {"type", "values"} and scope["type"] == "Property", scope
    return list(scope["values"])


# --------------------------------------------------------------------------- ETSI TPs 020_19, 020_20


#: vehicle-temporal-representation-scope.jsonld of the ETSI suite
SUITE_VEHICLE: dict[str, Any] = {
    "type": "Vehicle",
    "scope": ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"],
    "fuelLevel": [prop(67, "2020-08-01T12:03:00Z"), prop(53, "2020-08-01T13:05:00Z")],
}


@pytest.mark.parametrize("tp", ["020_19_01", "020_20_01"])
def test_deleted_scope_by_deleted_at(ngsi: Ngsi, tp: str) -> None:
    """TP 020_19_01 and 020_20_01 (§4.18, §5.7.3, §6.19.3.1): a scope removed through the Core API
    (``DELETE /entities/{id}/attrs/scope``) is a deletion instance in the temporal evolution, read with
    ``timeproperty=deletedAt``: its value an empty array, ``deletedAt`` the time of the deletion; the
    attributes, never deleted, are left out."""
    headers = link(ngsi)
    eid = f"{V}{tp}"
    r = ngsi.post(T, json={"id": eid, **SUITE_VEHICLE, "@context": CTX}, headers={"Content-Type": LD})
    assert r.status_code == 201, r.text
    before = now()
    r = ngsi.delete(f"/entities/{eid}/attrs/scope", params={"deleteAll": "false"}, headers=headers)
    assert r.status_code == 204, r.text
    after = now()
    assert "scope" not in ngsi.get(f"/entities/{eid}", headers=headers).json()

    r = ngsi.get(f"{T}/{eid}", params={"timeproperty": "deletedAt"}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    (deletion,) = body["scope"]
    deleted_at = deletion["deletedAt"]
    between(deleted_at, before, after)
    assert deletion["instanceId"].startswith("urn:ngsi-ld:")
    # vehicle-temporal-representation-property-020-19.jsonld, compared as the suite does
    assert bare(body) == {
        "id": eid,
        "type": "Vehicle",
        "scope": [{"type": "Property", "value": [], "deletedAt": deleted_at}],
    }
    # vehicle-temporal-representation-property-020-20.jsonld
    r = ngsi.get(f"{T}/{eid}", params={"timeproperty": "deletedAt", "options": "temporalValues"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": eid, "type": "Vehicle", "scope": {"type": "Property", "values": [[[], deleted_at]]}}
    # the scope as it was until then is still there, observed when it was set
    (created,) = ngsi.get(f"{T}/{eid}", headers=headers).json()["scope"]
    assert created["value"] == SUITE_VEHICLE["scope"] and when(created["observedAt"]) <= when(deleted_at)
    # a second removal finds no scope
    problem(ngsi.delete(f"/entities/{eid}/attrs/scope", headers=headers), 404, "ResourceNotFound")


# --------------------------------------------------------------------------- TP 456_01 and every Core API write


def test_scope_change_from_core_api(ngsi: Ngsi) -> None:
    """TP 456_01 (§4.5.6): after a Core API change of the scope, its temporal representation is an array
    of Property instances whose observedAt is a copy of their modifiedAt, with no other sub-property."""
    eid = V + "456"
    t0 = now()
    ngsi.create(
        {"id": eid, "type": "Vehicle", "scope": "/Old", "speed": prop(1, "2026-08-10T00:00:00Z"), "@context": CTX},
        headers={"Content-Type": LD},
    )
    t1 = now()
    r = ngsi.patch(f"/entities/{eid}", json={"type": "Vehicle", "scope": "/New"}, headers=link(ngsi))
    assert r.status_code == 204, r.text
    t2 = now()
    r = ngsi.get(f"{T}/{eid}", params={"options": "sysAttrs"})
    assert r.status_code == 200, r.text
    old, new = r.json()["scope"]
    for instance, value, (start, end) in ((old, "/Old", (t0, t1)), (new, "/New", (t1, t2))):
        assert set(instance) == {"type", "value", "instanceId", "createdAt", "modifiedAt", "observedAt"}
        assert instance["type"] == "Property" and instance["value"] == value
        assert instance["observedAt"] == instance["modifiedAt"] == instance["createdAt"]
        between(instance["observedAt"], start, end)
    assert old["instanceId"] != new["instanceId"]
    # without sysAttrs: type, value, observedAt and the instanceId
    plain = ngsi.get(f"{T}/{eid}").json()["scope"]
    assert bare(plain) == [
        {"type": "Property", "value": "/Old", "observedAt": old["observedAt"]},
        {"type": "Property", "value": "/New", "observedAt": new["observedAt"]},
    ]
    assert [i["instanceId"] for i in plain] == [old["instanceId"], new["instanceId"]]
    assert scope_values(ngsi, eid) == [["/Old", old["observedAt"]], ["/New", new["observedAt"]]]


def test_every_core_write_of_the_scope_lands_in_history(ngsi: Ngsi, db: Database) -> None:
    """Create, merge, replace, append, update, batch operations and the removal each add an instance
    (or a deletion) to the scope's temporal evolution; writes without a scope leave it alone."""
    eid = V + "writes"
    e = f"/entities/{eid}"
    ngsi.create({"id": eid, "type": "Vehicle", "scope": "/A", "speed": {"type": "Property", "value": 1}})
    steps: list[tuple[str, Any]] = []

    def step(r: Any, expected: Any) -> None:
        assert r.status_code in (201, 204), r.text
        steps.append((r.request.method + " " + r.request.url.path, expected))

    step(ngsi.patch(e, json={"scope": "/B"}), "/B")  # merge
    step(ngsi.patch(e, json={"speed": {"type": "Property", "value": 2}}), None)  # merge without a scope
    step(ngsi.put(e, json={"type": "Vehicle", "scope": ["/C", "/D"]}), ["/C", "/D"])  # replace
    step(ngsi.post(e + "/attrs", json={"scope": "/E", "speed": {"type": "Property", "value": 3}}), "/E")  # append
    step(ngsi.patch(e + "/attrs", json={"scope": "/F"}), "/F")  # update
    step(ngsi.patch(e + "/attrs", json={"speed": {"type": "Property", "value": 4}}), None)
    step(ngsi.post("/entityOperations/upsert", json=[{"id": eid, "type": "Vehicle", "scope": "/G"}]), "/G")
    step(
        ngsi.post(
            "/entityOperations/upsert",
            params={"options": "update"},
            json=[{"id": eid, "type": "Vehicle", "scope": "/H"}],
        ),
        "/H",
    )
    step(ngsi.post("/entityOperations/update", json=[{"id": eid, "scope": "/I"}]), "/I")
    step(ngsi.post("/entityOperations/merge", json=[{"id": eid, "scope": "/J"}]), "/J")
    step(ngsi.put(e, json={"type": "Vehicle"}), "deleted")  # replaced by an entity without a scope
    step(ngsi.post("/entityOperations/create", json=[{"id": V + "batch", "type": "Vehicle", "scope": "/K"}]), None)
    assert ngsi.get(e).json().get("scope") is None

    pairs = scope_values(ngsi, eid)
    assert [v for v, _ in pairs] == ["/A", "/B", ["/C", "/D"], "/E", "/F", "/G", "/H", "/I", "/J"]
    times = [when(t) for _, t in pairs]
    assert times == sorted(times)
    deletions = scope_values(ngsi, eid, timeproperty="deletedAt")
    assert len(deletions) == 1 and deletions[0][0] == [] and when(deletions[0][1]) >= times[-1]
    assert [v for v, _ in scope_values(ngsi, V + "batch")] == ["/K"]
    # a deleted entity's scope ends with it (§4.18: "until ... explicitly removed by ... delete")
    assert ngsi.delete(f"/entities/{V}batch").status_code == 204
    with db.session() as s:
        ops = s.scalars(
            select(NgsiAttributeHistory.op)
            .where(NgsiAttributeHistory.entity_id == V + "batch", NgsiAttributeHistory.name == SCOPE)
            .order_by(NgsiAttributeHistory.id)
        ).all()
    assert ops == ["create", "delete"]


# --------------------------------------------------------------------------- temporal writes


def test_temporal_create_and_add_with_scope_instances(ngsi: Ngsi) -> None:
    """``POST /temporal/entities`` and ``.../attrs`` take the scope as instances (the latest becomes
    the entity's scope) or as a plain Scope (a change made now); instances given again at the same
    observedAt replace the earlier ones."""
    eid = V + "ts"
    body = {
        "id": eid,
        "type": "Vehicle",
        "scope": [prop("/Late", "2026-03-01T12:00:00Z"), prop(["/Early", "/Other"], "2026-03-01T10:00:00Z")],
        "speed": [prop(1, "2026-03-01T11:00:00Z")],
    }
    assert ngsi.post(T, json=body).status_code == 201
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == "/Late"
    assert bare(ngsi.get(f"{T}/{eid}").json()["scope"]) == [
        prop(["/Early", "/Other"], "2026-03-01T10:00:00Z"),
        prop("/Late", "2026-03-01T12:00:00Z"),
    ]
    # an older instance is added to the history, the entity keeps its scope; the same time again replaces
    r = ngsi.post(f"{T}/{eid}/attrs", json={"scope": [prop("/Older", "2026-03-01T09:00:00Z")]})
    assert r.status_code == 204, r.text
    again = {"type": "Property", "value": "/Again", "observedAt": "2026-03-01T12:00:00Z"}
    assert ngsi.post(f"{T}/{eid}/attrs", json={"scope": again}).status_code == 204
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == "/Again"
    assert scope_values(ngsi, eid) == [
        ["/Older", "2026-03-01T09:00:00Z"],
        [["/Early", "/Other"], "2026-03-01T10:00:00Z"],
        ["/Again", "2026-03-01T12:00:00Z"],
    ]
    assert ngsi.post(T, json=body).status_code == 204  # the same representation again: nothing repeated
    assert len(scope_values(ngsi, eid)) == 3
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == "/Late"
    # a plain scope on an existing entity, then an instance without observedAt: both observed now
    start = now()
    assert ngsi.post(f"{T}/{eid}/attrs", json={"scope": "/Plain"}).status_code == 204
    assert ngsi.post(T, json={"id": eid, "type": "Vehicle", "scope": [{"value": "/Bare"}]}).status_code == 204
    end = now()
    assert ngsi.get(f"/entities/{eid}").json()["scope"] == "/Bare"
    *_, plain, bare_instance = scope_values(ngsi, eid)
    assert plain[0] == "/Plain" and bare_instance[0] == "/Bare"
    between(plain[1], start, end)
    between(bare_instance[1], start, end)
    # a plain scope in a new temporal entity is observed when it is created
    start = now()
    plain_body = {"id": V + "plain", "type": "Vehicle", "scope": "/P", "speed": [prop(1, "2020-01-01T00:00:00Z")]}
    assert ngsi.post(T, json=plain_body).status_code == 201
    ((value, at),) = scope_values(ngsi, V + "plain")
    assert value == "/P"
    between(at, start, now())


@pytest.mark.parametrize(
    "scope",
    [
        [{"type": "Property", "value": "/Bad/"}],
        [{"type": "Property", "value": "/A", "unitCode": "X"}],
        [{"type": "Property", "value": "/A", "sub": {"type": "Property", "value": 1}}],
        [{"type": "Relationship", "object": "urn:ngsi-ld:A:1"}],
        [{"type": "Property"}],
        [{"type": "Property", "value": None}],
        [{"type": "Property", "value": []}],
        [{"type": "Property", "value": "/A", "observedAt": "yesterday"}],
        [{"type": "Property", "value": "/A", "observedAt": "2026-03-01T12:00:00+07:00"}],
        [{"type": "Property", "value": "/A"}, "/B"],
        [],
        "urn:ngsi-ld:null",
        7,
    ],
)
def test_invalid_scope_instances_are_refused(ngsi: Ngsi, scope: Any) -> None:
    body = {"id": V + "bad", "type": "Vehicle", "scope": scope, "speed": [prop(1, "2026-03-01T11:00:00Z")]}
    problem(ngsi.post(T, json=body), 400, "BadRequestData")
    assert ngsi.get(f"{T}/{V}bad").status_code == 404
    assert ngsi.post(T, json={**body, "scope": "/Ok"}).status_code == 201
    problem(ngsi.post(f"{T}/{V}bad/attrs", json={"scope": scope}), 400, "BadRequestData")
    assert ngsi.get(f"/entities/{V}bad").json()["scope"] == "/Ok"


def test_scope_instances_modified_deleted_and_the_history_removed(ngsi: Ngsi) -> None:
    """An instance of the scope is modified or deleted as any instance (§5.6.18, §5.6.19), its value
    still a Scope; deleting the scope's temporal evolution removes the scope too (§5.6.15)."""
    eid = V + "inst"
    scopes = [prop("/A", "2026-03-01T10:00:00Z"), prop("/B", "2026-03-01T11:00:00Z")]
    body = {"id": eid, "type": "Vehicle", "scope": scopes, "speed": [prop(1, "2026-03-01T10:30:00Z")]}
    assert ngsi.post(T, json=body).status_code == 201
    first, second = ngsi.get(f"{T}/{eid}").json()["scope"]
    r = ngsi.patch(f"{T}/{eid}/attrs/scope/{first['instanceId']}", json={"value": ["/A", "/Z"]})
    assert r.status_code == 204, r.text
    problem(ngsi.patch(f"{T}/{eid}/attrs/scope/{first['instanceId']}", json={"value": "9bad"}), 400, "BadRequestData")
    r = ngsi.patch(f"{T}/{eid}/attrs/scope/{first['instanceId']}", json={"value": "/A", "unitCode": "X"})
    problem(r, 400, "BadRequestData")
    assert scope_values(ngsi, eid) == [[["/A", "/Z"], "2026-03-01T10:00:00Z"], ["/B", "2026-03-01T11:00:00Z"]]
    assert ngsi.delete(f"{T}/{eid}/attrs/scope/{second['instanceId']}").status_code == 204
    assert scope_values(ngsi, eid) == [[["/A", "/Z"], "2026-03-01T10:00:00Z"]]
    assert ngsi.delete(f"{T}/{eid}/attrs/scope").status_code == 204
    assert scope_values(ngsi, eid) == [] and "scope" not in ngsi.get(f"/entities/{eid}").json()
    assert [i["value"] for i in ngsi.get(f"{T}/{eid}").json()["speed"]] == [1]
    problem(ngsi.delete(f"{T}/{eid}/attrs/scope"), 404, "ResourceNotFound")


# --------------------------------------------------------------------------- representations


def test_scope_in_every_representation(ngsi: Ngsi) -> None:
    """``attrs``, ``pick`` and ``omit`` name the scope as any member; lastN and time relations apply
    to it, the instance valid when an after/between range starts coming first (C.5.16); the
    aggregated representation has no scope (§4.5.19 aggregates attributes)."""
    eid = V + "repr"
    scopes = [prop("/A", "2026-03-01T10:00:00Z"), prop("/B", "2026-03-01T12:30:00Z")]
    speeds = [prop(1, "2026-03-01T12:05:00Z"), prop(2, "2026-03-01T12:45:00Z")]
    assert ngsi.post(T, json={"id": eid, "type": "Vehicle", "scope": scopes, "speed": speeds}).status_code == 201
    whole = bare(ngsi.get(f"{T}/{eid}").json())
    assert whole == {"id": eid, "type": "Vehicle", "scope": scopes, "speed": speeds}

    def get(**params: str) -> dict[str, Any]:
        r = ngsi.get(f"{T}/{eid}", params=params)
        assert r.status_code == 200, r.text
        return dict(bare(r.json()))

    assert get(attrs="scope") == {"id": eid, "type": "Vehicle", "scope": scopes}
    assert get(attrs="speed") == {"id": eid, "type": "Vehicle", "speed": speeds}
    assert get(pick="scope") == {"scope": scopes}
    assert get(pick="id,scope,speed") == {"id": eid, "scope": scopes, "speed": speeds}
    assert get(omit="scope") == {"id": eid, "type": "Vehicle", "speed": speeds}
    assert get(lastN="1") == {"id": eid, "type": "Vehicle", "scope": scopes[1:], "speed": speeds[1:]}
    assert get(timerel="before", timeAt="2026-03-01T11:00:00Z") == {"id": eid, "type": "Vehicle", "scope": scopes[:1]}
    window = {"timerel": "between", "timeAt": "2026-03-01T12:00:00Z", "endTimeAt": "2026-03-01T12:40:00Z"}
    assert get(**window) == {"id": eid, "type": "Vehicle", "scope": scopes, "speed": speeds[:1]}
    later = {"id": eid, "type": "Vehicle", "scope": scopes[1:], "speed": speeds[1:]}
    assert get(timerel="after", timeAt="2026-03-01T12:40:00Z") == later
    assert get(timerel="after", timeAt="2026-03-01T12:40:00Z", lastN="1")["scope"] == scopes[1:]
    assert get(**window, options="temporalValues") == {
        "id": eid,
        "type": "Vehicle",
        "scope": {"type": "Property", "values": [["/A", "2026-03-01T10:00:00Z"], ["/B", "2026-03-01T12:30:00Z"]]},
        "speed": {"type": "Property", "values": [[1, "2026-03-01T12:05:00Z"]]},
    }
    concise = get(attrs="scope", format="concise")["scope"]
    assert concise == [{k: v for k, v in i.items() if k != "type"} for i in scopes]
    aggregated = get(options="aggregatedValues", aggrMethods="totalCount")
    assert set(aggregated) == {"id", "type", "speed"}
    with_sys = ngsi.get(f"{T}/{eid}", params={"options": "sysAttrs", "attrs": "scope"}).json()["scope"]
    assert all(set(i) <= SCOPE_MEMBERS and i["createdAt"] == i["modifiedAt"] for i in with_sys)
    # an entity whose scope was removed before the range starts carries none into it
    assert ngsi.delete(f"/entities/{eid}/attrs/scope").status_code == 204
    assert "scope" not in get(timerel="after", timeAt="2099-01-01T00:00:00Z", attrs="scope,speed")


# --------------------------------------------------------------------------- scopeQ: TP 5744_03 (C.5.16)

Q5744 = "urn:ngsi-ld:Vehicle:qs5744-"
AB, XX, BARE, BOTH, MID, REP, LATE = (Q5744 + n for n in ("ab", "xx", "bare", "both", "mid", "rep", "late"))
WINDOW = {"timerel": "between", "timeAt": "2026-03-01T12:00:00Z", "endTimeAt": "2026-03-01T13:00:00Z"}


def _fixture(eid: str, scopes: list[tuple[Any, str]], speeds: list[tuple[str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": eid, "type": "Vehicle", "speed": [prop(v, f"2026-03-01T{t}:00Z") for v, t in speeds]}
    if scopes:
        body["scope"] = [prop(v, f"2026-03-01T{t}:00Z") for v, t in scopes]
    return body


FIXTURES = [
    _fixture(AB, [("/A/B", "10:00")], [("abval", "12:05")]),
    _fixture(XX, [("/X", "10:00")], [("xxval", "12:05")]),
    _fixture(BARE, [], [("bareval", "12:05")]),
    _fixture(BOTH, [(["/A/B", "/C"], "10:00")], [("bothval", "12:05")]),
    _fixture(MID, [("/M", "12:10")], [("midpre", "12:05"), ("midpost", "12:15")]),
    _fixture(REP, [("/R", "10:00"), ("/S", "12:30")], [("repold", "12:15"), ("repnew", "12:45")]),
    _fixture(LATE, [("/Z", "14:00")], [("lateval", "12:05")]),
]

#: 5744_03_01..10: scopeQ -> the entities (in creation order) and the speeds of each in the window
CASES_5744: list[tuple[str, str, dict[str, list[str]]]] = [
    ("01 exact", "/A/B", {AB: ["abval"], BOTH: ["bothval"]}),
    ("02 no match", "/Y", {}),
    ("03 subtree", "/A/#", {AB: ["abval"], BOTH: ["bothval"]}),
    ("04 any scope", "/#",
     {AB: ["abval"], XX: ["xxval"], BOTH: ["bothval"], MID: ["midpost"], REP: ["repold", "repnew"]}),
    ("05 alternatives", "/X|/M", {XX: ["xxval"], MID: ["midpost"]}),
    ("06 conjunction", "(/A/B;/C)", {BOTH: ["bothval"]}),
    ("07 set mid window", "/M", {MID: ["midpost"]}),
    ("08 replaced: old", "/R", {REP: ["repold"]}),
    ("09 replaced: new", "/S", {REP: ["repnew"]}),
    ("10 valid after the window", "/Z", {}),
    ("or spelled ,", "/R,/Z", {REP: ["repold"]}),
]  # fmt: skip


@pytest.fixture
def fixtures_5744(ngsi: Ngsi) -> None:
    for body in FIXTURES:
        r = ngsi.post(T, json=body)
        assert r.status_code == 201, r.text


def query(ngsi: Ngsi, scope_q: str, **params: str) -> dict[str, dict[str, Any]]:
    r = ngsi.get(T, params={"type": "Vehicle", "scopeQ": scope_q, **params})
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()}


def speeds(entity: dict[str, Any]) -> list[Any]:
    return [i["value"] for i in entity.get("speed", [])]


@pytest.mark.usefixtures("fixtures_5744")
def test_scope_query_with_validity_over_time(ngsi: Ngsi) -> None:
    """TP 5744_03_01..11 (§5.7.4.4 S4, §4.18, §4.19, C.5.16): an entity is selected when a scope matching
    scopeQ was valid in the time range, with only the attribute instances observed while one was;
    a scope set before the range and still valid in it comes with the entity."""
    for name, scope_q, expected in CASES_5744:
        found = query(ngsi, scope_q, **WINDOW)
        assert list(found) == list(expected), name
        assert {eid: speeds(e) for eid, e in found.items()} == expected, name
        r = ngsi.get(T, params={"type": "Vehicle", "scopeQ": scope_q, "count": "true", "limit": "1", **WINDOW})
        assert r.headers["NGSILD-Results-Count"] == str(len(expected)), name
        assert [e["id"] for e in r.json()] == list(expected)[:1], name
    # 5744_03_11: /A/B was set at 10:00, before the window, and is presented with the entity
    found = query(ngsi, "/A/B", **WINDOW)
    assert bare(found[AB]["scope"]) == [prop("/A/B", "2026-03-01T10:00:00Z")]
    assert bare(found[BOTH]["scope"]) == [prop(["/A/B", "/C"], "2026-03-01T10:00:00Z")]
    # the replaced scope's evolution in the window: the one valid at its start, then its replacement
    assert bare(query(ngsi, "/R", **WINDOW)[REP]["scope"]) == [
        prop("/R", "2026-03-01T10:00:00Z"),
        prop("/S", "2026-03-01T12:30:00Z"),
    ]
    assert bare(query(ngsi, "/M", **WINDOW)[MID]["scope"]) == [prop("/M", "2026-03-01T12:10:00Z")]
    # temporalValues: the same instances
    r = ngsi.get(T, params={"type": "Vehicle", "scopeQ": "/M", "options": "temporalValues", **WINDOW})
    assert r.json() == [
        {
            "id": MID,
            "type": "Vehicle",
            "scope": {"type": "Property", "values": [["/M", "2026-03-01T12:10:00Z"]]},
            "speed": {"type": "Property", "values": [["midpost", "2026-03-01T12:15:00Z"]]},
        }
    ]


@pytest.mark.usefixtures("fixtures_5744")
def test_scope_query_other_time_ranges(ngsi: Ngsi) -> None:
    """The same validity with before, after, no time range, aggregation and the Query body (§5.7.4, §6.24)."""
    before = {"timerel": "before", "timeAt": "2026-03-01T12:30:00Z"}
    assert {k: speeds(v) for k, v in query(ngsi, "/R", **before).items()} == {REP: ["repold"]}
    assert {k: speeds(v) for k, v in query(ngsi, "/S", **before).items()} == {}
    after = {"timerel": "after", "timeAt": "2026-03-01T12:10:00Z"}
    assert {k: speeds(v) for k, v in query(ngsi, "/M", **after).items()} == {MID: ["midpost"]}
    assert {k: speeds(v) for k, v in query(ngsi, "/R", **after).items()} == {REP: ["repold"]}
    assert {k: speeds(v) for k, v in query(ngsi, "/Z", **after).items()} == {LATE: []}
    # no time range: every time a matching scope was valid
    assert {k: speeds(v) for k, v in query(ngsi, "/M").items()} == {MID: ["midpost"]}
    assert {k: speeds(v) for k, v in query(ngsi, "/R|/S").items()} == {REP: ["repold", "repnew"]}
    assert {k: speeds(v) for k, v in query(ngsi, "/Z").items()} == {LATE: []}  # its speed came before
    # aggregations count the selected instances only
    params = {"type": "Vehicle", "scopeQ": "/S", "options": "aggregatedValues", "aggrMethods": "totalCount"}
    r = ngsi.get(T, params={**params, **WINDOW})
    assert r.json() == [
        {
            "id": REP,
            "type": "Vehicle",
            "speed": {"type": "Property", "totalCount": [[1, "2026-03-01T12:45:00Z", "2026-03-01T12:45:00Z"]]},
        }
    ]
    # a Query body's scopeQ with its temporalQ
    temporal_q = {"timerel": "between", "timeAt": WINDOW["timeAt"], "endTimeAt": WINDOW["endTimeAt"]}
    body = {"type": "Query", "entities": [{"type": "Vehicle"}], "scopeQ": "/M|/S", "temporalQ": temporal_q}
    r = ngsi.post("/temporal/entityOperations/query", json=body)
    assert r.status_code == 200, r.text
    assert {e["id"]: speeds(e) for e in r.json()} == {MID: ["midpost"], REP: ["repnew"]}
    # other filters still apply
    assert list(query(ngsi, "/#", idPattern="ab$", **WINDOW)) == [AB]
    problem(ngsi.get(T, params={"type": "Vehicle", "scopeQ": "/A/", **WINDOW}), 400, "BadRequestData")


def test_entities_without_scope_history_keep_the_current_scope(ngsi: Ngsi, db: Database) -> None:
    """An entity whose scope has no history (stored before scope changes were recorded) is selected by
    its current scope, as in a query of the current state, with every instance in range."""
    for eid, scope in (("legacy", "/Legacy"), ("other", "/Other")):
        ngsi.create({"id": V + eid, "type": "Vehicle", "scope": scope, "speed": prop(1, "2020-01-01T00:00:00Z")})
    with db.session() as s:
        s.execute(delete(NgsiAttributeHistory).where(NgsiAttributeHistory.name == SCOPE))
    found = query(ngsi, "/Legacy")
    assert list(found) == [V + "legacy"] and speeds(found[V + "legacy"]) == [1] and "scope" not in found[V + "legacy"]
    assert list(query(ngsi, "/#", timerel="after", timeAt="2019-01-01T00:00:00Z")) == [V + "legacy", V + "other"]
    assert query(ngsi, "/Nowhere") == {}
    # a change from now on starts the history: the new scope is valid from now, the old one no more
    assert ngsi.patch(f"/entities/{V}legacy", json={"scope": "/Moved"}).status_code == 204
    assert query(ngsi, "/Legacy") == {}
    assert list(query(ngsi, "/Moved")) == [V + "legacy"] and speeds(query(ngsi, "/Moved")[V + "legacy"]) == []
