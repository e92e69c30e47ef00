"""Settings of the reports module, from ``IOC_REPORTS__*`` environment variables.

Read by the module itself (the core's :class:`ioc.settings.Settings` does not know the
module), so ``IOC_REPORTS__SMTP_HOST=mail.example`` works without touching the core.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportsSettings(BaseSettings):
    """Citizen field reports: calendar, limits, Open311 and e-mail."""

    model_config = SettingsConfigDict(env_prefix="IOC_REPORTS__", extra="ignore")

    #: Working periods of a working day, local time (Asia/Ho_Chi_Minh), "HH:MM-HH:MM" comma-separated.
    working_hours: str = "07:30-11:30,13:00-17:00"
    #: Saturdays or Sundays declared working days (make-up days, "ngày làm bù"), beyond those the
    #: ``holidays`` package already knows from its substituted days.
    make_up_days: list[date] = Field(default_factory=list)
    #: Extra days off (a bridge day the province grants), beyond the public holidays.
    extra_days_off: list[date] = Field(default_factory=list)
    #: New reports a client (IP address, or API key) may submit per hour.
    rate_limit_per_hour: int = Field(default=20, ge=1)
    #: Open311 ``jurisdiction_id`` of this city; requests naming another one get 404.
    jurisdiction_id: str = "vinh.nghean.gov.vn"
    #: Radius in metres within which open reports of the same category are offered as duplicates.
    duplicate_radius_m: float = Field(default=50.0, gt=0, le=1000)
    #: Roles that may see a reporter's identity (name, full phone, e-mail); admins always may.
    personal_data_roles: list[str] = Field(default_factory=lambda: ["operator", "agency_officer", "ward_officer"])
    #: Photos: at most this many per report, each at most this many bytes.
    max_photos: int = Field(default=5, ge=0, le=10)
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: SMTP for notifying reporters who left an e-mail; empty host: no e-mail is sent.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "ioc@vinh.nghean.gov.vn"
    smtp_starttls: bool = False
    #: Public base URL used in e-mails (link to the follow page).
    public_url: str = "http://127.0.0.1:8000"
