"""The event topics this module reads and writes, declared here with the payloads their owners
document (the module never imports the context or reports modules).

* ``context.entity.created|updated|deleted`` — NGSI-LD entity changes (docs/CONTEXT.md "Events");
* ``context.upsert`` — how results go back into the context store (so they enter its history);
* ``report.created`` — a citizen report (reports module; no personal data in the payload);
* ``environment.incident.*`` — this module's own announcements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ioc.core.events import Topic


class EntityChange(BaseModel):
    """An entity created, updated or deleted, with its changed attributes in normalized form."""

    tenant: str = ""
    id: str
    type: list[str]
    type_iris: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    deleted_attributes: list[str] = Field(default_factory=list)
    at: datetime


class UpsertRequest(BaseModel):
    """Entities to store in the context broker (consumed by the context module)."""

    tenant: str = ""
    entities: list[dict[str, Any]]
    context: Any = None
    mode: str = "update"


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


class IncidentEvent(BaseModel):
    """Payload of ``environment.incident.*``: what the register shows staff (no personal data)."""

    id: int
    kind: str
    source: str
    status: str
    key: bool
    title: str
    ward_code: str | None
    station_id: int | None
    report_id: int | None
    detected_at: datetime
    updated_at: datetime
    merged_into_id: int | None = None


ENTITY_CREATED = Topic("context.entity.created", EntityChange, "NGSI-LD entity created")
ENTITY_UPDATED = Topic("context.entity.updated", EntityChange, "NGSI-LD entity updated")
CONTEXT_UPSERT = Topic("context.upsert", UpsertRequest, "store NGSI-LD entities (from other modules)")
REPORT_CREATED = Topic("report.created", ReportEvent, "Phản ánh mới / a new report")
INCIDENT_OPENED = Topic("environment.incident.opened", IncidentEvent, "Sự cố ô nhiễm mới / a new pollution incident")
INCIDENT_UPDATED = Topic(
    "environment.incident.updated", IncidentEvent, "Sự cố ô nhiễm đổi trạng thái / incident changed"
)
