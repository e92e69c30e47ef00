"""The NGSI-LD query languages: ``type`` expressions, ``q`` (§4.9) and ``geoQ`` (§4.10).

Each is parsed into a small tree that can (1) contribute a SQL prefilter — exact where the
stored columns decide the answer (types, attribute presence), a superset elsewhere (indexed
numbers and strings, bounding boxes) — and (2) be evaluated exactly in Python on a loaded
entity. A query is answered by running (1) in the database and (2) on the candidates only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select, true

from ioc.core.geo import EARTH_RADIUS_M, GeometryError, haversine_m, shape_from_geojson

from .entity import format_datetime, parse_datetime
from .errors import bad_request
from .ld import _GEN_DELIMS, ActiveContext
from .models import NgsiAttribute, NgsiEntity, NgsiEntityType
from .store import GEO_LEVELS, StoredEntity, cell_key, cell_range

SQL = ColumnElement[bool]
_META = {"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "objectType", "lang"}


# --------------------------------------------------------------------------- type expressions


@dataclass
class TypeExpr:
    op: str  # "or" | "and" | "name"
    items: list[TypeExpr] = field(default_factory=list)
    name: str = ""

    def matches(self, types: list[str]) -> bool:
        if self.op == "name":
            return self.name in types
        results = (item.matches(types) for item in self.items)
        return all(results) if self.op == "and" else any(results)

    def sql(self) -> SQL:
        if self.op == "name":
            return exists().where(NgsiEntityType.entity_pk == NgsiEntity.pk, NgsiEntityType.type_iri == self.name)
        if self.op == "or" and all(i.op == "name" for i in self.items):
            return exists().where(
                NgsiEntityType.entity_pk == NgsiEntity.pk, NgsiEntityType.type_iri.in_([i.name for i in self.items])
            )
        parts = [i.sql() for i in self.items]
        return and_(*parts) if self.op == "and" else or_(*parts)

    def names(self) -> list[str]:
        return [self.name] if self.op == "name" else [n for i in self.items for n in i.names()]


def parse_type_expr(text: str, ctx: ActiveContext) -> TypeExpr:
    """``A,B`` or ``(A;B)|C``: ``,`` and ``|`` are or, ``;`` is and (binding tighter)."""
    tokens: list[str] = re.findall(r"[(),;|]|[^(),;|]+", text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        return tok

    def parse_or() -> TypeExpr:
        items = [parse_and()]
        while peek() in (",", "|"):
            take()
            items.append(parse_and())
        return items[0] if len(items) == 1 else TypeExpr("or", items)

    def parse_and() -> TypeExpr:
        items = [parse_atom()]
        while peek() == ";":
            take()
            items.append(parse_atom())
        return items[0] if len(items) == 1 else TypeExpr("and", items)

    def parse_atom() -> TypeExpr:
        tok = peek()
        if tok is None:
            raise bad_request(f"Invalid type expression {text!r}.")
        if tok == "(":
            take()
            inner = parse_or()
            if peek() != ")":
                raise bad_request(f"Unbalanced parentheses in type expression {text!r}.")
            take()
            return inner
        if tok in ",;|)":
            raise bad_request(f"Invalid type expression {text!r}.")
        name = take().strip()
        if not name or re.search(r"[\s<>\"'=]", name):
            raise bad_request(f"Invalid entity type {name!r}.")
        return TypeExpr("name", name=ctx.expand(name))

    expr = parse_or()
    if pos != len(tokens):
        raise bad_request(f"Invalid type expression {text!r}.")
    return expr


# --------------------------------------------------------------------------- q


@dataclass
class QPath:
    attr: str  # IRI
    subs: list[str]  # sub-attribute IRIs or meta members (observedAt, ...)
    keys: list[str]  # keys into a compound value, or the language of a LanguageProperty (``*``: any)
    link: QPath | None = None  # ``attr{link}``: the path in the Linked Entity that ``attr`` targets (§4.9)
    link_types: list[str] | None = None  # ``attr{Type:link}``: only Linked Entities of these types (IRIs)


@dataclass
class QNode:
    op: str  # "and" | "or" | "not" (one item: ``!attr``, the target does not exist) | "term"
    items: list[QNode] = field(default_factory=list)
    path: QPath | None = None
    cmp: str | None = None  # == != > >= < <= ~= !~= or None (existence)
    value: Any = None  # scalar, ("range", lo, hi), ("list", [..]), compiled regex

    def attrs(self) -> set[str]:
        if self.op == "term":
            assert self.path is not None
            return {self.path.attr}
        return {a for i in self.items for a in i.attrs()}


_OPS = ("!~=", "~=", "==", "!=", ">=", "<=", ">", "<")


class _Unquoted(str):
    """An unquoted value token: a DateTime, a URI, a name (compared as text, also as a date)."""


def parse_q(text: str, ctx: ActiveContext, expand_values: list[str] | None = None) -> QNode:
    """Parse a ``q`` expression; 400 BadRequestData when it is not valid.

    ``expand_values`` (``expandValues``, §4.9 EXAMPLE 12): the attributes whose query values are
    terms to expand against the @context before the query runs, as a VocabProperty's are stored."""
    parser = _QParser(text, ctx, {ctx.expand(name) for name in expand_values or []})
    node = parser.parse_or()
    if parser.pos != len(text):
        raise bad_request(f"Invalid q expression near {text[parser.pos :]!r}.")
    return node


