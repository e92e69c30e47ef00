"""Transient entities and attribute instances (NGSI-LD v1.9.1 ``expiresAt``).

An entity or an attribute instance given an ``expiresAt`` is deleted once that time has passed,
by the job ``context.expiry.sweep``: exactly as a Delete Entity or a Delete Attribute would
delete it, so the deletion lands in the history and on the event bus (subscriptions are
notified). Until the job runs (every ``IOC_NGSILD_EXPIRY_SWEEP_SECONDS``), an expired element is
still served. ``expiresAt`` is a system temporal attribute: reads show it only with
``options=sysAttrs`` (§6.3.11).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from ioc.core.db import Database, utcnow

from .events import write_changes
from .ld import ActiveContext, ContextLoader
from .models import NgsiAttribute, NgsiEntity
from .store import ChangeSet, load_entities

log = logging.getLogger(__name__)

#: Entities (and, apart, attribute instances) deleted per transaction; a longer backlog is
#: taken in further transactions of the same run.
BATCH = 500


def sweep(db: Database, core: ActiveContext, *, now: datetime | None = None) -> int:
    """Delete every entity and attribute instance whose ``expiresAt`` is past; how many."""
    at = now or utcnow()
    total, more = 0, True
    while more:
        done, more = _sweep_batch(db, core, at)
        total += done
    if total:
        log.info("context.expiry: %d transient entities or attributes deleted", total, extra={"deleted": total})
    return total


def _sweep_batch(db: Database, core: ActiveContext, at: datetime) -> tuple[int, bool]:
    """One transaction: up to BATCH expired entities and BATCH expired attribute instances; how
    many, and whether more may be left."""
    with db.session() as session:
        entities = session.execute(
            select(NgsiEntity.tenant, NgsiEntity.entity_id)
            .where(NgsiEntity.expires_at.is_not(None), NgsiEntity.expires_at <= at)
            .limit(BATCH)
        ).all()
        attrs = session.execute(
            select(NgsiAttribute.tenant, NgsiEntity.entity_id, NgsiAttribute.name, NgsiAttribute.dataset_id)
            .join(NgsiEntity, NgsiEntity.pk == NgsiAttribute.entity_pk)
            .where(NgsiAttribute.expires_at.is_not(None), NgsiAttribute.expires_at <= at)
            .limit(BATCH)
        ).all()
        if not entities and not attrs:
            return 0, False
        gone: dict[str, set[str]] = defaultdict(set)
        for tenant, eid in entities:
            gone[tenant].add(eid)
        instances: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for tenant, eid, name, ds in attrs:
            instances[tenant].append((eid, name, ds))
        for tenant in sorted(set(gone) | set(instances)):
            cs = ChangeSet(tenant, utcnow())
            loaded = load_entities(session, tenant, [*gone[tenant], *(eid for eid, _, _ in instances[tenant])])
            for eid, name, ds in instances[tenant]:
                if eid not in gone[tenant] and eid in loaded:
                    cs.delete_attr(loaded[eid], name, ds)
            for eid in sorted(gone[tenant]):
                if eid in loaded:
                    cs.drop(loaded[eid])
            write_changes(session, cs, core)
        return len(entities) + len(attrs), BATCH in (len(entities), len(attrs))


def sweep_job(loader: ContextLoader) -> Callable[[Database], None]:
    """The job: sweep, the events' names compacted with the core @context."""

    def run(db: Database) -> None:
        sweep(db, loader.core)

    return run


__all__ = ["BATCH", "sweep", "sweep_job"]
