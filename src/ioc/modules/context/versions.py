"""Backwards compatibility (ETSI GS CIM 009 v1.9.1 §4.3.6.8): ``Prefer: ngsi-ld=<major.minor>``.

A consumer that only understands an earlier NGSI-LD version says so with the RFC 7240 preference
``ngsi-ld=<major.minor>``. The broker amends the Entity data it answers with by the fallbacks of
Table 4.3.6.8-1 (an attribute type introduced after that version is shown as the type it falls
back to, :data:`FALLBACKS`), says ``Preference-Applied: ngsi-ld=<major.minor>``, and answers 203
Non-Authoritative Information instead of 200 when it amended anything. A version from
:data:`NATIVE_FROM` on (the broker itself speaks :data:`BROKER_VERSION`) already reads every
payload: it is acknowledged and nothing is changed. A version that is not ``<digits>.<digits>``,
or one before 1.0, cannot be honoured: it is ignored (no ``Preference-Applied``).

Only rendered payloads are amended (the objects of render.py, the temporal JSON text decoded), in
the normalized and concise representations; a keyValues value is a plain JSON value in every
version, so it is left as it is. A request without ``Prefer`` pays one header lookup.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response

from ioc.core.jsoncodec import dumps, loads

from .entity import CORE_MEMBERS, ENTITY_MEMBERS, OUTPUT_ONLY

Version = tuple[int, int]

#: The NGSI-LD version the broker answers in.
BROKER_VERSION: Version = (1, 9)
#: The first NGSI-LD version: an earlier one cannot be honoured.
OLDEST: Version = (1, 0)


@dataclass(frozen=True)
class Fallback:
    """One row of Table 4.3.6.8-1: an attribute type, the version that introduced it, and how an
    earlier version is shown it: as ``kind`` with its ``member`` moved to ``target``."""

    introduced: Version
    member: str  # the member of the type: "vocab", "json", ...
    kind: str  # the type it falls back to: "Property" or "Relationship"
    target: str  # the member it falls back to: "value" or "object"
    simplified: str  # the member of its simplified temporal representation (§4.5.9): "vocabs", ...


FALLBACKS: dict[str, Fallback] = {
    "LanguageProperty": Fallback((1, 4), "languageMap", "Property", "value", "languageMaps"),
    "VocabProperty": Fallback((1, 8), "vocab", "Property", "value", "vocabs"),
    "JsonProperty": Fallback((1, 8), "json", "Property", "value", "jsons"),
    "ListProperty": Fallback((1, 8), "valueList", "Property", "value", "valueLists"),
    "ListRelationship": Fallback((1, 8), "objectList", "Relationship", "object", "objectLists"),
}
#: A concise attribute has no ``type``: its member says what it is.
_BY_MEMBER = {f.member: f for f in FALLBACKS.values()}
#: The first version that knows every attribute type: from it on nothing is amended.
NATIVE_FROM: Version = max(f.introduced for f in FALLBACKS.values())
#: The simplified temporal members of the types a fallback yields (§4.5.9).
_SIMPLIFIED_TARGET = {"Property": "values", "Relationship": "objects"}
#: Members of an attribute that are not sub-attributes (Linked Entities inline apart).
_NOT_SUB_ATTRIBUTES = (CORE_MEMBERS | OUTPUT_ONLY) - {"entity", "entityList"}

_VERSION = re.compile(r'"?(\d+)\.(\d+)"?')


@dataclass(frozen=True)
class Preference:
    """The ``ngsi-ld`` preference of a request: the version as given (``1.5``) and as numbers."""

    text: str
    version: Version

    @property
    def token(self) -> str:
        """What ``Preference-Applied`` says: ``ngsi-ld=1.5``."""
        return f"ngsi-ld={self.text}"

    @property
    def amends(self) -> bool:
        """Whether payloads may need amending for this version (it predates an attribute type)."""
        return self.version < NATIVE_FROM


def parse_preference(values: Iterable[str]) -> Preference | None:
    """The ``ngsi-ld=<major.minor>`` preference among the values of ``Prefer`` headers, or None.

    RFC 7240: preferences are comma-separated, their names case-insensitive, a value may be
    quoted and be followed by ``;`` parameters, and only the first of a repeated preference counts.
    A version that is not ``<digits>.<digits>``, or is before 1.0, is a preference not honoured.
    """
    for raw in values:
        for item in raw.split(","):
            name, eq, value = item.split(";", 1)[0].partition("=")
            if name.strip().lower() != "ngsi-ld":
                continue
            m = _VERSION.fullmatch(value.strip()) if eq else None
            if m is None:
                return None
            version = (int(m.group(1)), int(m.group(2)))
            return Preference(f"{m.group(1)}.{m.group(2)}", version) if version >= OLDEST else None
    return None


def preference(headers: Headers) -> Preference | None:
    """The ``ngsi-ld`` preference of a request's headers (:func:`parse_preference`)."""
    if "prefer" not in headers:  # the usual request: one lookup
        return None
    return parse_preference(headers.getlist("prefer"))


def answer(response: Response, pref: Preference | None, altered: bool) -> Response:
    """``response`` with ``Preference-Applied`` when a version was preferred, and 203 instead of
    200 when its payload was ``altered`` (another status, 201 or 206, says more and is kept)."""
    if pref is not None:
        response.headers["Preference-Applied"] = pref.token
        if altered and response.status_code == 200:
            response.status_code = 203
    return response


