"""Transient entities and attribute instances (NGSI-LD v1.9.1 ``expiresAt``): shown only with
``options=sysAttrs`` (§6.3.11, the suite's 6311_01 with its exact requests), kept through merge,
replace, append and batch, and deleted by the job ``context.expiry.sweep`` as a Delete Entity or
Delete Attribute would delete them. Both databases."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.context import expiry
from ioc.modules.context.ld import ContextLoader
from ioc.modules.context.models import NgsiAttribute, NgsiEntity

from .conftest import Ngsi

LATER = "2100-01-01T00:00:00Z"
PAST = "2001-01-01T00:00:00Z"
TRANSIENT = "urn:ngsi-ld:Vehicle:6311-transient"
CORE = ContextLoader().core


def transient(eid: str = TRANSIENT, *, entity: str | None = LATER, attr: str | None = LATER) -> dict[str, Any]:
    """The suite's payload (6311_01 Suite Setup), with the two expiresAt chosen."""
    speed: dict[str, Any] = {"type": "Property", "value": 7, "observedAt": "2026-08-13T00:00:00Z"}
    if attr is not None:
        speed["expiresAt"] = attr
    body: dict[str, Any] = {"id": eid, "type": "Vehicle", "speed": speed, "brand": {"type": "Property", "value": "X"}}
    if entity is not None:
        body["expiresAt"] = entity
    return body


def path(eid: str) -> str:
    return "/entities/" + quote(eid, safe="")


def run_sweep(client: TestClient, db: Database) -> None:
    """The job as the app registered it."""
    client.app.state.registry.jobs["context.expiry.sweep"].run(db)  # type: ignore[attr-defined]


def events(db: Database, topic: str) -> list[dict[str, Any]]:
    with db.session() as s:
        return [e.payload for e in s.scalars(select(OutboxEvent).where(OutboxEvent.topic == topic))]


# --------------------------------------------------------------------------- 6311_01: shown with sysAttrs only


