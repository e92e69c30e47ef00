"""Parsing NGSI-LD entities and attributes from request bodies into the stored form.

The stored form of an attribute instance is the normalized NGSI-LD attribute with its name
and every sub-attribute name expanded to an IRI, ``type`` one of :data:`KINDS`, and neither
system times nor instance ids (those are columns). Concise input (v1.6+: no ``type``, bare
values, GeoJSON geometries) is normalized here. Input is validated completely before any
write, so a bad entity never leaves half of itself behind.
"""

from __future__ import annotations

import functools
import json
import math
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ioc.core.geo import GeometryError, geojson_bbox

from .errors import bad_request
from .ld import NGSI_LD, ActiveContext, is_uri
from .validation import check as check_model

NULL = "urn:ngsi-ld:null"
KINDS = (
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
)
VALUE_KEY = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
#: Members of an attribute that are not sub-attributes.
CORE_MEMBERS = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "vocab",
        "json",
        "valueList",
        "objectList",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "expiresAt",
        "instanceId",
        "lang",
        "previousValue",
        "@context",
        "valueType",
        "entityIdSealed",
        "entityTypeSealed",
    }
)
#: Output-only members (showChanges, inline retrieval): never part of a request (§4.5.2.2, §4.5.3.2).
OUTPUT_ONLY = frozenset(
    {
        "previousValue",
        "previousObject",
        "previousLanguageMap",
        "previousVocab",
        "previousJson",
        "previousValueList",
        "previousObjectList",
        "entity",
        "entityList",
    }
)
PROOF = "ngsildproof"
SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt", "deletedAt", "instanceId"})
ENTITY_MEMBERS = frozenset(
    {"id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt", "expiresAt"}
)
GEO_NAMES = frozenset({NGSI_LD + "location", NGSI_LD + "observationSpace", NGSI_LD + "operationSpace"})
GEOJSON_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})
_BAD_NAME = re.compile(r"[<>\"'=;()\s\x00-\x1f]")
_MAX_NAME_BYTES = 900


#: Set while parsing a request body of the API: times must then be UTC with a trailing ``Z``
#: (§4.6.3). Producers inside the platform (``context.upsert``) are not held to the letter.
STRICT_INPUT: ContextVar[bool] = ContextVar("ngsild_strict_input", default=False)
_UTC_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?Z$")
#: Core terms that name members of attributes, never attributes themselves (§4.5.1).
RESERVED_NAMES = frozenset(
    {
        "datasetId",
        "instanceId",
        "observedAt",
        "unitCode",
        "objectType",
        "lang",
        "value",
        "object",
        "languageMap",
        "vocab",
        "json",
        "valueList",
        "objectList",
        "previousValue",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "expiresAt",
    }
)
_SCOPE = re.compile(r"^/?[^\W\d_]\w*(/[^\W\d_]\w*)*$")
#: The core property ``scope`` (§4.18), the name of its temporal evolution in the history.
SCOPE = NGSI_LD + "scope"
#: What a scope instance of a temporal representation may carry (§4.5.6): besides ``type`` and
#: ``value``, only the non-reified temporal properties (the system ones are ignored on input).
_SCOPE_INSTANCE_MEMBERS = frozenset(
    {"type", "value", "observedAt", "createdAt", "modifiedAt", "deletedAt", "instanceId"}
)


class Delete:
    """Marker: the attribute is to be deleted (``urn:ngsi-ld:null`` in a merge)."""


DELETE = Delete()


def check_scope(scope: Any) -> None:
    """400 BadRequestData unless ``scope`` is absent, a Scope or a non-empty array of them (§4.18)."""
    if scope is None:
        return
    scopes = scope if isinstance(scope, list) else [scope]
    if not scopes or not all(isinstance(s, str) and _SCOPE.match(s) for s in scopes):
        raise bad_request("Invalid scope: levels are a letter then letters, digits or _ (§4.18).")


