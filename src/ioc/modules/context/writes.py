"""Writes to one entity (create, update, merge, replace, delete, one attribute's changes), by group commit.

A route reads and checks its request first, then hands a *change* of one entity to
:class:`EntityWrites`: a function that loads what it needs in the given session and records what
it does in the given change set, without writing. Changes submitted together by concurrent
requests run one after another in one transaction (:class:`ioc.core.group_commit.GroupCommit`),
each exactly as it would alone, in arrival order:

* each records into a change set of its own, and its events are rendered from the entity as it
  left it, so each keeps its own history rows and its own event;
* changes of one tenant over distinct entities are then written together: their rows in one
  statement each, their events in one insert (the statements' own cost, and on PostgreSQL their
  round trips, are paid once for the group rather than per change). Before a change of an entity
  that an earlier change of the group touched, or of another tenant, the group is written, so
  every change loads what the ones before it wrote; so is the group a tenant's first write is
  in, so that the tenant exists for the changes after it;
* the entities a batch names are read together before its first change (``store.prefetch``:
  two statements rather than one per change, on PostgreSQL two round trips), on SQLite with the
  write lock already taken; each change's load takes its own entity from there, and a later
  change of the same entity, after the group is written, reads it again;
* a change that refuses (an :class:`NgsiError`: no such entity, a wrong kind of attribute) has
  recorded nothing that is kept and leaves the others alone; its caller gets the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from ioc.core.db import Database, utcnow
from ioc.core.events import Outgoing, publish_many
from ioc.core.group_commit import GroupCommit

from .errors import NgsiError
from .events import change_events
from .ld import ActiveContext
from .store import ChangeSet, flush, forget_prefetched, prefetch, tenant_exists

R = TypeVar("R")

#: What a route hands over: it loads in the session and records in the change set, never writes.
Change = Callable[[Session, ChangeSet], R]
#: A submission: the tenant, the id of the one entity the change loads and changes, the change.
_Item = tuple[str, str, Change[Any]]


class _Refused:
    """A change's refusal, given back as its result so that the rest of its batch is kept."""

    __slots__ = ("error",)

    def __init__(self, error: NgsiError) -> None:
        self.error = error


class _Group:
    """Changes of one tenant over distinct entities, recorded, waiting to be written together."""

    def __init__(self) -> None:
        self.changes: ChangeSet | None = None
        self.events: list[Outgoing[Any]] = []
        self.entities: set[str] = set()

    def _clear(self) -> None:
        self.changes, self.events, self.entities = None, [], set()

    def admits(self, tenant: str, entity_id: str) -> bool:
        return self.changes is None or (self.changes.tenant == tenant and entity_id not in self.entities)

    def add(self, cs: ChangeSet, entity_id: str, events: list[Outgoing[Any]]) -> None:
        if self.changes is None:
            self.changes = cs
        else:
            self.changes.absorb(cs)
        self.entities.add(entity_id)
        self.events.extend(events)

    def write(self, session: Session) -> None:
        if self.changes is not None:
            flush(session, self.changes)
            publish_many(session, self.events)
        self._clear()


class EntityWrites:
    """The module's single-entity writes, concurrent ones committed together."""

    def __init__(self, db: Database, core: ActiveContext, max_batch: int = 32) -> None:
        self.core = core
        self.group: GroupCommit[_Item, Any] = GroupCommit(db, self._store, max_batch)

    def run(self, tenant: str, entity_id: str, change: Change[R]) -> R:
        """Apply ``change`` of the entity ``entity_id`` for ``tenant`` and commit it (with whatever
        changes queued beside it); its result, or the NgsiError it raised."""
        return cast(R, _unwrap(self.group.submit((tenant, entity_id, change))))

    async def run_async(self, tenant: str, entity_id: str, change: Change[R]) -> R:
        """:meth:`run` awaited on the event loop (``GroupCommit.submit_async``)."""
        return cast(R, _unwrap(await self.group.submit_async((tenant, entity_id, change))))

    def _store(self, session: Session, items: list[_Item]) -> list[Any]:
        results: list[Any] = []
        group = _Group()
        if len(items) > 1:
            _read_together(session, items)
        for tenant, entity_id, change in items:
            if not group.admits(tenant, entity_id):
                group.write(session)
            cs = ChangeSet(tenant, utcnow())
            try:
                result = change(session, cs)
            except NgsiError as exc:  # raised before anything of this change was written
                results.append(_Refused(exc))
                continue
            finally:  # a later change of this entity reads what this one wrote
                forget_prefetched(session, tenant, entity_id)
            group.add(cs, entity_id, change_events(cs, self.core))
            if not tenant_exists(session, tenant):  # its first write: the tenant is created with it
                group.write(session)
            results.append(result)
        group.write(session)
        return results


def _read_together(session: Session, items: list[_Item]) -> None:
    """Read the entities of a batch in one go, each tenant's (``store.prefetch``); each change's
    load then takes its own. On SQLite the batch takes the write lock first, so that no other
    writer changes one of them between this read and its change (PostgreSQL's loads never
    locked them)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    ids: dict[str, list[str]] = {}
    for tenant, entity_id, _ in items:
        ids.setdefault(tenant, []).append(entity_id)  # (prefetch reads each once)
    for tenant, entity_ids in ids.items():
        if tenant_exists(session, tenant):  # a tenant's first write has nothing to read
            prefetch(session, tenant, entity_ids)


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Refused):
        raise result.error
    return result
