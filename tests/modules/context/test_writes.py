"""Single-entity writes by group commit: concurrent changes share a transaction, each as it would alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
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
    writes.run("", inp.id, lambda session, cs: service.create(cs, None, inp))
    entered, release = threading.Event(), threading.Event()
    first = _speed_update("urn:ngsi-ld:Vehicle:1", 11)

    def blocking(session: Session, cs: ChangeSet) -> service.UpdateResult:
        entered.set()
        release.wait(10)
        return first(session, cs)

    results: dict[str, Any] = {}

    def submit(key: str, change: Callable[[Session, ChangeSet], Any]) -> None:
        entity_id = "urn:ngsi-ld:Vehicle:404" if key == "missing" else "urn:ngsi-ld:Vehicle:1"
        try:
            results[key] = writes.run("", entity_id, change)
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
    writes.run("", inp.id, lambda session, cs: service.create(cs, None, inp))

    def duplicate(session: Session, cs: ChangeSet) -> None:
        service.create(cs, None, inp)  # a second row with the same id: the INSERT fails

    with pytest.raises(IntegrityError):
        writes.run("", inp.id, duplicate)
    writes.run("", "urn:ngsi-ld:Vehicle:2", _speed_update("urn:ngsi-ld:Vehicle:2", 21))  # the writer goes on
    assert _speeds(db, "urn:ngsi-ld:Vehicle:2") == [20, 21]


Item = tuple[str, str, Callable[[Session, ChangeSet], Any]]


def _one_batch(writes: EntityWrites, items: list[Item]) -> list[Any]:
    """Submit ``items`` so that they are written in one batch, in this order (they queue while a
    first change holds the writer); each one's result or error."""
    entered, release = threading.Event(), threading.Event()

    def hold(session: Session, cs: ChangeSet) -> None:
        entered.set()
        release.wait(10)

    results: list[Any] = [None] * len(items)

    def submit(k: int) -> None:
        tenant, entity_id, change = items[k]
        try:
            results[k] = writes.run(tenant, entity_id, change)
        except Exception as exc:  # the error is the result under test
            results[k] = exc

    holder = threading.Thread(target=writes.run, args=("", "urn:ngsi-ld:Hold:1", hold))
    holder.start()
    assert entered.wait(10)
    threads = []
    for k in range(len(items)):
        threads.append(threading.Thread(target=submit, args=(k,)))
        threads[-1].start()
        wait_for(lambda k=k: len(writes.group._queue) == k + 1)  # type: ignore[misc]
    batches = writes.group.batches
    release.set()
    for t in [holder, *threads]:
        t.join(10)
    assert writes.group.batches == batches + 2  # the holder's, then all of them at once
    return results


def _event_times(db: Database, entity_ids: list[str]) -> list[Any]:
    with db.session() as s:
        rows = s.execute(select(OutboxEvent.payload, OutboxEvent.created_at).order_by(OutboxEvent.id)).all()
    return [created for payload, created in rows if payload["id"] in entity_ids]


def test_changes_of_distinct_entities_are_written_together_each_with_its_own_history_and_event(
    db: Database,
) -> None:
    writes = EntityWrites(db, CORE)
    ids = [f"urn:ngsi-ld:Vehicle:{n}" for n in range(31, 35)]
    for n, eid in enumerate(ids, start=31):
        writes.run("", eid, lambda session, cs, n=n: service.create(cs, None, parse_entity(vehicle(n), CORE)))
    before = len(_event_times(db, ids))
    results = _one_batch(writes, [("", eid, _speed_update(eid, 100 + k)) for k, eid in enumerate(ids)])

    assert [r.updated for r in results] == [[SPEED]] * 4
    for k, eid in enumerate(ids):
        assert _speeds(db, eid)[-1] == 100 + k
    # one insert for the group's events (one timestamp), one event per change, in order
    times = _event_times(db, ids)[before:]
    assert len(times) == 4 and len(set(times)) == 1
    with db.session() as s:
        payloads = s.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)).all()[-4:]
    assert [(p["id"], p["attributes"]["speed"]["value"]) for p in payloads] == [
        (eid, 100 + k) for k, eid in enumerate(ids)
    ]
    assert len({p["at"] for p in payloads}) == 4  # each change keeps its own time


