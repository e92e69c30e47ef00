"""Query Entities: SQL prefilter (types, ids, pushed-down q, bbox), exact check in Python, paging."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session

from .errors import bad_request
from .ld import ActiveContext
from .models import NgsiAttribute, NgsiEntity, NgsiEntityType
from .query import GeoQuery, QNode, TypeExpr, q_matches, q_sql
from .store import StoredEntity, load_by_pks

_SAFE_REGEX = re.compile(r"^[\w\s.*+?^$:\-\[\]\\/|(){},#@=]*$")
SCAN_CHUNK = 5000


@dataclass
class EntityQuery:
    ids: list[str] | None = None
    id_pattern: re.Pattern[str] | None = None
    types: TypeExpr | None = None
    attrs: list[str] | None = None  # entities having at least one of these (IRIs)
    q: QNode | None = None
    geo: GeoQuery | None = None
    readable: set[str] | None = None  # public types only (anonymous readers)


def compile_pattern(raw: str) -> re.Pattern[str]:
    try:
        return re.compile(raw)
    except re.error as exc:
        raise bad_request(f"Invalid idPattern {raw!r}: {exc}.") from exc


def _conditions(session: Session, tenant: str, query: EntityQuery) -> tuple[list[ColumnElement[bool]], bool]:
    conds: list[ColumnElement[bool]] = [NgsiEntity.tenant == tenant]
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
    if query.q is not None and query.geo is None:
        cond, q_exact = q_sql(query.q, tenant)
        conds.append(cond)
        exact = exact and q_exact
    elif query.q is not None:
        # With a geo-query the bbox drives the scan and q is checked in Python on the candidates:
        # adding q's IN (...) as well makes PostgreSQL materialise every row of the attribute
        # (1.4 s instead of 16 ms over 20,000 entities).
        exact = False
    if query.geo is not None:
        conds.append(query.geo.sql(tenant))
        exact = False
    return conds, exact


def matches(entity: StoredEntity, query: EntityQuery, ctx: ActiveContext) -> bool:
    if query.id_pattern is not None and not query.id_pattern.search(entity.id):
        return False
    if query.q is not None and not q_matches(query.q, entity, ctx):
        return False
    return not (query.geo is not None and not query.geo.matches(entity))


def run_query(
    session: Session, tenant: str, query: EntityQuery, ctx: ActiveContext, *, limit: int, offset: int, count: bool
) -> tuple[list[StoredEntity], int | None]:
    """A page of matching entities (in creation order) and, when asked, how many match in all."""
    conds, exact = _conditions(session, tenant, query)
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
    page_pks: list[int] = []
    seen = 0
    last = 0
    chunk = max(2 * (offset + limit), 200)
    while True:
        pks = list(
            session.scalars(
                select(NgsiEntity.pk).where(where, NgsiEntity.pk > last).order_by(NgsiEntity.pk).limit(chunk)
            )
        )
        if not pks:
            break
        last = pks[-1]
        for entity in load_by_pks(session, pks, names=needed):
            if not matches(entity, query, ctx):
                continue
            if offset <= seen < offset + limit:
                assert entity.pk is not None
                page_pks.append(entity.pk)
            seen += 1
            if not count and seen >= offset + limit:
                break
        if not count and seen >= offset + limit:
            break
        if len(pks) < chunk:
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
