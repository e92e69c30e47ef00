"""Entity maps (CIM 009 v1.9 §5.14, §5.2.39, §5.5.9.3): the set of entities a query found, kept
for a while so that the pages that follow read from the same set.

A query (``GET /entities``, ``GET /temporal/entities``, or ``GET /entityMaps`` and
``GET /temporal/entityMaps``, which only make the map) asked with ``entityMap=true``, or naming
in the ``NGSILD-EntityMap`` header a map that is unknown or expired, makes a new map of every
entity it matches; the answer carries the map's location in ``NGSILD-EntityMap``. A later query
naming a live map in that header reads only the map's entities, with its own filters checked
again, and entities deleted since are taken out of the map. This broker holds every entity
itself, so each entity maps to ``["@none"]`` (no context source) and ``linkedMaps`` is empty.

A map lives ``IOC_NGSILD_ENTITY_MAP_LIFETIME_SECONDS`` unless the query asks for another
``entityMapLifetime`` (an ISO 8601 duration), never longer than
``IOC_NGSILD_ENTITY_MAP_MAX_LIFETIME_SECONDS``; an expired map cannot be read and is swept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ioc.core import audit
from ioc.core.auth import Principal
from ioc.core.db import Database, get_database, utcnow

from .entity import format_datetime, parse_datetime
from .errors import NgsiError, NgsiRoute, bad_request, not_found
from .http import (
    PREFIX,
    Body,
    Broker,
    OptionalPrincipal,
    accept,
    query_context,
    read_json,
    readable_types,
    require_write,
    respond,
    tenant_of,
)
from .ld import is_uri
from .models import NgsiEntity, NgsiEntityMap
from .settings import NgsiLdSettings
from .store import check_tenant
from .temporal_query import Duration, parse_duration

HEADER = "NGSILD-EntityMap"
#: Most entities one map holds (a query matching more is 403 TooManyResults).
MAX_ENTITIES = 10_000
#: What this broker answers for an entity it holds itself (§5.2.39).
LOCAL = "@none"


@dataclass
class EntityMap:
    """One map: its id, the ids of its entities in the query's order, and when it expires."""

    id: str
    entity_ids: list[str]
    expires_at: datetime
    created: bool = False  # made by this request (201 on a query)

    @property
    def location(self) -> str:
        return f"{PREFIX}/entityMaps/{self.id}"

    def body(self) -> dict[str, Any]:
        """The EntityMap data type (§5.2.39)."""
        return {
            "id": self.id,
            "type": "EntityMap",
            "expiresAt": format_datetime(self.expires_at),
            "entityMap": {eid: [LOCAL] for eid in self.entity_ids},
            "linkedMaps": {},
        }

    def restrict(self, ids: list[str] | None) -> list[str]:
        """The ids a query reads: the map's, narrowed to the query's own ``id`` list when it has one."""
        if ids is None:
            return list(self.entity_ids)
        wanted = set(ids)
        return [eid for eid in self.entity_ids if eid in wanted]

    def headers(self) -> dict[str, str]:
        return {HEADER: self.location}


@dataclass(frozen=True)
class MapRequest:
    """What a query asks of entity maps: a new one (``entityMap=true``), or the one it names."""

    wanted: bool
    reference: str | None
    lifetime: timedelta

    @property
    def any(self) -> bool:
        return self.wanted or self.reference is not None


def map_request(request: Request, settings: NgsiLdSettings) -> MapRequest:
    """``entityMap``, ``entityMapLifetime`` and the ``NGSILD-EntityMap`` header of a query."""
    if not request.query_params and HEADER not in request.headers:  # the most frequent read: none
        return MapRequest(False, None, _lifetime(None, settings))
    raw = request.query_params.get("entityMap")
    if raw not in (None, "true", "false"):
        raise bad_request("entityMap must be true or false.")
    header = request.headers.get(HEADER)
    reference = _map_id(header) if header is not None and header.strip() else None
    return MapRequest(raw == "true", reference, _lifetime(request.query_params.get("entityMapLifetime"), settings))


def _map_id(header: str) -> str:
    """The map a ``NGSILD-EntityMap`` header names: its location (``…/entityMaps/{id}``) or its id."""
    value = header.strip()
    return unquote(value.rsplit("/entityMaps/", 1)[-1]) if "/entityMaps/" in value else value


def _longest(settings: NgsiLdSettings) -> timedelta:
    """The longest a map lives, whatever a query or an update asks (Table 6.4.3.2-1: the broker sets it)."""
    return timedelta(seconds=settings.entity_map_max_lifetime_seconds)


def _lifetime(raw: str | None, settings: NgsiLdSettings) -> timedelta:
    """The lifetime a map is given: ``entityMapLifetime`` (an ISO 8601 duration, at least one second),
    or the default; never more than the longest."""
    longest = _longest(settings)
    if raw is None:
        return min(timedelta(seconds=settings.entity_map_lifetime_seconds), longest)
    duration = _duration(raw)
    days = duration.months * 31 + duration.millis / 86_400_000  # a month counts as its longest
    if days * 86_400 < 1:
        raise bad_request("entityMapLifetime must be at least one second.")
    return min(timedelta(days=days), longest)


def _duration(raw: str) -> Duration:
    try:
        return parse_duration(raw)
    except NgsiError as exc:  # its message names aggrPeriodDuration
        raise bad_request(f"entityMapLifetime must be an ISO 8601 duration such as PT1H, got {raw!r}.") from exc


# --------------------------------------------------------------------------- storage