def test_a_change_of_an_entity_the_group_touched_sees_the_earlier_change(db: Database) -> None:
    writes = EntityWrites(db, CORE)
    eid, other = "urn:ngsi-ld:Vehicle:41", "urn:ngsi-ld:Vehicle:42"
    for n, i in ((41, eid), (42, other)):
        writes.run("", i, lambda session, cs, n=n: service.create(cs, None, parse_entity(vehicle(n), CORE)))

    def seen(session: Session, cs: ChangeSet) -> Any:
        entity = load_entities(session, "", [eid])[eid]
        return entity.attrs[SPEED][""].doc["value"]

    results = _one_batch(
        writes,
        [("", eid, _speed_update(eid, 11)), ("", other, _speed_update(other, 21)), ("", eid, seen)],
    )
    assert results[2] == 11  # the group was written before the change of the same entity loaded it
    assert _speeds(db, other) == [420, 21]


def test_a_batch_reads_its_entities_together(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("statements counted with SQLite's trace callback; PostgreSQL runs the same code")
    writes = EntityWrites(db, CORE)
    ids = [f"urn:ngsi-ld:Vehicle:{n}" for n in range(61, 67)]
    for n, eid in enumerate(ids, start=61):
        writes.run("", eid, lambda session, cs, n=n: service.create(cs, None, parse_entity(vehicle(n), CORE)))
    statements: list[str] = []

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    event.listen(db.engine, "checkout", trace)
    try:
        results = _one_batch(writes, [("", eid, _speed_update(eid, 200 + k)) for k, eid in enumerate(ids)])
    finally:
        event.remove(db.engine, "checkout", trace)
    assert [r.updated for r in results] == [[SPEED]] * 6
    assert [_speeds(db, eid)[-1] for eid in ids] == [200 + k for k in range(6)]
    # the six entities and their attributes in two statements, not one each
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    assert len([sql for sql in reads if "FROM ngsild_entities" in sql]) == 1, reads
    assert len([sql for sql in reads if "FROM ngsild_attributes" in sql]) == 1, reads
    # read holding the write lock: nobody else writes them before their changes
    first_read = next(i for i, sql in enumerate(statements) if "FROM ngsild_entities" in sql)
    assert "BEGIN IMMEDIATE" in statements[:first_read], statements[:first_read]


def test_a_change_that_did_not_take_its_prefetched_entity_leaves_a_later_one_to_read_it_again(
    db: Database,
) -> None:
    writes = EntityWrites(db, CORE)
    new = parse_entity(vehicle(71), CORE)
    results = _one_batch(
        writes,
        [
            # creates without loading: the batch's read, before it, found no such entity
            ("", str(new.id), lambda session, cs: service.create(cs, None, new)),
            ("", str(new.id), _speed_update(str(new.id), 72)),
        ],
    )
    assert results[1].updated == [SPEED]  # not ResourceNotFound from the read before the create
    assert _speeds(db, str(new.id)) == [710, 72]


def test_a_tenants_first_write_is_written_before_the_changes_after_it(db: Database) -> None:
    writes = EntityWrites(db, CORE)
    first, second = parse_entity(vehicle(51), CORE), parse_entity(vehicle(52), CORE)

    def missing(session: Session, cs: ChangeSet) -> None:
        from ioc.modules.context.store import check_tenant

        check_tenant(session, "t51")  # NonexistentTenant unless the create before was written
        raise NgsiError("ResourceNotFound", "no such entity")

    results = _one_batch(
        writes,
        [
            ("t51", str(first.id), lambda session, cs: service.create(cs, None, first)),
            ("t51", "urn:ngsi-ld:Vehicle:404", missing),
            ("t51", str(second.id), lambda session, cs: service.create(cs, None, second)),
            ("", "urn:ngsi-ld:Vehicle:52", lambda session, cs: service.create(cs, None, second)),
        ],
    )
    assert isinstance(results[1], NgsiError) and results[1].type_name == "ResourceNotFound"
    with db.session() as s:
        assert set(load_entities(s, "t51", [str(first.id), str(second.id)])) == {str(first.id), str(second.id)}
        assert set(load_entities(s, "", [str(second.id)])) == {str(second.id)}  # its own tenant


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
