"""The NGSI-LD Scope Query Language (ETSI GS CIM 009 v1.8 §4.19) over entity scopes (§4.18).

A scope is a path of levels, ``/Madrid/Gardens/ParqueNorte``; an entity has none, one or several.
A scope query combines scope patterns with ``;`` (and), ``,`` or ``|`` (or, both spellings of the
orOp) and parentheses; ``;`` binds tighter than the or. In a pattern, ``+`` stands for exactly one
level and a trailing ``#`` for any number of further levels, none included: ``/CompanyA/#`` is
``/CompanyA`` and every scope below it, ``/#`` any scope at all. An entity without a scope matches
no pattern. The leading ``/`` is optional in scopes and patterns alike (§4.18 ABNF) and does not
change what they mean.

A pattern holds for an entity when one of its scopes matches it, so ``/A;/B`` selects entities
having both scopes (possibly as two different ones). ``matches`` decides in Python;
``scope_sql`` gives the same answer in SQL over the JSON text of the entity's ``scope`` column
(exact for patterns without ``+``, a superset otherwise), which holds because every stored scope
is validated to §4.18: its levels are letters, digits and ``_``, so a JSON string of a scope is
delimited by the only ``"`` characters around it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, func, literal, or_

from ioc.core.jsoncodec import dumps

from .errors import bad_request
from .models import NgsiEntity

#: §4.18 ScopeLevel: a Unicode letter, then letters, digits or ``_``.
_LEVEL = re.compile(r"[^\W\d_]\w*")
_OPERATORS = ",|;()"
ONE_LEVEL = "+"
ANY_LEVELS = "#"


@dataclass(frozen=True)
class ScopeExpr:
    """A parsed scope query: a pattern (``levels``) or an ``and``/``or`` of sub-expressions."""

    op: str  # "scope" | "and" | "or"
    levels: tuple[str, ...] = ()
    items: tuple[ScopeExpr, ...] = ()


def parse_scope_query(text: str) -> ScopeExpr:
    """``scopeQ`` (§4.19); 400 BadRequestData when malformed."""
    parser = _Parser(text)
    expr = parser.parse_or()
    if parser.pos != len(text):
        raise bad_request(f"Invalid scopeQ {text!r}: unexpected {text[parser.pos]!r} at {parser.pos}.")
    return expr


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_or(self) -> ScopeExpr:
        items = [self.parse_and()]
        while self.peek() in (",", "|"):
            self.pos += 1
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else ScopeExpr("or", items=tuple(items))

    def parse_and(self) -> ScopeExpr:
        items = [self.parse_atom()]
        while self.peek() == ";":
            self.pos += 1
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else ScopeExpr("and", items=tuple(items))

    def parse_atom(self) -> ScopeExpr:
        if self.peek() == "(":
            self.pos += 1
            expr = self.parse_or()
            if self.peek() != ")":
                raise bad_request(f"Invalid scopeQ {self.text!r}: unbalanced parentheses.")
            self.pos += 1
            return expr
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _OPERATORS:
            self.pos += 1
        return ScopeExpr("scope", levels=_pattern(self.text, self.text[start : self.pos]))


def _pattern(text: str, raw: str) -> tuple[str, ...]:
    """The levels of one scope pattern: names, ``+``, and ``#`` as the last level only."""
    levels = tuple((raw[1:] if raw.startswith("/") else raw).split("/"))
    for i, level in enumerate(levels):
        if level == ANY_LEVELS and i == len(levels) - 1:
            continue
        if level != ONE_LEVEL and not _LEVEL.fullmatch(level):
            what = f"the scope {raw!r}" if raw else "a missing scope"
            raise bad_request(
                f"Invalid scopeQ {text!r}: {what} (levels are a letter then letters, digits or _, "
                "or + for one level, or a final # for any levels; §4.19)."
            )
    return levels


# --------------------------------------------------------------------------- Python


def entity_scopes(scope: Any) -> list[tuple[str, ...]]:
    """The levels of each scope of an entity's ``scope`` member (a string, a list of them, or None)."""
    values = scope if isinstance(scope, list) else [scope]
    return [tuple((s[1:] if s.startswith("/") else s).split("/")) for s in values if isinstance(s, str) and s]