class _QParser:
    def __init__(self, text: str, ctx: ActiveContext, expand_values: set[str] | None = None) -> None:
        self.text = text
        self.ctx = ctx
        self.expand_values = expand_values or set()
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_or(self) -> QNode:
        items = [self.parse_and()]
        while self.peek() == "|":
            self.pos += 1
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else QNode("or", items)

    def parse_and(self) -> QNode:
        items = [self.parse_atom()]
        while self.peek() == ";":
            self.pos += 1
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else QNode("and", items)

    def parse_atom(self) -> QNode:
        if self.peek() == "!":
            return self._not_exists()
        if self.peek() == "(":
            self.pos += 1
            node = self.parse_or()
            if self.peek() != ")":
                raise bad_request(f"Unbalanced parentheses in q {self.text!r}.")
            self.pos += 1
            return node
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "=!<>~;|()":
            self.pos += 1
        raw_path = self.text[start : self.pos].strip()
        if not raw_path:
            raise bad_request(f"Invalid q expression {self.text!r}: an attribute name is missing.")
        path = self._path(raw_path)
        op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
        if op is None:
            if self.peek() in ("", ";", "|", ")"):
                return QNode("term", path=path)
            raise bad_request(f"Invalid operator in q {self.text!r}.")
        self.pos += len(op)
        if op in ("~=", "!~="):
            return QNode("term", path=path, cmp=op, value=self._regex())
        raw = self._value_text()
        value = self._value(raw, op)
        if path.attr in self.expand_values and path.link is None:
            value = self._expanded(value)
        return QNode("term", path=path, cmp=op, value=value)

    def _expanded(self, value: Any) -> Any:
        """A query value with its terms expanded against the @context (``expandValues``)."""
        if isinstance(value, tuple):
            return (value[0], *(self._expanded(v) for v in value[1:]))
        if isinstance(value, list):
            return [self._expanded(v) for v in value]
        return self.ctx.expand(value) if isinstance(value, str) else value

    def _not_exists(self) -> QNode:
        """``!attr``: the entities in which the target element does not exist. Not in the §4.9
        grammar; the NGSIv2 unary negation that NGSI-LD brokers (Orion-LD, Stellio) also accept."""
        self.pos += 1
        term = self.parse_atom() if self.peek() not in ("(", "!") else None
        if term is None or term.op != "term" or term.cmp is not None:
            raise bad_request(f"In q {self.text!r}, '!' only goes before an attribute path (it does not exist).")
        return QNode("not", [term])

    def _path(self, raw: str) -> QPath:
        if "{" in raw or "}" in raw:
            return self._linked_path(raw)
        keys: list[str] = []
        base = raw
        if "[" in raw:
            base, _, rest = raw.partition("[")
            # §4.9: the trailing path is a dot-separated list of member names (ECMA 262 MemberExpression)
            keys = [k for part in re.findall(r"([^\[\]]+)\]", "[" + rest) for k in part.split(".")]
            if not keys or not all(k.strip() for k in keys) or not rest.endswith("]"):
                raise bad_request(f"Invalid compound path {raw!r} in q.")
        if not base or re.search(r"[\s<>\"']", base):
            raise bad_request(f"Invalid attribute {raw!r} in q.")
        parts = [base] if "://" in base else base.split(".")
        attr = parts[0]
        subs = [p if p in _META else self.ctx.expand(p) for p in parts[1:]]
        if "://" in base:
            for meta in _META:
                if base.endswith("." + meta):
                    attr, subs = base[: -len(meta) - 1], [meta]
        return QPath(self.ctx.expand(attr), subs, keys)

    def _linked_path(self, raw: str) -> QPath:
        """``rel{path}`` (§4.9): ``path`` is evaluated on the Linked Entity that ``rel`` targets;
        ``rel{Type1,Type2:path}`` (EXAMPLE 14) considers only Linked Entities of those types."""
        rel, _, rest = raw.partition("{")
        rel = rel.strip()
        inner = rest[:-1].strip()
        if not rel or not rest.endswith("}") or re.search(r"[\s<>\"'.\[\]}]", rel) or not inner:
            raise bad_request(f"Invalid Linked Entity path {raw!r} in q.")
        types = None
        hint = re.fullmatch(r"([^\W\d]\w*(?:,[^\W\d]\w*)*):(?!//)(.+)", inner, re.DOTALL)
        if hint is not None and not self._is_prefix(hint.group(1)):
            types = [self.ctx.expand(t) for t in hint.group(1).split(",")]
            inner = hint.group(2).strip()
        return QPath(self.ctx.expand(rel), [], [], link=self._path(inner), link_types=types)

    def _is_prefix(self, name: str) -> bool:
        """Whether ``name:`` starts a compact IRI in the active @context (a term whose IRI ends
        with a gen-delim, JSON-LD 1.1) rather than an Entity Type hint."""
        td = self.ctx.terms.get(name)
        return td is not None and td.iri.endswith(_GEN_DELIMS)

    def _value_text(self) -> str:
        start = self.pos
        quoted = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"' and (self.pos == start or self.text[self.pos - 1] != "\\"):
                quoted = not quoted
            elif not quoted and ch in ";|)":
                break
            self.pos += 1
        if quoted:
            raise bad_request(f"Unterminated string in q {self.text!r}.")
        raw = self.text[start : self.pos]
        if not raw:
            raise bad_request(f"A value is missing in q {self.text!r}.")
        return raw

    def _regex(self) -> re.Pattern[str]:
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif (
                (ch in ";" and depth == 0)
                or (
                    ch == "|"
                    and depth == 0
                    and self.pos + 1 < len(self.text)
                    and self.text[self.pos + 1] != "("
                    # '|' at top level ends the pattern when another term follows
                    and re.match(r"!?[\w:.\[\]/#-]+\s*(==|!=|>=|<=|>|<|~=|!~=|[;|)]|$)", self.text[self.pos + 1 :])
                )
            ):
                break
            self.pos += 1
        raw = self.text[start : self.pos]
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = raw[1:-1]
        try:
            return re.compile(raw)
        except re.error as exc:
            raise bad_request(f"Invalid pattern {raw!r} in q: {exc}.") from exc

    def _value(self, raw: str, op: str) -> Any:
        parts = _split_top(raw, ",")
        if len(parts) > 1:
            if op not in ("==", "!="):
                raise bad_request(f"A list of values only goes with == and != in q {self.text!r}.")
            return ("list", [_scalar(p) for p in parts])
        if ".." in raw and not raw.startswith('"'):
            lo, _, hi = raw.partition("..")
            if op not in ("==", "!="):
                raise bad_request(f"A range only goes with == and != in q {self.text!r}.")
            return ("range", _scalar(lo), _scalar(hi))
        return _scalar(raw)


