"""The device registry under ``/api/v1/devices``: devices, their keys, HTTP telemetry, the demo devices.

A device feeds one NGSI-LD entity (id, Smart Data Models type); its attribute map turns
telemetry keys into attribute names and units. Managing devices needs ``devices:manage``
(admin, operator) and is audited; reading them needs ``context:read``. Telemetry is accepted
with the device's own key (``X-Device-Key`` or ``Authorization: Bearer``) or with a staff
token or API key holding ``context:write``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core import admin_units, alarms, audit
from ioc.core.auth import Agency, InputModel, Principal, Requires, optional_principal
from ioc.core.db import Database, DbSession, utcnow
from ioc.core.problems import Problem

from .devices_models import Device, DeviceKey
from .errors import NgsiError
from .http import Body
from .ingest import OFFLINE_ALARM, Ingestor, Reading, TelemetryError, alarm_source, decode, parse_payload
from .ld import is_uri

PREFIX = "/api/v1/devices"
DEVICE_KEY_PREFIX = "iocd_"
_KEY_PREFIX_HEX = 8

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"  # also an MQTT topic level: no / + #
TENANT_PATTERN = r"^[A-Za-z0-9_\-]{0,128}$"
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,255}$"
ATTR_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,255}$"
KEY_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
UNIT_PATTERN = r"^[A-Z0-9]{1,8}$"  # UN/CEFACT common codes: GQ, MTR, MMT, CEL, WTT, C62
WARD_PATTERN = r"^\d{5}$"

Manager = Annotated[Principal, Depends(Requires("devices:manage"))]
Reader = Annotated[Principal, Depends(Requires("context:read"))]


# --------------------------------------------------------------------------- schemas


class AttributeSpec(InputModel):
    """Where a telemetry key goes: the NGSI-LD attribute and its unit (UN/CEFACT code)."""

    attribute: str = Field(pattern=ATTR_PATTERN, examples=["pm25"])
    unitCode: str | None = Field(default=None, pattern=UNIT_PATTERN, examples=["GQ"])  # noqa: N815 - NGSI-LD name


class GeoPoint(InputModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class DeviceBase(InputModel):
    name: str = Field(min_length=1, max_length=200)
    entity_type: str = Field(pattern=TYPE_PATTERN, examples=["AirQualityObserved"])
    entity_id: str | None = Field(default=None, max_length=1000, description="default urn:ngsi-ld:<type>:<id>")
    attributes: dict[str, AttributeSpec] = Field(min_length=1, max_length=200)
    location: GeoPoint | None = None
    ward_code: str | None = Field(default=None, pattern=WARD_PATTERN, description="default: the ward of location")
    agency_id: str | None = Field(default=None, max_length=64, description="who answers its alarms")
    expected_interval_seconds: int = Field(default=300, ge=10, le=7 * 86400)
    enabled: bool = True

    @model_validator(mode="after")
    def _check(self) -> DeviceBase:
        if self.entity_id is not None and not is_uri(self.entity_id):
            raise ValueError("entity_id phải là một URI (must be a URI, e.g. urn:ngsi-ld:Type:id)")
        for key in self.attributes:
            if not re.fullmatch(KEY_PATTERN, key):
                raise ValueError(f"khoá telemetry không hợp lệ (bad telemetry key): {key!r}")
        return self


class DeviceCreate(DeviceBase):
    """A device to register."""

    id: str = Field(pattern=ID_PATTERN, examples=["aq-thanh-vinh"])
    tenant: str = Field(default="", pattern=TENANT_PATTERN, description="NGSI-LD tenant; empty = default")


class DeviceUpdate(InputModel):
    """Changes to a device (absent fields stay)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    entity_type: str | None = Field(default=None, pattern=TYPE_PATTERN)
    entity_id: str | None = Field(default=None, max_length=1000)
    attributes: dict[str, AttributeSpec] | None = Field(default=None, min_length=1, max_length=200)
    location: GeoPoint | None = None
    ward_code: str | None = Field(default=None, pattern=WARD_PATTERN)
    agency_id: str | None = Field(default=None, max_length=64)
    expected_interval_seconds: int | None = Field(default=None, ge=10, le=7 * 86400)
    enabled: bool | None = None


