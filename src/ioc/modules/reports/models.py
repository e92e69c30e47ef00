"""Tables of citizen field reports.

Personal data is kept apart: :class:`Reporter` holds who reported (name, phone, e-mail, device)
in its own table, read only through :mod:`.privacy` by roles allowed to, every read audited.
:class:`Report` holds only what may become public (minus the private flag's effect).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, UTCDateTime, utcnow


class Report(Base):
    """A citizen's report of an on-site problem ("phản ánh hiện trường")."""

    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_status_created", "status", "created_at"),
        Index("ix_reports_ward_status_created", "ward_code", "status", "created_at"),
        Index("ix_reports_agency_status_created", "agency_id", "status", "created_at"),
        Index("ix_reports_category_status_lat", "category", "status", "lat"),
        # The KPI measures: reports closed in a period (on-time and satisfaction rates, QĐ 766)
        # and reports received in a period, read from the index alone.
        Index("ix_reports_closed_kpi", "closed_at", "status", "resolve_due", "rating", "ward_code"),
        Index("ix_reports_created_ward", "created_at", "ward_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Tracking code given to the reporter ("PA-…"): lets them follow, rate and reopen; never public.
    code: Mapped[str] = mapped_column(String(16), unique=True)
    category: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    address: Mapped[str] = mapped_column(String(300), default="")
    ward_code: Mapped[str] = mapped_column(String(8))
    agency_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="for_triage")
    #: The reporter's choice AND the category's: private reports never reach a public answer.
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16), default="web")  # web | open311 | staff
    media_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    sla_tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    accept_due: Mapped[datetime] = mapped_column(UTCDateTime())
    resolve_due: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The last public explanation of the status (Open311 ``status_notes``).
    status_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), nullable=True)
    #: For "not our responsibility": the unit that is responsible.
    responsible_unit: Mapped[str | None] = mapped_column(String(300), nullable=True)
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    abuse: Mapped[bool] = mapped_column(Boolean, default=False)


class Reporter(Base):
    """Who made a report: personal data under Law 91/2025/QH15, kept apart from the report."""

    __tablename__ = "report_reporters"

    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: A keyed hash of the client (IP or API key), to spot abuse without keeping the address.
    client_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReportUpdate(Base):
    """One step of a report's history: status change, reply, internal note, routing, rating."""

    __tablename__ = "report_updates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(
        String(16)
    )  # created | status | reply | note | route | assign | rating | escalate | abuse
    status: Mapped[str] = mapped_column(String(32))  # the report's status after this step
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    agency_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReportPhoto(Base):
    """A photo of a report, re-encoded without EXIF/GPS metadata."""

    __tablename__ = "report_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
