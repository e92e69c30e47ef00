"""Storage of NGSI-LD entities: load state, apply a change set in bulk, append history.

Operations (``service.py``) load the entities they touch, change them in Python and record
what changed in a :class:`ChangeSet`; :func:`flush` then writes it with a handful of bulk
statements (``INSERT ... ON CONFLICT`` and ``executemany``), the same on SQLite and
PostgreSQL. A change set is written inside the caller's transaction: it lands whole or not
at all. Each change of an attribute instance appends one row to the history table.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, any_, bindparam, delete, insert, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstrumentedAttribute, Session

from ioc.core.db import Database, Reads, bulk_write
from ioc.core.geo import GeometryError, geojson_bbox

from .entity import SCOPE, format_datetime, parse_datetime
from .errors import NgsiError
from .models import NgsiAttribute, NgsiAttributeHistory, NgsiEntity, NgsiEntityType, NgsiTenant

CHUNK = 500
BULK = 5000

# Spatial grid key of a GeoProperty (column ``geo_cell``): the cell of the finest level whose
# one cell holds the whole bbox. Level k cells are CELL0 * 4**k degrees; level GEO_LEVELS is the
# whole Earth. A point is always a level-0 cell (about 1.1 km), so a geo-query reads only the
# cells around it through the (tenant, name, geo_cell, ...) index.
CELL0 = 0.01
GEO_LEVELS = 8
_LEVEL_SHIFT = 2**42
_X_SHIFT = 2**21


def cell_size(level: int) -> float:
    return CELL0 * float(4**level)


def _cell_index(value: float, origin: float, size: float, span: float) -> int:
    last = math.ceil(span / size) - 1
    return min(max(math.floor((value + origin) / size), 0), last)


def cell_key(level: int, ix: int, iy: int) -> int:
    return level * _LEVEL_SHIFT + ix * _X_SHIFT + iy


def cell_range(level: int, min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> tuple[int, int, int, int]:
    """The cell indexes (ix0, iy0, ix1, iy1) that a bbox touches at ``level``."""
    size = cell_size(level)
    return (
        _cell_index(min_lon, 180.0, size, 360.0),
        _cell_index(min_lat, 90.0, size, 180.0),
        _cell_index(max_lon, 180.0, size, 360.0),
        _cell_index(max_lat, 90.0, size, 180.0),
    )


def geo_cell(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> int:
    """The grid key of a bbox (see ``CELL0``)."""
    for level in range(GEO_LEVELS):
        ix0, iy0, ix1, iy1 = cell_range(level, min_lon, min_lat, max_lon, max_lat)
        if ix0 == ix1 and iy0 == iy1:
            return cell_key(level, ix0, iy0)
    return cell_key(GEO_LEVELS, 0, 0)


@dataclass
class Instance:
    """The current state of one attribute instance."""

    doc: dict[str, Any]
    created_at: datetime
    modified_at: datetime


def instance_id() -> str:
    """A new instanceId: ``urn:ngsi-ld:`` and a random (version 4) UUID, written out directly
    (``uuid.uuid4()`` builds an object per call, a visible cost at thousands of instances per request)."""
    h = os.urandom(16).hex()
    return f"urn:ngsi-ld:{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"  # RFC 9562 variant bits 10xx as the first hex digit of the fourth group


@dataclass
class StoredEntity:
    """An entity as loaded: attributes are name IRI -> datasetId ('' default) -> instance."""

    pk: int | None
    id: str
    types: list[str]
    scope: Any
    created_at: datetime
    modified_at: datetime
    attrs: dict[str, dict[str, Instance]] = field(default_factory=dict)
    expires_at: datetime | None = None  # a transient entity's expiresAt (v1.9.1)


@dataclass
class EntityEvent:
    """What happened to an entity, for the event bus."""

    kind: str  # created | updated | deleted
    entity: StoredEntity
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> datasetIds changed
    deleted: dict[str, list[str]] = field(default_factory=dict)  # name -> datasetIds deleted


@dataclass
class ChangeSet:
    """Everything one request changes, written by :func:`flush`."""

    tenant: str
    now: datetime
    new: list[StoredEntity] = field(default_factory=list)
    touched: dict[str, StoredEntity] = field(default_factory=dict)  # existing entities whose row changes
    types_changed: set[str] = field(default_factory=set)
    dropped: list[StoredEntity] = field(default_factory=list)
    put: dict[tuple[str, str, str], tuple[StoredEntity, str]] = field(default_factory=dict)  # key -> (entity, op)
    removed: dict[tuple[str, str, str], StoredEntity] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, EntityEvent] = field(default_factory=dict)

    def absorb(self, other: ChangeSet) -> None:
        """Take in what ``other`` recorded, a change set of the same tenant over other entities,
        so that :func:`flush` writes both at once."""
        assert other.tenant == self.tenant and not set(other.events) & set(self.events)
        self.new.extend(other.new)
        self.touched.update(other.touched)
        self.types_changed |= other.types_changed
        self.dropped.extend(other.dropped)
        self.put.update(other.put)
        self.removed.update(other.removed)
        self.history.extend(other.history)
        self.events.update(other.events)

    # -- recording ----------------------------------------------------------
    def _event(self, entity: StoredEntity, kind: str) -> EntityEvent:
        ev = self.events.get(entity.id)
        if ev is None:
            ev = self.events[entity.id] = EntityEvent(kind, entity)
        elif kind == "deleted":
            ev.kind = "deleted" if ev.kind != "created" else "gone"
        return ev

    def create(self, entity: StoredEntity) -> None:
        self.new.append(entity)
        ev = self._event(entity, "created")
        if entity.scope is not None:
            self._scope_history(entity, "create", entity.scope)
        for name, per_ds in entity.attrs.items():
            for ds, inst in per_ds.items():
                self._history(entity, name, ds, "create", inst)
                self.put[(entity.id, name, ds)] = (entity, "create")
                ev.changed.setdefault(name, []).append(ds)

    def touch(self, entity: StoredEntity, *, types: bool = False) -> None:
        entity.modified_at = self.now
        if entity.pk is not None:
            self.touched[entity.id] = entity
            if types:
                self.types_changed.add(entity.id)
        self._event(entity, "updated")

    def put_attr(
        self, entity: StoredEntity, name: str, ds: str, doc: dict[str, Any], *, keep_created: bool = True
    ) -> None:
        per_ds = entity.attrs.setdefault(name, {})
        old = per_ds.get(ds)
        created = old.created_at if old is not None and keep_created else self.now
        inst = per_ds[ds] = Instance(doc, created, self.now)
        op = "update" if old is not None else "create"
        key = (entity.id, name, ds)
        self.removed.pop(key, None)
        self.put[key] = (entity, op)
        self._history(entity, name, ds, op, inst)
        self.touch(entity)
        self._event(entity, "updated").changed.setdefault(name, []).append(ds)

    def delete_attr(self, entity: StoredEntity, name: str, ds: str) -> None:
        per_ds = entity.attrs.get(name, {})
        if per_ds.pop(ds, None) is None:
            return
        if not per_ds:
            entity.attrs.pop(name, None)
        key = (entity.id, name, ds)
        self.put.pop(key, None)
        self.removed[key] = entity
        self._history(entity, name, ds, "delete", None)
        self.touch(entity)
        self._event(entity, "updated").deleted.setdefault(name, []).append(ds)

    def set_scope(self, entity: StoredEntity, scope: Any) -> None:
        """Set the entity's scope (a Scope or an array of them) or remove it (None); either is a new
        instance of the scope's temporal evolution (§4.18), observed when it is made (§4.5.6)."""
        before = entity.scope
        entity.scope = scope
        self.touch(entity)
        if scope is not None:
            self._scope_history(entity, "create" if before is None else "update", scope)
        elif before is not None:
            self._scope_history(entity, "delete", None)

    def drop(self, entity: StoredEntity) -> None:
        for name, per_ds in entity.attrs.items():
            for ds in per_ds:
                self._history(entity, name, ds, "delete", None)
        if entity.scope is not None:  # a scope is valid until removed, by an update or a delete (§4.18)
            self._scope_history(entity, "delete", None)
        if entity.pk is None:
            self.new = [e for e in self.new if e is not entity]
        else:
            self.dropped.append(entity)
            self.touched.pop(entity.id, None)
        for key in [k for k in self.put if k[0] == entity.id]:
            del self.put[key]
        self._event(entity, "deleted")

    def _scope_history(self, entity: StoredEntity, op: str, scope: Any) -> None:
        """A row of the scope's temporal evolution: a Property whose ``observedAt`` is a copy of the
        change's ``modifiedAt`` (§4.5.6), or a deletion, timed alike so that it ends the validity of
        the scope before it on either time axis."""
        stamp = format_datetime(self.now)
        doc = {"type": "Property", "value": scope, "observedAt": stamp} if scope is not None else None
        self.history.append(
            {
                "tenant": self.tenant,
                "entity_id": entity.id,
                "name": SCOPE,
                "dataset_id": "",
                "instance_id": instance_id(),
                "op": op,
                "kind": "Property",
                "value_num": None,
                "doc": doc,
                "observed_at": parse_datetime(stamp, "observedAt"),
                "recorded_at": self.now,
            }
        )

    def _history(self, entity: StoredEntity, name: str, ds: str, op: str, inst: Instance | None) -> None:
        doc = inst.doc if inst is not None else None
        observed = doc.get("observedAt") if doc else None
        value = doc.get("value") if doc else None
        self.history.append(
            {
                "tenant": self.tenant,
                "entity_id": entity.id,
                "name": name,
                "dataset_id": ds,
                "instance_id": instance_id(),
                "op": op,
                "kind": doc.get("type") if doc else None,
                "value_num": float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None,
                "doc": doc,
                "observed_at": parse_datetime(observed, "observedAt") if isinstance(observed, str) else None,
                "recorded_at": self.now,
            }
        )


