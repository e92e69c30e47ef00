"""Tables of the KPI module: imported indicator values, KPI values with lineage, socio-economic reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, Float, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class IndicatorImport(Base):
    """One import of indicator values (file, push or demo) that changed something."""

    __tablename__ = "kpi_imports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))  # file | push | demo
    filename: Mapped[str] = mapped_column(String(300), default="")
    sha256: Mapped[str] = mapped_column(String(64), default="")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(200), default="system")
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IndicatorValue(Base):
    """The value of an indicator for a period (or a day) in the city ("" ward) or one ward."""

    __tablename__ = "kpi_indicator_values"
    __table_args__ = (
        UniqueConstraint("measure", "period_start", "period_end", "ward_code", name="uq_kpi_indicator_values_key"),
        Index("ix_kpi_indicator_values_lookup", "measure", "ward_code", "period_end"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    measure: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    ward_code: Mapped[str] = mapped_column(String(8), default="")  # "" = the whole city
    value: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(String(500), default="")
    import_id: Mapped[int] = mapped_column(ForeignKey("kpi_imports.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KpiValue(Base):
    """A computed KPI value for one period (city or ward), with its lineage."""

    __tablename__ = "kpi_values"
    __table_args__ = (UniqueConstraint("kpi_id", "period_start", "ward_code", name="uq_kpi_values_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kpi_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(8))  # month | quarter | year
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    ward_code: Mapped[str] = mapped_column(String(8), default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="no_data")
    lineage: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SocioEconomicReport(Base):
    """A generated monthly or quarterly socio-economic report (XLSX and PDF), kept with its history."""

    __tablename__ = "kpi_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # monthly | quarterly
    label: Mapped[str] = mapped_column(String(16))  # 2026-11 | 2026-Q3
    period_start: Mapped[date] = mapped_column(Date, index=True)
    period_end: Mapped[date] = mapped_column(Date)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | on_demand
    #: "monthly:2026-11" for the scheduled run (unique: one per period across workers); NULL on demand.
    schedule_key: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    created_by: Mapped[str] = mapped_column(String(200), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    summary: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    xlsx: Mapped[bytes] = mapped_column(LargeBinary)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
