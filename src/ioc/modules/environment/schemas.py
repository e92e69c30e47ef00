"""Pydantic shapes of the environment API: public readings (no personal data) and the staff register."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ioc.core.auth import InputModel

Kind = Literal["air", "water", "land"]
Source = Literal["sensor", "camera", "citizen", "inspection", "press"]


class BandOut(BaseModel):
    """A VN_AQI band (QĐ 1459): level 1..6, its name, colour and advice, in the asked language."""

    level: int
    name: str
    colour: str
    advice: str
    low: int
    high: int


class AirStationNow(BaseModel):
    """An air station and its latest hourly VN_AQI."""

    id: int
    entity_id: str
    name: str
    ward_code: str | None
    lat: float | None
    lon: float | None
    aqi: int | None
    dominant: str | None
    hour_end: datetime | None
    band: BandOut | None


class WardAirNow(BaseModel):
    """A ward's air now: its worst station."""

    ward_code: str
    ward_name: str
    aqi: int | None
    band: BandOut | None
    stations: list[AirStationNow]


class AirNow(BaseModel):
    stations: list[AirStationNow]
    wards: list[WardAirNow]
    bands: list[BandOut]


class HourlyPoint(BaseModel):
    hour_end: datetime
    aqi: int
    dominant: str | None
    band: int | None
    station_id: int
    stations: int = 1
    sub_indices: dict[str, int] = Field(default_factory=dict)


class DailyPoint(BaseModel):
    day: date
    aqi: int
    dominant: str | None
    band: int | None
    station_id: int
    stations: int = 1
    sub_indices: dict[str, int] = Field(default_factory=dict)


class WqiOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    station_id: int
    ward_code: str | None
    observed_at: datetime
    wqi: int | None
    band: str | None
    reason: str | None
    sample: dict[str, Any]


class StationOut(BaseModel):
    """Any monitoring point (air, water, gauge, rain) with its current state."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    entity_id: str
    kind: str
    code: str | None
    name: str
    ward_code: str | None
    lat: float | None
    lon: float | None
    last_seen_at: datetime | None
    aqi: int | None
    aqi_dominant: str | None
    aqi_band: int | None
    aqi_hour_end: datetime | None
    wqi: int | None
    wqi_at: datetime | None


class GaugeOut(BaseModel):
    """A water-level gauge: level, rate of rise and alert level (0 none, 1..3 báo động I..III)."""

    id: int
    code: str | None
    entity_id: str
    name: str
    ward_code: str | None
    lat: float | None
    lon: float | None
    level_m: float | None
    level_at: datetime | None
    rise_m_per_h: float | None
    alert_level: int
    alert_label: str
    alert_since: datetime | None
    levels_m: list[float | None]


class LevelPoint(BaseModel):
    observed_at: datetime
    level_m: float


class ZoneStatus(BaseModel):
    code: str | None
    name: str | None
    name_en: str | None
    alert_level: int


class WardFlood(BaseModel):
    """A ward's flood warning."""

    ward_code: str
    ward_name: str
    alert_level: int
    alert_label: str
    advice: str
    gauges: list[str]
    zones: list[ZoneStatus]
    rain_24h_mm: float | None
    heavy_rain: bool


class RainOut(BaseModel):
    station_id: int
    name: str
    ward_code: str | None
    lat: float | None
    lon: float | None
    at: datetime
    sum_1h_mm: float
    sum_3h_mm: float
    sum_24h_mm: float


class IncidentHistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    action: str
    actor: str
    status: str
    note: str | None


class IncidentOut(BaseModel):
    """An incident as staff see it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    source: str
    status: str
    key: bool
    title: str
    description: str
    ward_code: str | None
    agency_id: str
    lat: float | None
    lon: float | None
    station_id: int | None
    report_id: int | None
    details: dict[str, Any]
    detected_at: datetime
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    confirmed_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    resolution: str | None
    merged_into_id: int | None


class IncidentDetail(IncidentOut):
    history: list[IncidentHistoryOut]


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    total: int


class IncidentCreate(InputModel):
    """An incident entered by staff (camera event, inspection, press article, citizen by phone ...)."""

    kind: Kind
    source: Source
    title: str = Field(min_length=3, max_length=300)
    description: str = Field(default="", max_length=5000)
    ward_code: str | None = Field(default=None, pattern=r"^\d{5}$")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    detected_at: datetime | None = None
    key: bool = True


class ConfirmIn(InputModel):
    key: bool = True
    kind: Kind | None = None
    note: str | None = Field(default=None, max_length=2000)


class CloseIn(InputModel):
    resolution: str = Field(min_length=3, max_length=2000)


class DismissIn(InputModel):
    reason: str = Field(min_length=3, max_length=2000)


class MergeIn(InputModel):
    into: int = Field(ge=1, description="The incident this one is the same event as")
    note: str | None = Field(default=None, max_length=2000)