# --------------------------------------------------------------------------- tenants


def tenant_exists(session: Session, tenant: str) -> bool:
    return tenant == "" or session.get(NgsiTenant, tenant) is not None


def ensure_tenant(session: Session, tenant: str, now: datetime) -> None:
    """Create the tenant on its first write (concurrent first writes are harmless)."""
    if tenant == "" or session.get(NgsiTenant, tenant) is not None:
        return
    _upsert(session, _table(NgsiTenant), [{"name": tenant, "created_at": now}], ["name"], [])


def check_tenant(session: Session, tenant: str) -> None:
    """404 NonexistentTenant for a read of a tenant nobody has written to."""
    if not tenant_exists(session, tenant):
        raise _nonexistent(tenant)


def _nonexistent(tenant: str) -> NgsiError:
    return NgsiError("NonexistentTenant", f"The tenant {tenant!r} does not exist.")


# --------------------------------------------------------------------------- loading


_ENTITY_COLS = (
    NgsiEntity.pk,
    NgsiEntity.entity_id,
    NgsiEntity.types,
    NgsiEntity.scope,
    NgsiEntity.created_at,
    NgsiEntity.modified_at,
    NgsiEntity.expires_at,
)
_ATTR_COLS = (
    NgsiAttribute.entity_pk,
    NgsiAttribute.name,
    NgsiAttribute.dataset_id,
    NgsiAttribute.doc,
    NgsiAttribute.created_at,
    NgsiAttribute.modified_at,
)