def _split_top(raw: str, sep: str) -> list[str]:
    parts: list[str] = []
    quoted = False
    current = ""
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1].replace('\\"', '"')
    if raw == "true":
        return True
    if raw == "false":
        return False
    if re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw):
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if not raw or raw[0] in '=!<>~"' or re.search(r"[\s\"'()]", raw):
        raise bad_request(f"Invalid value {raw!r} in q.")
    return _Unquoted(raw)


# -- evaluation ---------------------------------------------------------------


def _targets(entity: StoredEntity, path: QPath, ctx: ActiveContext) -> list[Any]:
    """The target values of ``path`` in ``entity``, one per attribute instance that has one (§4.9)."""
    return [value for value, _kind in _target_items(entity, path, ctx)]


def _target_items(entity: StoredEntity, path: QPath, ctx: ActiveContext) -> list[tuple[Any, str | None]]:
    """The target values of ``path`` with the type of their target element (``Relationship``, ...;
    None for a meta member such as ``observedAt``)."""
    per_ds = entity.attrs.get(path.attr)
    if not per_ds:
        return []
    found: list[tuple[Any, str | None]] = []
    for inst in per_ds.values():
        node: Any = inst.doc
        meta_value: Any = None
        is_meta = False
        for sub in path.subs:
            if sub in ("createdAt", "modifiedAt") and node is inst.doc:
                meta_value, is_meta = format_datetime(inst.created_at if sub == "createdAt" else inst.modified_at), True
                break
            if sub in _META:
                meta_value, is_meta = (node.get(sub) if isinstance(node, dict) else None), True
                break
            node = node.get(sub) if isinstance(node, dict) else None
            if node is None:
                break
        if node is None:
            continue
        kind = None if is_meta else node.get("type")
        keys = path.keys
        if is_meta:
            value = meta_value
        elif kind == "LanguageProperty" and keys:
            value, keys = _language_value(node, keys[0]), keys[1:]
        else:
            value = _attr_value(node, ctx)
        for key in keys:  # the trailing path: undefined members make the target non-existent
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            found.append((value, kind))
    return found


