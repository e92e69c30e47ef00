"""The map's layers: the list that modules registered, and the core's own layer of open alarms.

Layers are data (:class:`ioc.core.registry.MapLayer`): a module declares one with
``ctx.registry.add_map_layer(...)`` and the dashboard draws it. ``GET /api/v1/map/layers``
lists them (public layers to anyone, all of them to signed-in staff), with their titles in the
caller's language. ``GET /api/v1/map/alarms.geojson`` is the alarms layer, registered here by
the web shell: open alarms in the caller's remit, at the point their details give
(``lat``/``lon`` or a GeoJSON ``location``) or else at a point inside their ward.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from ioc.core import alarms
from ioc.core.admin_units import WardLocator, ward_locator
from ioc.core.alarms import Alarm, Severity
from ioc.core.auth import OptionalPrincipal, Principal, Requires
from ioc.core.db import DatabaseDep, DbSession
from ioc.core.geo import GeometryError, shape_from_geojson
from ioc.core.i18n import Catalogue, negotiate_language
from ioc.core.registry import MapLayer, Registry

router = APIRouter(prefix="/api/v1/map", tags=["map"])

ALARMS_LAYER = MapLayer(
    "alarms",
    "map.layer.alarms",
    "/api/v1/map/alarms.geojson",
    kind="alarms",
    order=90,
    public=False,
    topics=("alarm.*",),
)
#: Colours of alarm severities on the map (CRITICAL red … WARNING yellow).
SEVERITY_COLOURS: Mapping[str, str] = {
    Severity.CRITICAL: "#b3261e",
    Severity.MAJOR: "#d9480f",
    Severity.MINOR: "#e0a100",
    Severity.WARNING: "#7a6a00",
}
MAX_ALARMS = 2000

AlarmReader = Annotated[Principal, Depends(Requires("alarms:read"))]


class MapLayerOut(BaseModel):
    """A layer as the map reads it."""

    id: str
    title: str
    url: str
    kind: str
    order: int
    public: bool
    topics: list[str]


def layers_for(registry: Registry | None, principal: Principal | None) -> list[MapLayer]:
    """The layers ``principal`` may see: public ones for everyone, all of them for staff."""
    layers = list(registry.map_layers) if registry is not None else []
    if principal is None:
        return [layer for layer in layers if layer.public]
    return layers


def _catalogue(request: Request) -> Catalogue:
    catalogue = getattr(request.app.state, "catalogue", None)
    if isinstance(catalogue, Catalogue):
        return catalogue
    return Catalogue.from_registry(getattr(request.app.state, "registry", None))


def describe(request: Request, layers: list[MapLayer]) -> list[MapLayerOut]:
    """Layers with their titles in the language of ``request``."""
    catalogue, lang = _catalogue(request), negotiate_language(request)
    return [
        MapLayerOut(
            id=layer.id,
            title=catalogue.translate(layer.title_key, lang),
            url=layer.url,
            kind=layer.kind,
            order=layer.order,
            public=layer.public,
            topics=list(layer.topics),
        )
        for layer in layers
    ]


@router.get("/layers", response_model=list[MapLayerOut])
def list_layers(request: Request, principal: OptionalPrincipal) -> list[MapLayerOut]:
    """The map layers that modules offer (public ones without login; all of them for staff)."""
    return describe(request, layers_for(getattr(request.app.state, "registry", None), principal))


# --------------------------------------------------------------------------- alarms layer

_WARD_POINTS: weakref.WeakKeyDictionary[WardLocator, dict[str, tuple[float, float]]] = weakref.WeakKeyDictionary()


def ward_points(locator: WardLocator) -> dict[str, tuple[float, float]]:
    """A point inside each ward, ``(lon, lat)``: where an alarm without coordinates is drawn."""
    points = _WARD_POINTS.get(locator)
    if points is None:
        points = {}
        for feature in locator.geojson.get("features", []):
            try:
                point = shape_from_geojson(feature["geometry"]).representative_point()
            except (GeometryError, KeyError, TypeError, ValueError):
                continue
            points[str(feature["properties"]["code"])] = (round(point.x, 6), round(point.y, 6))
        _WARD_POINTS[locator] = points
    return points


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def alarm_position(
    details: Mapping[str, Any], ward_code: str | None, wards: Mapping[str, tuple[float, float]]
) -> tuple[float, float] | None:
    """``(lon, lat)`` of an alarm: from its details, else inside its ward; None when unknown."""
    lat, lon = _number(details.get("lat")), _number(details.get("lon"))
    location = details.get("location")
    if (lat is None or lon is None) and isinstance(location, Mapping) and location.get("type") == "Point":
        coords = location.get("coordinates")
        if isinstance(coords, list | tuple) and len(coords) >= 2:
            lon, lat = _number(coords[0]), _number(coords[1])
    if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
        return lon, lat
    if ward_code and ward_code in wards:
        return wards[ward_code]
    return None


def alarm_feature(alarm: Alarm, position: tuple[float, float]) -> dict[str, Any]:
    """One open alarm as a GeoJSON Feature of the map layer contract."""
    return {
        "type": "Feature",
        "id": alarm.id,
        "geometry": {"type": "Point", "coordinates": list(position)},
        "properties": {
            "id": alarm.id,
            "label": alarm.title,
            "colour": SEVERITY_COLOURS.get(alarm.severity, "#b3261e"),
            "status": alarm.status.value,
            "severity": alarm.severity,
            "type": alarm.type,
            "source": alarm.source,
            "ward": alarm.ward_code,
            "time": alarm.updated_at.isoformat().replace("+00:00", "Z"),
        },
    }


@router.get("/alarms.geojson", response_class=JSONResponse)
def alarms_geojson(
    session: DbSession,
    db: DatabaseDep,
    principal: AlarmReader,
    limit: Annotated[int, Query(ge=1, le=MAX_ALARMS)] = 500,
) -> JSONResponse:
    """Open (not cleared) alarms in the caller's remit as GeoJSON points, most recent first."""
    stmt = (
        select(Alarm)
        .where(alarms.visible_to(principal), Alarm.cleared.is_(False))
        .order_by(Alarm.updated_at.desc(), Alarm.id.desc())
        .limit(limit)
    )
    wards = ward_points(ward_locator(db))
    features = []
    for alarm in session.scalars(stmt):
        position = alarm_position(alarm.details or {}, alarm.ward_code, wards)
        if position is not None:
            features.append(alarm_feature(alarm, position))
    return JSONResponse(
        {"type": "FeatureCollection", "features": features},
        media_type="application/geo+json",
        headers={"Cache-Control": "no-store"},
    )
