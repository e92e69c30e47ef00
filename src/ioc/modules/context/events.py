"""Entity changes on the core event bus, and the durable consumer of ``context.upsert``.

Other modules never import this one: they listen to ``context.entity.*`` and publish
entities on ``context.upsert`` (payload shape in docs/CONTEXT.md).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ioc.core.events import Event, Outgoing, Topic, publish_many

from .entity import parse_entity
from .errors import NgsiError
from .ld import ActiveContext, ContextLoader
from .render import RenderOptions, render_attr
from .store import ChangeSet, EntityEvent, flush, load_entities

log = logging.getLogger("ioc.context")


class EntityChange(BaseModel):
    """An entity created, updated or deleted, with its changed attributes in normalized form."""

    tenant: str = ""
    id: str
    type: list[str]  # compacted with the core context (full IRIs where it has no term)
    type_iris: list[str]
    attributes: dict[str, Any] = Field(default_factory=dict)  # name -> normalized attribute
    deleted_attributes: list[str] = Field(default_factory=list)
    # name -> datasetIds of the instances deleted from an attribute that keeps other instances
    deleted_instances: dict[str, list[str]] = Field(default_factory=dict)
    scope: Any = None  # the entity's scope (§4.18): a deleted entity's is matched against scopeQ
    at: datetime


ENTITY_CREATED = Topic("context.entity.created", EntityChange, "NGSI-LD entity created")
ENTITY_UPDATED = Topic("context.entity.updated", EntityChange, "NGSI-LD entity updated")
ENTITY_DELETED = Topic("context.entity.deleted", EntityChange, "NGSI-LD entity deleted")
TOPICS = {"created": ENTITY_CREATED, "updated": ENTITY_UPDATED, "deleted": ENTITY_DELETED}


class UpsertRequest(BaseModel):
    """What another module publishes on ``context.upsert`` to store NGSI-LD entities."""

    tenant: str = ""
    entities: list[dict[str, Any]]
    context: Any = None  # an @context (URL, object or array); the core context when absent
    mode: str = "update"  # update (merge attributes) | replace


UPSERT = Topic("context.upsert", UpsertRequest, "store NGSI-LD entities (from other modules)")


def write_changes(session: Session, cs: ChangeSet, core: ActiveContext) -> None:
    """Write a change set (``store.flush``) and publish its events, in the caller's transaction."""
    flush(session, cs)
    publish_changes(session, cs, core)


def publish_changes(session: Session, cs: ChangeSet, core: ActiveContext) -> None:
    """One event per changed entity, in the caller's transaction."""
    publish_many(session, change_events(cs, core))


def change_events(cs: ChangeSet, core: ActiveContext) -> list[Outgoing[EntityChange]]:
    """The events of a change set, rendered from its entities as they are now."""
    opts = RenderOptions()
    return [Outgoing(TOPICS[ev.kind], _payload(cs, ev, core, opts)) for ev in cs.events.values() if ev.kind != "gone"]


def _payload(cs: ChangeSet, ev: EntityEvent, core: ActiveContext, opts: RenderOptions) -> EntityChange:
    e = ev.entity
    attrs: dict[str, Any] = {}
    if ev.kind != "deleted":
        for name, dss in ev.changed.items():
            per_ds = {ds: inst for ds, inst in e.attrs.get(name, {}).items() if ds in dss}
            if per_ds:
                attrs[core.compact(name)] = render_attr(per_ds, core, opts)
    deleted = sorted({core.compact(n) for n in ev.deleted if n not in e.attrs})
    instances = {
        core.compact(n): sorted({ds for ds in dss if ds not in e.attrs[n]})
        for n, dss in ev.deleted.items()
        if n in e.attrs and set(dss) - set(e.attrs[n])
    }
    if ev.kind == "deleted":
        deleted = sorted(core.compact(n) for n in e.attrs)
    return EntityChange(
        tenant=cs.tenant,
        id=e.id,
        type=[core.compact(t) for t in e.types],
        type_iris=list(e.types),
        attributes=attrs,
        deleted_attributes=deleted,
        deleted_instances=instances if ev.kind != "deleted" else {},
        scope=e.scope,
        at=cs.now,
    )


def upsert_handler(loader: ContextLoader) -> Any:
    """The durable consumer of ``context.upsert``: store the entities in the event's session."""
    from ioc.core.db import utcnow

    from . import service

    def handle(session: Session, event: Event) -> None:
        request = UpsertRequest.model_validate(event.payload)
        ctx = loader.active(request.context)
        cs = ChangeSet(request.tenant, utcnow())
        parsed = []
        for raw in request.entities:
            try:
                parsed.append(parse_entity(raw, ctx, merge=request.mode == "update"))
            except NgsiError as exc:  # a bad entity must not block the ones behind it forever
                log.warning("context.upsert: entity refused: %s", exc.detail, extra={"event": event.id})
        existing = load_entities(session, request.tenant, [p.id for p in parsed if p.id])
        for inp in parsed:
            assert inp.id is not None
            current = existing.get(inp.id)
            if current is None:
                existing[inp.id] = service.create(cs, None, inp)
            elif request.mode == "replace":
                service.replace(cs, current, inp)
            else:
                service.merge(cs, current, inp)
        write_changes(session, cs, loader.core)

    return handle
