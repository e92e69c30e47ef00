"""Settings of the environment module, from ``IOC_ENVIRONMENT__*`` environment variables.

Read by the module itself (the core's :class:`ioc.settings.Settings` does not know the module).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvironmentSettings(BaseSettings):
    """Air, water, flood and pollution incidents."""

    model_config = SettingsConfigDict(env_prefix="IOC_ENVIRONMENT__", extra="ignore")

    #: A sustained air-quality breach: hourly VN_AQI at or above this value ...
    breach_aqi: int = Field(default=151, ge=1, le=500)
    #: ... for this many consecutive hours at one station opens an incident and raises an alarm.
    breach_hours: int = Field(default=3, ge=1, le=48)
    #: A water sample with VN_WQI below this value opens an incident ("ô nhiễm nặng", QĐ 1460).
    breach_wqi: int = Field(default=26, ge=1, le=100)
    #: Detection sources counted as "detected through IT" for KPI 13 (the KPI's own definition:
    #: automatic monitoring, field reports through the app, cameras).
    it_sources: list[str] = Field(default_factory=lambda: ["sensor", "camera", "citizen"])
    #: The agency that owns pollution incidents (its officers manage them).
    incident_agency: str = "so-nnmt"
    #: 24-hour rainfall (mm) from which a ward is flagged "heavy rain" (mưa rất to: > 100 mm/24 h).
    heavy_rain_24h_mm: float = Field(default=100.0, gt=0)
    #: Raw air observations older than this many days are pruned (hourly means and AQI are kept).
    keep_observations_days: int = Field(default=30, ge=2)
