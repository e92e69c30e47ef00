"""The store's own helpers."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select

from ioc.core.db import Database, LoopReads, Reads, SqliteLoopReads, utcnow
from ioc.modules.context.errors import NgsiError
from ioc.modules.context.models import NgsiAttributeHistory, NgsiTenant
from ioc.modules.context.store import (
    ChangeSet,
    StoredEntity,
    flush,
    instance_id,
    load_entities,
    read_one,
    read_one_on_loop,
)

from .conftest import CORE, Ngsi, link_to


def test_instance_ids_are_version_4_uuid_urns_and_unique() -> None:
    ids = [instance_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for i in ids[:500]:
        assert re.fullmatch(r"urn:ngsi-ld:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i), i
        parsed = uuid.UUID(i.removeprefix("urn:ngsi-ld:"))
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == i.removeprefix("urn:ngsi-ld:")


def _create_two(ngsi: Ngsi) -> None:
    """An entity of two types, scopes, several instances of one attribute (datasetIds), and a
    bare one under tenant ``t1``."""
    ngsi.create(
        {
            "id": "urn:ngsi-ld:Vehicle:r1",
            "type": ["Vehicle", "Car"],
            "scope": ["/NgheAn/Vinh", "/Fleet"],
            "speed": [
                {"type": "Property", "value": 30, "observedAt": "2025-07-01T00:00:00Z"},
                {"type": "Property", "value": 31, "datasetId": "urn:ngsi-ld:Dataset:gps"},
            ],
            "brand": {"type": "Property", "value": "Vin", "unitCode": "X"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.68, 18.67]}},
        }
    )
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:bare", "type": "Vehicle"}, headers={"NGSILD-Tenant": "t1"})


def test_read_one_loads_what_load_entities_loads(ngsi: Ngsi, db: Database) -> None:
    """``read_one`` (Retrieve Entity, no Session) is ``load_entities`` for one id: the same
    StoredEntity, types, scope, times and every instance, datasetIds included."""
    _create_two(ngsi)
    with db.session() as session:
        expected = load_entities(session, "", ["urn:ngsi-ld:Vehicle:r1"])["urn:ngsi-ld:Vehicle:r1"]
        bare = load_entities(session, "t1", ["urn:ngsi-ld:Vehicle:bare"])["urn:ngsi-ld:Vehicle:bare"]
    got = read_one(db, "", "urn:ngsi-ld:Vehicle:r1")
    assert got == expected
    assert got is not None and set(got.attrs[next(n for n in got.attrs if n.endswith("speed"))]) == {
        "",
        "urn:ngsi-ld:Dataset:gps",
    }
    assert got.created_at.tzinfo is not None and got.scope == ["/NgheAn/Vinh", "/Fleet"]
    assert read_one(db, "t1", "urn:ngsi-ld:Vehicle:bare") == bare and bare.attrs == {}
    assert read_one(db, "", "urn:ngsi-ld:Vehicle:none") is None
    assert read_one(db, "t1", "urn:ngsi-ld:Vehicle:r1") is None  # another tenant's entity
    with pytest.raises(NgsiError) as err:
        read_one(db, "nosuchtenant", "urn:ngsi-ld:Vehicle:r1")
    assert err.value.type_name == "NonexistentTenant"


def test_read_one_on_loop_reads_what_read_one_reads(ngsi: Ngsi, db: Database) -> None:
    """While serving, Retrieve Entity reads on the event loop's own connections
    (``read_one_on_loop``: PostgreSQL's async pool, a SQLite file's connection): the same
    entities as ``read_one``, the same None for a missing one, the same refusal of a missing
    tenant."""
    _create_two(ngsi)
    cases = [("", "urn:ngsi-ld:Vehicle:r1"), ("t1", "urn:ngsi-ld:Vehicle:bare"), ("", "urn:ngsi-ld:Vehicle:none")]

    async def on_loop() -> list[StoredEntity | None]:
        await db.open_loop_reads()
        assert db.loop_reads is not None
        try:
            got = [await read_one_on_loop(db.loop_reads, db.engine.dialect, t, i) for t, i in cases]
            with pytest.raises(NgsiError) as err:
                await read_one_on_loop(db.loop_reads, db.engine.dialect, "nosuchtenant", "urn:ngsi-ld:Vehicle:r1")
            assert err.value.type_name == "NonexistentTenant"
            return got
        finally:
            await db.close_loop_reads()

    got = asyncio.run(on_loop())
    assert got == [read_one(db, t, i) for t, i in cases]
    assert got[0] is not None and len(got[0].attrs) == 3 and got[2] is None


def test_retrieve_entity_reads_on_the_loops_own_connections(ngsi: Ngsi, app: FastAPI) -> None:
    """A plain Retrieve Entity reads through the server's reads on the event loop (PostgreSQL's
    ``LoopReads``, a SQLite file's ``SqliteLoopReads``); one with a ``Link`` header (a context
    that may have to be fetched) in the thread pool. Both answer the same, and so do the
    refusals the loop's read leaves to the thread pool's path."""
    db: Database = app.state.db

    def on_the_loop() -> Reads | None:  # the client's event loop: the server's reads belong to it
        portal = ngsi.client.portal
        assert portal is not None
        return portal.call(lambda: db.loop_reads)

    expected = LoopReads if db.dialect == "postgresql" else SqliteLoopReads
    assert isinstance(on_the_loop(), expected) and db.loop_reads is None  # off the loop: none
    _create_two(ngsi)

    def loop_reads_so_far() -> int:
        reads = on_the_loop()
        assert reads is not None
        return reads.served

    before = loop_reads_so_far()
    on_loop = ngsi.get("/entities/urn:ngsi-ld:Vehicle:r1")
    assert on_loop.status_code == 200, on_loop.text
    assert loop_reads_so_far() == before + 1
    in_pool = ngsi.get("/entities/urn:ngsi-ld:Vehicle:r1", headers={"Link": link_to(CORE)})
    assert in_pool.status_code == 200 and loop_reads_so_far() == before + 1
    assert on_loop.json() == in_pool.json() and on_loop.json()["brand"] == {
        "type": "Property",
        "value": "Vin",
        "unitCode": "X",
    }
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:none").json()["type"].endswith("ResourceNotFound")
    missing = ngsi.get("/entities/urn:ngsi-ld:Vehicle:r1", headers={"NGSILD-Tenant": "nosuchtenant"})
    assert missing.status_code == 404 and missing.json()["type"].endswith("NonexistentTenant")
    assert ngsi.get("/entities/not a uri").status_code == 400
    assert ngsi.get("/entities/urn:ngsi-ld:Vehicle:r1?bogus=1").status_code == 400


def test_read_one_gives_its_connection_back_transactional(db: Database) -> None:
    """On PostgreSQL ``read_one`` reads in autocommit (no BEGIN, no ROLLBACK): the connection goes
    back to the pool as it came, so the next session's writes are still one transaction."""
    db.engine.dispose()  # one pooled connection: the read's is the session's after it
    assert read_one(db, "", "urn:ngsi-ld:Vehicle:none") is None
    with db.sessions() as s:
        s.execute(insert(NgsiTenant).values(name="rolledback", created_at=utcnow()))
        s.rollback()
    with db.sessions() as s:
        assert s.get(NgsiTenant, "rolledback") is None


