"""Temporal representations of an entity (ETSI GS CIM 009 v1.8 §4.5.7, §4.5.8, §4.5.19).

* normalized: every attribute is an array of its instances, each with its ``instanceId``;
* concise: the same instances without ``type`` (the value member stays, as does observedAt);
* simplified (``temporalValues``): ``{"type": ..., "values": [[value, time], ...]}`` (``objects``
  for relationships, ``languageMaps``, ``vocabs``, ``jsons``, ``valueLists``, ``objectLists``); a
  LanguageProperty, VocabProperty or JsonProperty value is the object of its member
  (``{"languageMap": {...}}``), so each element of the ``@list`` stays valid JSON-LD (§4.5.9);
* aggregated (``aggregatedValues``): ``{"type": ..., "<method>": [[value, start, end], ...]}``.

An attribute with several datasetIds: its instances share one array (normalized, concise); in
the simplified and aggregated forms it is an array of one object per datasetId. An attribute
without an instance in the time range is left out (one whose instances pagination cut is
empty). With ``timeproperty=deletedAt`` the instances are deletions: the attribute's value
member set to ``urn:ngsi-ld:null`` (a languageMap ``{"@none": "urn:ngsi-ld:null"}``) and
``deletedAt`` (§4.5.7, §5.2.1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from .entity import NULL, SCOPE, VALUE_KEY
from .ld import ActiveContext
from .render import RenderOptions, render_doc
from .temporal_query import Group, Row, format_time, instance_value

SIMPLIFIED_KEYS = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "VocabProperty": "vocabs",
    "JsonProperty": "jsons",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
}
#: simplified values wrapped in the object of their member (§4.5.9)
_WRAPPED = frozenset({"LanguageProperty", "VocabProperty", "JsonProperty"})


@dataclass
class TemporalOptions:
    fmt: str = "normalized"  # normalized | concise | temporalValues | aggregatedValues
    sys_attrs: bool = False
    lang: str | None = None
    methods: list[str] = field(default_factory=list)
    pick: set[str] | None = None  # §4.21 projection: "id", "type" and attribute IRIs to keep
    omit: set[str] | None = None  # ... or to leave out
    timeproperty: str = "observedAt"  # observedAt: simplified pairs show each instance's own text

    def wanted(self, member: str) -> bool:
        if self.pick is not None and member not in self.pick:
            return False
        return not (self.omit is not None and member in self.omit)


def render_temporal(
    entity_id: str, types: list[str], groups: list[Group], ctx: ActiveContext, opts: TemporalOptions
) -> str:
    """One entity's temporal evolution in the representation ``opts.fmt``, as JSON text.

    Text, not objects: a year of hourly instances is 8,760 of them, and the common instance
    (a Property with a value, observedAt and maybe unitCode, no sub-attribute) is its stored
    document plus its instanceId, spliced as text instead of decoded, rendered and encoded again.
    """
    compact_types = [ctx.compact(t) for t in types]
    parts = []
    if opts.wanted("id"):
        parts.append('"id":' + json.dumps(entity_id))
    if opts.wanted("type"):
        parts.append('"type":' + json.dumps(compact_types[0] if len(compact_types) == 1 else compact_types))
    inst_opts = RenderOptions(fmt="concise" if opts.fmt == "concise" else "normalized", lang=opts.lang)
    deleted = opts.timeproperty == "deletedAt"
    for g in groups:
        if not opts.wanted(g.name) or not _has_content(g, opts.fmt):
            continue
        key = json.dumps(ctx.compact(g.name)) + ":"
        if opts.fmt in ("normalized", "concise"):
            render = _deletion if deleted else _instance
            items = [render(r, g, ctx, inst_opts, opts.sys_attrs) for r in g.rows]
            parts.append(key + "[" + ",".join(items) + "]")
            continue
        datasets = g.datasets() or [""]
        objs = [
            _simplified(g, ds, ctx, opts.timeproperty) if opts.fmt == "temporalValues" else _aggregated(g, ds, opts)
            for ds in datasets
        ]
        parts.append(key + json.dumps(objs[0] if len(objs) == 1 else objs))
    return "{" + ",".join(parts) + "}"


def _instance(row: Row, g: Group, ctx: ActiveContext, opts: RenderOptions, sys_attrs: bool) -> str:
    text = row.doc_text
    tail = ',"instanceId":' + _quoted(row.instance_id)
    if sys_attrs:
        stamp = json.dumps(format_time(row.recorded_at))
        tail += f',"createdAt":{stamp},"modifiedAt":{stamp}'
    if (
        opts.fmt == "normalized"
        and "://" not in text
        and len(text) > 2
        and text[-1] == "}"
        and g.kinds.get(row.dataset_id, g.kind) not in _DECODE_KINDS
        and (sys_attrs or '"expiresAt"' not in text)  # an instance's expiresAt only with sysAttrs (§6.3.11)
    ):
        return text[:-1] + tail + "}"
    rendered = render_doc(row.doc, ctx, opts)
    item: dict[str, Any] = rendered if isinstance(rendered, dict) else {"value": rendered}
    if sys_attrs and "expiresAt" in row.doc:
        item["expiresAt"] = row.doc["expiresAt"]
    return json.dumps(item)[:-1] + tail + "}"


def _has_content(g: Group, fmt: str) -> bool:
    """Whether the attribute is in the answer: instances (or periods) in range, or cut by pagination."""
    return bool(g.aggregates) if fmt == "aggregatedValues" else bool(g.rows) or g.paged_out


def _deletion(row: Row, g: Group, _ctx: ActiveContext, _opts: RenderOptions, _sys_attrs: bool) -> str:
    """A deletion of the attribute (``timeproperty=deletedAt``): its value member set to NGSI-LD Null."""
    kind = g.kinds.get(row.dataset_id, g.kind)
    item: dict[str, Any] = {"type": kind, VALUE_KEY.get(kind, "value"): _null_of(kind, g.name)}
    if row.dataset_id:
        item["datasetId"] = row.dataset_id
    item["instanceId"] = row.instance_id
    item["deletedAt"] = format_time(row.time)
    return json.dumps(item)


def _null_of(kind: str, name: str = "") -> Any:
    """The value of a deleted attribute (§5.2.1): ``urn:ngsi-ld:null``, in a languageMap under ``@none``;
    a removed scope has no Scope left, an empty array (as the ETSI suite's 020_19/020_20 expect)."""
    if name == SCOPE:
        return []
    return {"@none": NULL} if kind == "LanguageProperty" else NULL


_DECODE_KINDS = frozenset({"LanguageProperty", "VocabProperty"})
#: A string as JSON text, as ``json.dumps`` writes it, without building an encoder per call.
_quoted: Callable[[str], str] = encode_basestring_ascii


def _head(g: Group, ds: str) -> dict[str, Any]:
    head: dict[str, Any] = {"type": g.kinds.get(ds, g.kind)}
    if ds:
        head["datasetId"] = ds
    return head


def _simplified(g: Group, ds: str, ctx: ActiveContext, timeproperty: str = "observedAt") -> dict[str, Any]:
    out = _head(g, ds)
    kind = out["type"]
    observed = timeproperty == "observedAt"
    pairs: list[list[Any]] = []
    for r in g.rows:
        if r.dataset_id != ds:
            continue
        value: Any
        if timeproperty == "deletedAt":
            value = _null_of(kind, g.name)
        elif kind == "Property" and r.value_num is not None and not r.value_num.is_integer():
            value = r.value_num
        elif kind == "Property" and r.value_num is not None:
            value = r.doc.get("value", r.value_num)  # 120 stays 120 (not 120.0), as it was written
        else:
            value = instance_value(r.doc)
            if kind == "VocabProperty":
                value = [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(str(value))
            elif kind == "ListRelationship" and isinstance(value, list):
                value = [o.get("object") if isinstance(o, dict) else o for o in value]
        if kind in _WRAPPED:
            value = {VALUE_KEY[kind]: value}
        stamp = r.doc.get("observedAt") if observed and r.time is not None else None
        # the instance's own observedAt text (as for normalized instances), else the stored time
        pairs.append([value, stamp if isinstance(stamp, str) else format_time(r.time)])
    out[SIMPLIFIED_KEYS.get(kind, "values")] = pairs
    return out


def _aggregated(g: Group, ds: str, opts: TemporalOptions) -> dict[str, Any]:
    out = _head(g, ds)
    buckets = g.aggregates.get(ds, [])
    # each bound once, whatever the number of methods: a period's end is the next one's start
    texts = {t: _period_time(t) for t in {t for b in buckets for t in (b.start, b.end)}}
    for method in opts.methods:
        out[method] = [[b.values.get(method), texts[b.start], texts[b.end]] for b in buckets]
    return out


def _period_time(raw: Any) -> str | None:
    """A period bound: whole seconds without a ``.000`` fraction (``2020-08-01T12:03:00Z``)."""
    text = format_time(raw)
    return text[:-5] + "Z" if text is not None and text.endswith(".000Z") else text