def _language_value(doc: dict[str, Any], lang: str) -> Any:
    """``attr[lang]`` on a LanguageProperty (§4.9): the value(s) of that language, ``*`` any language."""
    lm = doc.get("languageMap")
    if not isinstance(lm, dict):
        return None
    if lang == "*":
        return _flat(list(lm.values()))
    return lm.get(lang)


def _flat(values: list[Any]) -> list[Any]:
    return [v for item in values for v in (item if isinstance(item, list) else [item])]


def _attr_value(doc: dict[str, Any], ctx: ActiveContext) -> Any:
    kind = doc.get("type")
    if kind == "Relationship":
        return doc.get("object")
    if kind == "LanguageProperty":  # no language given: any value of the languageMap (§4.9)
        lm = doc.get("languageMap") or {}
        return _flat(list(lm.values())) if isinstance(lm, dict) else lm
    if kind == "VocabProperty":  # its terms as stored, expanded: a short term matches with expandValues
        v = doc.get("vocab")
        return [i for i in (v if isinstance(v, list) else [v]) if isinstance(i, str)]
    if kind == "JsonProperty":
        return doc.get("json")
    if kind == "ListProperty":
        return doc.get("valueList")
    if kind == "ListRelationship":
        return [o.get("object") for o in doc.get("objectList") or [] if isinstance(o, dict)]
    return doc.get("value")


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, dict) and "@value" in value:
        value = value["@value"]
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\d", value):
        try:
            return parse_datetime(value, "value")
        except Exception:
            return None
    return None


def _same_type(a: Any, b: Any) -> tuple[Any, Any] | None:
    """The target value ``a`` and the Query Term value ``b`` as two comparable values of one
    datatype (numbers, strings, DateTimes as times, booleans), or None when their datatypes differ."""
    if isinstance(a, dict) and "@value" in a:
        a = a["@value"]
    if isinstance(a, bool) or isinstance(b, bool):
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a, b
    if isinstance(a, str) and isinstance(b, str):
        ta, tb = (_as_time(a), _as_time(b)) if isinstance(b, _Unquoted) or _as_time(b) else (None, None)
        return (ta, tb) if ta is not None and tb is not None else (a, str(b))
    return None


def _compare(a: Any, op: str, b: Any) -> bool:
    """Typed comparison (§4.9): values of different datatypes are unequal and match no other
    operator; booleans only compare for (in)equality."""
    pair = _same_type(a, b)
    if pair is None:
        return op == "!="
    x, y = pair
    if op == "==":
        return bool(x == y)
    if op == "!=":
        return bool(x != y)
    if isinstance(x, bool):
        return False
    if op == ">":
        return bool(x > y)
    if op == ">=":
        return bool(x >= y)
    if op == "<":
        return bool(x < y)
    return bool(x <= y)