def one_of(column: InstrumentedAttribute[Any], values: Sequence[Any] | str, dialect: str) -> ColumnElement[bool]:
    """``column IN (values)``, or the name of a parameter holding them. On PostgreSQL
    ``column = ANY(array)``: one parameter whatever the list's length, so neither SQLAlchemy nor
    psycopg renders and parses the statement anew for each length (an IN list of 200 keys is
    200 named parameters to split)."""
    if dialect == "postgresql":
        array = ARRAY(column.type)
        param = (
            bindparam(values, type_=array) if isinstance(values, str) else bindparam(None, list(values), type_=array)
        )
        return column == any_(param)
    if isinstance(values, str):
        return column.in_(bindparam(values, expanding=True))
    return column.in_(list(values))


@functools.cache
def _statements(dialect: str) -> dict[str, Any]:
    """The loading statements of a dialect, built once: SQLAlchemy memoizes a statement's cache
    key, so a prebuilt statement skips both construction and cache-key generation per request."""
    attrs = select(*_ATTR_COLS).where(one_of(NgsiAttribute.entity_pk, "pks", dialect))
    return {
        "by_ids": select(*_ENTITY_COLS).where(
            NgsiEntity.tenant == bindparam("tenant"), one_of(NgsiEntity.entity_id, "ids", dialect)
        ),
        "by_pks": select(*_ENTITY_COLS).where(one_of(NgsiEntity.pk, "pks", dialect)),
        "attrs": attrs,
        "some_attrs": attrs.where(one_of(NgsiAttribute.name, "names", dialect)),
    }


