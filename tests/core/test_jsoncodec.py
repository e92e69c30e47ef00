"""The JSON codec of stored documents and API answers: orjson's speed, the standard library's values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ioc.core.audit import AuditEntry
from ioc.core.db import Database
from ioc.core.jsoncodec import dumps, dumps_bytes, loads

DOCS: list[Any] = [
    {"type": "Property", "value": 12.5, "observedAt": "2025-07-01T00:00:00Z"},
    {"name": "Phường Trường Vinh", "tags": ["ngập", "mưa"], "n": None, "ok": True},
    [1, 2.0, -3, 0.1, 1e16, 1.5e-7],
    {"big": 2**70, "negative": -(2**65), "edge": 2**63 - 1, "nested": [{"x": 123456789012345678901234567890}]},
    {"id": "urn:ngsi-ld:Thing:12345678901234567890", "value": 7},  # a long digit run that is no number
    {"ward": "Phường Vinh Hưng", "count": 2**64, "code": "٣" * 20},  # non-ASCII text and digits beside a big one
]


@pytest.mark.parametrize("doc", DOCS)
def test_values_round_trip_exactly_as_the_standard_library_reads_them(doc: Any) -> None:
    text = dumps(doc)
    assert json.loads(text) == doc  # valid JSON, the same value
    assert loads(text) == doc and loads(text.encode()) == doc
    assert json.dumps(loads(text)) == json.dumps(doc)  # integers stay integers, of any size
    assert dumps_bytes(doc) == text.encode()


def test_output_is_compact_utf8_and_keys_that_are_not_strings_fall_back() -> None:
    assert dumps({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'
    assert dumps({1: "x"}) == '{"1":"x"}'  # as json.dumps writes it


def test_stored_documents_keep_their_values_on_both_databases(db: Database) -> None:
    doc = {"total": 2**70, "ward": "Phường Vinh Hưng", "ratio": 0.1, "ids": ["urn:x:12345678901234567890"]}
    with db.session() as s:
        entry = AuditEntry(
            actor_kind="system", actor_id="t", actor_name="t", action="test", object_type="t", object_id="1", after=doc
        )
        s.add(entry)
        s.flush()
        pk = entry.id
    with db.session() as s:
        stored = s.get(AuditEntry, pk)
        assert stored is not None
        assert stored.after == doc and isinstance(stored.after["total"], int)
    assert db.engine.dialect._json_serializer is dumps
    assert db.engine.dialect._json_deserializer is loads
