"""The Entity Scope in the temporal API (ETSI GS CIM 009 v1.8 §4.18, §4.5.6, §5.7.3): its history from
every write, its temporal representations and scope instances in temporal writes (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from ioc.core.db import Database
from ioc.modules.context.entity import SCOPE
from ioc.modules.context.models import NgsiAttributeHistory

from .conftest import LD, Ngsi
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
    r = ngsi.post("/jsonldContexts", json={"@context": CTX}, headers={"Content-Type": LD})
    assert r.status_code == 201, r.text
    return {"Link": f'<{r.headers["Location"]}>; rel="http://www.w3.org/ns/json-ld#context"; type="{LD}"'}


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