def amend_entities(entities: Iterable[Any], pref: Preference | None, fmt: str) -> bool:
    """Amend rendered entities in place for the preferred version; whether anything changed.

    ``fmt`` is the representation: normalized and concise are amended, keyValues never."""
    if pref is None or not pref.amends or fmt == "keyValues":
        return False
    changed = False
    for entity in entities:
        if isinstance(entity, dict):
            changed |= amend_entity(entity, pref.version)
    return changed


def amend_entity(entity: dict[str, Any], version: Version) -> bool:
    """Amend one rendered entity (normalized or concise) in place; whether anything changed."""
    changed = False
    for name, value in entity.items():
        if name not in ENTITY_MEMBERS:
            changed |= amend_attribute(value, version)
    return changed


def amend_attribute(value: Any, version: Version) -> bool:
    """Amend one rendered attribute (an instance or an array of them) in place, its sub-attributes
    and its Linked Entities retrieved inline (§4.5.23) included; whether anything changed."""
    if isinstance(value, list):
        changed = False
        for item in value:
            changed |= amend_attribute(item, version)
        return changed
    if not isinstance(value, dict):  # a concise value, or a scope
        return False
    changed = _fall_back(value, version)
    for key, member in value.items():
        if key in ("entity", "entityList"):
            for linked in member if isinstance(member, list) else [member]:
                if isinstance(linked, dict):
                    changed |= amend_entity(linked, version)
        elif key not in _NOT_SUB_ATTRIBUTES:
            changed |= amend_attribute(member, version)
    return changed


def _fall_back(attr: dict[str, Any], version: Version) -> bool:
    """Table 4.3.6.8-1 on one attribute instance: its type and member replaced by their fallback."""
    kind = attr.get("type")
    if kind is not None:
        fallback = FALLBACKS.get(kind) if isinstance(kind, str) else None
    else:  # concise (§4.5.17): no type, the member tells it
        fallback = next((f for member, f in _BY_MEMBER.items() if member in attr), None)
    if fallback is None or version >= fallback.introduced:
        return False
    if kind is not None:
        attr["type"] = fallback.kind
    if fallback.member in attr:
        _rename(attr, fallback.member, fallback.target, _plain(fallback.member, attr[fallback.member]))
    return True


def _plain(member: str, value: Any) -> Any:
    """A member's value as the value of its fallback: an objectList as the array of its URIs."""
    if member == "objectList" and isinstance(value, list):
        return [o.get("object") if isinstance(o, dict) else o for o in value]
    return value


def _rename(obj: dict[str, Any], old: str, new: str, value: Any) -> None:
    """``obj`` with its member ``old`` replaced by ``new`` holding ``value``, in the same place."""
    items = [(new, value) if k == old else (k, v) for k, v in obj.items()]
    obj.clear()
    obj.update(items)


# --------------------------------------------------------------------------- temporal evolution


def amend_temporal(bodies: list[str], pref: Preference | None, fmt: str) -> tuple[list[str], bool]:
    """Temporal evolutions rendered as JSON text (temporal_render.py), amended for the preferred
    version: the text given back when nothing changed; whether anything changed.

    normalized and concise: each instance as an attribute; temporalValues: ``{"type":
    "VocabProperty", "vocabs": [[{"vocab": v}, t], ...]}`` becomes ``{"type": "Property",
    "values": [[v, t], ...]}``; aggregatedValues: the type alone (the aggregates are numbers).
    """
    if pref is None or not pref.amends:
        return bodies, False
    out: list[str] = []
    altered = False
    for text in bodies:
        entity = loads(text)
        changed = False
        if isinstance(entity, dict):
            if fmt in ("normalized", "concise"):
                changed = amend_entity(entity, pref.version)
            else:
                for name, value in entity.items():
                    if name not in ENTITY_MEMBERS:
                        for item in value if isinstance(value, list) else [value]:
                            changed |= isinstance(item, dict) and _fall_back_simplified(item, pref.version)
        out.append(dumps(entity) if changed else text)
        altered |= changed
    return out, altered


def _fall_back_simplified(attr: dict[str, Any], version: Version) -> bool:
    """Table 4.3.6.8-1 on one simplified (or aggregated) temporal attribute."""
    kind = attr.get("type")
    fallback = FALLBACKS.get(kind) if isinstance(kind, str) else None
    if fallback is None or version >= fallback.introduced:
        return False
    attr["type"] = fallback.kind
    pairs = attr.get(fallback.simplified)
    if isinstance(pairs, list):
        values = [_unwrapped(pair, fallback) for pair in pairs]
        _rename(attr, fallback.simplified, _SIMPLIFIED_TARGET[fallback.kind], values)
    return True


def _unwrapped(pair: Any, fallback: Fallback) -> Any:
    """``[{"vocab": v}, t]`` as ``[v, t]`` (§4.5.9 wraps some values in the object of their member)."""
    if isinstance(pair, list) and pair and isinstance(pair[0], dict) and set(pair[0]) == {fallback.member}:
        return [pair[0][fallback.member], *pair[1:]]
    return pair