def test_6311_01_01_expires_at_is_absent_without_sys_attrs(ngsi: Ngsi) -> None:
    r = ngsi.post("/entities/", json=transient(), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    r = ngsi.get(path(TRANSIENT))
    assert r.status_code == 200
    assert "expiresAt" not in r.text and "speed" in r.text


def test_6311_01_02_expires_at_is_included_with_sys_attrs(ngsi: Ngsi) -> None:
    ngsi.create(transient())
    r = ngsi.get(path(TRANSIENT), params={"options": "sysAttrs"})
    assert r.status_code == 200
    body = r.json()
    assert body["expiresAt"] == LATER
    assert body["speed"]["expiresAt"] == LATER
    assert "createdAt" in r.text
    assert "expiresAt" not in body["brand"]  # only where known


def test_6311_01_03_temporal_instances_follow_the_same_gate(ngsi: Ngsi) -> None:
    ngsi.create(transient())
    window = {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}
    r = ngsi.get("/temporal" + path(TRANSIENT), params=window)
    assert r.status_code in (200, 206) and "expiresAt" not in r.text
    r = ngsi.get("/temporal" + path(TRANSIENT), params={**window, "options": "sysAttrs"})
    assert r.status_code in (200, 206)
    assert [i.get("expiresAt") for i in r.json()["speed"]] == [LATER]
    r = ngsi.get("/temporal" + path(TRANSIENT), params={**window, "format": "concise", "options": "sysAttrs"})
    assert [i.get("expiresAt") for i in r.json()["speed"]] == [LATER]
    r = ngsi.get("/temporal" + path(TRANSIENT), params={**window, "format": "concise"})
    assert "expiresAt" not in r.text


def test_query_and_representations(ngsi: Ngsi) -> None:
    ngsi.create(transient())
    r = ngsi.get("/entities", params={"type": "Vehicle", "options": "sysAttrs"})
    assert [e["expiresAt"] for e in r.json()] == [LATER]
    r = ngsi.get("/entities", params={"type": "Vehicle", "options": "sysAttrs", "format": "concise"})
    assert r.json()[0]["expiresAt"] == LATER and r.json()[0]["speed"]["expiresAt"] == LATER
    for params in ({"type": "Vehicle"}, {"type": "Vehicle", "options": "keyValues,sysAttrs"}):
        assert "expiresAt" not in ngsi.get("/entities", params=params).text


# --------------------------------------------------------------------------- writes


def test_merge_replace_append_and_batch_keep_or_change_it(ngsi: Ngsi) -> None:
    ngsi.create(transient(entity=None, attr=None))

    def shown() -> Any:
        return ngsi.get(path(TRANSIENT), params={"options": "sysAttrs"}).json().get("expiresAt")

    assert shown() is None
    assert ngsi.patch(path(TRANSIENT), json={"expiresAt": "2099-06-01T12:30:00.250Z"}).status_code == 204
    assert shown() == "2099-06-01T12:30:00.250Z"
    assert ngsi.patch(path(TRANSIENT), json={"brand": "Y"}).status_code == 204
    assert shown() == "2099-06-01T12:30:00.250Z"  # a merge without it keeps it
    assert ngsi.patch(path(TRANSIENT), json={"expiresAt": "urn:ngsi-ld:null"}).status_code == 204
    assert shown() is None
    assert ngsi.post(path(TRANSIENT) + "/attrs", json={"expiresAt": LATER}).status_code == 204
    assert shown() == LATER
    assert ngsi.put(path(TRANSIENT), json={"type": "Vehicle", "brand": "Z"}).status_code == 204
    assert shown() is None  # a replacement without it has none
    upsert = [transient(attr="2098-01-01T00:00:00Z"), transient("urn:ngsi-ld:Vehicle:6311-b", entity=PAST)]
    assert ngsi.post("/entityOperations/upsert", json=upsert).status_code in (201, 204)
    body = ngsi.get(path(TRANSIENT), params={"options": "sysAttrs"}).json()
    assert body["expiresAt"] == LATER and body["speed"]["expiresAt"] == "2098-01-01T00:00:00Z"
    # an attribute's expiresAt merged away with a Null
    speed = {"type": "Property", "value": 8, "expiresAt": "urn:ngsi-ld:null"}
    assert ngsi.patch(path(TRANSIENT), json={"speed": speed}).status_code == 204
    body = ngsi.get(path(TRANSIENT), params={"options": "sysAttrs"}).json()
    assert body["speed"]["value"] == 8 and "expiresAt" not in body["speed"]


@pytest.mark.parametrize(
    "body",
    [
        transient(entity="next week"),
        transient(entity="2100-01-01T07:00:00+07:00"),  # §4.6.3: UTC with a trailing Z
        transient(attr="2100-13-01T00:00:00Z"),
        transient(entity="urn:ngsi-ld:null"),  # a Null only means "remove" in a merge
        transient(attr=12),  # type: ignore[arg-type]
    ],
)
def test_a_bad_expires_at_is_400_and_writes_nothing(ngsi: Ngsi, db: Database, body: dict[str, Any]) -> None:
    r = ngsi.post("/entities", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    with db.session() as s:
        assert s.scalar(select(NgsiEntity.pk)) is None


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_deletes_what_expired_as_a_delete_would(ngsi: Ngsi, client: TestClient, db: Database) -> None:
    gone, trimmed, kept = "urn:ngsi-ld:Vehicle:gone", "urn:ngsi-ld:Vehicle:trimmed", "urn:ngsi-ld:Vehicle:kept"
    ngsi.create(transient(gone, entity=PAST, attr=None))
    ngsi.create(transient(trimmed, entity=None, attr=PAST))
    ngsi.create(transient(kept))
    run_sweep(client, db)
    r = ngsi.get(path(gone))
    assert r.status_code == 404
    body = ngsi.get(path(trimmed)).json()
    assert "speed" not in body and body["brand"]["value"] == "X"
    assert set(ngsi.get(path(kept)).json()) == {"id", "type", "speed", "brand"}
    # on the bus as a Delete Entity and a Delete Attribute (subscriptions are notified from there)
    assert [e["id"] for e in events(db, "context.entity.deleted")] == [gone]
    updated = [e for e in events(db, "context.entity.updated") if e["id"] == trimmed]
    assert [e["deleted_attributes"] for e in updated] == [["speed"]]
    # and in the history: the deletion of the attribute
    r = ngsi.get(
        "/temporal" + path(trimmed),
        params={"timerel": "after", "timeAt": "2000-01-01T00:00:00Z", "timeproperty": "deletedAt", "attrs": "speed"},
    )
    assert len(r.json()["speed"]) == 1
    with db.session() as s:
        assert s.scalar(select(NgsiAttribute.name).where(NgsiAttribute.expires_at.is_not(None))) is not None
    assert expiry.sweep(db, CORE) == 0  # nothing left to do


def test_the_sweep_takes_a_long_backlog_in_batches(
    ngsi: Ngsi, client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expiry, "BATCH", 2)
    bodies = [transient(f"urn:ngsi-ld:Vehicle:b{i}", entity=PAST, attr=None) for i in range(5)]
    bodies.append(transient("urn:ngsi-ld:Vehicle:stays"))
    assert ngsi.post("/entityOperations/create", json=bodies).status_code == 201
    assert expiry.sweep(db, CORE) == 5
    r = ngsi.get("/entities", params={"type": "Vehicle"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:stays"]


def test_the_sweep_keeps_tenants_apart(ngsi: Ngsi, client: TestClient, db: Database) -> None:
    city = {"NGSILD-Tenant": "phuong-vinh-hung"}
    ngsi.create(transient("urn:ngsi-ld:Vehicle:t", entity=PAST), headers=city)
    ngsi.create(transient("urn:ngsi-ld:Vehicle:t", entity=LATER))
    run_sweep(client, db)
    assert ngsi.get(path("urn:ngsi-ld:Vehicle:t"), headers=city).status_code == 404
    assert ngsi.get(path("urn:ngsi-ld:Vehicle:t")).status_code == 200
    deleted = events(db, "context.entity.deleted")
    assert [(e["tenant"], e["id"]) for e in deleted] == [("phuong-vinh-hung", "urn:ngsi-ld:Vehicle:t")]
