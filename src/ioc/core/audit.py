"""The append-only audit log: who did what to which object, before and after, and when.

Rows are written in the same transaction as the change they describe, so a change is never
committed without its audit row. The database refuses UPDATE and DELETE on the table
(triggers created by the migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow

if TYPE_CHECKING:
    from ioc.core.auth import Principal

# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One audited write (or login); never updated, never deleted."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # user | apikey | system
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64), index=True)
    object_id: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


def _clean(value: Any) -> Any:
    """``value`` with NUL characters replaced: PostgreSQL text refuses them, and an audit row
    (of a failed login with a hostile username, say) must never make the request fail."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _text(value: str, length: int) -> str:
    cleaned: str = _clean(value)
    return cleaned[:length]


def record(
    session: Session,
    actor: Principal | None,
    action: str,
    object_type: str,
    object_id: str | int,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Add an audit row to ``session`` (committed with the change it describes).

    ``before`` and ``after`` are JSON-ready snapshots of the object (``model_dump(mode="json")``).
    """
    entry = AuditEntry(
        at=utcnow(),
        actor_kind=actor.kind if actor else "system",
        actor_id=_text(actor.id, 64) if actor else "system",
        actor_name=_text(actor.name, 200) if actor else "system",
        action=_text(action, 64),
        object_type=_text(object_type, 64),
        object_id=_text(str(object_id), 128),
        before=_clean(before),
        after=_clean(after),
        ip=ip if ip is not None else (actor.ip if actor else None),
    )
    session.add(entry)
    return entry


def entries(
    session: Session,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Audit rows, newest first, filtered; ``since`` inclusive, ``until`` exclusive."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc())
    if object_type:
        stmt = stmt.where(AuditEntry.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEntry.object_id == object_id)
    if actor_id:
        stmt = stmt.where(AuditEntry.actor_id == actor_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    return list(session.scalars(stmt.limit(limit).offset(offset)))
