"""Tables of NGSI-LD subscriptions and of the notifications waiting to be delivered.

A subscription is stored as its document with names expanded to IRIs (``doc``), the @context it
was created with (``context``, to parse ``q`` again) and, in columns, what the matcher and the
delivery read often: activity, expiry, throttling, the periodic schedule and the counters.

``ngsild_notifications`` is the durable queue between matching and delivery: a row is written in
the same transaction as the event consumer's cursor, so a change that matched a subscription is
notified at least once even across restarts; it is deleted once delivered (or given up).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime

from .models import IRI, BigId


class NgsiSubscription(Base):
    """One NGSI-LD subscription of a tenant."""

    __tablename__ = "ngsild_subscriptions"
    __table_args__ = (UniqueConstraint("tenant", "sub_id", name="uq_ngsild_subscriptions_tenant_sub_id"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    sub_id: Mapped[str] = mapped_column(String(IRI))
    doc: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # the subscription, names expanded
    context: Mapped[Any | None] = mapped_column(JsonDoc, nullable=True)  # @context it was written with
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    throttling: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_interval: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # periodic ones
    last_queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # throttling
    times_sent: Mapped[int] = mapped_column(Integer, default=0)
    times_failed: Mapped[int] = mapped_column(Integer, default=0)
    last_notification: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_failure: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(8), nullable=True)  # ok | failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NgsiNotification(Base):
    """A notification waiting for delivery (or for its next attempt)."""

    __tablename__ = "ngsild_notifications"
    __table_args__ = (Index("ix_ngsild_notifications_due", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    subscription_pk: Mapped[int] = mapped_column(BigId, index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # the Notification, without notifiedAt
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
