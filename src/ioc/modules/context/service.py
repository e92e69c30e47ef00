"""Entity operations of NGSI-LD (ETSI GS CIM 009 §5.6), on loaded state, recorded in a ChangeSet.

No HTTP here: the API and the batch endpoints call these functions and then ``store.flush``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .entity import DELETE, NULL, Delete, EntityInput
from .errors import NgsiError, bad_request, not_found
from .store import ChangeSet, Instance, StoredEntity
from .validation import check as check_model

AttrsIn = dict[str, dict[str, dict[str, Any] | Delete]]


@dataclass
class UpdateResult:
    """``updated`` attribute names and ``notUpdated`` (name, reason) of an append/update."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The UpdateResult (§5.2.18): attribute names as the broker knows them, expanded (010_04_01)."""
        return {
            "updated": list(dict.fromkeys(self.updated)),
            "notUpdated": [{"attributeName": n, "reason": r} for n, r in self.not_updated],
        }


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored doc without merge markers (``urn:ngsi-ld:null`` sub-attributes)."""
    return {k: v for k, v in doc.items() if v != NULL}


def new_entity(inp: EntityInput, cs: ChangeSet) -> StoredEntity:
    """A new entity from a parsed body (not yet recorded)."""
    assert inp.id is not None
    entity = StoredEntity(None, inp.id, list(inp.types), inp.scope, cs.now, cs.now)
    if isinstance(inp.expires_at, datetime):
        entity.expires_at = inp.expires_at
    for name, per_ds in inp.attrs.items():
        for ds, doc in per_ds.items():
            if isinstance(doc, Delete):
                continue
            entity.attrs.setdefault(name, {})[ds] = Instance(_clean(doc), cs.now, cs.now)
    return entity


def create(cs: ChangeSet, existing: StoredEntity | None, inp: EntityInput) -> StoredEntity:
    if existing is not None:
        raise NgsiError("AlreadyExists", f"The entity {inp.id} already exists.")
    entity = new_entity(inp, cs)
    cs.create(entity)
    return entity


def replace(cs: ChangeSet, entity: StoredEntity, inp: EntityInput) -> None:
    """Replace every attribute and the types, keeping the id and createdAt (PUT, upsert)."""
    entity.types = list(inp.types)
    cs.touch(entity, types=True)
    entity.expires_at = inp.expires_at if isinstance(inp.expires_at, datetime) else None
    if inp.scope is not None or entity.scope is not None:
        cs.set_scope(entity, inp.scope)
    for name, per_ds in list(entity.attrs.items()):
        for ds in list(per_ds):
            if not (name in inp.attrs and ds in inp.attrs[name]):
                cs.delete_attr(entity, name, ds)
    for name, new_ds in inp.attrs.items():
        for ds, doc in new_ds.items():
            if not isinstance(doc, Delete):
                cs.put_attr(entity, name, ds, _clean(doc), keep_created=False)


def _set_expiry(cs: ChangeSet, entity: StoredEntity, expires_at: datetime | Delete | None) -> None:
    """A merge or an append sets the entity's ``expiresAt`` when it gives one, or removes it with
    an NGSI-LD Null (merge)."""
    if expires_at is not None:
        entity.expires_at = None if isinstance(expires_at, Delete) else expires_at
        cs.touch(entity)


def _add_types(cs: ChangeSet, entity: StoredEntity, types: list[str]) -> None:
    added = [t for t in types if t not in entity.types]
    if added:
        entity.types = [*entity.types, *added]
        cs.touch(entity, types=True)


def merge_doc(old: dict[str, Any], new: dict[str, Any], *, deep_value: bool = False) -> dict[str, Any]:
    """A merged attribute instance: new members replace old ones, null sub-attributes go."""
    if old.get("type") != new.get("type"):
        return _clean(new)
    # A shallow copy: every change below replaces a member of ``merged`` (or pops one) and the
    # merged sub-attributes and values are new objects, so what ``old`` holds is never mutated.
    merged = dict(old)
    for key, value in new.items():
        if value == NULL:
            merged.pop(key, None)
        elif ":" in key and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_doc(merged[key], value)
        elif deep_value and key == "value" and new.get("type") == "Property" and isinstance(value, dict):
            # §5.5.12: a merge goes into a JSON object value as RFC 7396 merge-patch.
            merged[key] = merge_value(merged.get(key), value)
        else:
            merged[key] = value
    return merged


def merge_value(old: Any, patch: dict[str, Any]) -> Any:
    """RFC 7396 merge of ``patch`` into ``old``; urn:ngsi-ld:null (or null) removes a key."""
    if not isinstance(old, dict):
        old = {}
    out = dict(old)
    for key, value in patch.items():
        if value == NULL or value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = merge_value(out.get(key), value)
        else:
            out[key] = value
    return out


def merge(cs: ChangeSet, entity: StoredEntity, inp: EntityInput) -> None:
    """Merge Entity (PATCH /entities/{id}, batch merge, upsert with options=update)."""
    check_model([t for t in entity.types if t not in inp.types], inp.attrs)  # inp's own types: checked when parsed
    _add_types(cs, entity, inp.types)
    _set_expiry(cs, entity, inp.expires_at)
    if inp.scope is not None:
        cs.set_scope(entity, inp.scope)
    for name, per_ds in inp.attrs.items():
        for ds, doc in per_ds.items():
            current = entity.attrs.get(name, {}).get(ds)
            if isinstance(doc, Delete):
                if current is not None:
                    cs.delete_attr(entity, name, ds)
                continue
            if current is None and doc.get("type") == "Property" and isinstance(doc.get("value"), dict):
                doc = {**doc, "value": merge_value(None, doc["value"])}
            cs.put_attr(entity, name, ds, merge_doc(current.doc, doc, deep_value=True) if current else _clean(doc))
    cs.touch(entity)


def append(cs: ChangeSet, entity: StoredEntity, inp: EntityInput, *, no_overwrite: bool) -> UpdateResult:
    """Append Entity Attributes (POST /entities/{id}/attrs)."""
    check_model([t for t in entity.types if t not in inp.types], inp.attrs)
    result = UpdateResult()
    _add_types(cs, entity, inp.types)
    _set_expiry(cs, entity, inp.expires_at)
    if inp.scope is not None:
        # §4.18: with noOverwrite the new scopes are added to the entity's own (010_07_01)
        cs.set_scope(entity, _scopes_added(entity.scope, inp.scope) if no_overwrite else inp.scope)
    for name, per_ds in inp.attrs.items():
        for ds, doc in per_ds.items():
            if isinstance(doc, Delete):
                continue
            if no_overwrite and ds in entity.attrs.get(name, {}):
                result.not_updated.append((name, "The attribute exists and options=noOverwrite was given."))
                continue
            cs.put_attr(entity, name, ds, _clean(doc), keep_created=True)
            result.updated.append(name)
    return result


def _scopes_added(current: Any, new: Any) -> Any:
    """The entity's scopes with the new ones added, in order and once each; one scope stays a string."""
    listed = [*(current if isinstance(current, list) else [] if current is None else [current])]
    for scope in new if isinstance(new, list) else [new]:
        if scope not in listed:
            listed.append(scope)
    return listed[0] if len(listed) == 1 else listed