def _term_matches(value: Any, cmp: str, expected: Any) -> bool:
    """Whether one target value meets ``cmp expected`` (§4.9: Equal, Unequal, the orderings, the
    patterns; a Range or a ValueList with == and !=)."""
    if cmp in ("~=", "!~="):
        # §4.9: a target value that is not a String matches neither pattern operator
        strings = [v for v in (_flat(value) if isinstance(value, list) else [value]) if isinstance(v, str)]
        if not strings:
            return False
        hit = any(expected.search(v) is not None for v in strings)
        return hit if cmp == "~=" else not hit
    if isinstance(value, list):
        # §4.9: == (and the orderings) look for the value in an array, != needs every element to differ
        if cmp == "!=":
            return all(_term_matches(v, "!=", expected) for v in value)
        return any(_term_matches(v, cmp, expected) for v in value)
    if isinstance(expected, tuple) and expected[0] == "range":
        inside = _compare(value, ">=", expected[1]) and _compare(value, "<=", expected[2])
        return inside if cmp == "==" else not inside
    if isinstance(expected, tuple) and expected[0] == "list":
        hit = any(_compare(value, "==", e) for e in expected[1])
        return hit if cmp == "==" else not hit
    return _compare(value, cmp, expected)


#: Finds a Linked Entity by id (None when it does not exist or may not be read).
Resolver = Callable[[str], StoredEntity | None]


def doc_object_ids(doc: dict[str, Any]) -> list[str]:
    """The entity ids a Relationship or ListRelationship instance targets (none for other attributes)."""
    kind = doc.get("type")
    if kind == "Relationship":
        obj = doc.get("object")
        return [o for o in (obj if isinstance(obj, list) else [obj]) if isinstance(o, str)]
    if kind == "ListRelationship":
        items = doc.get("objectList") or []
        return [o["object"] for o in items if isinstance(o, dict) and isinstance(o.get("object"), str)]
    return []


def object_ids(entity: StoredEntity, attr: str) -> list[str]:
    """The entity ids that the attribute ``attr`` of ``entity`` targets, over all its instances."""
    return [t for inst in (entity.attrs.get(attr) or {}).values() for t in doc_object_ids(inst.doc)]


def has_links(node: QNode) -> bool:
    """Whether the q reads attributes of Linked Entities (``rel{attr}``, §4.9)."""
    if node.op != "term":
        return any(has_links(i) for i in node.items)
    return node.path is not None and node.path.link is not None


def q_matches(node: QNode, entity: StoredEntity, ctx: ActiveContext, resolve: Resolver | None = None) -> bool:
    """Whether ``entity`` matches the q; ``resolve`` finds the Linked Entities of ``rel{attr}`` terms."""
    if node.op == "and":
        return all(q_matches(i, entity, ctx, resolve) for i in node.items)
    if node.op == "or":
        return any(q_matches(i, entity, ctx, resolve) for i in node.items)
    if node.op == "not":
        return not q_matches(node.items[0], entity, ctx, resolve)
    assert node.path is not None
    if node.path.link is not None:
        return _linked_matches(node, node.path.link, entity, ctx, resolve)
    items = _target_items(entity, node.path, ctx)
    if node.cmp is None:
        return bool(items)
    cmp = node.cmp
    return any(
        _term_matches(value, cmp, node.value)
        for value, kind in items
        # §4.9: a Relationship or ListRelationship matches no operator but equal and unequal
        if cmp in ("==", "!=") or kind not in ("Relationship", "ListRelationship")
    )


def _linked_matches(
    node: QNode, link: QPath, entity: StoredEntity, ctx: ActiveContext, resolve: Resolver | None
) -> bool:
    """``rel{path} op value`` (§4.9): the condition on ``path`` holds in an entity that ``rel`` targets."""
    if resolve is None:
        return False
    assert node.path is not None
    inner = QNode("term", path=link, cmp=node.cmp, value=node.value)
    types = set(node.path.link_types or [])
    for target_id in object_ids(entity, node.path.attr):
        target = resolve(target_id)
        if target is None or (types and not types & set(target.types)):
            continue
        if q_matches(inner, target, ctx, resolve):
            return True
    return False