def parse_scope_instances(raw: Any) -> list[dict[str, Any]] | None:
    """The ``scope`` of a temporal representation (§4.5.6): instances (an object or an array of
    objects ``{"type": "Property", "value": <Scope or array of Scopes>, "observedAt": ...}``) in the
    stored form, or None when it is given as a plain Scope or array of Scopes (the caller records
    it as a change made now). 400 BadRequestData for anything else."""
    if raw is None:
        return None
    if isinstance(raw, str) or (isinstance(raw, list) and not any(isinstance(i, dict) for i in raw)):
        check_scope(raw)
        return None
    items = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(i, dict) for i in items):
        raise bad_request("scope: an array of instances holds only instances (objects).")
    return [parse_scope_instance(item) for item in items]


def parse_scope_instance(raw: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """One instance of the temporal evolution of a scope, stored as ``{"type": "Property", "value": ...}``
    with its ``observedAt`` when given; ``partial`` (a modification of an instance) lets the value out."""
    extra = sorted(k for k in raw if k not in _SCOPE_INSTANCE_MEMBERS)
    if extra:
        listed = ", ".join(extra)
        raise bad_request(f"scope: an instance carries only type, value and observedAt, not {listed} (§4.5.6).")
    kind = raw.get("type", "Property")
    if kind not in ("Property", NGSI_LD + "Property"):
        raise bad_request("scope: an instance is a Property (§4.5.6).")
    doc: dict[str, Any] = {"type": "Property"}
    if "value" in raw:
        if raw["value"] is None:
            raise bad_request("scope: the value of an instance is a Scope or an array of Scopes.")
        check_scope(raw["value"])
        doc["value"] = raw["value"]
    elif not partial:
        raise bad_request("scope: an instance needs a value.")
    if "observedAt" in raw:
        parse_instant(raw["observedAt"], "scope: observedAt")
        doc["observedAt"] = raw["observedAt"]
    return doc


@dataclass
class EntityInput:
    """A parsed entity (or entity fragment): attribute name IRI -> datasetId -> stored doc."""

    id: str | None
    types: list[str]
    scope: Any = None
    attrs: dict[str, dict[str, dict[str, Any] | Delete]] = field(default_factory=dict)
    #: ``expiresAt`` of a transient entity (v1.9.1); DELETE (an NGSI-LD Null in a merge) removes it.
    expires_at: datetime | Delete | None = None


def parse_datetime(value: Any, what: str) -> datetime:
    """A timezone-aware datetime from an NGSI-LD DateTime string (UTC when no zone is given)."""
    if not isinstance(value, str):
        raise bad_request(f"{what} must be a DateTime string.")
    try:
        return _utc_instant(value)
    except ValueError as exc:
        raise bad_request(f"{what} is not a valid DateTime: {value!r}.") from exc


@functools.lru_cache(maxsize=4096)
def _utc_instant(value: str) -> datetime:
    """The parse itself, memoized: a write reads each ``observedAt`` three times (the request,
    the history row, the attribute row), and a batch's instances often share their times.
    Datetimes are immutable, so sharing one is safe."""
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_instant(value: Any, what: str) -> datetime:
    """A DateTime member of a request body (``observedAt``, ``expiresAt``): in the API, UTC with a
    trailing ``Z`` (§4.6.3)."""
    parsed = parse_datetime(value, what)
    if STRICT_INPUT.get() and not _UTC_DATETIME.match(value):
        raise bad_request(f"{what} must be a UTC DateTime ending in Z (§4.6.3).")
    return parsed


def format_instant(value: datetime) -> str:
    """A stored instant given back as a DateTime: with milliseconds only when it has them, so an
    ``expiresAt`` of ``2100-01-01T00:00:00Z`` reads as it was written."""
    text = format_datetime(value)
    return text[:-5] + "Z" if text.endswith(".000Z") else text


def format_datetime(value: datetime) -> str:
    """NGSI-LD DateTime text: UTC, milliseconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_NAME = re.compile(r"^([^\W\d_][\w\-.]*:)?[^\W\d_]\w*$")


def check_name(name: str, what: str = "attribute name") -> None:
    if not name or _BAD_NAME.search(name) or len(name.encode()) > _MAX_NAME_BYTES:
        raise bad_request(f"Invalid {what}: {name!r}.")
    # §4.6.2: name = unicodeLetter *(unicodeLetter / unicodeNumber / "_"), optionally prefix:name;
    # an absolute IRI names the same thing expanded.
    if STRICT_INPUT.get() and not _NAME.match(name) and not ("://" in name or name.startswith("urn:")):
        raise bad_request(f"Invalid {what} {name!r}: a letter, then letters, digits or _ (§4.6.2).")


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    if depth > 32:
        raise bad_request(f"{where}: nested too deeply.")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"{where}: NaN and Infinity are not JSON.")
    if isinstance(value, str) and "\x00" in value:
        raise bad_request(f"{where}: NUL characters are not allowed.")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json(k, where, depth + 1)
            _check_json(v, where, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, where, depth + 1)


def _is_geojson(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in GEOJSON_TYPES and "coordinates" in value


def infer_kind(raw: dict[str, Any]) -> str:
    """The attribute type of a concise attribute (no ``type`` member)."""
    if "object" in raw:
        return "Relationship"
    if "languageMap" in raw:
        return "LanguageProperty"
    if "vocab" in raw:
        return "VocabProperty"
    if "json" in raw:
        return "JsonProperty"
    if "valueList" in raw:
        return "ListProperty"
    if "objectList" in raw:
        return "ListRelationship"
    if _is_geojson(raw.get("value")):
        return "GeoProperty"
    return "Property"


#: The value members an NGSI-LD Null can stand in for (§5.5.4).
NULLABLE_MEMBERS = ("value", "object", "languageMap", "vocab", "json")


def null_member(key: str, value: Any) -> bool:
    """An NGSI-LD Null value member: ``urn:ngsi-ld:null``, or for a languageMap
    ``{"@none": "urn:ngsi-ld:null"}`` (the Null of a LanguageProperty, §4.5.18, §5.8.6)."""
    return value == NULL or (key == "languageMap" and value == {"@none": NULL})


def nulled(raw: dict[str, Any]) -> bool:
    """Whether an attribute fragment's own value member is an NGSI-LD Null (delete it, §5.5.4):
    ``value`` of a Property, ``object`` of a Relationship, ``vocab``, ``json``, ``languageMap``…"""
    if "type" not in raw:  # a partial update's fragment: whichever value member it carries
        return any(null_member(key, raw.get(key)) for key in NULLABLE_MEMBERS)
    kind = raw["type"]
    if isinstance(kind, str) and kind.startswith(NGSI_LD):
        kind = kind[len(NGSI_LD) :]
    key = VALUE_KEY.get(kind) if isinstance(kind, str) else None
    return key is not None and null_member(key, raw.get(key))  # a GeoProperty too (056_03_03, 012_05_03)


def parse_attribute(
    name: str, raw: Any, ctx: ActiveContext, *, merge: bool = False, partial: bool = False, depth: int = 0
) -> dict[str, Any] | Delete:
    """One attribute instance in stored form; ``merge`` lets ``urn:ngsi-ld:null`` mean delete.

    ``partial`` (a partial attribute update) accepts a fragment without a value.
    """
    where = f"attribute {name!r}"
    if depth > 8:
        raise bad_request(f"{where}: sub-attributes nested too deeply.")
    if merge and (raw is None or raw == NULL):
        return DELETE
    if raw is None:
        raise bad_request(f"{where}: null is not a valid attribute.")
    if not isinstance(raw, dict):
        _check_json(raw, where)
        return {"type": "Property", "value": raw}
    if _is_geojson(raw) and "value" not in raw:
        return {"type": "GeoProperty", "value": _geometry(raw, where)}
    if merge and nulled(raw):
        return DELETE
    kind = raw.get("type")
    if kind is None:
        kind = infer_kind(raw)
    if isinstance(kind, str) and kind.startswith(NGSI_LD):
        kind = kind[len(NGSI_LD) :]
    if kind not in KINDS:
        raise bad_request(f"{where}: invalid attribute type {kind!r}.")
    if name in GEO_NAMES and kind == "Property" and _is_geojson(raw.get("value")):
        kind = "GeoProperty"
    if name in GEO_NAMES and kind != "GeoProperty" and STRICT_INPUT.get():
        raise bad_request(f"{where}: location, observationSpace and operationSpace are GeoProperties (§4.7.1).")
    doc: dict[str, Any] = {"type": kind}
    key = VALUE_KEY[kind]
    if key in raw and ((not merge and raw[key] == NULL) or ((not merge or partial) and _holds_null(raw[key]))):
        # §5.2.1, §5.5.4: an NGSI-LD Null only means "remove" in a partial update or a merge, and
        # inside a compound value only in a merge (§5.5.12, RFC 7396 into the value object).
        raise bad_request(f"{where}: urn:ngsi-ld:null is only allowed in a partial update or a merge (§5.2.1).")
    if key in raw:
        doc[key] = _value(kind, raw[key], ctx, where)
    elif not partial:
        raise bad_request(f"{where}: a {kind} needs a '{key}' member.")
    for member in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList"):
        if member in raw and member != key:
            raise bad_request(f"{where}: '{member}' is not a member of a {kind}.")
    if "observedAt" in raw:
        parse_instant(raw["observedAt"], f"{where}: observedAt")
        doc["observedAt"] = raw["observedAt"]
    if "expiresAt" in raw:  # v1.9.1: the instance is deleted then (context.expiry); NGSI-LD Null in a merge keeps it
        if not (merge and raw["expiresAt"] == NULL):
            parse_instant(raw["expiresAt"], f"{where}: expiresAt")
        doc["expiresAt"] = raw["expiresAt"]
    if "@context" in raw:
        raise bad_request(f"{where}: an attribute must not carry an embedded @context (§5.5.7).")
    if kind in ("JsonProperty", "Relationship", "ListRelationship") and "unitCode" in raw:
        raise bad_request(f"{where}: a {kind} has no unitCode (§4.5.3.2, §4.5.24).")
    if STRICT_INPUT.get():
        for member in OUTPUT_ONLY:
            if member in raw:
                raise bad_request(f"{where}: '{member}' is only ever part of a response.")
    if "valueType" in raw:
        vt = raw["valueType"]
        if kind == "LanguageProperty":
            # Table 5.2.32-1: the valueType of a LanguageProperty "shall be equal to langString".
            if vt not in ("langString", "rdf:langString", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"):
                raise bad_request(f"{where}: the valueType of a LanguageProperty is langString.")
        elif kind != "Property" or not isinstance(vt, str):
            raise bad_request(f"{where}: valueType is a datatype URI of a Property.")
        doc["valueType"] = vt
    _proof_members(name, raw, doc, ctx, where)
    if "unitCode" in raw:
        if not isinstance(raw["unitCode"], str):
            raise bad_request(f"{where}: unitCode must be a string.")
        doc["unitCode"] = raw["unitCode"]
    if raw.get("datasetId") == NULL:
        raise bad_request(f"{where}: a datasetId cannot be deleted with urn:ngsi-ld:null (§5.5.8).")
    if "datasetId" in raw and raw["datasetId"] is not None and raw["datasetId"] != "@none":
        # §4.5.5.1: no datasetId, or "@none", is the default instance (never echoed).
        ds = raw["datasetId"]
        if not isinstance(ds, str) or not is_uri(ds):
            raise bad_request(f"{where}: datasetId must be a URI.")
        doc["datasetId"] = ds
    if "objectType" in raw:
        if kind not in ("Relationship", "ListRelationship"):
            raise bad_request(f"{where}: objectType belongs to relationships.")
        ot = raw["objectType"]
        if isinstance(ot, str):
            doc["objectType"] = ctx.expand(ot)
        elif isinstance(ot, list) and all(isinstance(t, str) for t in ot):
            doc["objectType"] = [ctx.expand(t) for t in ot]
        else:
            raise bad_request(f"{where}: objectType must be a type name or a list of them.")
    for sub, sub_raw in raw.items():
        if sub in CORE_MEMBERS:
            continue
        check_name(sub, "sub-attribute name")
        sub_iri = ctx.expand(sub)
        parsed = parse_attribute(sub_iri, sub_raw, ctx, merge=merge, depth=depth + 1)
        doc[sub_iri] = NULL if isinstance(parsed, Delete) else parsed
    return doc


def _is_proof(name: str) -> bool:
    return name in (PROOF, NGSI_LD + PROOF) or name.endswith(("/" + PROOF, "#" + PROOF))


def _proof_members(name: str, raw: dict[str, Any], doc: dict[str, Any], ctx: ActiveContext, where: str) -> None:
    """``ngsildproof`` (§4.5.2.2, C.11): a Property whose value is a proof object, with the non-reified
    ``entityIdSealed`` and ``entityTypeSealed``; those two are prohibited on every other attribute."""
    sealed = [m for m in ("entityIdSealed", "entityTypeSealed") if m in raw]
    if not _is_proof(name):
        if sealed:
            raise bad_request(f"{where}: {sealed[0]} is only a member of ngsildproof.")
        return
    if "value" in raw and not isinstance(raw["value"], dict):
        raise bad_request(f"{where}: the value of ngsildproof is a proof object.")
    for member in sealed:
        if not isinstance(raw[member], str) or not raw[member]:
            raise bad_request(f"{where}: {member} must be a string.")
    if "entityIdSealed" in raw:
        doc["entityIdSealed"] = raw["entityIdSealed"]
    if "entityTypeSealed" in raw:
        doc["entityTypeSealed"] = ctx.expand(raw["entityTypeSealed"])


def _holds_null(value: Any, depth: int = 0) -> bool:
    """Whether an NGSI-LD Null sits inside a compound value (any depth)."""
    if depth > 32:
        return False
    if isinstance(value, dict):
        return any(v == NULL or _holds_null(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(v == NULL or _holds_null(v, depth + 1) for v in value)
    return False


def _geometry(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        # §4.7.2: a geometry may come encoded as a JSON string; it is stored as the object.
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise bad_request(f"{where}: the string is not an encoded GeoJSON geometry.") from exc
    if not isinstance(value, dict) or value.get("type") not in GEOJSON_TYPES:
        # §4.6.3: every GeoJSON geometry "with the exception of GeometryCollection".
        raise bad_request(f"{where}: a GeoProperty value must be a GeoJSON geometry (not a collection).")
    try:
        geojson_bbox(value, repair=True)  # RFC 7946 lets self-intersecting rings through
    except GeometryError as exc:
        raise bad_request(f"{where}: invalid GeoJSON geometry: {exc}") from exc
    return value


def _value(kind: str, value: Any, ctx: ActiveContext, where: str) -> Any:
    _check_json(value, where)
    if kind == "GeoProperty":
        return _geometry(value, where)
    if value is None:
        raise bad_request(f"{where}: the value must not be null.")
    if kind == "Relationship":
        objs = value if isinstance(value, list) else [value]
        if not objs or not all(isinstance(o, str) and is_uri(o) for o in objs):
            raise bad_request(f"{where}: the object of a Relationship must be a URI.")
        return value
    if kind == "LanguageProperty":
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.strip() for k in value):
            raise bad_request(f"{where}: languageMap keys are language tags (§4.5.18).")
        if not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)) for v in value.values()
        ):
            raise bad_request(f"{where}: languageMap must map language tags to strings.")
        return value
    if kind == "VocabProperty":
        if isinstance(value, str):
            return ctx.expand(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [ctx.expand(v) for v in value]
        raise bad_request(f"{where}: vocab must be a term or a list of terms.")
    if kind == "JsonProperty" and not (
        isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
    ):
        raise bad_request(f"{where}: json must be a JSON object or an array of objects (§4.5.24).")
    if kind == "ListProperty":
        if not isinstance(value, list):
            raise bad_request(f"{where}: valueList must be an array.")
        return value
    if kind == "ListRelationship":
        if not isinstance(value, list):
            raise bad_request(f"{where}: objectList must be an array.")
        out: list[Any] = []
        for item in value:
            obj = item.get("object") if isinstance(item, dict) else item
            if not isinstance(obj, str) or not is_uri(obj):
                raise bad_request(f"{where}: objectList members must be URIs.")
            out.append({"object": obj})
        return out
    return value


def parse_attributes(
    body: dict[str, Any], ctx: ActiveContext, *, merge: bool = False
) -> dict[str, dict[str, dict[str, Any] | Delete]]:
    """Every attribute of an entity (fragment) body: name IRI -> datasetId ('' default) -> doc."""
    attrs: dict[str, dict[str, dict[str, Any] | Delete]] = {}
    for name, raw in body.items():
        if name in ENTITY_MEMBERS:
            continue
        check_name(name)
        iri = ctx.expand(name)
        if name in RESERVED_NAMES or (iri.startswith(NGSI_LD) and iri[len(NGSI_LD) :] in RESERVED_NAMES):
            raise bad_request(f"{name!r} is a core term and cannot be an attribute name (§4.5.1).")
        instances = raw if isinstance(raw, list) and (not raw or isinstance(raw[0], dict)) else [raw]
        if isinstance(raw, list) and not raw:
            raise bad_request(f"attribute {name!r}: an empty array is not an attribute.")
        per_ds: dict[str, dict[str, Any] | Delete] = {}
        for inst in instances:
            parsed = parse_attribute(iri, inst, ctx, merge=merge)
            ds = ""
            if isinstance(parsed, dict):
                ds = parsed.get("datasetId", "")
            elif isinstance(inst, dict) and isinstance(inst.get("datasetId"), str) and inst["datasetId"] != "@none":
                ds = inst["datasetId"]
            if ds in per_ds:
                raise bad_request(f"attribute {name!r}: two instances with the same datasetId.")
            per_ds[ds] = parsed
        if iri in attrs:
            raise bad_request(f"attribute {name!r} given twice.")
        attrs[iri] = per_ds
    return attrs


def parse_types(raw: Any, ctx: ActiveContext, *, required: bool) -> list[str]:
    if raw is None:
        if required:
            raise bad_request("The entity has no type.")
        return []
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(t, str) and t for t in items):
        raise bad_request("The entity type must be a name or a list of names.")
    types: list[str] = []
    for t in items:
        check_name(t, "entity type")
        term = ctx.terms.get(t)
        if term is not None and term.iri.startswith("@"):  # 001_02_04: "type" is @type in the core @context
            raise bad_request(f"{t!r} stands for the JSON-LD keyword {term.iri} in the @context, not an entity type.")
        iri = ctx.expand(t)
        if iri not in types:
            types.append(iri)
    return types


def parse_entity(
    body: Any, ctx: ActiveContext, *, require_id: bool = True, require_type: bool = True, merge: bool = False
) -> EntityInput:
    """A whole entity (create, replace, batch) or, with ``require_*`` off, a fragment."""
    if not isinstance(body, dict):
        raise bad_request("An entity must be a JSON object.")
    raw_id = body.get("id", body.get("@id"))
    if raw_id is None and require_id:
        raise bad_request("The entity has no id.")
    if raw_id is not None and (
        not isinstance(raw_id, str) or not is_uri(raw_id) or raw_id == NULL or len(raw_id.encode()) > 1000
    ):
        raise bad_request(f"The entity id must be a URI, got {raw_id!r}.")
    types = parse_types(body.get("type", body.get("@type")), ctx, required=require_type)
    scope = body.get("scope")
    check_scope(scope)
    attrs = parse_attributes(body, ctx, merge=merge)
    check_model(types, attrs)  # Smart Data Models schemas, when IOC_NGSILD_VALIDATE_MODELS is on
    return EntityInput(raw_id, types, scope, attrs, parse_expiry(body.get("expiresAt"), merge=merge))


def parse_expiry(raw: Any, *, merge: bool = False) -> datetime | Delete | None:
    """An entity's ``expiresAt`` (v1.9.1 transient entities): a DateTime; in a merge an NGSI-LD
    Null removes it."""
    if raw is None:
        return None
    if merge and raw == NULL:
        return DELETE
    return parse_instant(raw, "expiresAt")
