"""The @contexts the broker holds (``/jsonldContexts``) and the database side of context loading."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import Session

from ioc.core.db import Database, utcnow

from .http import PREFIX
from .models import NgsiContext


class DbContextSource:
    """Hosted and cached contexts in the database (implements ``ld.ContextSource``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def hosted(self, local_id: str) -> Any | None:
        with self.db.session() as s:
            row = s.get(NgsiContext, local_id)
            return row.body if row is not None else None

    def cached(self, url: str) -> tuple[Any, float] | None:
        with self.db.session() as s:
            row = s.scalar(select(NgsiContext).where(NgsiContext.url == url))
            if row is None:
                return None
            fetched = row.fetched_at or row.created_at
            return row.body, fetched.timestamp()

    def save(self, url: str, value: Any) -> None:
        try:
            with self.db.session() as s:
                row = s.scalar(select(NgsiContext).where(NgsiContext.url == url))
                now = utcnow()
                if row is None:
                    s.add(
                        NgsiContext(
                            local_id=new_local_id(), url=url, kind="Cached", body=value, created_at=now, fetched_at=now
                        )
                    )
                else:
                    row.body = value
                    row.fetched_at = now
        except Exception:  # another worker cached it at the same moment: theirs is as good
            return


def new_local_id() -> str:
    return secrets.token_hex(12)


def add_hosted(session: Session, body: Any, tenant: str, kind: str = "Hosted") -> NgsiContext:
    """A @context the broker serves itself, the tenant's: added (``Hosted``), or made for a request
    whose @context is not a single URI (``ImplicitlyCreated``, §5.13), so that it has one."""
    row = NgsiContext(local_id=new_local_id(), tenant=tenant, url=None, kind=kind, body=body, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def url_of(base_url: str, row: NgsiContext) -> str:
    """Where a @context is found: its own URL when cached, else under ``/jsonldContexts``."""
    if row.kind == "Cached" and row.url:
        return str(row.url)
    return f"{base_url.rstrip('/')}{PREFIX}/jsonldContexts/{row.local_id}"


def _visible(tenant: str) -> ColumnElement[bool]:
    """What a tenant sees of ``/jsonldContexts``: the cached @contexts and its own (5134_01)."""
    return or_(NgsiContext.kind == "Cached", NgsiContext.tenant == tenant)


def find(session: Session, ident: str, tenant: str) -> NgsiContext | None:
    """A @context by its local id or URL, if the tenant sees it."""
    row = session.scalar(select(NgsiContext).where(NgsiContext.local_id == ident, _visible(tenant)))
    if row is None:
        row = session.scalar(select(NgsiContext).where(NgsiContext.url == ident, _visible(tenant)))
    return row


def all_contexts(session: Session, tenant: str, kind: str | None = None) -> list[NgsiContext]:
    stmt = select(NgsiContext).where(_visible(tenant)).order_by(NgsiContext.created_at)
    if kind:
        stmt = stmt.where(NgsiContext.kind == kind)
    return list(session.scalars(stmt))


def remove(session: Session, row: NgsiContext) -> None:
    session.execute(delete(NgsiContext).where(NgsiContext.local_id == row.local_id))


def timestamp(value: datetime | None) -> str | None:
    from .entity import format_datetime

    return format_datetime(value) if value else None