# One entity with all its attributes in one statement (retrieve, PATCH, ...): no IN list to expand.
_ONE = (
    select(*_ENTITY_COLS, *_ATTR_COLS[1:])
    .outerjoin(NgsiAttribute, NgsiAttribute.entity_pk == NgsiEntity.pk)
    .where(NgsiEntity.tenant == bindparam("tenant"), NgsiEntity.entity_id == bindparam("id"))
)


@functools.cache
def _compiled(dialect: Dialect, statement: Select[Any]) -> tuple[str, tuple[str, ...] | None, list[Any]]:
    """A statement as the driver runs it (SQL text; the names of its positional parameters in
    order, None when they are named) and each selected column's result processor: what
    SQLAlchemy would do with it."""
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ()) if compiled.positional else None
    processors = [c.type._cached_result_processor(dialect, None) for c in statement.selected_columns]
    return str(compiled), names, processors


def _driver_statement(dialect: Dialect, statement: Select[Any], params: dict[str, Any]) -> tuple[str, Any]:
    """A prebuilt statement (``_compiled``) and its parameters as the driver takes them: named, or
    positional in order, where a list parameter of an expanding ``IN`` (``one_of`` on SQLite) is
    spelled out as SQLAlchemy would, one placeholder per value."""
    sql, names, _ = _compiled(dialect, statement)
    if names is None:
        return sql, params
    args: list[Any] = []
    for name in names:
        value = params[name]
        if isinstance(value, list):
            sql = sql.replace(f"__[POSTCOMPILE_{name}]", ",".join("?" * len(value)), 1)
            args.extend(value)
        else:
            args.append(value)
    return sql, args


_TENANT = select(NgsiTenant.name).where(NgsiTenant.name == bindparam("tenant"))


def read_one(db: Database, tenant: str, entity_id: str) -> StoredEntity | None:
    """One entity with all its attributes, as ``load_entities`` loads it, without a Session: on a
    pooled driver connection (``_ONE``). For Retrieve Entity, where the Session's transaction
    bookkeeping costs more than the read itself (on SQLite). One SELECT reads one consistent
    snapshot. 404 NonexistentTenant as ``check_tenant`` when the entity is missing and so is its
    tenant. On PostgreSQL the statements run in autocommit: without it the driver would open a
    transaction first (``BEGIN``) and the pool end it (``ROLLBACK``), two more round trips for one
    read. :func:`read_one_on_loop` is the same read on the event loop."""
    conn = db.engine.raw_connection()
    driver = conn.driver_connection
    autocommit = db.dialect == "postgresql"
    if autocommit:
        driver.autocommit = True  # type: ignore[union-attr]
    dialect = db.engine.dialect
    try:
        entity = _entity_of(_fetch_all(conn, dialect, _ONE, {"tenant": tenant, "id": entity_id}), dialect)
        if entity is None and tenant and not _fetch_all(conn, dialect, _TENANT, {"tenant": tenant}):
            raise _nonexistent(tenant)
    finally:
        if autocommit and not driver.closed:  # type: ignore[union-attr]
            driver.autocommit = False  # type: ignore[union-attr]
        conn.close()
    return entity


