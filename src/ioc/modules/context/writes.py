"""Writes to one entity (create, update, merge, replace, delete, one attribute's changes), by group commit.

A route reads and checks its request first, then hands a *change* to :class:`EntityWrites`: a
function that loads what it needs in the given session and records what it does in the given
change set, without writing. Changes submitted together by concurrent requests run one after
another in one transaction (:class:`ioc.core.group_commit.GroupCommit`), each exactly as it
would alone: its own change set, flushed, its events published, before the next one loads, so a
later change of the same entity sees the earlier one and each has its own history rows and
events. A change that refuses (an :class:`NgsiError`: no such entity, a wrong kind of attribute)
has written nothing and leaves the others of its batch alone; its caller gets the error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from ioc.core.db import Database, utcnow
from ioc.core.group_commit import GroupCommit

from .errors import NgsiError
from .events import write_changes
from .ld import ActiveContext
from .store import ChangeSet

R = TypeVar("R")

#: What a route hands over: it loads in the session and records in the change set, never writes.
Change = Callable[[Session, ChangeSet], R]


class _Refused:
    """A change's refusal, given back as its result so that the rest of its batch is kept."""

    __slots__ = ("error",)

    def __init__(self, error: NgsiError) -> None:
        self.error = error


class EntityWrites:
    """The module's single-entity writes, concurrent ones committed together."""

    def __init__(self, db: Database, core: ActiveContext, max_batch: int = 32) -> None:
        self.core = core
        self.group: GroupCommit[tuple[str, Change[Any]], Any] = GroupCommit(db, self._store, max_batch)

    def run(self, tenant: str, change: Change[R]) -> R:
        """Apply ``change`` for ``tenant`` and commit it (with whatever changes queued beside it);
        its result, or the NgsiError it raised."""
        return cast(R, _unwrap(self.group.submit((tenant, change))))

    async def run_async(self, tenant: str, change: Change[R]) -> R:
        """:meth:`run` awaited on the event loop (``GroupCommit.submit_async``)."""
        return cast(R, _unwrap(await self.group.submit_async((tenant, change))))

    def _store(self, session: Session, items: list[tuple[str, Change[Any]]]) -> list[Any]:
        results: list[Any] = []
        for tenant, change in items:
            cs = ChangeSet(tenant, utcnow())
            try:
                result = change(session, cs)
            except NgsiError as exc:  # raised before anything of this change was written
                results.append(_Refused(exc))
                continue
            write_changes(session, cs, self.core)
            results.append(result)
        return results


def _unwrap(result: Any) -> Any:
    if isinstance(result, _Refused):
        raise result.error
    return result
