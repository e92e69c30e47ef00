"""Administrative units: units in force on a date, point → ward, ward boundaries, the 2025 crosswalk.

Public and read-only: this is reference data that the citizen app, the dashboard map and
integrators all need without an account.
"""

from __future__ import annotations

import hashlib
import json
import re
import weakref
from datetime import date
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ioc.core import admin_units
from ioc.core.admin_units import AdminUnit, Level, WardCrosswalk, WardLocator
from ioc.core.db import DatabaseDep, DbSession
from ioc.core.problems import Problem

router = APIRouter(prefix="/api/v1/admin-units", tags=["admin-units"])

#: Most points one bulk request may ask about; beyond it the answer is 413.
MAX_BULK_POINTS = 100_000
#: Body size that bulk locate needs for MAX_BULK_POINTS at full float precision
#: ("[18.712345678901234, 105.71234567890123], " is ~45 bytes), above the service-wide default.
#: The app factory grants it: ``registry.allow_body(BULK_LOCATE_PATH, MAX_BULK_BODY_BYTES)``.
MAX_BULK_BODY_BYTES = 6 * 1024 * 1024
BULK_LOCATE_PATH = "/api/v1/admin-units/locate"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AdminUnitPublic(BaseModel):
    """A unit as listed: names, level, parent and period of validity; no geometry."""

    model_config = ConfigDict(from_attributes=True)

    code: str = Field(description="Mã đơn vị hành chính (GSO code)", examples=["16681"])
    name: str = Field(examples=["Thành Vinh"])
    full_name: str = Field(examples=["Phường Thành Vinh"])
    name_en: str | None = Field(examples=["Thanh Vinh Ward"])
    level: Level
    parent_code: str | None = Field(examples=["40"])
    valid_from: date | None = Field(description="Ngày bắt đầu hiệu lực; null: không rõ (unknown)")
    valid_to: date | None = Field(description="Ngày hết hiệu lực (không tính); null: còn hiệu lực (exclusive end)")
    in_city: bool = Field(description="Thuộc địa bàn Vinh cũ (one of the six wards or the 33 former units)")


class AdminUnitDetail(AdminUnitPublic):
    """A unit with its area, bbox and GeoJSON geometry where published."""

    area_km2: float | None
    bbox: list[float] | None = Field(description="[min_lon, min_lat, max_lon, max_lat]")
    geometry: dict[str, Any] | None = Field(description="GeoJSON geometry (WGS 84)")


class WardRef(BaseModel):
    """A ward named in an answer."""

    code: str
    name: str
    full_name: str
    name_en: str | None


class LocateResult(BaseModel):
    """The ward that contains a point."""

    ward: WardRef
    lat: float
    lon: float


class BulkLocateRequest(BaseModel):
    """Points to locate, each ``[lat, lon]``."""

    points: list[tuple[float, float]] = Field(
        description=f"[[vĩ độ, kinh độ], ...] — [[lat, lon], ...], tối đa (at most) {MAX_BULK_POINTS:,}",
        examples=[[[18.6796, 105.6813], [18.80, 105.90]]],
    )


class BulkLocateResult(BaseModel):
    """The ward code of each point, in order; null outside the six wards."""

    wards: list[str | None]


class CrosswalkPublic(BaseModel):
    """A former unit and the 2025 ward that absorbed it."""

    model_config = ConfigDict(from_attributes=True)

    old_code: str
    old_name: str
    new_code: str
    new_name: str
    effective: date


def _parse_at(at: str | None) -> date:
    """``at`` as a date, today in Vietnam when absent; a 422 problem when malformed."""
    if at is None or not at.strip():
        return admin_units.vn_today()
    value = at.strip()
    # fromisoformat() alone would also take "20250701" or week dates; the API promises one
    # form, so say so rather than guess.
    if _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Problem(
        422,
        f"Ngày không hợp lệ: '{value[:40]}'. Dùng dạng YYYY-MM-DD, ví dụ 2025-07-01. Invalid date: use YYYY-MM-DD.",
        code="invalid-date",
    )


def _locator(db: DatabaseDep) -> WardLocator:
    locator = admin_units.ward_locator(db)
    if not len(locator):
        raise Problem(
            503,
            "Chưa nạp ranh giới các phường; hãy chạy lệnh seed. Ward boundaries are not loaded yet.",
            code="admin-units-not-loaded",
        )
    return locator


@router.get("", response_model=list[AdminUnitPublic])
def list_units(
    session: DbSession,
    at: Annotated[
        str | None, Query(max_length=40, description="YYYY-MM-DD; mặc định hôm nay (default today, UTC+7)")
    ] = None,
    level: Annotated[Level | None, Query()] = None,
    in_city: Annotated[bool | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description="Tìm không dấu (accent-insensitive)")] = None,
) -> list[AdminUnit]:
    """Units in force on ``at``, by code; e.g. ``at=2025-06-30&in_city=true`` gives the 33 former units."""
    return admin_units.units_at(session, _parse_at(at), level=level, in_city=in_city, q=q)