class DevicePublic(BaseModel):
    """A device as the API shows it, with its liveness."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant: str
    name: str
    entity_id: str
    entity_type: str
    attributes: dict[str, Any]
    location: dict[str, Any] | None
    ward_code: str | None
    agency_id: str | None
    expected_interval_seconds: int
    enabled: bool
    status: Literal["online", "offline", "never", "disabled"]
    last_seen_at: datetime | None
    last_observed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class KeyCreated(BaseModel):
    id: int
    device_id: str
    prefix: str
    key: str = Field(description="shown once; only its digest is stored")
    created_at: datetime


class TelemetryResult(BaseModel):
    device_id: str
    entity_id: str
    readings: int
    ignored: list[str] = Field(description="keys not in the attribute map")


#: The map's words and colours for a device's liveness.
STATUS_LABELS = {
    "online": "đang hoạt động / online",
    "offline": "mất kết nối / offline",
    "never": "chưa gửi dữ liệu / never reported",
    "disabled": "đã tắt / disabled",
}
STATUS_COLOURS = {"online": "#1e8e3e", "offline": "#c62828", "never": "#8a8a8a", "disabled": "#5f6368"}


def status_of(device: Device) -> Literal["online", "offline", "never", "disabled"]:
    if not device.enabled:
        return "disabled"
    if device.last_seen_at is None:
        return "never"
    return "online" if device.online else "offline"


def public(device: Device) -> DevicePublic:
    data = {c: getattr(device, c) for c in DevicePublic.model_fields if c != "status"}
    return DevicePublic(status=status_of(device), **data)


def snapshot(device: Device) -> dict[str, Any]:
    return public(device).model_dump(mode="json", exclude={"last_seen_at", "last_observed_at", "status"})


# --------------------------------------------------------------------------- service


def _point(location: GeoPoint | None) -> dict[str, Any] | None:
    return {"type": "Point", "coordinates": [location.lon, location.lat]} if location else None


def _ward(db: Database | None, session: Session, location: dict[str, Any] | None, given: str | None) -> str | None:
    if given is not None:
        unit = admin_units.get_unit(session, given)
        if unit is None or unit.level not in ("ward", "commune") or not unit.in_force(admin_units.vn_today()):
            raise Problem(422, f"Không có phường/xã đang hiệu lực mã '{given}' (unknown ward).", code="unknown-ward")
        return given
    if location is None:
        return None
    lon, lat = location["coordinates"]
    locator = admin_units.ward_locator(db, session) if db is not None else admin_units.WardLocator.from_session(session)
    return locator.locate(lat, lon)


def _check_agency(session: Session, agency_id: str | None) -> None:
    if agency_id is not None and session.get(Agency, agency_id) is None:
        raise Problem(422, f"Không có cơ quan '{agency_id}' (unknown agency).", code="unknown-agency")


def create_device(session: Session, data: DeviceCreate, ingestor: Ingestor, *, db: Database | None = None) -> Device:
    """Register a device (409 if the id is taken) and create or update its entity."""
    if session.get(Device, data.id) is not None:
        raise Problem(409, f"Thiết bị '{data.id}' đã tồn tại (device exists).", code="device-exists")
    _check_agency(session, data.agency_id)
    location = _point(data.location)
    now = utcnow()
    device = Device(
        id=data.id,
        tenant=data.tenant,
        name=data.name,
        entity_type=data.entity_type,
        entity_id=data.entity_id or f"urn:ngsi-ld:{data.entity_type}:{data.id}",
        attributes={k: v.model_dump(exclude_none=True) for k, v in data.attributes.items()},
        location=location,
        ward_code=_ward(db, session, location, data.ward_code),
        agency_id=data.agency_id,
        expected_interval_seconds=data.expected_interval_seconds,
        enabled=data.enabled,
        online=False,
        created_at=now,
        updated_at=now,
    )
    session.add(device)
    session.flush()
    _register(session, ingestor, device)
    return device


def _register(session: Session, ingestor: Ingestor, device: Device) -> None:
    try:
        ingestor.register(session, device)
    except NgsiError as exc:
        raise Problem(
            422, f"Thực thể của thiết bị không hợp lệ (invalid entity): {exc.detail}", code="bad-entity"
        ) from exc


def update_device(
    session: Session, device: Device, data: DeviceUpdate, ingestor: Ingestor, *, db: Database | None = None
) -> Device:
    changes = data.model_dump(exclude_unset=True)
    if "agency_id" in changes:
        _check_agency(session, data.agency_id)
    for name in ("name", "entity_type", "agency_id", "expected_interval_seconds", "enabled"):
        if name in changes and changes[name] is not None:
            setattr(device, name, changes[name])
    if "agency_id" in changes and changes["agency_id"] is None:
        device.agency_id = None
    if data.entity_id is not None:
        if not is_uri(data.entity_id):
            raise Problem(422, "entity_id phải là một URI (must be a URI).", code="bad-entity-id")
        device.entity_id = data.entity_id
    if data.attributes is not None:
        device.attributes = {k: v.model_dump(exclude_none=True) for k, v in data.attributes.items()}
    if "location" in changes:
        device.location = _point(data.location)
        if "ward_code" not in changes:
            device.ward_code = _ward(db, session, device.location, None)
    if "ward_code" in changes:
        device.ward_code = _ward(db, session, device.location, data.ward_code)
    device.updated_at = utcnow()
    session.flush()
    if not device.enabled:
        _forget_outage(session, device)
    _register(session, ingestor, device)
    return device


def _forget_outage(session: Session, device: Device) -> None:
    """A device taken out of service (disabled or removed) is no longer missed."""
    device.online = False
    alarms.clear_condition(session, alarm_source(device.id), OFFLINE_ALARM, note="Thiết bị ngừng theo dõi.")


def _digest(key: str) -> str:
    # The same scheme as the core's API keys: 256 random bits, so a fast hash is enough.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, device: Device, created_by: str) -> tuple[DeviceKey, str]:
    """A new key for ``device``: the row and the key itself (shown once)."""
    prefix = secrets.token_hex(_KEY_PREFIX_HEX // 2)
    key = f"{DEVICE_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = DeviceKey(device_id=device.id, prefix=prefix, key_hash=_digest(key), created_by=created_by[:200])
    session.add(row)
    session.flush()
    return row, key


def device_of_key(session: Session, key: str) -> str:
    """The device id of a valid, unrevoked device key; 401 otherwise."""
    prefix = key[len(DEVICE_KEY_PREFIX) : len(DEVICE_KEY_PREFIX) + _KEY_PREFIX_HEX]
    bad = Problem(
        401,
        "Khoá thiết bị không hợp lệ hoặc đã bị thu hồi (invalid or revoked device key).",
        code="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if not key.startswith(DEVICE_KEY_PREFIX) or len(key) > 200 or len(prefix) != _KEY_PREFIX_HEX:
        raise bad
    row = session.scalar(select(DeviceKey).where(DeviceKey.prefix == prefix))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, _digest(key)):
        raise bad
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() >= 60:
        row.last_used_at = now
    return row.device_id


# --------------------------------------------------------------------------- routes


def build_router(ingestor: Ingestor, lifespan: Any = None) -> APIRouter:
    """The routes; ``lifespan`` (the MQTT subscriber) runs while the app serves."""
    router = APIRouter(prefix=PREFIX, tags=["devices"], lifespan=lifespan)

    def _get(session: Session, device_id: str) -> Device:
        device = session.get(Device, device_id)
        if device is None:
            raise Problem(404, f"Không có thiết bị '{device_id}' (no such device).", code="not-found")
        return device

    @router.get("", response_model=list[DevicePublic])
    def list_devices(
        session: DbSession,
        _principal: Reader,
        tenant: Annotated[str | None, Query(max_length=128)] = None,
        entity_type: Annotated[str | None, Query(max_length=256)] = None,
        ward_code: Annotated[str | None, Query(max_length=8)] = None,
        status: Literal["online", "offline", "never", "disabled"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[DevicePublic]:
        """Registered devices with their liveness (online, offline, never seen, disabled)."""
        stmt = select(Device).order_by(Device.id)
        if tenant is not None:
            stmt = stmt.where(Device.tenant == tenant)
        if entity_type:
            stmt = stmt.where(Device.entity_type == entity_type)
        if ward_code:
            stmt = stmt.where(Device.ward_code == ward_code)
        if status == "disabled":
            stmt = stmt.where(Device.enabled.is_(False))
        elif status == "never":
            stmt = stmt.where(Device.enabled.is_(True), Device.last_seen_at.is_(None))
        elif status is not None:
            stmt = stmt.where(
                Device.enabled.is_(True), Device.last_seen_at.is_not(None), Device.online.is_(status == "online")
            )
        return [public(d) for d in session.scalars(stmt.limit(limit).offset(offset))]

    @router.post("", response_model=DevicePublic, status_code=201)
    def register_device(data: DeviceCreate, request: Request, session: DbSession, principal: Manager) -> DevicePublic:
        """Register a device; its entity is created (name, location) at once."""
        device = create_device(session, data, ingestor, db=request.app.state.db)
        audit.record(session, principal, "device.create", "device", device.id, after=snapshot(device))
        return public(device)

    @router.get("/map.geojson")
    def device_layer(session: DbSession, _principal: Reader) -> JSONResponse:
        """The dashboard's ``devices`` layer: located devices, coloured by liveness (staff)."""
        features = []
        for device in session.scalars(select(Device).order_by(Device.id)):
            status = status_of(device)
            coords = (device.location or {}).get("coordinates")
            if not coords:
                continue
            props: dict[str, Any] = {
                "label": f"{device.name}: {STATUS_LABELS[status]}",
                "colour": STATUS_COLOURS[status],
                "status": status,
                "ward": device.ward_code,
            }
            if device.last_seen_at is not None:
                props["time"] = device.last_seen_at.isoformat()
            features.append(
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": coords}, "properties": props}
            )
        return JSONResponse({"type": "FeatureCollection", "features": features}, media_type="application/geo+json")

    @router.get("/{device_id}", response_model=DevicePublic)
    def get_device(device_id: str, session: DbSession, _principal: Reader) -> DevicePublic:
        return public(_get(session, device_id))

    @router.patch("/{device_id}", response_model=DevicePublic)
    def patch_device(
        device_id: str, data: DeviceUpdate, request: Request, session: DbSession, principal: Manager
    ) -> DevicePublic:
        device = _get(session, device_id)
        before = snapshot(device)
        update_device(session, device, data, ingestor, db=request.app.state.db)
        audit.record(session, principal, "device.update", "device", device.id, before=before, after=snapshot(device))
        return public(device)

    @router.delete("/{device_id}", status_code=204)
    def delete_device(device_id: str, session: DbSession, principal: Manager) -> Response:
        """Remove a device and its keys (its entity and history stay)."""
        device = _get(session, device_id)
        before = snapshot(device)
        _forget_outage(session, device)
        session.delete(device)
        audit.record(session, principal, "device.delete", "device", device_id, before=before)
        return Response(status_code=204)

    @router.post("/{device_id}/keys", response_model=KeyCreated, status_code=201)
    def new_key(device_id: str, session: DbSession, principal: Manager) -> KeyCreated:
        """A new key for the device, shown once (only its SHA-256 digest is stored)."""
        device = _get(session, device_id)
        row, key = create_key(session, device, principal.name)
        audit.record(session, principal, "device.key.create", "device", device.id, after={"key_id": row.id})
        return KeyCreated(id=row.id, device_id=device.id, prefix=row.prefix, key=key, created_at=row.created_at)

    @router.delete("/{device_id}/keys/{key_id}", status_code=204)
    def revoke_key(device_id: str, key_id: int, session: DbSession, principal: Manager) -> Response:
        row = session.get(DeviceKey, key_id)
        if row is None or row.device_id != device_id:
            raise Problem(404, f"Thiết bị '{device_id}' không có khoá {key_id} (no such key).", code="not-found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(session, principal, "device.key.revoke", "device", device_id, after={"key_id": key_id})
        return Response(status_code=204)

    @router.post("/{device_id}/telemetry", response_model=TelemetryResult)
    def telemetry(device_id: str, request: Request, raw: Body) -> TelemetryResult:
        """Readings of a device: ``{"ts", "values"}``, a flat object or a list of them."""
        db: Database = request.app.state.db
        with db.session() as session:
            _authorise_telemetry(session, request, device_id)
            device = _get(session, device_id)
            if not device.enabled:
                raise Problem(409, f"Thiết bị '{device_id}' đang bị tắt (device disabled).", code="device-disabled")
            try:
                readings: list[Reading] = parse_payload(decode(raw))
            except TelemetryError as exc:
                raise Problem(400, f"Dữ liệu đo không hợp lệ (bad telemetry): {exc}", code="bad-telemetry") from exc
            [outcome] = ingestor.write(session, [(device, readings)])
            if outcome.error:
                raise Problem(400, f"Dữ liệu đo không hợp lệ (bad telemetry): {outcome.error}", code="bad-telemetry")
            return TelemetryResult(
                device_id=device.id, entity_id=device.entity_id, readings=outcome.readings, ignored=outcome.ignored
            )

    return router


def _authorise_telemetry(session: Session, request: Request, device_id: str) -> None:
    """The device's own key, or a staff token / API key with ``context:write``."""
    key = request.headers.get("x-device-key")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if key is None and scheme.lower() == "bearer" and credentials.strip().startswith(DEVICE_KEY_PREFIX):
        key = credentials.strip()
    if key is not None:
        if device_of_key(session, key.strip()) != device_id:
            raise Problem(
                401,
                "Khoá này không thuộc thiết bị này (the key belongs to another device).",
                code="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return
    principal = optional_principal(request, session)
    if principal is None:
        raise Problem(
            401,
            "Cần khoá thiết bị hoặc đăng nhập (device key or credentials required).",
            code="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.has("context:write"):
        raise Problem(403, "Không có quyền 'context:write' (permission required).", code="forbidden")


# --------------------------------------------------------------------------- the demo's devices

#: The six wards: GSO code, name, slug, and a point inside the ward around which its devices stand.
DEMO_WARDS = [
    ("16681", "Thành Vinh", "thanh-vinh", 18.67497, 105.66002),
    ("16690", "Trường Vinh", "truong-vinh", 18.67177, 105.70494),
    ("16702", "Vinh Phú", "vinh-phu", 18.72162, 105.68643),
    ("16708", "Vinh Lộc", "vinh-loc", 18.72442, 105.72190),
    ("16732", "Cửa Lò", "cua-lo", 18.78964, 105.72089),
    ("17920", "Vinh Hưng", "vinh-hung", 18.72423, 105.65544),
]

#: kind -> (id prefix, entity type, name, offset (dlat, dlon), attribute map, interval s, agency)
DEMO_KINDS: dict[str, tuple[str, str, str, tuple[float, float], dict[str, dict[str, str]], int, str]] = {
    "air": (
        "aq",
        "AirQualityObserved",
        "Trạm quan trắc không khí",
        (0.003, 0.002),
        {
            **{p: {"attribute": p, "unitCode": "GQ"} for p in ("pm25", "pm10", "o3", "no2", "so2", "co")},
            "temperature": {"attribute": "temperature", "unitCode": "CEL"},
            "humidity": {"attribute": "relativeHumidity", "unitCode": "C62"},
        },
        300,
        "so-nnmt",
    ),
    "water": (
        "wl",
        "FloodMonitoring",
        "Trạm đo mực nước",
        (-0.004, 0.003),
        {"level": {"attribute": "currentLevel", "unitCode": "MTR"}},
        300,
        "so-nnmt",
    ),
    "rain": (
        "rain",
        "WeatherObserved",
        "Trạm đo mưa",
        (0.002, -0.004),
        {"rain": {"attribute": "precipitation", "unitCode": "MMT"}},
        300,
        "so-nnmt",
    ),
    "light": (
        "sl",
        "Streetlight",
        "Đèn chiếu sáng",
        (-0.002, -0.002),
        {
            "powerState": {"attribute": "powerState"},
            "dim": {"attribute": "illuminanceLevel", "unitCode": "C62"},
            "watts": {"attribute": "powerConsumption", "unitCode": "WTT"},
        },
        900,
        "so-xay-dung",
    ),
}


def demo_devices() -> list[DeviceCreate]:
    """The demo's 24 devices: an air station, a water-level gauge, a rain gauge and a streetlight per ward."""
    out: list[DeviceCreate] = []
    for kind, (prefix, etype, label, (dlat, dlon), attrs, interval, agency) in DEMO_KINDS.items():
        for code, ward, slug, lat, lon in DEMO_WARDS:
            out.append(
                DeviceCreate(
                    id=f"{prefix}-{slug}",
                    name=f"{label} {ward}" + (" 01" if kind == "light" else ""),
                    entity_type=etype,
                    attributes={k: AttributeSpec.model_validate(v) for k, v in attrs.items()},
                    location=GeoPoint(lat=round(lat + dlat, 5), lon=round(lon + dlon, 5)),
                    ward_code=code,
                    agency_id=agency,
                    expected_interval_seconds=interval,
                )
            )
    return out


def demo_kind(device_id: str) -> str | None:
    """air, water, rain or light for a demo device id."""
    for kind, spec in DEMO_KINDS.items():
        if device_id.startswith(spec[0] + "-"):
            return kind
    return None


def demo_seeder(ingestor: Ingestor) -> Callable[[Session], int]:
    """``ioc seed --demo``: register the demo devices (idempotent); returns how many were added."""

    def seed(session: Session) -> int:
        added = 0
        agencies = set(session.scalars(select(Agency.id)))
        for data in demo_devices():
            if session.get(Device, data.id) is not None:
                continue
            if data.agency_id not in agencies:
                data.agency_id = None
            if data.ward_code and admin_units.get_unit(session, data.ward_code) is None:
                data.ward_code = None  # reference units not loaded (run `ioc migrate`)
            device = create_device(session, data, ingestor)
            audit.record(session, None, "device.create", "device", device.id, after=snapshot(device))
            added += 1
        return added

    return seed
