"""Tables of public-service monitoring: the procedure catalogue, dossiers, imports, connectors, job leases."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")

#: Decree 42/2022 levels of an online public service, plus "direct" (not online).
SERVICE_LEVELS = ("full", "partial", "direct")
CHANNELS = ("online", "in_person", "post")
STATUSES = ("received", "in_progress", "resolved", "returned", "withdrawn")
CLOSED_STATUSES = ("resolved", "returned", "withdrawn")


class Procedure(Base):
    """An administrative procedure of the catalogue and the date it went online at each level.

    ``partial_since``: offered online "một phần" (the resolution's level 3) since that date;
    ``full_since``: offered "toàn trình" (level 4) since. A procedure that is toàn trình also
    counts as at least một phần.
    """

    __tablename__ = "svc_procedures"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    partial_since: Mapped[date | None] = mapped_column(Date, nullable=True)
    full_since: Mapped[date | None] = mapped_column(Date, nullable=True)
    valid_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    valid_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    source_ref: Mapped[str] = mapped_column(String(200), default="")
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Dossier(Base):
    """One public-service dossier ("hồ sơ thủ tục hành chính") as iGate and similar systems record it."""

    __tablename__ = "svc_dossiers"
    __table_args__ = (
        CheckConstraint("service_level IN ('full', 'partial', 'direct')", name="service_level"),
        CheckConstraint("channel IN ('online', 'in_person', 'post')", name="channel"),
        CheckConstraint("status IN ('received', 'in_progress', 'resolved', 'returned', 'withdrawn')", name="status"),
        # Covering indexes of the monitor's two range reads (by received and by resolved time).
        Index(
            "ix_svc_dossiers_received",
            "received_at",
            "channel",
            "service_level",
            "status",
            "resolved_at",
            "due_at",
            "due_day_start",
        ),
        Index(
            "ix_svc_dossiers_resolved",
            "resolved_at",
            "received_at",
            "status",
            "due_at",
            "due_day_start",
            "channel",
            "service_level",
        ),
        Index("ix_svc_dossiers_agency_received", "agency_id", "received_at"),
        Index("ix_svc_dossiers_ward_received", "ward_code", "received_at"),
        Index("ix_svc_dossiers_procedure_received", "procedure_code", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    procedure_code: Mapped[str] = mapped_column(String(64))
    procedure_name: Mapped[str] = mapped_column(String(500), default="")
    agency_id: Mapped[str] = mapped_column(String(64))
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    service_level: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(12))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The start (UTC) of the local (+07:00) day of ``due_at``: resolved before it is "early".
    due_day_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(16))  # import | poll | push | demo
    source_ref: Mapped[str] = mapped_column(String(200), default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ImportBatch(Base):
    """One file import (or push, or poll) that changed something: what, who, how many rows."""

    __tablename__ = "svc_imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # dossiers | procedures
    source: Mapped[str] = mapped_column(String(16))  # file | push | poll
    filename: Mapped[str] = mapped_column(String(300), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Connector(Base):
    """A JSON HTTP endpoint polled on a schedule, with a field mapping onto dossier records."""

    __tablename__ = "svc_connectors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(1000))
    items_path: Mapped[str] = mapped_column(String(200), default="")
    mapping: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    value_maps: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    #: Request headers sent with each poll (credentials: shown masked, see ``connectors.mask_headers``).
    headers: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict, server_default="{}")
    interval_minutes: Mapped[int] = mapped_column(Integer, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[str] = mapped_column(String(16), default="never")  # never | ok | error
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_counts: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