def test_a_failing_row_of_a_flush_fails_it_whole(ngsi: Ngsi, db: Database) -> None:
    """The change set's rows go to the database together (on PostgreSQL in one pipeline, their
    errors read at its end): a row that fails (its entity deleted meanwhile) fails the flush, and
    nothing of the change set stays, neither the entity's new modifiedAt nor a history row."""
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:gone", "type": "Vehicle", "speed": {"type": "Property", "value": 1}})
    ngsi.create({"id": "urn:ngsi-ld:Vehicle:kept", "type": "Vehicle", "speed": {"type": "Property", "value": 1}})
    with db.session() as session:
        loaded = load_entities(session, "", ["urn:ngsi-ld:Vehicle:gone", "urn:ngsi-ld:Vehicle:kept"])
    kept_before = read_one(db, "", "urn:ngsi-ld:Vehicle:kept")
    assert ngsi.delete("/entities/urn:ngsi-ld:Vehicle:gone").status_code == 204
    history_before = _history_count(db)
    speed = next(iter(loaded["urn:ngsi-ld:Vehicle:kept"].attrs))
    cs = ChangeSet("", utcnow())
    for entity in loaded.values():  # the kept entity first: its rows are sent before the failing ones
        cs.put_attr(entity, speed, "", {"type": "Property", "value": 2})
        cs.touch(entity)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)), db.session() as session:
        flush(session, cs)
    assert read_one(db, "", "urn:ngsi-ld:Vehicle:kept") == kept_before
    assert _history_count(db) == history_before


def _history_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(NgsiAttributeHistory)) or 0)
