"""GeoJSON ⇄ shapely helpers, great-circle distances and a fast point-in-polygon index.

Geometry is stored as GeoJSON (RFC 7946, WGS 84 longitude/latitude) with bbox columns on
both SQLite and PostgreSQL; the bbox narrows candidates cheaply and shapely decides the exact
predicate. Every geometry that comes from outside goes through :func:`shape_from_geojson`,
which rejects bad input with a :class:`GeometryError` (a ``ValueError``) whose message says
what is wrong and where, in Vietnamese first and English second, so that APIs can answer a
4xx with that message instead of failing later with a 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

__all__ = [
    "EARTH_RADIUS_M",
    "BBox",
    "GeometryError",
    "PolygonIndex",
    "bbox",
    "geojson_from_shape",
    "haversine_m",
    "shape_from_geojson",
]

#: Mean Earth radius (IUGG), metres. Haversine on a sphere is within 0.5 % of the ellipsoid,
#: far better than needed for "which sensor is near this report".
EARTH_RADIUS_M = 6_371_008.8

#: (min_lon, min_lat, max_lon, max_lat), the order of GeoJSON's ``bbox`` member.
BBox = tuple[float, float, float, float]

K = TypeVar("K")

# Nesting depth of "coordinates" for each GeoJSON geometry type: 0 is a single position.
_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
_GEOMETRY_TYPES = (*_DEPTH, "GeometryCollection")
# A GeometryCollection may nest; nothing legitimate nests deeper than this, and bounding it
# keeps a hostile document from exhausting the stack.
_MAX_COLLECTION_DEPTH = 4


class GeometryError(ValueError):
    """A GeoJSON geometry that cannot be used; the message says why and where."""


def shape_from_geojson(obj: Mapping[str, Any], *, repair: bool = False) -> BaseGeometry:
    """Validate a GeoJSON geometry (or Feature) and return it as a shapely geometry.

    Checks, in order: it is an object with a known ``type``; ``coordinates`` has the right
    nesting for that type; every position has 2 or 3 finite numbers with longitude in
    [-180, 180] and latitude in [-90, 90]; line strings have ≥ 2 positions and polygon rings
    ≥ 4 positions and are closed; the geometry is not empty; polygons are valid (no
    self-intersection, holes inside their shell). A ``Feature`` is unwrapped to its geometry.
    With ``repair``, an invalid geometry is not refused but made valid (``shapely.make_valid``:
    a self-intersecting ring becomes the polygons it encloses), for computing with geometries
    that GeoJSON (RFC 7946) lets through, as NGSI-LD GeoProperties do.

    Raises:
        GeometryError: a ``ValueError`` with a Vietnamese message followed by English.
    """
    if isinstance(obj, Mapping) and obj.get("type") == "Feature":
        geometry = obj.get("geometry")
        if geometry is None:
            raise GeometryError("Feature không có hình học (the Feature has no geometry)")
        return shape_from_geojson(geometry)
    _check_geometry(obj, "geometry", 0)
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely/GEOS raise several types; the input is at fault
        raise GeometryError(f"Hình học không đọc được (unreadable geometry): {exc}") from exc
    if geom.is_empty:
        raise GeometryError("Hình học rỗng (empty geometry)")
    if not geom.is_valid:
        if repair:
            return shapely.make_valid(geom)
        reason = shapely.is_valid_reason(geom)
        raise GeometryError(f"Hình học không hợp lệ (invalid geometry): {reason}")
    return geom


def _check_geometry(obj: Any, where: str, depth: int) -> None:
    if not isinstance(obj, Mapping):
        raise GeometryError(f"{where}: phải là một đối tượng GeoJSON (must be a GeoJSON object)")
    gtype = obj.get("type")
    if gtype not in _GEOMETRY_TYPES:
        allowed = ", ".join(_GEOMETRY_TYPES)
        raise GeometryError(
            f"{where}: kiểu hình học không hợp lệ {gtype!r}, cần một trong {allowed} (unsupported geometry type)"
        )
    if gtype == "GeometryCollection":
        if depth >= _MAX_COLLECTION_DEPTH:
            raise GeometryError(f"{where}: GeometryCollection lồng quá sâu (nested too deeply)")
        members = obj.get("geometries")
        if not isinstance(members, list):
            raise GeometryError(f"{where}.geometries: phải là một mảng (must be an array)")
        for i, member in enumerate(members):
            _check_geometry(member, f"{where}.geometries[{i}]", depth + 1)
        return
    coords = obj.get("coordinates")
    _check_coordinates(coords, _DEPTH[gtype], gtype, f"{where}.coordinates")


def _check_coordinates(coords: Any, depth: int, gtype: str, where: str) -> None:
    if depth == 0:
        _check_position(coords, where)
        return
    if not isinstance(coords, list):
        raise GeometryError(f"{where}: phải là một mảng (must be an array) cho {gtype}")
    # The minimum sizes that GEOS would otherwise reject with a less helpful message.
    if gtype in ("LineString", "MultiLineString") and depth == 1 and len(coords) < 2:
        raise GeometryError(f"{where}: đường cần ít nhất 2 điểm (a line needs at least 2 positions)")
    if gtype in ("Polygon", "MultiPolygon") and depth == 1 and len(coords) < 4:
        raise GeometryError(f"{where}: vòng đa giác cần ít nhất 4 điểm (a polygon ring needs at least 4 positions)")
    if gtype in ("Polygon", "MultiPolygon") and depth == 2 and not coords:
        raise GeometryError(f"{where}: đa giác không có vòng nào (a polygon needs an exterior ring)")
    for i, item in enumerate(coords):
        _check_coordinates(item, depth - 1, gtype, f"{where}[{i}]")
    if gtype in ("Polygon", "MultiPolygon") and depth == 1 and coords[0][:2] != coords[-1][:2]:
        raise GeometryError(
            f"{where}: vòng đa giác chưa khép kín, điểm đầu phải trùng điểm cuối "
            f"(the ring is not closed: first and last positions differ)"
        )


def _check_position(pos: Any, where: str) -> None:
    if not isinstance(pos, list) or len(pos) not in (2, 3):
        raise GeometryError(
            f"{where}: toạ độ phải là [kinh độ, vĩ độ] hoặc [kinh độ, vĩ độ, độ cao] "
            f"(a position is [lon, lat] or [lon, lat, alt])"
        )
    for value in pos:
        # bool is an int subclass: reject it explicitly, true/false are not coordinates.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GeometryError(f"{where}: toạ độ phải là số hữu hạn (coordinates must be finite numbers)")
    lon, lat = pos[0], pos[1]
    if not -180.0 <= lon <= 180.0:
        raise GeometryError(
            f"{where}: kinh độ {lon} ngoài khoảng [-180, 180] (longitude out of range; GeoJSON order is [lon, lat])"
        )
    if not -90.0 <= lat <= 90.0:
        raise GeometryError(
            f"{where}: vĩ độ {lat} ngoài khoảng [-90, 90] (latitude out of range; GeoJSON order is [lon, lat])"
        )


def geojson_from_shape(geom: BaseGeometry) -> dict[str, Any]:
    """The GeoJSON geometry object of a shapely geometry (plain dicts and lists)."""
    # mapping() returns tuples; a JSON column and json.dumps both want lists, and round trips
    # through the database then compare equal.
    result: dict[str, Any] = _listify(mapping(geom))
    return result


def _listify(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_listify(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _listify(v) for k, v in value.items()}
    return value


def bbox(geom: BaseGeometry) -> BBox:
    """The bounding box ``(min_lon, min_lat, max_lon, max_lat)`` of a non-empty geometry."""
    if geom.is_empty:
        raise GeometryError("Hình học rỗng không có khung bao (an empty geometry has no bbox)")
    min_x, min_y, max_x, max_y = geom.bounds
    return (float(min_x), float(min_y), float(max_x), float(max_y))


def geojson_bbox(obj: Mapping[str, Any], *, repair: bool = False) -> BBox:
    """The bounding box of a GeoJSON geometry, checked as :func:`shape_from_geojson` checks it.

    A Point, the common case of devices and stations, needs no shapely geometry: its checked
    position is its box."""
    if isinstance(obj, Mapping) and obj.get("type") == "Point":
        _check_geometry(obj, "geometry", 0)
        lon, lat = obj["coordinates"][:2]
        return (float(lon), float(lat), float(lon), float(lat))
    return bbox(shape_from_geojson(obj, repair=repair))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS 84 points (degrees)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    # min() guards asin against 1.0000000002 from rounding at antipodal points.
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class PolygonIndex(Generic[K]):
    """Which polygon, if any, contains a point — for one point or millions at once.

    Built from ``(key, polygonal geometry)`` pairs. Multi-polygons are split into their
    parts, each with its own bbox: a ward made of a mainland part and two small islands far
    out at sea would otherwise have a bbox covering mostly water, and every point in that
    water would pay for an exact test. Points on a boundary count as inside (``covers``
    semantics), so a GPS fix exactly on the line between two wards is never "outside"; where
    polygons touch or overlap, the first key given wins, which keeps answers deterministic.
    """

    def __init__(self, items: Sequence[tuple[K, BaseGeometry]]) -> None:
        self._keys: list[K] = []
        parts: list[BaseGeometry] = []
        owners: list[int] = []
        for key, geom in items:
            if geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise GeometryError(
                    f"{key!r}: chỉ lập chỉ mục được đa giác, nhận {geom.geom_type} (only polygons can be indexed)"
                )
            if geom.is_empty:
                raise GeometryError(f"{key!r}: hình học rỗng (empty geometry)")
            self._keys.append(key)
            for part in shapely.get_parts(geom):
                # A copy, because prepare() mutates the geometry and the caller's object is
                # not ours to change.
                part = shapely.from_wkb(shapely.to_wkb(part))
                shapely.prepare(part)
                parts.append(part)
                owners.append(len(self._keys) - 1)
        self._parts = parts
        self._owners = owners
        self._bounds: npt.NDArray[np.float64] = (
            shapely.bounds(np.array(parts, dtype=object)) if parts else np.empty((0, 4), dtype=np.float64)
        )
        self._key_array: npt.NDArray[np.object_] = np.empty(len(self._keys), dtype=object)
        self._key_array[:] = self._keys

    def __len__(self) -> int:
        """The number of keys (not polygon parts) in the index."""
        return len(self._keys)

    @property
    def keys(self) -> list[K]:
        """The keys, in priority order."""
        return list(self._keys)

    @property
    def bounds(self) -> BBox | None:
        """The bbox of everything indexed, or None when the index is empty."""
        if not self._parts:
            return None
        b = self._bounds
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def locate(self, lon: float, lat: float) -> K | None:
        """The key of the polygon that contains ``(lon, lat)``, or None."""
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        for part, owner, (min_x, min_y, max_x, max_y) in zip(
            self._parts, self._owners, self._bounds.tolist(), strict=True
        ):
            if min_x <= lon <= max_x and min_y <= lat <= max_y and shapely.intersects_xy(part, lon, lat):
                return self._keys[owner]
        return None

    def locate_many(self, lons: npt.ArrayLike, lats: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """The key for every point, as an object array (None where no polygon contains it).

        ``lons`` and ``lats`` are 1-D and of equal length. Each polygon part first keeps only
        the still-unresolved points inside its bbox (a few vectorised comparisons), then runs
        the exact test on those alone against a prepared geometry.
        """
        x = np.asarray(lons, dtype=np.float64)
        y = np.asarray(lats, dtype=np.float64)
        if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
            raise ValueError(
                f"kinh độ và vĩ độ phải là hai mảng 1 chiều cùng độ dài (lons and lats must be 1-D "
                f"arrays of equal length), nhận {x.shape} và {y.shape}"
            )
        result: npt.NDArray[np.object_] = np.full(x.shape, None, dtype=object)
        if not self._parts or x.size == 0:
            return result
        # Owner index per point, -1 for none; keys are mapped at the end in one fancy-index,
        # which is much cheaper than writing Python objects part by part.
        owner_of = np.full(x.shape, -1, dtype=np.intp)
        # Points outside the overall bbox (or NaN) can never match: drop them once, up front.
        all_min_x, all_min_y, all_max_x, all_max_y = self.bounds or (0.0, 0.0, 0.0, 0.0)
        todo = np.flatnonzero((x >= all_min_x) & (x <= all_max_x) & (y >= all_min_y) & (y <= all_max_y))
        for part, owner, (min_x, min_y, max_x, max_y) in zip(
            self._parts, self._owners, self._bounds.tolist(), strict=True
        ):
            if todo.size == 0:
                break
            tx, ty = x[todo], y[todo]
            in_box = (tx >= min_x) & (tx <= max_x) & (ty >= min_y) & (ty <= max_y)
            candidates = todo[in_box]
            if candidates.size == 0:
                continue
            hit = shapely.intersects_xy(part, x[candidates], y[candidates])
            owner_of[candidates[hit]] = owner
            # Resolved points leave the working set, so later parts test fewer points.
            todo = np.concatenate((todo[~in_box], candidates[~hit]))
        found = owner_of >= 0
        result[found] = self._key_array[owner_of[found]]
        return result
