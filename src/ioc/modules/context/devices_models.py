"""Tables of the device registry: devices that send telemetry, and their keys.

A device feeds one NGSI-LD entity: its telemetry keys are mapped to attributes (with units)
and written through the broker's normal write path. ``last_seen_at`` and ``online`` drive the
offline alarm; a key is stored only as its SHA-256 digest, like the core's API keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow


class Device(Base):
    """A sensor, gauge or controller registered to send telemetry."""

    __tablename__ = "context_devices"
    __table_args__ = (Index("ix_context_devices_tenant_entity", "tenant", "entity_id"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), default="")
    name: Mapped[str] = mapped_column(String(200))
    entity_id: Mapped[str] = mapped_column(String(1024))
    entity_type: Mapped[str] = mapped_column(String(256))
    #: telemetry key -> {"attribute": NGSI-LD attribute name, "unitCode": UN/CEFACT code or absent}
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    location: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)  # GeoJSON Point
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expected_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeviceKey(Base):
    """A secret a device authenticates its telemetry with (shown once, stored as a digest)."""

    __tablename__ = "context_device_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("context_devices.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
