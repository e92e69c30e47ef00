"""Request and answer bodies of the services API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ioc.core.auth import InputModel

from .connectors import mask_headers


class PushBody(InputModel):
    """Dossier records pushed by an integrating system (iGate, a ward's one-stop software)."""

    dossiers: list[dict[str, Any]] = Field(min_length=1, max_length=5000)


class ConnectorCreate(InputModel):
    """A JSON HTTP endpoint to poll and how its records map onto dossier fields."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    url: str = Field(min_length=8, max_length=1000, pattern=r"^https?://")
    items_path: str = Field(default="", max_length=200)
    mapping: dict[str, str]
    value_maps: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: Request headers sent with each poll, e.g. ``{"Authorization": "Bearer …"}`` or ``{"X-API-Key": "…"}``.
    headers: dict[str, str] = Field(default_factory=dict)
    interval_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    enabled: bool = True


class ConnectorUpdate(InputModel):
    """Changes to a connector; ``headers`` replaces them all (a value sent back masked keeps the stored one)."""

    url: str | None = Field(default=None, min_length=8, max_length=1000, pattern=r"^https?://")
    items_path: str | None = Field(default=None, max_length=200)
    mapping: dict[str, str] | None = None
    value_maps: dict[str, dict[str, str]] | None = None
    headers: dict[str, str] | None = None
    interval_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    enabled: bool | None = None


class ConnectorPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    url: str
    items_path: str
    mapping: dict[str, Any]
    value_maps: dict[str, Any]
    #: Header names in clear, values masked (credentials are never shown back).
    headers: dict[str, str]
    interval_minutes: int
    enabled: bool
    last_run_at: datetime | None
    last_status: str
    last_error: str | None
    last_counts: dict[str, Any] | None

    @field_validator("headers", mode="before")
    @classmethod
    def _masked(cls, value: Any) -> dict[str, str]:
        return mask_headers(value if isinstance(value, dict) else {})


class DossierPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    procedure_code: str
    procedure_name: str
    agency_id: str
    ward_code: str | None
    service_level: str
    channel: str
    received_at: datetime
    due_at: datetime | None
    resolved_at: datetime | None
    status: str
    source: str
    source_ref: str
    updated_at: datetime


class ProcedurePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    agency_id: str | None
    partial_since: date | None
    full_since: date | None
    valid_from: date | None
    valid_to: date | None
    source_ref: str


class ImportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    source: str
    filename: str
    sha256: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    actor: str
    at: datetime


class ImportResult(BaseModel):
    """What an import, a push or a poll did; ``import_id`` is None when nothing changed."""

    kind: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    import_id: int | None
