"""Query Entities: SQL prefilter (types, ids, pushed-down q, bbox), exact check in Python, paging."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, exists, func, select, true
from sqlalchemy.orm import Session

from ioc.core.geo import GeometryError, shape_from_geojson

from .errors import bad_request
from .ld import ActiveContext
from .linked import linked_targets
from .models import NgsiAttribute, NgsiEntity, NgsiEntityType
from .query import GeoQuery, QNode, Resolver, TypeExpr, q_matches, q_sql, q_sure_sql
from .scope import ScopeExpr, scope_sql
from .scope import matches as scope_matches
from .store import StoredEntity, load_by_pks, one_of

_SAFE_REGEX = re.compile(r"^[\w\s.*+?^$:\-\[\]\\/|(){},#@=]*$")
SCAN_CHUNK = 5000


class EntityCheck(Protocol):
    """A condition on entities decided with more than their current state (the temporal API's scopeQ
    reads the history of the scope): a SQL prefilter, then an exact check of each candidate."""

    def sql(self, dialect: str) -> ColumnElement[bool]: ...

    def prefetch(self, session: Session, entities: Iterable[StoredEntity]) -> None: ...

    def holds(self, entity: StoredEntity) -> bool: ...


@dataclass
class EntityQuery:
    ids: list[str] | None = None
    id_pattern: re.Pattern[str] | None = None
    types: TypeExpr | None = None
    attrs: list[str] | None = None  # entities having at least one of these (IRIs)
    q: QNode | None = None
    geo: GeoQuery | None = None
    scope: ScopeExpr | None = None  # scopeQ (§4.19)
    readable: set[str] | None = None  # public types only (anonymous readers)
    selectors: list[Selector] | None = None  # several EntitySelectors (any may match), checked in Python
    having: ColumnElement[bool] | None = None  # one more SQL condition on NgsiEntity (the temporal API's)
    check: EntityCheck | None = None  # one more condition, checked in Python (the temporal API's scopeQ)


@dataclass
class Selector:
    """One EntitySelector (§5.2.33): type, and id (precedence) or idPattern."""

    types: TypeExpr
    ids: list[str] | None = None
    id_pattern: re.Pattern[str] | None = None

    def matches(self, entity: StoredEntity) -> bool:
        if not self.types.matches(entity.types):
            return False
        if self.ids is not None:
            return entity.id in self.ids
        return self.id_pattern is None or self.id_pattern.search(entity.id) is not None


def compile_pattern(raw: str) -> re.Pattern[str]:
    try:
        return re.compile(raw)
    except re.error as exc:
        raise bad_request(f"Invalid idPattern {raw!r}: {exc}.") from exc


def _conditions(
    session: Session, tenant: str, query: EntityQuery
) -> tuple[list[ColumnElement[bool]], bool, ColumnElement[bool] | None]:
    """The SQL conditions of a query (at least the matching entities); whether they are exact;
    and, when known, a condition under which an entity meeting them matches all but the geo-query."""
    # With a geo-query, its grid cells (attributes of this tenant) drive the scan: a condition on
    # the entity's tenant as well would let SQLite walk the tenant's whole index instead.
    conds: list[ColumnElement[bool]] = [NgsiEntity.tenant == tenant] if query.geo is None else []
    exact = True
    if query.ids is not None:
        conds.append(NgsiEntity.entity_id.in_(query.ids))
    if query.id_pattern is not None:
        pattern = query.id_pattern.pattern
        if _SAFE_REGEX.match(pattern) and "(?" not in pattern:
            conds.append(NgsiEntity.entity_id.regexp_match(pattern))
        exact = False
    if query.types is not None:
        conds.append(query.types.sql())
    if query.readable is not None:
        conds.append(
            exists().where(NgsiEntityType.entity_pk == NgsiEntity.pk, NgsiEntityType.type_iri.in_(query.readable))
        )
    if query.attrs:
        conds.append(
            NgsiEntity.pk.in_(
                select(NgsiAttribute.entity_pk).where(
                    NgsiAttribute.tenant == tenant, NgsiAttribute.name.in_(query.attrs)
                )
            )
        )
    if query.selectors is not None:
        exact = False
    if query.scope is not None:
        cond, scope_exact = scope_sql(query.scope, session.get_bind().dialect.name)
        conds.append(cond)
        exact = exact and scope_exact
    if query.having is not None:
        conds.append(query.having)
    if query.check is not None:
        conds.append(query.check.sql(session.get_bind().dialect.name))
        exact = False
    sure: ColumnElement[bool] | None = true() if exact else None
    if query.q is not None:
        # With a geo-query the grid cells drive the scan and q's terms are correlated EXISTS, one
        # primary-key lookup per candidate: an uncorrelated IN (...) makes both databases
        # materialise every row of the attribute.
        correlated = query.geo is not None
        cond, q_exact = q_sql(query.q, tenant, correlated=correlated)
        conds.append(cond)
        if sure is not None and not q_exact:
            sure = q_sure_sql(query.q, tenant, correlated=correlated)
        exact = exact and q_exact
    if query.geo is None:
        return conds, exact, sure
    if query.geo.rows_where(tenant) is None:
        conds.append(query.geo.sql(tenant))
    return conds, False, sure


def matches(entity: StoredEntity, query: EntityQuery, ctx: ActiveContext, resolve: Resolver | None = None) -> bool:
    """The exact check in Python; ``resolve`` finds the Linked Entities a ``rel{attr}`` q reads."""
    if query.selectors is not None and not any(sel.matches(entity) for sel in query.selectors):
        return False
    if query.id_pattern is not None and not query.id_pattern.search(entity.id):
        return False
    if query.scope is not None and not scope_matches(query.scope, entity.scope):
        return False
    if query.check is not None and not query.check.holds(entity):
        return False
    if query.q is not None and not q_matches(query.q, entity, ctx, resolve):
        return False
    return not (query.geo is not None and not query.geo.matches(entity))


def run_query(
    session: Session, tenant: str, query: EntityQuery, ctx: ActiveContext, *, limit: int, offset: int, count: bool
) -> tuple[list[StoredEntity], int | None]:
    """A page of matching entities (in creation order) and, when asked, how many match in all."""
    conds, exact, sure = _conditions(session, tenant, query)
    where = and_(*conds)
    if exact:
        total = int(session.scalar(select(func.count()).select_from(NgsiEntity).where(where)) or 0) if count else None
        if limit == 0:
            return [], total
        pks = list(
            session.scalars(select(NgsiEntity.pk).where(where).order_by(NgsiEntity.pk).limit(limit).offset(offset))
        )
        return load_by_pks(session, pks), total
    # Not exact: scan the candidates in creation order, checking each against only the
    # attributes the check reads (q's and the geoproperty), and load whole entities for the
    # page alone. Chunks start near the page size and grow, so a selective page costs little.
    needed = _needed_attrs(query)
    linked = linked_targets(session, tenant, query.q, query.readable)
    page_pks: list[int] = []
    seen = 0
    last = 0
    # SQL already narrows to near-matches with a geo-query (grid cells, bbox, q): a page and a
    # half usually holds the page.
    geo_rows = query.geo.rows_where(tenant) if query.geo is not None else None
    # A near query on points decides from the candidates' bounding boxes (their grid rows), and
    # ``sure`` from SQL whether the rest holds: most candidates need no attribute parsed.
    rest_sure = sure if geo_rows is not None and linked is None else None
    boxes_decide = rest_sure is not None
    dialect = session.get_bind().dialect.name
    chunk = max(2 * (offset + limit), 200)
    while True:
        verdicts: dict[int, bool | None] = {}
        if geo_rows is not None:
            # The geo-query drives: the next candidates in creation order straight from the grid
            # index (its rows alone), then the other conditions on those few entities only.
            a = NgsiAttribute
            rows = session.execute(
                select(a.entity_pk, a.min_lon, a.min_lat, a.max_lon, a.max_lat)
                .where(*geo_rows, a.entity_pk > last)
                .order_by(a.entity_pk)
                .limit(chunk)
            ).all()
            if not rows:
                break
            last = rows[-1][0]
            exhausted = len(rows) < chunk
            narrowed = session.execute(
                select(NgsiEntity.pk, rest_sure if rest_sure is not None else true())
                .where(one_of(NgsiEntity.pk, list(dict.fromkeys(r[0] for r in rows)), dialect), *conds)
                .order_by(NgsiEntity.pk)
            ).all()
            pks = [pk for pk, _ in narrowed]
            if boxes_decide:
                assert query.geo is not None
                for pk, *box in rows:
                    # an entity matches when one of its instances does; the chunk may have cut
                    # off the last entity's other instances
                    v = None if pk == last and not exhausted else query.geo.point_verdict(*box)
                    before = verdicts.get(pk, False)
                    if before is not True:
                        verdicts[pk] = True if v is True else (None if v is None or before is None else False)
                for pk, rest_holds in narrowed:
                    if verdicts.get(pk) is True and not rest_holds:
                        verdicts[pk] = None  # the geo-query holds; Python decides the rest
        else:
            pks = list(
                session.scalars(
                    select(NgsiEntity.pk).where(where, NgsiEntity.pk > last).order_by(NgsiEntity.pk).limit(chunk)
                )
            )
            if not pks:
                break
            last = pks[-1]
            exhausted = len(pks) < chunk
        undecided = [pk for pk in pks if verdicts.get(pk) is None]
        candidates = {e.pk: e for e in load_by_pks(session, undecided, names=needed)} if undecided else {}
        if linked is not None:
            linked.prefetch(list(candidates.values()))
        if query.check is not None:
            query.check.prefetch(session, candidates.values())
        for pk in pks:
            verdict = verdicts.get(pk)
            if verdict is None:
                entity = candidates.get(pk)
                verdict = entity is not None and matches(entity, query, ctx, linked.get if linked else None)
            if not verdict:
                continue
            if offset <= seen < offset + limit:
                page_pks.append(pk)
            seen += 1
            if not count and seen >= offset + limit:
                break
        if not count and seen >= offset + limit:
            break
        if exhausted:
            break
        chunk = min(chunk * 2, SCAN_CHUNK)
    return load_by_pks(session, page_pks), (seen if count else None)


def _needed_attrs(query: EntityQuery) -> set[str]:
    """The attributes the exact check in Python reads."""
    names: set[str] = set()
    if query.q is not None:
        names |= query.q.attrs()
    if query.geo is not None:
        names.add(query.geo.geoproperty)
    return names


def type_names(session: Session, tenant: str, readable: set[str] | None) -> list[str]:
    stmt = select(NgsiEntityType.type_iri).where(NgsiEntityType.tenant == tenant).distinct()
    if readable is not None:
        stmt = stmt.where(NgsiEntityType.type_iri.in_(readable))
    return sorted(session.scalars(stmt))


def type_details(session: Session, tenant: str, type_iri: str) -> tuple[int, dict[str, set[str]]]:
    """How many entities have ``type_iri`` and, per attribute IRI, its attribute types."""
    count = int(
        session.scalar(
            select(func.count())
            .select_from(NgsiEntityType)
            .where(NgsiEntityType.tenant == tenant, NgsiEntityType.type_iri == type_iri)
        )
        or 0
    )
    rows = session.execute(
        select(NgsiAttribute.name, NgsiAttribute.kind)
        .join(NgsiEntityType, NgsiEntityType.entity_pk == NgsiAttribute.entity_pk)
        .where(NgsiEntityType.tenant == tenant, NgsiEntityType.type_iri == type_iri)
        .distinct()
    ).all()
    attrs: dict[str, set[str]] = {}
    for name, kind in rows:
        attrs.setdefault(name, set()).add(kind)
    return count, attrs


def attribute_names(session: Session, tenant: str) -> list[str]:
    return sorted(session.scalars(select(NgsiAttribute.name).where(NgsiAttribute.tenant == tenant).distinct()))


def attribute_details(session: Session, tenant: str, name: str) -> tuple[int, set[str], set[str]]:
    """How many entities have attribute ``name``, its attribute types and the entity types that have it."""
    count = int(
        session.scalar(
            select(func.count(func.distinct(NgsiAttribute.entity_pk))).where(
                NgsiAttribute.tenant == tenant, NgsiAttribute.name == name
            )
        )
        or 0
    )
    kinds = set(
        session.scalars(
            select(NgsiAttribute.kind).where(NgsiAttribute.tenant == tenant, NgsiAttribute.name == name).distinct()
        )
    )
    types = set(
        session.scalars(
            select(NgsiEntityType.type_iri)
            .join(NgsiAttribute, NgsiAttribute.entity_pk == NgsiEntityType.entity_pk)
            .where(NgsiAttribute.tenant == tenant, NgsiAttribute.name == name)
            .distinct()
        )
    )
    return count, kinds, types


def all_attribute_types(session: Session, tenant: str) -> list[tuple[str, str]]:
    rows: list[Any] = list(
        session.execute(
            select(NgsiEntityType.type_iri, NgsiAttribute.name)
            .join(NgsiAttribute, NgsiAttribute.entity_pk == NgsiEntityType.entity_pk)
            .where(NgsiEntityType.tenant == tenant)
            .distinct()
        ).all()
    )
    return [(r[0], r[1]) for r in rows]


# --------------------------------------------------------------------------- ordering (§4.23)

_SYSTEM_ATTRS = frozenset({"createdAt", "modifiedAt", "deletedAt"})
#: Entity members that are not Attributes at all (§4.21): they do not qualify a query either.
_CORE_MEMBERS = frozenset({"id", "type"})
_DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
_COLLATION_TAG = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
#: Collations offered besides codepoint order: the root collation (ICU "und", IETF RFC 6067).
ROOT_COLLATIONS = frozenset({"und", "root"})


@dataclass
class OrderKey:
    attr: str  # IRI, or "id" / "type"
    subs: list[str]
    keys: list[str]
    direction: str = "asc"


@dataclass
class Ordering:
    keys: list[OrderKey]
    origin: Any = None  # shapely geometry of orderFrom / coordinates (distance ordering)
    collation: str | None = None


def system_only(names: list[str]) -> bool:
    """Whether no name is a non-system Attribute: system attributes and the core members ``id`` and
    ``type`` do not qualify a query (§5.7.2.4 b, c; 019_03_03)."""
    return bool(names) and all(n in _SYSTEM_ATTRS or n in _CORE_MEMBERS for n in names)


def parse_ordering(
    items: list[str], ctx: ActiveContext, *, coordinates: Any, geometry: Any, collation: Any
) -> Ordering:
    """``orderBy`` (§4.23.3; OrderingParams §5.2.43): ``path[;asc|desc|dist-asc|dist-desc]``, ..."""
    from .query import _QParser  # the q path grammar

    keys: list[OrderKey] = []
    for item in items:
        path_text, _, direction = item.partition(";")
        direction = direction.strip() or "asc"
        if direction not in _DIRECTIONS or not path_text.strip():
            raise bad_request(f"Invalid orderBy item {item!r}.")
        path_text = path_text.strip()
        if path_text in ("id", "type"):
            keys.append(OrderKey(path_text, [], [], direction))
            continue
        qp = _QParser(path_text, ctx)._path(path_text)
        keys.append(OrderKey(qp.attr, qp.subs, qp.keys, direction))
    origin = None
    if any(k.direction.startswith("dist") for k in keys):
        if coordinates is None or coordinates == "":
            raise bad_request("Ordering by distance needs the reference coordinates (orderFrom).")
        coords = coordinates
        if isinstance(coords, str):
            try:
                coords = json.loads(coords)
            except ValueError as exc:
                raise bad_request(f"Invalid orderFrom {coordinates!r}.") from exc
        if not isinstance(coords, list):
            raise bad_request("The reference coordinates are a JSON array.")
        gtype = geometry if geometry is not None else "Point"
        if not isinstance(gtype, str):
            raise bad_request("geometry must be a GeoJSON geometry type.")
        try:
            origin = shape_from_geojson({"type": gtype, "coordinates": coords}, repair=True)
        except GeometryError as exc:
            raise bad_request(f"Invalid reference geometry: {exc}") from exc
    elif geometry is not None and not isinstance(geometry, str):
        raise bad_request("geometry must be a GeoJSON geometry type.")
    if collation is not None:
        if not isinstance(collation, str) or not _COLLATION_TAG.match(collation):
            raise bad_request(f"Invalid collation {collation!r} (an IETF RFC 6067 language tag).")
        if collation not in ROOT_COLLATIONS:
            raise bad_request(f"The collation {collation!r} is not offered; use und (root) or none (codepoint).")
    return Ordering(keys, origin, collation)


def _order_value(entity: StoredEntity, key: OrderKey, ordering: Ordering, ctx: ActiveContext) -> Any:
    from .query import QPath, _targets, distance_m

    if key.attr == "id":
        return entity.id
    if key.attr == "type":
        return ctx.compact(entity.types[0]) if entity.types else None
    if key.direction.startswith("dist"):
        per_ds = entity.attrs.get(key.attr) or {}
        best: float | None = None
        for inst in per_ds.values():
            value = inst.doc.get("value")
            if inst.doc.get("type") != "GeoProperty" or not isinstance(value, dict):
                continue
            try:
                d = distance_m(ordering.origin, shape_from_geojson(value, repair=True))
            except GeometryError:
                continue
            best = d if best is None else min(best, d)
        return best
    values = _targets(entity, QPath(key.attr, key.subs, key.keys), ctx)
    return values[0] if values else None


def _rank(value: Any, collation: str | None) -> tuple[int, Any]:
    """§4.23.2: numbers, then strings, then booleans, then other values; absent values last."""
    if value is None:
        return (9, 0)
    if isinstance(value, bool):
        return (2, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        if collation is not None:
            base = "".join(c for c in unicodedata.normalize("NFD", value) if not unicodedata.combining(c))
            return (1, (base.casefold(), unicodedata.normalize("NFD", value) != value, value.swapcase()))
        return (1, value)
    return (3, json.dumps(value, sort_keys=True))


def order_entities(entities: list[StoredEntity], ordering: Ordering, ctx: ActiveContext) -> list[StoredEntity]:
    """The entities sorted by every key in turn (a stable sort from the last key to the first)."""
    out = list(entities)
    for key in reversed(ordering.keys):
        desc = key.direction in ("desc", "dist-desc")
        values = {id(e): _order_value(e, key, ordering, ctx) for e in out}
        present = [e for e in out if values[id(e)] is not None]
        absent = [e for e in out if values[id(e)] is None]

        def sort_key(e: StoredEntity, vals: dict[int, Any] = values) -> tuple[int, Any]:
            return _rank(vals[id(e)], ordering.collation)

        present.sort(key=sort_key, reverse=desc)
        out = present + absent
    return out
