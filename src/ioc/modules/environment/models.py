"""Tables of the environment module: stations and their current state, air observations and
hourly means, hourly and daily VN_AQI, VN_WQI results, water levels, rainfall, and the register
of pollution incidents with its history.

The raw observations are also kept in the context store's history (NGSI-LD temporal data);
these tables hold what the indices and the pages read fast.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ioc.core.db import Base, JsonDoc, UTCDateTime, utcnow


class EnvStation(Base):
    """A monitoring point known from its NGSI-LD entity: air, water quality, water-level gauge, rain."""

    __tablename__ = "env_stations"
    __table_args__ = (
        UniqueConstraint("tenant", "entity_id", name="uq_env_stations_tenant_entity"),
        Index("ix_env_stations_kind_ward", "kind", "ward_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), default="")
    entity_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))  # air | water | gauge | rain
    #: The gauge's code in ``data/flood.json`` (gauges only).
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # air: the latest hourly VN_AQI
    aqi: Mapped[int | None] = mapped_column(Integer, nullable=True)
    aqi_dominant: Mapped[str | None] = mapped_column(String(8), nullable=True)
    aqi_band: Mapped[int | None] = mapped_column(Integer, nullable=True)
    aqi_hour_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # water quality: the latest VN_WQI
    wqi: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wqi_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # gauge: the latest level, the alert level (0 none, 1..3 báo động I..III) and the thresholds
    level_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    level_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rise_m_per_h: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert_level: Mapped[int] = mapped_column(Integer, default=0)
    alert_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    level1_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    level2_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    level3_m: Mapped[float | None] = mapped_column(Float, nullable=True)
    hysteresis_m: Mapped[float] = mapped_column(Float, default=0.1)


class AirObservation(Base):
    """One concentration reading (µg/m³), kept once per (station, pollutant, time) so a repeated
    delivery of the same event counts once."""

    __tablename__ = "env_air_observations"
    __table_args__ = (
        UniqueConstraint("station_id", "pollutant", "observed_at", name="uq_env_air_observations_key"),
        Index("ix_env_air_observations_observed_at", "observed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    pollutant: Mapped[str] = mapped_column(String(8))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    value: Mapped[float] = mapped_column(Float)


class AirHourlyMean(Base):
    """The mean concentration of one pollutant over the hour ending at ``hour_end`` (maintained on write)."""

    __tablename__ = "env_air_hourly_means"
    __table_args__ = (UniqueConstraint("station_id", "pollutant", "hour_end", name="uq_env_air_hourly_means_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    pollutant: Mapped[str] = mapped_column(String(8))
    hour_end: Mapped[datetime] = mapped_column(UTCDateTime())
    total: Mapped[float] = mapped_column(Float, default=0.0)
    count: Mapped[int] = mapped_column(Integer, default=0)


class AqiHourly(Base):
    """The hourly VN_AQI of a station (NowCast for PM, QĐ 1459)."""

    __tablename__ = "env_aqi_hourly"
    __table_args__ = (
        UniqueConstraint("station_id", "hour_end", name="uq_env_aqi_hourly_key"),
        Index("ix_env_aqi_hourly_ward_hour", "ward_code", "hour_end"),
        Index("ix_env_aqi_hourly_hour_end", "hour_end"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    hour_end: Mapped[datetime] = mapped_column(UTCDateTime())
    aqi: Mapped[int] = mapped_column(Integer)
    dominant: Mapped[str | None] = mapped_column(String(8), nullable=True)
    band: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sub_indices: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AqiDaily(Base):
    """The daily VN_AQI of a station for a local (Asia/Ho_Chi_Minh) day."""

    __tablename__ = "env_aqi_daily"
    __table_args__ = (
        UniqueConstraint("station_id", "day", name="uq_env_aqi_daily_key"),
        Index("ix_env_aqi_daily_day_ward", "day", "ward_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    day: Mapped[date] = mapped_column(Date)
    aqi: Mapped[int] = mapped_column(Integer)
    dominant: Mapped[str | None] = mapped_column(String(8), nullable=True)
    band: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sub_indices: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WqiResult(Base):
    """The VN_WQI of one water sample (QĐ 1460), with the sample it was computed from."""

    __tablename__ = "env_wqi_results"
    __table_args__ = (UniqueConstraint("station_id", "observed_at", name="uq_env_wqi_results_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    wqi: Mapped[int | None] = mapped_column(Integer, nullable=True)
    band: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    sample: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    groups: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WaterLevelReading(Base):
    """A water level (metres, gauge datum) at a gauge."""

    __tablename__ = "env_water_levels"
    __table_args__ = (UniqueConstraint("station_id", "observed_at", name="uq_env_water_levels_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    level_m: Mapped[float] = mapped_column(Float)


class RainReading(Base):
    """Rain (mm) fallen in the interval ending at ``observed_at`` at a weather station."""

    __tablename__ = "env_rain_readings"
    __table_args__ = (UniqueConstraint("station_id", "observed_at", name="uq_env_rain_readings_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("env_stations.id", ondelete="CASCADE"))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    mm: Mapped[float] = mapped_column(Float)


class Incident(Base):
    """A pollution incident (air, water, land) in the register, with how it was detected."""

    __tablename__ = "env_incidents"
    __table_args__ = (
        Index("ix_env_incidents_detected_ward", "detected_at", "ward_code"),
        Index("ix_env_incidents_status_station", "status", "station_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))  # air | water | land
    #: How it was first detected: sensor | camera | citizen | inspection | press.
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="new")  # new | confirmed | closed | merged | dismissed
    #: A key incident ("sự cố ô nhiễm trọng điểm"), counted by KPI 13.
    key: Mapped[bool] = mapped_column(Boolean, default=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    ward_code: Mapped[str | None] = mapped_column(String(8), nullable=True)
    agency_id: Mapped[str] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    station_id: Mapped[int | None] = mapped_column(ForeignKey("env_stations.id", ondelete="SET NULL"), nullable=True)
    #: The citizen report (reports module id) it came from.
    report_id: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    confirmed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("env_incidents.id"), nullable=True)


class IncidentHistory(Base):
    """One step of an incident's life: opened, updated, confirmed, merged, closed, dismissed."""

    __tablename__ = "env_incident_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("env_incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
