"""The store's own helpers."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import insert

from ioc.core.db import Database, utcnow
from ioc.modules.context.errors import NgsiError
from ioc.modules.context.models import NgsiTenant
from ioc.modules.context.store import instance_id, load_entities, read_one

from .conftest import Ngsi


def test_instance_ids_are_version_4_uuid_urns_and_unique() -> None:
    ids = [instance_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for i in ids[:500]:
        assert re.fullmatch(r"urn:ngsi-ld:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i), i
        parsed = uuid.UUID(i.removeprefix("urn:ngsi-ld:"))
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == i.removeprefix("urn:ngsi-ld:")


def test_read_one_loads_what_load_entities_loads(ngsi: Ngsi, db: Database) -> None:
    """``read_one`` (Retrieve Entity on SQLite, no Session) is ``load_entities`` for one id: the same
    StoredEntity, types, scope, times and every instance, datasetIds included."""
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