# -- SQL prefilter -------------------------------------------------------------


def _has(*conds: SQL, correlated: bool = False) -> SQL:
    """Entities with an attribute row matching ``conds``: an uncorrelated IN, which both databases
    answer once through the (tenant, name, ...) indexes instead of once per entity; or, when
    another condition already narrows the entities (a geo-query), a correlated EXISTS, one
    primary-key lookup per candidate."""
    if correlated:
        return exists().where(NgsiAttribute.entity_pk == NgsiEntity.pk, *conds)
    return NgsiEntity.pk.in_(select(NgsiAttribute.entity_pk).where(*conds))


def q_sql(node: QNode, tenant: str, *, correlated: bool = False) -> tuple[SQL, bool]:
    """A SQL condition that keeps at least the matching entities, and whether it is exact."""
    if node.op == "not":
        # The complement of a superset is no superset: only an exact condition can be negated.
        cond, exact = q_sql(node.items[0], tenant, correlated=correlated)
        return (not_(cond), True) if exact else (true(), False)
    if node.op in ("and", "or"):
        parts = [q_sql(i, tenant, correlated=correlated) for i in node.items]
        exact = all(e for _, e in parts)
        if node.op == "and":
            return and_(*[c for c, _ in parts]), exact
        if not exact:
            return true(), False
        return or_(*[c for c, _ in parts]), True
    assert node.path is not None
    base = _term_base(node.path, tenant, correlated)
    if node.path.subs or node.path.keys or node.path.link is not None:
        return _has(*base, correlated=correlated), False
    if node.cmp is None:
        return _has(*base, correlated=correlated), True
    typed = _typed_value_sql(node)
    if typed is None:
        return _has(*base, correlated=correlated), False
    # a compound value ("other") may hold a matching element: Python decides those
    return _has(*base, or_(typed, NgsiAttribute.value_kind == "other"), correlated=correlated), False


def q_sure_sql(node: QNode, tenant: str, *, correlated: bool = False) -> SQL | None:
    """A SQL condition that only matching entities meet (the converse of :func:`q_sql`'s
    superset), or None when none is known: an entity it selects needs no check in Python."""
    if node.op == "not":
        cond, _ = q_sql(node.items[0], tenant, correlated=correlated)
        return not_(cond)  # outside the operand's superset, the operand cannot match
    if node.op in ("and", "or"):
        parts = [q_sure_sql(i, tenant, correlated=correlated) for i in node.items]
        known = [c for c in parts if c is not None]
        if node.op == "and":
            return and_(*known) if len(known) == len(parts) else None
        return or_(*known) if known else None
    assert node.path is not None
    if node.path.subs or node.path.keys or node.path.link is not None:
        return None
    base = _term_base(node.path, tenant, correlated)
    if node.cmp is None:
        return _has(*base, correlated=correlated)
    typed = _typed_value_sql(node)
    return None if typed is None else _has(*base, typed, correlated=correlated)


def _term_base(path: QPath, tenant: str, correlated: bool) -> list[SQL]:
    """The attribute rows a q term reads. Correlated: the entity decides the tenant, and
    (entity_pk, name) is the primary key's prefix (with the tenant too, SQLite would walk a
    (tenant, name, ...) index instead)."""
    if correlated:
        return [NgsiAttribute.name == path.attr]
    return [NgsiAttribute.tenant == tenant, NgsiAttribute.name == path.attr]


_SQL_OPS: dict[str, Callable[[Any, Any], SQL]] = {
    "==": lambda c, v: c == v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
}


def _typed_value_sql(node: QNode) -> SQL | None:
    """The comparison of a q term on the typed value columns (a number, or a short text), exactly
    as Python decides it for those rows; None when the term cannot go to SQL."""
    value = node.value
    cmp = node.cmp
    assert cmp is not None
    if cmp in _SQL_OPS and isinstance(value, int | float) and not isinstance(value, bool):
        return and_(NgsiAttribute.value_kind == "num", _SQL_OPS[cmp](NgsiAttribute.value_num, value))
    if (
        cmp == "=="
        and isinstance(value, str)
        and not isinstance(value, _Unquoted)
        and len(value) <= 256
        and _as_time(value) is None  # a DateTime equals its other spellings (``.000Z``): Python decides
    ):
        return and_(NgsiAttribute.value_kind == "text", NgsiAttribute.value_text == value)
    if cmp == "==" and isinstance(value, tuple) and value[0] == "range":
        lo, hi = value[1], value[2]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
            return and_(NgsiAttribute.value_kind == "num", NgsiAttribute.value_num.between(lo, hi))
    return None


