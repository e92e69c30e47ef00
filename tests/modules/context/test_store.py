"""The store's own helpers."""

from __future__ import annotations

import re
import uuid

from ioc.modules.context.store import instance_id


def test_instance_ids_are_version_4_uuid_urns_and_unique() -> None:
    ids = [instance_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for i in ids[:500]:
        assert re.fullmatch(r"urn:ngsi-ld:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i), i
        parsed = uuid.UUID(i.removeprefix("urn:ngsi-ld:"))
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == i.removeprefix("urn:ngsi-ld:")