def matches(expr: ScopeExpr, scope: Any) -> bool:
    """Whether an entity whose ``scope`` member is ``scope`` satisfies the scope query (§4.19)."""
    return _holds(expr, entity_scopes(scope))


def _holds(expr: ScopeExpr, scopes: list[tuple[str, ...]]) -> bool:
    if expr.op == "and":
        return all(_holds(item, scopes) for item in expr.items)
    if expr.op == "or":
        return any(_holds(item, scopes) for item in expr.items)
    return any(_level_match(expr.levels, s) for s in scopes)


def _level_match(pattern: tuple[str, ...], scope: tuple[str, ...]) -> bool:
    for i, level in enumerate(pattern):
        if level == ANY_LEVELS:
            return True
        if i >= len(scope) or (level != ONE_LEVEL and level != scope[i]):
            return False
    return len(scope) == len(pattern)


# --------------------------------------------------------------------------- SQL


def scope_sql(expr: ScopeExpr, dialect: str) -> tuple[ColumnElement[bool], bool]:
    """A condition on ``ngsild_entities.scope`` for the query, and whether it is exact.

    Substring tests over the column's JSON text: ``"/A/B"`` (the whole string) for ``/A/B``, and
    ``"/A"`` or ``"/A/`` (the string or its start) for ``/A/#``, each with and without the
    leading ``/``. A pattern with ``+`` tests its literal prefix and last level only (a superset).
    """
    if expr.op in ("and", "or"):
        parts = [scope_sql(item, dialect) for item in expr.items]
        conds = [c for c, _ in parts]
        return (and_(*conds) if expr.op == "and" else or_(*conds)), all(e for _, e in parts)
    levels = expr.levels
    if ONE_LEVEL in levels:
        first = levels.index(ONE_LEVEL)
        conds = [_starts(levels[:first], dialect, more=True)]
        if levels[-1] not in (ONE_LEVEL, ANY_LEVELS):
            conds.append(_contains("/" + _json_text(levels[-1], dialect) + '"', dialect))
        return and_(*conds), False
    if levels[-1] == ANY_LEVELS:
        prefix = levels[:-1]
        if not prefix:
            return _starts((), dialect, more=False), True
        return or_(_whole(prefix, dialect), _starts(prefix, dialect, more=True)), True
    return _whole(levels, dialect), True


def _json_text(text: str, dialect: str) -> str:
    """``text`` as the column's JSON text spells it inside a string: non-ASCII characters as they
    are (our JSON codec on SQLite, JSONB's text form on PostgreSQL)."""
    return dumps(text)[1:-1]


def _ascii_escaped(needle: str) -> str:
    """``needle`` with each non-ASCII character as the JSON escape of its UTF-16 code units
    (backslash, ``u``, four hex digits), as the standard library's ``json.dumps`` wrote the SQLite
    rows stored before the codec."""
    return "".join(ch if ch.isascii() else json.dumps(ch)[1:-1] for ch in needle)


def _whole(levels: tuple[str, ...], dialect: str) -> ColumnElement[bool]:
    path = _json_text("/".join(levels), dialect)
    return or_(_contains(f'"/{path}"', dialect), _contains(f'"{path}"', dialect))


def _starts(levels: tuple[str, ...], dialect: str, *, more: bool) -> ColumnElement[bool]:
    """A scope string starting with ``levels`` (and going on below them when ``more``)."""
    if not levels:
        return _contains('"', dialect)  # any scope
    path = _json_text("/".join(levels), dialect)
    tail = "/" if more else ""
    return or_(_contains(f'"/{path}{tail}', dialect), _contains(f'"{path}{tail}', dialect))


def _contains(needle: str, dialect: str) -> ColumnElement[bool]:
    """A case-sensitive substring test on the JSON text of the scope (SQL NULL: false)."""
    text = literal(needle, Text)  # a plain string parameter, not a JSON document
    if dialect == "postgresql":
        return func.strpos(cast(NgsiEntity.scope, Text), text) > 0
    if not needle.isascii():  # a row written before the codec spells it with escapes
        return or_(func.instr(NgsiEntity.scope, text) > 0, func.instr(NgsiEntity.scope, _ascii_escaped(needle)) > 0)
    return func.instr(NgsiEntity.scope, text) > 0