# --------------------------------------------------------------------------- geoQ

GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")


@dataclass
class GeoQuery:
    rel: str
    geometry: BaseGeometry
    geoproperty: str
    max_distance: float | None = None
    min_distance: float | None = None

    def sql(self, tenant: str) -> SQL:
        rows = self.rows_where(tenant)
        if rows is None:
            return _has(NgsiAttribute.tenant == tenant, NgsiAttribute.name == self.geoproperty)
        return _has(*rows)

    def rows_where(self, tenant: str) -> list[SQL] | None:
        """Conditions on the geoproperty's rows (grid cells, then bbox) that keep at least the
        matching ones; None when the bbox cannot narrow (disjoint, near with only minDistance)."""
        a = NgsiAttribute
        base = [a.tenant == tenant, a.name == self.geoproperty]
        minx, miny, maxx, maxy = self.geometry.bounds
        if self.rel == "near" and self.max_distance is not None:
            dlat = math.degrees(self.max_distance / EARTH_RADIUS_M)
            coslat = max(0.01, math.cos(math.radians(max(abs(miny), abs(maxy)) + dlat)))
            dlon = min(180.0, dlat / coslat)
            minx, miny, maxx, maxy = minx - dlon, miny - dlat, maxx + dlon, maxy + dlat
        elif self.rel in ("disjoint", "near"):
            return None
        if self.rel == "within":
            box = and_(a.min_lon >= minx, a.max_lon <= maxx, a.min_lat >= miny, a.max_lat <= maxy)
        elif self.rel in ("contains", "equals"):
            box = and_(a.min_lon <= minx, a.max_lon >= maxx, a.min_lat <= miny, a.max_lat >= maxy)
        else:
            box = and_(a.max_lon >= minx, a.min_lon <= maxx, a.max_lat >= miny, a.min_lat <= maxy)
        return [*base, _cells_sql(minx, miny, maxx, maxy), box]

    def point_verdict(
        self, min_lon: float | None, min_lat: float | None, max_lon: float | None, max_lat: float | None
    ) -> bool | None:
        """Whether a stored geometry matches, from its bounding box alone (no geometry to parse),
        when that box is one point and the query is ``near`` a point: the distance is then the
        haversine one :meth:`matches` computes. None when the box cannot decide: not a point,
        another relation or query geometry, or within a metre of a distance bound."""
        q = self.geometry
        if self.rel != "near" or q.geom_type != "Point" or min_lon is None or min_lat is None:
            return None
        if min_lon != max_lon or min_lat != max_lat:
            return None
        d = haversine_m(q.y, q.x, min_lat, min_lon)
        if any(bound is not None and abs(d - bound) < 1.0 for bound in (self.max_distance, self.min_distance)):
            return None
        return self._near_enough(d)

    def _near_enough(self, d: float) -> bool:
        """Whether a distance in metres meets ``maxDistance`` and ``minDistance``."""
        if self.max_distance is not None and d > self.max_distance:
            return False
        return not (self.min_distance is not None and d < self.min_distance)

    def matches(self, entity: StoredEntity) -> bool:
        per_ds = entity.attrs.get(self.geoproperty)
        if not per_ds:
            return False
        for inst in per_ds.values():
            value = inst.doc.get("value")
            if inst.doc.get("type") != "GeoProperty" or not isinstance(value, dict):
                continue
            try:
                geom = shape_from_geojson(value, repair=True)  # as the bbox was computed on write
            except (GeometryError, TypeError):  # stored geometry is validated on write; be safe anyway
                geom = None
            if geom is not None and self._test(geom):
                return True
        return False

    def _test(self, geom: BaseGeometry) -> bool:
        q = self.geometry
        if self.rel == "near":
            return self._near_enough(distance_m(q, geom))
        return bool(
            {
                "within": geom.within,
                "contains": geom.contains,
                "intersects": geom.intersects,
                "equals": geom.equals,
                "disjoint": geom.disjoint,
                "overlaps": geom.overlaps,
            }[self.rel](q)
        )