async def read_one_on_loop(reads: Reads, dialect: Dialect, tenant: str, entity_id: str) -> StoredEntity | None:
    """:func:`read_one` on the event loop, over the server's reads there (``ioc.core.db.Reads``)."""

    async def fetch_all(statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        return await reads.fetch_all(*_driver_statement(dialect, statement, params))

    entity = _entity_of(await fetch_all(_ONE, {"tenant": tenant, "id": entity_id}), dialect)
    if entity is None and tenant and not await fetch_all(_TENANT, {"tenant": tenant}):
        raise _nonexistent(tenant)
    return entity


def _fetch_all(dbapi_connection: Any, dialect: Dialect, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
    """The rows of a prebuilt statement (``_driver_statement``) on a driver connection."""
    sql, args = _driver_statement(dialect, statement, params)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _entity_of(rows: Sequence[Any], dialect: Dialect) -> StoredEntity | None:
    """The entity of the rows of ``_ONE`` (one per attribute instance; one with NULL attribute
    columns when it has none), each column converted by its own type's result processor: what
    SQLAlchemy would return, without its per-row machinery. The entity's own columns, repeated on
    each attribute's row, are converted once."""
    if not rows:
        return None
    processors = _compiled(dialect, _ONE)[2]

    def value(row: Any, i: int) -> Any:
        process = processors[i]
        return row[i] if process is None else process(row[i])

    first = rows[0]
    entity = StoredEntity(first[0], first[1], list(value(first, 2)), value(first, 3), value(first, 4), value(first, 5))
    entity.expires_at = value(first, 6)
    for row in rows:
        if row[7] is not None:
            entity.attrs.setdefault(row[7], {})[row[8]] = Instance(value(row, 9), value(row, 10), value(row, 11))
    return entity


def load_entities(
    session: Session, tenant: str, ids: Sequence[str], *, names: Iterable[str] | None = None
) -> dict[str, StoredEntity]:
    """The entities with these ids (those that exist), with their attributes (only ``names`` if given).

    Core statements on the session's connection (no ORM layer): one SELECT of the entities and
    one of their attributes per chunk of ids.
    """
    found: dict[str, StoredEntity] = {}
    unique = list(dict.fromkeys(ids))
    if len(unique) == 1 and names is None and (key := (tenant, unique[0])) in session.info.get(_PREFETCHED, ()):
        entity = session.info[_PREFETCHED].pop(key)
        return {entity.id: entity} if entity is not None else {}
    conn = session.connection()
    if len(unique) == 1 and names is None:
        # one entity, the most frequent load (every write to one entity): in the session's
        # transaction, on its driver connection
        one = _fetch_all(conn.connection, conn.dialect, _ONE, {"tenant": tenant, "id": unique[0]})
        entity = _entity_of(one, conn.dialect)
        return {entity.id: entity} if entity is not None else {}
    for i in range(0, len(unique), CHUNK):
        chunk = unique[i : i + CHUNK]
        rows = conn.execute(_statements(conn.dialect.name)["by_ids"], {"tenant": tenant, "ids": chunk}).all()
        for pk, eid, types, scope, created, modified, expires in rows:
            found[eid] = StoredEntity(pk, eid, list(types), scope, created, modified, expires_at=expires)
    _load_attrs(session, list(found.values()), names)
    return found


#: ``Session.info`` key of the entities :func:`prefetch` loaded for the loads that follow.
_PREFETCHED = "ngsild_prefetched"


def prefetch(session: Session, tenant: str, ids: Sequence[str]) -> None:
    """Load the entities ``ids`` of ``tenant`` in one go (two statements, where loading each
    apart takes one per entity, and on PostgreSQL a round trip each) for the single-entity loads
    of this session that follow: the next :func:`load_entities` of one of them, all its
    attributes, takes the entity loaded here (or its absence) instead of reading it again. The
    caller makes sure nothing writes an entity between its prefetch and that load, and drops
    what a change did not take (:func:`forget_prefetched`)."""
    found = load_entities(session, tenant, ids)
    session.info.setdefault(_PREFETCHED, {}).update({(tenant, eid): found.get(eid) for eid in ids})


def forget_prefetched(session: Session, tenant: str, entity_id: str) -> None:
    """Drop the entity :func:`prefetch` loaded, if no load took it: it may be written now."""
    session.info.get(_PREFETCHED, {}).pop((tenant, entity_id), None)


def load_by_pks(session: Session, pks: Sequence[int], *, names: Iterable[str] | None = None) -> list[StoredEntity]:
    """Entities by primary key, in the order given (with only the attributes ``names`` if given)."""
    by_pk: dict[int, StoredEntity] = {}
    conn = session.connection()
    for i in range(0, len(pks), CHUNK):
        chunk = list(pks[i : i + CHUNK])
        rows = conn.execute(_statements(conn.dialect.name)["by_pks"], {"pks": chunk}).all()
        for pk, eid, types, scope, created, modified, expires in rows:
            by_pk[pk] = StoredEntity(pk, eid, list(types), scope, created, modified, expires_at=expires)
    entities = [by_pk[pk] for pk in pks if pk in by_pk]
    _load_attrs(session, entities, names)
    return entities


def _load_attrs(session: Session, entities: list[StoredEntity], names: Iterable[str] | None = None) -> None:
    by_pk = {e.pk: e for e in entities if e.pk is not None}
    keys = list(by_pk)
    wanted = list(names) if names is not None else None
    if wanted == [] or not keys:
        return
    conn = session.connection()
    dialect, driver = conn.dialect, conn.connection.dbapi_connection
    statement = _statements(dialect.name)["attrs" if wanted is None else "some_attrs"]
    # On the driver's cursor, each column converted by its type's own processor (``_compiled``):
    # SQLAlchemy's result rows cost more than the read (a batch loads thousands of instances).
    doc_of, created_of, modified_of = (p or _same for p in _compiled(dialect, statement)[2][3:6])
    for i in range(0, len(keys), CHUNK):
        params: dict[str, Any] = {"pks": keys[i : i + CHUNK]}
        if wanted is not None:
            params["names"] = wanted
        for pk, name, ds, doc, created, modified in _fetch_all(driver, dialect, statement, params):
            by_pk[pk].attrs.setdefault(name, {})[ds] = Instance(doc_of(doc), created_of(created), modified_of(modified))


def _same(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- writing


def _upsert(
    session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str], update_cols: Iterable[str]
) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` ``update_cols`` (``DO NOTHING`` without) of many rows."""
    if rows:
        bulk_write(session, table, rows, keys=tuple(keys), update_cols=tuple(update_cols))


def _insert_many(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """A bulk INSERT (no ORM unit of work)."""
    if rows:
        bulk_write(session, table, rows)


def _update_many(session: Session, table: Table, rows: list[dict[str, Any]], key: str) -> None:
    """``UPDATE ... SET`` the rows' other columns ``WHERE key = ...`` of many rows (no ORM unit of work)."""
    if rows:
        bulk_write(session, table, rows, keys=(key,), update=True)


def _value_columns(doc: dict[str, Any]) -> dict[str, Any]:
    kind = doc.get("type")
    value: Any = doc.get("object") if kind == "Relationship" else doc.get("value")
    cols: dict[str, Any] = {
        "value_kind": "other",
        "value_num": None,
        "value_text": None,
        "min_lon": None,
        "min_lat": None,
        "max_lon": None,
        "max_lat": None,
        "geo_cell": None,
    }
    if kind == "GeoProperty":
        try:
            box = geojson_bbox(value, repair=True)
        except (GeometryError, TypeError):
            return cols
        cols.update(zip(("min_lon", "min_lat", "max_lon", "max_lat"), box, strict=True))
        cols["geo_cell"] = geo_cell(*box)
        return cols
    if kind not in ("Property", "Relationship"):
        return cols
    if isinstance(value, bool):
        cols.update(value_kind="bool", value_num=1.0 if value else 0.0)
    elif isinstance(value, int | float):
        cols.update(value_kind="num", value_num=float(value))
    elif isinstance(value, str) and len(value) <= 256:
        cols.update(value_kind="text", value_text=value)
    return cols


def flush(session: Session, cs: ChangeSet) -> None:
    """Write a change set: entities, types, attributes and history, in bulk."""
    ensure_tenant(session, cs.tenant, cs.now)
    tenant = cs.tenant
    if cs.dropped:
        pks = [e.pk for e in cs.dropped]
        for i in range(0, len(pks), CHUNK):
            chunk = pks[i : i + CHUNK]
            session.execute(delete(NgsiAttribute).where(NgsiAttribute.entity_pk.in_(chunk)))
            session.execute(delete(NgsiEntityType).where(NgsiEntityType.entity_pk.in_(chunk)))
            session.execute(delete(NgsiEntity).where(NgsiEntity.pk.in_(chunk)))
    if cs.new:
        rows = [
            {
                "tenant": tenant,
                "entity_id": e.id,
                "types": e.types,
                "scope": e.scope,
                "created_at": e.created_at,
                "modified_at": e.modified_at,
                "expires_at": e.expires_at,
            }
            for e in cs.new
        ]
        by_id = {e.id: e for e in cs.new}
        conn = session.connection()
        for i in range(0, len(rows), BULK):
            result = conn.execute(_NEW_ENTITIES, rows[i : i + BULK])
            for pk, eid in result.all():
                by_id[eid].pk = pk
        cs.types_changed.update(by_id)
    if cs.types_changed:
        entities = [e for e in [*cs.new, *cs.touched.values()] if e.id in cs.types_changed and e.pk is not None]
        pks = [e.pk for e in entities if e.id in cs.touched]
        for i in range(0, len(pks), CHUNK):
            session.execute(delete(NgsiEntityType).where(NgsiEntityType.entity_pk.in_(pks[i : i + CHUNK])))
        type_rows = [{"entity_pk": e.pk, "type_iri": t, "tenant": tenant} for e in entities for t in e.types]
        _insert_many(session, _table(NgsiEntityType), type_rows)
    if cs.removed:
        keys = [(e.pk, name, ds) for (_, name, ds), e in cs.removed.items() if e.pk is not None]
        for i in range(0, len(keys), CHUNK):
            session.execute(
                delete(NgsiAttribute).where(
                    tuple_(NgsiAttribute.entity_pk, NgsiAttribute.name, NgsiAttribute.dataset_id).in_(
                        keys[i : i + CHUNK]
                    )
                )
            )
    # the bulk statements of the change set's rows, sent together: one round trip on PostgreSQL
    with _pipelined(session):
        if cs.touched:
            _update_many(
                session,
                _table(NgsiEntity),
                [
                    {
                        "types": e.types,
                        "scope": e.scope,
                        "modified_at": e.modified_at,
                        "expires_at": e.expires_at,
                        "pk": e.pk,
                    }
                    for e in cs.touched.values()
                    if e.pk is not None
                ],
                "pk",
            )
        if cs.put:
            rows = []
            for (_, name, ds), (entity, _op) in cs.put.items():
                inst = entity.attrs.get(name, {}).get(ds)
                if inst is None or entity.pk is None:
                    continue
                observed = inst.doc.get("observedAt")
                expires = inst.doc.get("expiresAt")
                rows.append(
                    {
                        "entity_pk": entity.pk,
                        "name": name,
                        "dataset_id": ds,
                        "tenant": tenant,
                        "kind": inst.doc.get("type", "Property"),
                        "doc": inst.doc,
                        "observed_at": parse_datetime(observed, "observedAt") if isinstance(observed, str) else None,
                        "created_at": inst.created_at,
                        "modified_at": inst.modified_at,
                        "expires_at": parse_datetime(expires, "expiresAt") if isinstance(expires, str) else None,
                        **_value_columns(inst.doc),
                    }
                )
            _upsert(
                session,
                _table(NgsiAttribute),
                rows,
                ["entity_pk", "name", "dataset_id"],
                [c for c in rows[0] if c not in ("entity_pk", "name", "dataset_id", "tenant")] if rows else [],
            )
        if cs.history:
            _insert_many(session, _table(NgsiAttributeHistory), cs.history)


@contextmanager
def _pipelined(session: Session) -> Iterator[None]:
    """On PostgreSQL, the driver's pipeline mode for the statements run inside (those sent
    through the driver's own cursor, ``ioc.core.db.bulk_write``): queued and sent together, their results
    read at the end, one round trip instead of one each. An error of any of them is raised on
    leaving, the transaction then failed as it would be at that statement."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        yield
        return
    with conn.connection.dbapi_connection.pipeline():  # type: ignore[union-attr]
        yield


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Prebuilt write statements (see _statements).
_NEW_ENTITIES = insert(_table(NgsiEntity)).returning(NgsiEntity.pk, NgsiEntity.entity_id)


def entity_exists(session: Session, tenant: str, entity_id: str) -> bool:
    return (
        session.scalar(
            select(NgsiEntity.pk).where(and_(NgsiEntity.tenant == tenant, NgsiEntity.entity_id == entity_id))
        )
        is not None
    )
