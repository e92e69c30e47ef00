"""Settings from the environment (prefix ``IOC_``), one nested class per concern.

Nested values use a double underscore: ``IOC_MAP__TILE_URL=https://...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-insecure-change-me"  # noqa: S105 - the known key production refuses


class MapSettings(BaseModel):
    """The dashboard map."""

    # Empty: the map shows only the ward polygons and works offline.
    tile_url: str = ""
    tile_attribution: str = ""
    center_lat: float = 18.6796
    center_lon: float = 105.6813
    zoom: int = 12


class MqttSettings(BaseModel):
    """The MQTT broker that devices talk to and that events are bridged to."""

    url: str = ""  # e.g. mqtt://127.0.0.1:1883 ; empty disables the bridge
    topic_prefix: str = "ioc"


class JobsSettings(BaseModel):
    """The scheduler of the periodic jobs modules register (``ioc.core.jobs``)."""

    enabled: bool = True
    #: How often the scheduler looks for due jobs (at most the shortest job's interval).
    tick_seconds: float = Field(default=60.0, gt=0)
    #: Wait after start before the first run, so the service answers first.
    first_delay_seconds: float = Field(default=10.0, ge=0)


class SettingsError(RuntimeError):
    """Settings that must not be used to start the service."""


class Settings(BaseSettings):
    """Every setting of the service; safe defaults for development."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_nested_delimiter="__", extra="ignore")

    env: Literal["development", "production"] = "development"
    secret_key: str = DEV_SECRET_KEY
    database_url: str = ""  # empty: sqlite at <var_dir>/ioc.db
    var_dir: Path = Path("var")
    base_url: str = "http://127.0.0.1:8000"
    modules: list[str] | None = None  # None: every module shipped in ioc.modules
    access_token_minutes: int = Field(default=60, ge=1, le=24 * 60)
    session_hours: int = Field(default=12, ge=1, le=24 * 14)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    login_attempts_per_minute: int = Field(default=10, ge=1)
    events_poll_seconds: float = Field(default=0.5, gt=0)
    # least time between two rounds of the event bus's threads: writes in between share a round
    events_round_gap_seconds: float = Field(default=0.02, ge=0, le=1)
    log_json: bool = True
    map: MapSettings = MapSettings()
    mqtt: MqttSettings = MqttSettings()
    jobs: JobsSettings = JobsSettings()

    @model_validator(mode="after")
    def _fill_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'ioc.db').resolve()}"
        return self

    def check_for_start(self) -> None:
        """Refuse to start production with a missing or default secret key."""
        if self.env == "production" and (not self.secret_key or self.secret_key == DEV_SECRET_KEY):
            raise SettingsError(
                "IOC_SECRET_KEY chưa được đặt: môi trường production không chạy với khoá mặc định. "
                "Set IOC_SECRET_KEY to a long random value "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
            )
        if self.env == "production" and len(self.secret_key) < 32:
            raise SettingsError("IOC_SECRET_KEY must be at least 32 characters in production.")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