#: Above this many cells at one level, that level is read as a range of cell keys instead.
MAX_CELLS = 64


def _cells_sql(minx: float, miny: float, maxx: float, maxy: float) -> SQL:
    """The grid cells (store.geo_cell) a stored bbox meeting this bbox can be filed under: at every
    level the cells the bbox touches (a stored bbox lies inside its cell, so meeting the query's
    bbox means its cell does too), and the whole-Earth cell."""
    col = NgsiAttribute.geo_cell
    keys: list[int] = [cell_key(GEO_LEVELS, 0, 0)]
    # geo_cell IS NOT NULL: the index is partial, and not every planner derives it from the ORs.
    ranges: list[SQL] = []
    for level in range(GEO_LEVELS):
        ix0, iy0, ix1, iy1 = cell_range(level, minx, miny, maxx, maxy)
        if (ix1 - ix0 + 1) * (iy1 - iy0 + 1) <= MAX_CELLS:
            keys.extend(cell_key(level, ix, iy) for ix in range(ix0, ix1 + 1) for iy in range(iy0, iy1 + 1))
        else:
            ranges.append(col.between(cell_key(level, ix0, iy0), cell_key(level, ix1, iy1)))
    in_keys = col.in_(keys)
    return and_(col.is_not(None), or_(in_keys, *ranges) if ranges else in_keys)


def distance_m(a: BaseGeometry, b: BaseGeometry) -> float:
    """Distance in metres between two WGS 84 geometries (haversine for points, local projection else)."""
    if a.geom_type == "Point" and b.geom_type == "Point":
        return haversine_m(a.y, a.x, b.y, b.x)
    lat0 = a.centroid.y
    kx = math.cos(math.radians(lat0)) * EARTH_RADIUS_M * math.pi / 180
    ky = EARTH_RADIUS_M * math.pi / 180

    def project(g: BaseGeometry) -> BaseGeometry:
        return shapely.transform(g, lambda c: c * [kx, ky])

    return float(project(a).distance(project(b)))


def parse_geoq(
    georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None, ctx: ActiveContext
) -> GeoQuery | None:
    """The geo-query of the ``georel``/``geometry``/``coordinates``/``geoproperty`` parameters."""
    if georel is None and geometry is None and coordinates is None:
        return None
    if not georel or not geometry or coordinates is None:
        raise bad_request("A geo-query needs georel, geometry and coordinates.")
    parts = georel.split(";")
    rel = parts[0]
    if rel not in GEORELS:
        raise bad_request(f"Invalid georel {rel!r}.")
    if rel != "near" and len(parts) > 1:
        raise bad_request("maxDistance and minDistance only go with near.")
    # §4.10: nearRel = nearOp andOp distance equal PositiveNumber — exactly one distance, a finite
    # JSON number greater than 0
    if rel == "near" and len(parts) != 2:
        raise bad_request("georel near takes exactly one of maxDistance or minDistance.")
    max_d = min_d = None
    for mod in parts[1:]:
        m = re.fullmatch(r"(maxDistance|minDistance)==(\d+(\.\d+)?([eE][-+]?\d+)?)", mod)
        distance = float(m.group(2)) if m else 0.0
        if m is None or not 0 < distance < math.inf:
            raise bad_request(f"Invalid georel modifier {mod!r}: a distance in metres greater than 0.")
        if m.group(1) == "maxDistance":
            max_d = distance
        else:
            min_d = distance
    if geometry not in GEOMETRIES:
        raise bad_request(f"Invalid geometry {geometry!r}.")
    if isinstance(coordinates, str):
        try:
            coords = json.loads(coordinates)
        except ValueError as exc:
            raise bad_request(f"Invalid coordinates {coordinates!r}.") from exc
    else:
        coords = coordinates
    try:
        geom = shape_from_geojson({"type": geometry, "coordinates": coords}, repair=True)
    except GeometryError as exc:
        raise bad_request(f"Invalid geo-query geometry: {exc}") from exc
    prop = ctx.expand(geoproperty) if geoproperty else ctx.expand("location")
    return GeoQuery(rel, geom, prop, max_d, min_d)


__all__ = ["false"]
