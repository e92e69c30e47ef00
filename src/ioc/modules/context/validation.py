"""Validation of entities of the FIWARE Smart Data Models types the city uses (off by default).

The schemas are compact subsets of the Smart Data Models ones (``data/models/<Type>.json``): for
each known attribute its JSON type, range, enumeration or date-time format, and whether it is a
Relationship. Types and attributes are matched by their local name (the end of the expanded
IRI), so the same check applies whether an entity was written with the core @context or with
the Smart Data Models one. Attributes a schema does not list are accepted; so are entities of
other types. A failed check is a 400 BadRequestData that names the type and the attribute.

Switched on with ``IOC_NGSILD_VALIDATE_MODELS=true``; :func:`configure` applies the setting when
the module is set up.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

from .errors import bad_request

_STATE = {"enabled": False}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def configure(enabled: bool) -> None:
    """Switch validation on or off for this process."""
    _STATE["enabled"] = enabled


def enabled() -> bool:
    return _STATE["enabled"]


@functools.cache
def schemas() -> dict[str, dict[str, Any]]:
    """The shipped schemas by entity type name."""
    found: dict[str, dict[str, Any]] = {}
    for entry in (resources.files(__package__) / "data" / "models").iterdir():
        if entry.name.endswith(".json"):
            doc = json.loads(entry.read_text(encoding="utf-8"))
            found[doc["title"]] = doc
    return found


def local_name(iri: str) -> str:
    """``pm25`` for ``https://uri.etsi.org/ngsi-ld/default-context/pm25`` (and for any vocabulary)."""
    return re.split(r"[/#]", iri.rstrip("/#"))[-1]


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


def _type_ok(value: Any, wanted: str | list[str]) -> bool:
    for name in [wanted] if isinstance(wanted, str) else wanted:
        if name == "boolean":
            ok = isinstance(value, bool)
        elif name == "integer":
            ok = not isinstance(value, bool) and (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            )
        elif name == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, _JSON_TYPES.get(name, ()))
        if ok:
            return True
    return False


def problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not fit ``schema`` (a JSON Schema subset), or None when it does."""
    if "anyOf" in schema:
        reasons = [problem(value, option) for option in schema["anyOf"]]
        if all(reasons):
            return " or ".join(r for r in reasons if r)
        return None
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}"
    wanted = schema.get("type")
    if wanted is not None and not _type_ok(value, wanted):
        return f"must be of type {wanted if isinstance(wanted, str) else ' or '.join(wanted)}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(map(str, schema['enum']))}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            return "must be a finite number"
        if "minimum" in schema and value < schema["minimum"]:
            return f"must be ≥ {schema['minimum']}, got {value!r}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"must be ≤ {schema['maximum']}, got {value!r}"
    if schema.get("format") == "date-time" and not _is_datetime(value):
        return f"must be a date-time (ISO 8601), got {value!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"needs at least {schema['minItems']} item(s)"
        items = schema.get("items")
        if items is not None:
            for item in value:
                reason = problem(item, items)
                if reason:
                    return f"item {reason}"
    return None


def _value_of(doc: Mapping[str, Any]) -> tuple[bool, Any]:
    kind = doc.get("type")
    key = {"Relationship": "object", "ListProperty": "valueList", "ListRelationship": "objectList"}.get(
        str(kind), "value"
    )
    if key not in doc:
        return False, None
    value = doc[key]
    if kind == "ListRelationship":
        value = [item.get("object") if isinstance(item, dict) else item for item in value]
    return True, value


def check(types: Iterable[str], attrs: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise BadRequestData when an attribute of ``attrs`` breaks the schema of one of ``types``.

    ``attrs`` maps attribute name IRIs to datasetId -> stored attribute document (deletions,
    which are not documents, are skipped). Does nothing while validation is off.
    """
    if not _STATE["enabled"]:
        return
    known = schemas()
    models = [known[name] for name in dict.fromkeys(local_name(t) for t in types) if name in known]
    if not models:
        return
    for iri, per_ds in attrs.items():
        attr = local_name(iri)
        for model in models:
            schema = model["properties"].get(attr)
            if schema is None:
                continue
            for doc in per_ds.values():
                if not isinstance(doc, dict):
                    continue
                where = f"{model['title']}: attribute {attr!r}"
                relationship = schema.get("x-ngsi", {}).get("type") == "Relationship"
                kind = doc.get("type")
                if relationship and kind not in ("Relationship", "ListRelationship"):
                    raise bad_request(f"{where} must be a Relationship (Smart Data Models).")
                if not relationship and kind in ("Relationship", "ListRelationship"):
                    raise bad_request(f"{where} must be a Property, not a {kind} (Smart Data Models).")
                present, value = _value_of(doc)
                if not present or kind in ("LanguageProperty", "GeoProperty"):
                    continue
                if isinstance(value, dict) and value.get("@type") == "DateTime":
                    value = value.get("@value")  # an NGSI-LD DateTime: its text is checked
                reason = problem(value, schema)
                if reason:
                    raise bad_request(f"{where} {reason} (Smart Data Models).")
