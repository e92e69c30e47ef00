"""Pydantic shapes of the reports API: inputs (refusing unknown fields) and public/staff views."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ioc.core.auth import InputModel

from .workflow import Status

_PHONE_OK = re.compile(r"^\+?[0-9 .\-()]{8,20}$")
_EMAIL_OK = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
SlaState = Literal["on_time", "nearly_due", "overdue", "met", "missed"]


class ReportCreate(InputModel):
    """A new report from a citizen (web app, mobile app) or an integrator."""

    category: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, max_length=4000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str = Field(default="", max_length=300)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=200)
    device_id: str | None = Field(default=None, max_length=200)
    account_id: str | None = Field(default=None, max_length=200)
    anonymous: bool = False
    public: bool = True
    media_url: str | None = Field(default=None, max_length=500)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("mô tả trống (description is blank)")
        return value.strip()

    @field_validator("name", "phone", "email", "device_id", "account_id", "media_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE_OK.match(value):
            raise ValueError("số điện thoại không hợp lệ (invalid phone number)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL_OK.match(value):
            raise ValueError("e-mail không hợp lệ (invalid e-mail)")
        return value

    @field_validator("media_url")
    @classmethod
    def _media_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("media_url phải là URL http(s) (must be an http(s) URL)")
        return value

    @model_validator(mode="after")
    def _location(self) -> ReportCreate:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("cần cả vĩ độ và kinh độ (lat and lon go together)")
        if self.lat is None and not self.address.strip():
            raise ValueError("cần vị trí: lat/lon hoặc địa chỉ (a location is required)")
        if self.anonymous:
            self.name = self.phone = self.email = None
        return self


class TransitionIn(InputModel):
    """A staff workflow action: the new status, with what it needs."""

    status: Status
    note: str | None = Field(default=None, max_length=4000, description="Trả lời công khai / public reply")
    internal_note: str | None = Field(default=None, max_length=4000)
    duplicate_of: int | None = Field(default=None, ge=1)
    responsible_unit: str | None = Field(default=None, max_length=300)


class CommentIn(InputModel):
    text: str = Field(min_length=1, max_length=4000)
    public: bool = False


class RouteIn(InputModel):
    agency_id: str = Field(min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class AssignIn(InputModel):
    assignee: str | None = Field(default=None, max_length=64)


class AbuseIn(InputModel):
    abuse: bool
    note: str | None = Field(default=None, max_length=2000)


class RatingIn(InputModel):
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class ReopenIn(InputModel):
    reason: str = Field(min_length=1, max_length=2000)


class PhotoRef(BaseModel):
    id: int
    url: str


class UpdatePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    status: str
    text: str | None


class UpdateStaff(UpdatePublic):
    public: bool
    actor: str
    agency_id: str | None


class ReportPublic(BaseModel):
    """What anyone may see of a public report: no identity, no tracking code."""

    id: int
    category: str
    category_name: str
    status: str
    status_label: str
    open311_status: str
    description: str
    lat: float | None
    lon: float | None
    address: str
    ward_code: str
    agency_id: str
    created_at: datetime
    updated_at: datetime
    expected_at: datetime | None
    status_notes: str | None
    duplicate_of: int | None
    responsible_unit: str | None
    photos: list[PhotoRef] = Field(default_factory=list)


class ReportStaff(ReportPublic):
    """A report in an officer's queue."""

    public: bool
    anonymous: bool
    source: str
    sla_tier: str
    sla_state: SlaState
    accept_due: datetime
    resolve_due: datetime
    accepted_at: datetime | None
    closed_at: datetime | None
    escalated_at: datetime | None
    assignee: str | None
    abuse: bool
    rating: int | None
    reopen_count: int


class ReporterMasked(BaseModel):
    name: str | None
    phone: str | None
    email: str | None
    masked: bool = True


class ReportDetail(ReportStaff):
    updates: list[UpdateStaff]
    reporter: ReporterMasked | None


class ReportTracked(ReportPublic):
    """What the reporter sees with the tracking code (their report even if private)."""

    code: str
    updates: list[UpdatePublic]
    rating: int | None
    can_rate: bool
    can_reopen: bool


class Duplicate(BaseModel):
    id: int
    category: str
    status: str
    status_label: str
    description: str
    distance_m: float
    created_at: datetime


class CreatedReport(BaseModel):
    id: int
    code: str
    status: str
    ward_code: str
    agency_id: str
    expected_at: datetime
    service_notice: str
    duplicates: list[Duplicate]


class ReportEvent(BaseModel):
    """Payload of ``report.*`` events: no personal data, no tracking code."""

    id: int
    category: str
    status: str
    previous_status: str | None = None
    ward_code: str
    agency_id: str
    public: bool
    lat: float | None
    lon: float | None
    created_at: datetime
    updated_at: datetime
    note: str | None = None