def create(session: Session, tenant: str, entity_ids: list[str], life: timedelta) -> EntityMap:
    """A new map of ``entity_ids`` (at most MAX_ENTITIES, else 403 TooManyResults)."""
    if len(entity_ids) > MAX_ENTITIES:
        raise NgsiError("TooManyResults", f"An entity map holds at most {MAX_ENTITIES} entities; narrow the query.")
    now = utcnow()
    emap = EntityMap(f"urn:ngsi-ld:EntityMap:{uuid.uuid4()}", list(entity_ids), now + life, created=True)
    session.add(
        NgsiEntityMap(
            tenant=tenant, map_id=emap.id, entity_ids=emap.entity_ids, expires_at=emap.expires_at, created_at=now
        )
    )
    return emap


def _live_row(session: Session, tenant: str, map_id: str) -> NgsiEntityMap | None:
    """The stored row of the tenant's map ``map_id`` when it exists and has not expired."""
    row = session.get(NgsiEntityMap, (tenant, map_id))
    return None if row is None or row.expires_at <= utcnow() else row


def _pruned(session: Session, tenant: str, row: NgsiEntityMap) -> EntityMap:
    """The map, without the entities deleted since it was made (taken out of the row too, §5.5.9.3)."""
    ids: list[str] = list(row.entity_ids)
    if ids:
        present = set(
            session.scalars(
                select(NgsiEntity.entity_id).where(NgsiEntity.tenant == tenant, NgsiEntity.entity_id.in_(ids))
            )
        )
        if len(present) < len(ids):
            ids = row.entity_ids = [eid for eid in ids if eid in present]
    return EntityMap(row.map_id, ids, row.expires_at)


def use(session: Session, tenant: str, asked: MapRequest) -> EntityMap | None:
    """The live map the request names, pruned; None when it names none or a dead one."""
    row = _live_row(session, tenant, asked.reference) if asked.reference is not None else None
    return _pruned(session, tenant, row) if row is not None else None


def for_entities(session: Session, tenant: str, asked: MapRequest, entity_ids: list[str]) -> EntityMap | None:
    """The map a retrieval of ``entity_ids`` answers with (§5.7.1.4, §5.7.3.4): the live one it names,
    else a new one of those entities when it asks for one or names a dead one; None when it asks nothing."""
    if not asked.any:
        return None
    return use(session, tenant, asked) or create(session, tenant, entity_ids, asked.lifetime)


def sweep(db: Database) -> None:
    """Delete the expired maps (a job)."""
    with db.session() as session:
        session.execute(delete(NgsiEntityMap).where(NgsiEntityMap.expires_at <= utcnow()))


# --------------------------------------------------------------------------- routes


def _checked_id(raw: str) -> str:
    map_id = raw.strip()
    if not is_uri(map_id):
        raise bad_request(f"The entity map id must be a URI, got {map_id!r}.")
    return map_id


def _found(session: Session, tenant: str, map_id: str) -> NgsiEntityMap:
    check_tenant(session, tenant)
    row = _live_row(session, tenant, map_id)
    if row is None:
        raise not_found(f"No entity map {map_id}.")
    return row


def build_router(broker: Broker) -> APIRouter:
    """Retrieve, update and delete an entity map (§5.14.1-3, ``/entityMaps/{id}``)."""
    router = APIRouter(prefix=PREFIX, route_class=NgsiRoute, tags=["NGSI-LD"])

    @router.get("/entityMaps/{map_id:path}")
    def retrieve_map(map_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        media = accept(request)
        if readable_types(broker, principal) is not None:  # a map may name entities of any type
            raise NgsiError(
                "Unauthorized", "Reading an entity map needs credentials.", headers={"WWW-Authenticate": "Bearer"}
            )
        tenant = tenant_of(request)
        mid = _checked_id(map_id)
        ctx = query_context(broker, request)
        with get_database(request).session() as session:
            row = _found(session, tenant, mid)
            body = EntityMap(row.map_id, list(row.entity_ids), row.expires_at).body()
        return respond(body, ctx, media)

    @router.patch("/entityMaps/{map_id:path}")
    def update_map(map_id: str, request: Request, principal: OptionalPrincipal, raw: Body) -> Response:
        """Only ``expiresAt`` can change (the broker caps it); ``entityMap`` and ``linkedMaps`` are
        the broker's own and ignored (§5.14.2.4)."""
        require_write(broker, principal)
        tenant = tenant_of(request)
        mid = _checked_id(map_id)
        body, _ = read_json(request, raw, patch=True)
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object.")
        expires = parse_datetime(body["expiresAt"], "expiresAt") if "expiresAt" in body else None
        with get_database(request).session() as session:
            row = _found(session, tenant, mid)
            if expires is not None:
                row.expires_at = min(expires, utcnow() + _longest(broker.settings))
                _audit(session, principal, "context.entity_map.update", mid, expiresAt=format_datetime(row.expires_at))
        return Response(status_code=204)

    @router.delete("/entityMaps/{map_id:path}")
    def delete_map(map_id: str, request: Request, principal: OptionalPrincipal) -> Response:
        require_write(broker, principal)
        tenant = tenant_of(request)
        mid = _checked_id(map_id)
        with get_database(request).session() as session:
            session.delete(_found(session, tenant, mid))
            _audit(session, principal, "context.entity_map.delete", mid)
        return Response(status_code=204)

    return router


def _audit(session: Session, principal: Principal | None, action: str, map_id: str, **after: Any) -> None:
    audit.record(session, principal, action, "ngsild_entity_map", map_id, after=after or None)


__all__ = [
    "HEADER",
    "EntityMap",
    "MapRequest",
    "build_router",
    "create",
    "for_entities",
    "map_request",
    "sweep",
    "use",
]
