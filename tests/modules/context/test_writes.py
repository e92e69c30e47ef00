"""Single-entity writes by group commit: concurrent changes share a transaction, each as it would alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.core.events import OutboxEvent
from ioc.modules.context import service
from ioc.modules.context.entity import parse_attributes, parse_entity
from ioc.modules.context.errors import NgsiError
from ioc.modules.context.ld import ContextLoader
from ioc.modules.context.models import NgsiAttributeHistory
from ioc.modules.context.store import ChangeSet, load_entities
from ioc.modules.context.writes import EntityWrites
from tests.conftest import wait_for
from tests.modules.context.conftest import Ngsi, vehicle

CORE = ContextLoader().core
SPEED = "https://uri.etsi.org/ngsi-ld/default-context/speed"


def _speed_update(entity_id: str, speed: int) -> Callable[[Session, ChangeSet], service.UpdateResult]:
    attrs = parse_attributes({"speed": {"type": "Property", "value": speed}}, CORE, merge=True)

    def change(session: Session, cs: ChangeSet) -> service.UpdateResult:
        entity = load_entities(session, "", [entity_id]).get(entity_id)
        if entity is None:
            raise NgsiError("ResourceNotFound", f"The entity {entity_id} does not exist.")
        return service.update(cs, entity, attrs)

    return change


def _speeds(db: Database, entity_id: str) -> list[Any]:
    with db.session() as s:
        docs = s.scalars(
            select(NgsiAttributeHistory.doc)
            .where(NgsiAttributeHistory.entity_id == entity_id, NgsiAttributeHistory.name == SPEED)
            .order_by(NgsiAttributeHistory.id)
        ).all()
    return [d["value"] for d in docs]


def test_changes_queued_meanwhile_are_written_together_in_order(db: Database) -> None:
    writes = EntityWrites(db, CORE)
    inp = parse_entity(vehicle(1), CORE)
    writes.run("", lambda session, cs: service.create(cs, None, inp))
    entered, release = threading.Event(), threading.Event()
    first = _speed_update("urn:ngsi-ld:Vehicle:1", 11)

    def blocking(session: Session, cs: ChangeSet) -> service.UpdateResult:
        entered.set()
        release.wait(10)
        return first(session, cs)

    results: dict[str, Any] = {}

    def submit(key: str, change: Callable[[Session, ChangeSet], Any]) -> None:
        try:
            results[key] = writes.run("", change)
        except NgsiError as exc:
            results[key] = exc

    threads = [threading.Thread(target=submit, args=("first", blocking))]
    threads[0].start()
    assert entered.wait(10)  # the first change is being written alone...
    queued = [
        ("second", _speed_update("urn:ngsi-ld:Vehicle:1", 12)),
        ("missing", _speed_update("urn:ngsi-ld:Vehicle:404", 13)),
        ("third", _speed_update("urn:ngsi-ld:Vehicle:1", 14)),
    ]
    for k, (key, change) in enumerate(queued, start=1):  # ...while the others queue, in this order
        threads.append(threading.Thread(target=submit, args=(key, change)))
        threads[-1].start()
        wait_for(lambda k=k: len(writes.group._queue) == k)  # type: ignore[misc]
    release.set()
    for t in threads:
        t.join(10)

    # one transaction for the three that waited; the refused one did not undo the others
    assert (writes.group.batches, writes.group.items) == (3, 5)
    assert isinstance(results["missing"], NgsiError) and results["missing"].type_name == "ResourceNotFound"
    assert [results[k].updated for k in ("first", "second", "third")] == [[SPEED]] * 3
    # each change loaded what the one before it wrote: every value is in the history, in order
    assert _speeds(db, "urn:ngsi-ld:Vehicle:1") == [10, 11, 12, 14]
    with db.session() as s:
        assert (
            load_entities(s, "", ["urn:ngsi-ld:Vehicle:1"])["urn:ngsi-ld:Vehicle:1"].attrs[SPEED][""].doc["value"] == 14
        )
        events = s.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)).all()
    # and each change published its own event
    assert [e["attributes"]["speed"]["value"] for e in events if "speed" in e["attributes"]] == [10, 11, 12, 14]


def test_a_change_that_fails_in_the_database_fails_alone(db: Database) -> None:
    writes = EntityWrites(db, CORE)
    inp = parse_entity(vehicle(2), CORE)
    writes.run("", lambda session, cs: service.create(cs, None, inp))

    def duplicate(session: Session, cs: ChangeSet) -> None:
        service.create(cs, None, inp)  # a second row with the same id: the INSERT fails

    with pytest.raises(IntegrityError):
        writes.run("", duplicate)
    writes.run("", _speed_update("urn:ngsi-ld:Vehicle:2", 21))  # the writer goes on
    assert _speeds(db, "urn:ngsi-ld:Vehicle:2") == [20, 21]


def _concurrently(client: Callable[[int], Iterator[tuple[Any, int]]], clients: int = 12) -> list[str]:
    """Run ``client(0)`` .. ``client(clients - 1)`` on as many threads at once; each yields its
    answers with the status it expects. The texts of the answers that had another status."""
    errors: list[str] = []

    def run(worker: int) -> None:
        for response, status in client(worker):
            if response.status_code != status:
                errors.append(response.text)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_concurrent_patches_over_http_all_land(ngsi: Ngsi, db: Database) -> None:
    for n in range(1, 5):
        ngsi.create(vehicle(n))

    def client(worker: int) -> Iterator[tuple[Any, int]]:
        for k in range(5):
            n = 1 + (worker + k) % 4
            body = {"speed": {"type": "Property", "value": 1000 + worker * 10 + k}}
            yield ngsi.patch(f"/entities/urn:ngsi-ld:Vehicle:{n}/attrs", json=body), 204
        missing = {"speed": {"type": "Property", "value": 1}}
        yield ngsi.patch("/entities/urn:ngsi-ld:Vehicle:404/attrs", json=missing), 404

    assert _concurrently(client) == []
    written = sorted(v for n in range(1, 5) for v in _speeds(db, f"urn:ngsi-ld:Vehicle:{n}")[1:])
    assert written == sorted(1000 + w * 10 + k for w in range(12) for k in range(5))
    for n in range(1, 5):  # the value stored is the last one written
        current = ngsi.get(f"/entities/urn:ngsi-ld:Vehicle:{n}", params={"options": "keyValues"}).json()["speed"]
        assert current == _speeds(db, f"urn:ngsi-ld:Vehicle:{n}")[-1]


def test_concurrent_first_writes_of_new_tenants_each_create_their_tenant(ngsi: Ngsi) -> None:
    """Changes of several tenants in one batch: each is written under its own tenant, and a
    tenant's first write creates it (§4.14), whichever change of the batch it is."""

    def client(worker: int) -> Iterator[tuple[Any, int]]:
        tenant = {"NGSILD-Tenant": f"ward{worker % 4}"}
        yield ngsi.post("/entities", json=vehicle(100 + worker), headers=tenant), 201
        body = {"speed": {"type": "Property", "value": worker}}
        yield ngsi.patch(f"/entities/urn:ngsi-ld:Vehicle:{100 + worker}/attrs", json=body, headers=tenant), 204

    assert _concurrently(client) == []
    for worker in range(12):
        path = f"/entities/urn:ngsi-ld:Vehicle:{100 + worker}"
        mine = ngsi.get(path, headers={"NGSILD-Tenant": f"ward{worker % 4}"}, params={"options": "keyValues"})
        assert mine.status_code == 200 and mine.json()["speed"] == worker
        assert ngsi.get(path, headers={"NGSILD-Tenant": f"ward{(worker + 1) % 4}"}).status_code == 404
        assert ngsi.get(path).status_code == 404  # not in the default tenant