def update(
    cs: ChangeSet, entity: StoredEntity, attrs: AttrsIn, *, scope: Any = None, types: list[str] | None = None
) -> UpdateResult:
    """Update Entity Attributes (PATCH /entities/{id}/attrs, §5.6.2): existing attributes are
    replaced and missing ones appended (the suite's 011_01_03, 046_20/23–30; the §5.6.2 text of
    v1.9); an NGSI-LD Null for an attribute that is not there is reported as not updated. A
    ``scope`` in the fragment replaces the entity's scope; an entity without one is not given one
    (reported as not updated, 011_05_02: Append Attributes adds it)."""
    check_model(entity.types, attrs)
    result = UpdateResult()
    _add_types(cs, entity, types or [])  # §4.16: an entity's types only grow (011_06)
    if scope is not None:
        if entity.scope is None:
            result.not_updated.append(("scope", "The entity has no scope to update (Append Attributes adds one)."))
        else:
            cs.set_scope(entity, scope)
    for name, per_ds in attrs.items():
        for ds, doc in per_ds.items():
            current = entity.attrs.get(name, {}).get(ds)
            if current is None and isinstance(doc, Delete):
                what = "The attribute" if not ds else f"The instance with datasetId {ds}"
                result.not_updated.append((name, f"{what} does not exist."))
                continue
            if isinstance(doc, Delete):
                cs.delete_attr(entity, name, ds)
            else:
                cs.put_attr(entity, name, ds, _clean(doc))
            result.updated.append(name)
    return result


def partial_update(cs: ChangeSet, entity: StoredEntity, name: str, doc: dict[str, Any]) -> None:
    """Partial Attribute Update (PATCH /entities/{id}/attrs/{attr})."""
    check_model(entity.types, {name: {doc.get("datasetId", ""): doc}})
    ds = doc.get("datasetId", "")
    current = entity.attrs.get(name, {}).get(ds)
    if current is None:
        raise not_found(f"The entity {entity.id} has no attribute {name}" + (f" with datasetId {ds}." if ds else "."))
    if "type" in doc and doc["type"] != current.doc.get("type") and len(doc) == 1:
        raise bad_request("A partial update cannot change only the attribute type.")
    cs.put_attr(entity, name, ds, merge_doc(current.doc, doc) if doc.get("type") == current.doc.get("type") else doc)


def replace_attribute(
    cs: ChangeSet, entity: StoredEntity, name: str, per_ds: dict[str, dict[str, Any] | Delete]
) -> None:
    """Replace Attribute (PUT /entities/{id}/attrs/{attr}): the attribute must exist."""
    check_model(entity.types, {name: per_ds})
    for ds, doc in per_ds.items():
        if ds not in entity.attrs.get(name, {}):
            raise not_found(
                f"The entity {entity.id} has no attribute {name}" + (f" with datasetId {ds}." if ds else ".")
            )
        if isinstance(doc, Delete):
            raise bad_request("null is not a valid attribute.")
    for ds, doc in per_ds.items():
        assert not isinstance(doc, Delete)
        cs.put_attr(entity, name, ds, _clean(doc), keep_created=True)


def delete_attribute(
    cs: ChangeSet, entity: StoredEntity, name: str, *, dataset_id: str | None, delete_all: bool
) -> None:
    """Delete Attribute (DELETE /entities/{id}/attrs/{attr}), one instance or all of them."""
    per_ds = entity.attrs.get(name)
    if not per_ds:
        raise not_found(f"The entity {entity.id} has no attribute {name}.")
    if delete_all:
        for ds in list(per_ds):
            cs.delete_attr(entity, name, ds)
        return
    ds = dataset_id or ""
    if ds not in per_ds:
        raise not_found(
            f"The attribute {name} has no instance" + (f" with datasetId {ds}." if ds else " without datasetId.")
        )
    cs.delete_attr(entity, name, ds)


__all__ = ["DELETE", "UpdateResult"]
