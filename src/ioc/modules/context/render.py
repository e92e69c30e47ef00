"""Representations of entities: normalized, concise, keyValues; sysAttrs; lang; pick/omit; GeoJSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .entity import format_datetime, format_instant
from .ld import ActiveContext
from .store import Instance, StoredEntity


@dataclass
class RenderOptions:
    fmt: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    lang: str | None = None
    pick: set[str] | None = None  # expanded attribute IRIs, plus "id"/"type"
    omit: set[str] | None = None
    datasets: frozenset[str] | None = None  # ``datasetId`` (§4.5.5): the instances shown ('' the default)


def _lang_ranges(lang: str) -> list[str]:
    """The ranges of a ``lang`` filter by descending quality value (RFC 3282; list order breaks ties)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(lang.split(",")):
        tag, *params = [x.strip() for x in part.split(";")]
        q = 1.0
        for param in params:
            name, _, val = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 1.0
        if tag and q > 0:
            ranked.append((-q, i, tag.lower()))
    return [tag for _, _, tag in sorted(ranked)]


def _pick_lang(lm: dict[str, Any], lang: str) -> tuple[str, Any] | None:
    """§4.15 language filter: RFC 4647 lookup, case-insensitive, else any language (tag reported)."""
    keys = {k.lower(): k for k in lm}
    for wanted in _lang_ranges(lang):
        if wanted == "*":
            break
        parts = wanted.split("-")
        while parts:  # the range itself, then truncated (nl-BE -> nl)
            candidate = "-".join(parts)
            if candidate in keys:
                return keys[candidate], lm[keys[candidate]]
            parts.pop()
        for low, key in keys.items():  # a shorter range matches a longer tag (en -> en-US)
            if low.startswith(wanted + "-"):
                return key, lm[key]
    if "@none" in lm:
        return "@none", lm["@none"]
    if lm:
        key = next(iter(lm))
        return key, lm[key]
    return None