@router.get("/locate", response_model=LocateResult)
def locate_point(
    db: DatabaseDep,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="Vĩ độ (latitude)")],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="Kinh độ (longitude)")],
) -> LocateResult:
    """The ward of the former Vinh area that contains the point; 404 ``outside-city`` elsewhere."""
    locator = _locator(db)
    code = locator.locate(lat, lon)
    if code is None:
        raise Problem(
            404,
            f"Điểm ({lat}, {lon}) nằm ngoài địa bàn sáu phường của khu vực Vinh. "
            "The point is outside the six wards of the Vinh area.",
            code="outside-city",
            lat=lat,
            lon=lon,
        )
    info = locator.wards[code]
    return LocateResult(
        ward=WardRef(code=info.code, name=info.name, full_name=info.full_name, name_en=info.name_en),
        lat=lat,
        lon=lon,
    )


@router.post("/locate", response_model=BulkLocateResult)
def locate_points(db: DatabaseDep, body: BulkLocateRequest) -> BulkLocateResult:
    """The ward code of each ``[lat, lon]`` point (null outside), up to 100,000 points per request."""
    if len(body.points) > MAX_BULK_POINTS:
        raise Problem(
            413,
            f"Quá nhiều điểm: {len(body.points):,}, tối đa {MAX_BULK_POINTS:,} điểm mỗi yêu cầu. "
            f"Too many points: at most {MAX_BULK_POINTS:,} per request.",
            code="too-many-points",
            max_points=MAX_BULK_POINTS,
        )
    locator = _locator(db)
    if not body.points:
        return BulkLocateResult(wards=[])
    coords = np.asarray(body.points, dtype=np.float64)
    lats, lons = coords[:, 0], coords[:, 1]
    bad = ~(np.isfinite(lats) & np.isfinite(lons) & (np.abs(lats) <= 90) & (np.abs(lons) <= 180))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise Problem(
            422,
            f"Toạ độ không hợp lệ tại points[{first}]: cần [vĩ độ, kinh độ] với vĩ độ trong [-90, 90], "
            "kinh độ trong [-180, 180]. Invalid coordinates: expected [lat, lon].",
            code="invalid-coordinates",
            index=first,
        )
    return BulkLocateResult(wards=locator.locate_many(lats, lons).tolist())


# The serialised FeatureCollection (~300 kB) and its ETag, per locator: the boundaries change
# only when the locator is rebuilt, so each worker serialises them once.
_GEOJSON_CACHE: weakref.WeakKeyDictionary[WardLocator, tuple[bytes, str]] = weakref.WeakKeyDictionary()


@router.get(
    "/wards.geojson",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}, "description": "GeoJSON FeatureCollection"}},
)
def wards_geojson(db: DatabaseDep, request: Request) -> Response:
    """The six wards as a GeoJSON FeatureCollection (properties: code, names, area), for maps."""
    locator = _locator(db)
    cached = _GEOJSON_CACHE.get(locator)
    if cached is None:
        body = json.dumps(locator.geojson, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        cached = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        _GEOJSON_CACHE[locator] = cached
    body, etag = cached
    headers = {"Cache-Control": "public, max-age=3600", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/geo+json", headers=headers)


@router.get("/crosswalk", response_model=list[CrosswalkPublic])
def list_crosswalk(session: DbSession) -> list[WardCrosswalk]:
    """The 33 former units of Vinh and the 2025 ward that absorbed each (effective 2025-07-01)."""
    return admin_units.crosswalk(session)


@router.get("/{code}", response_model=AdminUnitDetail)
def read_unit(
    session: DbSession,
    code: Annotated[str, Path(max_length=16)],
    at: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD")] = None,
) -> AdminUnitDetail:
    """One unit with its geometry. Without ``at``: the version in force today, else its last version."""
    unit = admin_units.get_unit(session, code, _parse_at(at) if at is not None else None)
    if unit is None:
        when = f" vào ngày {at}" if at is not None else ""
        raise Problem(
            404,
            f"Không tìm thấy đơn vị hành chính mã '{code}'{when}. Unknown administrative unit.",
            code="unit-not-found",
        )
    corners = [v for v in (unit.min_lon, unit.min_lat, unit.max_lon, unit.max_lat) if v is not None]
    return AdminUnitDetail(
        **AdminUnitPublic.model_validate(unit).model_dump(),
        area_km2=unit.area_km2,
        bbox=corners if len(corners) == 4 else None,
        geometry=unit.geometry,
    )