def render_doc(doc: dict[str, Any], ctx: ActiveContext, opts: RenderOptions, inst: Instance | None = None) -> Any:
    """One attribute instance (or sub-attribute) in the chosen representation."""
    kind = doc.get("type", "Property")
    lang_pick = None
    if kind == "LanguageProperty" and opts.lang:  # "*" alone: any one language (§4.15; 018_07_03/06)
        lang_pick = _pick_lang(doc.get("languageMap") or {}, opts.lang)
    if opts.fmt == "keyValues":
        return _key_value(doc, ctx, lang_pick)
    out: dict[str, Any] = {"type": kind}
    if kind == "Relationship":
        out["object"] = doc.get("object")
    elif kind == "ListRelationship":
        out["objectList"] = doc.get("objectList")
    elif kind == "LanguageProperty":
        if lang_pick is not None:
            out = {"type": "Property", "value": lang_pick[1], "lang": lang_pick[0]}
        else:
            out["languageMap"] = doc.get("languageMap")
    elif kind == "VocabProperty":
        v = doc.get("vocab")
        out["vocab"] = [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(str(v))
    elif kind == "JsonProperty":
        out["json"] = doc.get("json")
    elif kind == "ListProperty":
        out["valueList"] = doc.get("valueList")
    else:
        out["value"] = doc.get("value")
    if "objectType" in doc:
        ot = doc["objectType"]
        out["objectType"] = [ctx.compact(t) for t in ot] if isinstance(ot, list) else ctx.compact(ot)
    for member in ("observedAt", "unitCode", "datasetId", "valueType", "entityIdSealed"):
        if member in doc:
            out[member] = doc[member]
    if "entityTypeSealed" in doc:
        out["entityTypeSealed"] = ctx.compact(doc["entityTypeSealed"])
    if opts.sys_attrs:  # §6.3.11: the system temporal attributes, expiresAt where known
        if inst is not None:
            out["createdAt"] = format_datetime(inst.created_at)
            out["modifiedAt"] = format_datetime(inst.modified_at)
        if "expiresAt" in doc:
            out["expiresAt"] = doc["expiresAt"]
    for key, sub in doc.items():
        if ":" in key and isinstance(sub, dict):
            out[ctx.compact(key)] = render_doc(sub, ctx, opts)
    if opts.fmt == "concise":
        out.pop("type", None)
        if set(out) == {"value"} and not isinstance(out["value"], dict | list):
            return out["value"]
    return out


def _key_value(doc: dict[str, Any], ctx: ActiveContext, lang_pick: tuple[str, Any] | None) -> Any:
    kind = doc.get("type", "Property")
    if kind == "Relationship":
        return doc.get("object")
    if kind == "ListRelationship":
        return [o.get("object") for o in doc.get("objectList") or [] if isinstance(o, dict)]
    # §4.5.4: LanguageProperty, JsonProperty and VocabProperty keep a single-key wrapper.
    if kind == "LanguageProperty":
        return lang_pick[1] if lang_pick is not None else {"languageMap": doc.get("languageMap")}
    if kind == "VocabProperty":
        v = doc.get("vocab")
        return {"vocab": [ctx.compact(x) for x in v] if isinstance(v, list) else ctx.compact(str(v))}
    if kind == "JsonProperty":
        return {"json": doc.get("json")}
    if kind == "ListProperty":
        return doc.get("valueList")
    return doc.get("value")


def _wanted(name: str, opts: RenderOptions) -> bool:
    if opts.pick is not None and name not in opts.pick:
        return False
    return not (opts.omit is not None and name in opts.omit)


def render_attr(per_ds: dict[str, Instance], ctx: ActiveContext, opts: RenderOptions) -> Any:
    if opts.fmt == "keyValues" and len(per_ds) > 1:
        # §4.5.4 EXAMPLE 9: several instances become {"dataset": {datasetId | "@none": value}}.
        return {
            "dataset": {(ds or "@none"): render_doc(inst.doc, ctx, opts, inst) for ds, inst in sorted(per_ds.items())}
        }
    rendered = [render_doc(inst.doc, ctx, opts, inst) for _, inst in sorted(per_ds.items())]
    return rendered[0] if len(rendered) == 1 else rendered


def render_entity(entity: StoredEntity, ctx: ActiveContext, opts: RenderOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _wanted("id", opts):
        out["id"] = entity.id
    if _wanted("type", opts):
        types = [ctx.compact(t) for t in entity.types]
        out["type"] = types[0] if len(types) == 1 else types
    if entity.scope is not None and _wanted("scope", opts):
        out["scope"] = entity.scope
    for name, per_ds in entity.attrs.items():
        if opts.datasets is not None:
            per_ds = {ds: inst for ds, inst in per_ds.items() if ds in opts.datasets}
        if per_ds and _wanted(name, opts):
            out[ctx.compact(name)] = render_attr(per_ds, ctx, opts)
    if opts.sys_attrs and opts.fmt != "keyValues":
        out["createdAt"] = format_datetime(entity.created_at)
        out["modifiedAt"] = format_datetime(entity.modified_at)
        if entity.expires_at is not None:
            out["expiresAt"] = format_instant(entity.expires_at)
    return out


def geojson_feature(
    entity: StoredEntity,
    ctx: ActiveContext,
    opts: RenderOptions,
    geometry_property: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An entity as a GeoJSON Feature (§4.5.16): the geometry of ``geometry_property`` or null;
    ``body`` is the entity already rendered (with its Linked Entities, §4.5.23)."""
    body = dict(body) if body is not None else render_entity(entity, ctx, opts)
    body.pop("id", None)
    geometry = None
    per_ds = entity.attrs.get(geometry_property) or {}
    inst = per_ds.get("") or next(iter(per_ds.values()), None)
    if inst is not None and inst.doc.get("type") == "GeoProperty":
        geometry = inst.doc.get("value")
    return {"id": entity.id, "type": "Feature", "geometry": geometry, "properties": body}
