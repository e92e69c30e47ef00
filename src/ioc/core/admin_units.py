"""Administrative units with effective dates, the 2025 crosswalk, and point → ward.

On 2025-07-01 Vietnam abolished districts and merged communes. Vinh city (district 412 of
Nghệ An, 33 wards and communes) became six wards of the province: Thành Vinh 16681, Trường
Vinh 16690, Vinh Phú 16702, Vinh Lộc 16708, Cửa Lò 16732 and Vinh Hưng 17920. Data keeps
arriving under both old and new codes, and history is reported under the units of its day,
so every unit here carries ``valid_from``/``valid_to`` and :func:`to_current_ward` maps a
former unit to the ward that absorbed it.

A GSO code alone does not identify a unit: each new ward took over the code of one former
unit (16681 was "Phường Quang Trung" until 2025-06-30 and is "Phường Thành Vinh" since).
Rows therefore have a surrogate id and are unique by ``(code, valid_from)``.

Reference data (MIT, see ``ioc/data/admin_units/PROVENANCE.md``) ships inside the package
and is loaded by :func:`load_reference_units`. The reference holds Nghệ An (40), its 130
units after the reform, former district 412 and its 33 former units — not the other
pre-reform units of the province, which the product does not need.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, JsonDoc
from ioc.core.geo import BBox, PolygonIndex, bbox, shape_from_geojson
from ioc.core.text import fold, strip_accents

if TYPE_CHECKING:
    from ioc.core.db import Database

__all__ = [
    "CITY_WARD_CODES",
    "FORMER_CITY_CODE",
    "LEVELS",
    "PROVINCE_CODE",
    "REFORM_DATE",
    "VN_TZ",
    "AdminUnit",
    "Level",
    "WardCrosswalk",
    "WardInfo",
    "WardLocator",
    "city_wards",
    "crosswalk_rows",
    "forget_ward_locator",
    "get_unit",
    "load_reference_units",
    "to_current_ward",
    "units_at",
    "vn_today",
    "ward_locator",
]

#: The day the 2025 reform took effect; former units are valid up to (excluding) this day.
REFORM_DATE = date(2025, 7, 1)
PROVINCE_CODE = "40"
#: Former "Thành phố Vinh", a district-level unit until the reform.
FORMER_CITY_CODE = "412"
#: The six wards that replaced Vinh city, in code order.
CITY_WARD_CODES: tuple[str, ...] = ("16681", "16690", "16702", "16708", "16732", "17920")

# Vietnam has had no daylight saving time since 1975: a fixed offset is exact and, unlike
# ZoneInfo, does not depend on the host having tzdata installed.
VN_TZ = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")

Level = Literal["province", "district", "ward", "commune"]
LEVELS: tuple[str, ...] = get_args(Level)

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Thành phố ", "City"),
    ("Tỉnh ", "Province"),
    ("Phường ", "Ward"),
    ("Xã ", "Commune"),
)


def vn_today() -> date:
    """Today's date in Vietnam (UTC+7), the day that decides which units are in force."""
    return datetime.now(VN_TZ).date()


class AdminUnit(Base):
    """A province, district, ward or commune over the period it existed."""

    __tablename__ = "admin_units"
    __table_args__ = (
        UniqueConstraint("code", "valid_from"),
        # NULLs are distinct in a unique constraint on both databases, so "since unknown"
        # rows need their own partial index to stay one per code.
        Index(
            "uq_admin_units_code_open_start",
            "code",
            unique=True,
            sqlite_where=text("valid_from IS NULL"),
            postgresql_where=text("valid_from IS NULL"),
        ),
        CheckConstraint("level IN ('province', 'district', 'ward', 'commune')", name="level"),
        CheckConstraint("valid_to IS NULL OR valid_from IS NULL OR valid_from < valid_to", name="period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: GSO code; shared by a former unit and the 2025 ward that took it over.
    code: Mapped[str] = mapped_column(String(16), index=True)
    #: Short name without the kind: "Thành Vinh".
    name: Mapped[str] = mapped_column(String(200))
    #: Official name with the kind: "Phường Thành Vinh".
    full_name: Mapped[str] = mapped_column(String(200))
    #: English display name: "Thanh Vinh Ward".
    name_en: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(String(16), index=True)
    #: First day in force; NULL when it predates what the reference records.
    valid_from: Mapped[date | None] = mapped_column(Date)
    #: First day no longer in force (exclusive end); NULL while still in force.
    valid_to: Mapped[date | None] = mapped_column(Date)
    #: GeoJSON geometry (WGS 84), kept exactly as published.
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    min_lon: Mapped[float | None] = mapped_column(Float)
    min_lat: Mapped[float | None] = mapped_column(Float)
    max_lon: Mapped[float | None] = mapped_column(Float)
    max_lat: Mapped[float | None] = mapped_column(Float)
    #: One of the six wards of the former Vinh area or one of its 33 former units (not the
    #: province or district 412, which contain the city rather than being part of it).
    in_city: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)
    area_km2: Mapped[float | None] = mapped_column(Float)

    def in_force(self, at: date) -> bool:
        """Whether the unit existed on ``at``."""
        return (self.valid_from is None or self.valid_from <= at) and (self.valid_to is None or at < self.valid_to)

    def __repr__(self) -> str:
        return f"AdminUnit({self.code!r}, {self.full_name!r}, {self.valid_from}..{self.valid_to})"


class WardCrosswalk(Base):
    """Which 2025 unit absorbed a former unit."""

    __tablename__ = "admin_unit_crosswalk"
    __table_args__ = (UniqueConstraint("old_code", "effective"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    old_code: Mapped[str] = mapped_column(String(16))
    old_name: Mapped[str] = mapped_column(String(200))
    new_code: Mapped[str] = mapped_column(String(16), index=True)
    new_name: Mapped[str] = mapped_column(String(200))
    #: The day the change took effect (2025-07-01 for the 2025 reform).
    effective: Mapped[date] = mapped_column(Date)


# --- reference data shipped in the package -------------------------------------------------


@dataclass(frozen=True)
class CrosswalkRow:
    """One line of the shipped crosswalk of the 33 former units of Vinh."""

    old_code: str
    old_name: str
    old_level: str
    new_code: str
    new_name: str


def _data_dir() -> Traversable:
    return resources.files("ioc") / "data" / "admin_units"


def _read_csv(name: str) -> list[dict[str, str]]:
    content = (_data_dir() / name).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(content)))


@functools.cache
def crosswalk_rows() -> tuple[CrosswalkRow, ...]:
    """The shipped crosswalk: the 33 former units of Vinh and the 2025 ward of each."""
    return tuple(
        CrosswalkRow(
            old_code=r["old_code_gso"].strip(),
            old_name=r["old_name"].strip(),
            old_level="ward" if r["old_type"].strip() == "Phường" else "commune",
            new_code=r["new_ward_code"].strip(),
            new_name=r["new_ward_2025_07"].strip(),
        )
        for r in _read_csv("vinh-old-units-to-2025-wards.csv")
    )


@functools.cache
def _old_to_new() -> dict[str, str]:
    return {r.old_code: r.new_code for r in crosswalk_rows()}


@functools.cache
def _current_codes() -> frozenset[str]:
    return frozenset(r["code"].strip() for r in _read_csv("nghe-an-units-2025-07.csv")) | {PROVINCE_CODE}


@functools.cache
def _features() -> dict[str, dict[str, Any]]:
    """The shipped GeoJSON features (six wards and the province), by code."""
    features: dict[str, dict[str, Any]] = {}
    for entry in _data_dir().iterdir():
        if entry.name.endswith(".geojson"):
            collection = json.loads(entry.read_text(encoding="utf-8"))
            for feature in collection["features"]:
                features[str(feature["properties"]["code"])] = feature
    return features


def _split_name(full_name: str) -> tuple[str, str]:
    """("Phường Đông Vĩnh") → ("Đông Vĩnh", "Dong Vinh Ward")."""
    for prefix, kind_en in _PREFIXES:
        if full_name.startswith(prefix):
            short = full_name[len(prefix) :]
            return short, f"{strip_accents(short)} {kind_en}"
    return full_name, strip_accents(full_name)


def _unit_row(
    code: str,
    full_name: str,
    level: str,
    parent_code: str | None,
    valid_from: date | None,
    valid_to: date | None,
    in_city: bool,
) -> dict[str, Any]:
    name, name_en = _split_name(full_name)
    row: dict[str, Any] = {
        "code": code,
        "name": name,
        "full_name": full_name,
        "name_en": name_en,
        "level": level,
        "parent_code": parent_code,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "in_city": in_city,
        "geometry": None,
        "min_lon": None,
        "min_lat": None,
        "max_lon": None,
        "max_lat": None,
        "area_km2": None,
    }
    # Only 2025 units have published boundaries; a former unit sharing a code must not
    # inherit the geometry of the larger ward that replaced it.
    feature = _features().get(code)
    if feature is not None and (valid_from is None or valid_from >= REFORM_DATE) and valid_to is None:
        props = feature["properties"]
        geom = shape_from_geojson(feature["geometry"])
        row["geometry"] = feature["geometry"]
        row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"] = bbox(geom)
        row["name"] = props.get("name") or name
        row["name_en"] = props.get("fullNameEn") or name_en
        area = props.get("areaKm2")
        row["area_km2"] = float(area) if area is not None else None
    return row


def reference_units() -> list[dict[str, Any]]:
    """Column values of every reference unit, parents before children."""
    rows = [_unit_row(PROVINCE_CODE, "Tỉnh Nghệ An", "province", None, None, None, False)]
    for r in _read_csv("nghe-an-units-2025-07.csv"):
        code, full_name = r["code"].strip(), r["full_name"].strip()
        level = "ward" if full_name.startswith("Phường") else "commune"
        rows.append(
            _unit_row(code, full_name, level, r["province_code"].strip(), REFORM_DATE, None, code in CITY_WARD_CODES)
        )
    rows.append(_unit_row(FORMER_CITY_CODE, "Thành phố Vinh", "district", PROVINCE_CODE, None, REFORM_DATE, False))
    for c in crosswalk_rows():
        rows.append(_unit_row(c.old_code, c.old_name, c.old_level, FORMER_CITY_CODE, None, REFORM_DATE, True))
    return rows


def load_reference_units(session: Session) -> int:
    """Insert the shipped units and crosswalk rows that are missing; return how many were inserted.

    Idempotent: rows are matched on ``(code, valid_from)`` and ``(old_code, effective)``, and
    existing rows are left as they are, so a second run inserts nothing. Flushes but does not
    commit: the caller owns the transaction.
    """
    existing_units = {
        (code, valid_from) for code, valid_from in session.execute(select(AdminUnit.code, AdminUnit.valid_from))
    }
    inserted = 0
    for row in reference_units():
        if (row["code"], row["valid_from"]) not in existing_units:
            session.add(AdminUnit(**row))
            inserted += 1
    if inserted:
        _EMPTY.clear()  # locators built before the wards were there
    existing_links = {
        (old, eff) for old, eff in session.execute(select(WardCrosswalk.old_code, WardCrosswalk.effective))
    }
    for c in crosswalk_rows():
        if (c.old_code, REFORM_DATE) not in existing_links:
            session.add(
                WardCrosswalk(
                    old_code=c.old_code,
                    old_name=c.old_name,
                    new_code=c.new_code,
                    new_name=c.new_name,
                    effective=REFORM_DATE,
                )
            )
            inserted += 1
    session.flush()
    return inserted


# --- queries ---------------------------------------------------------------------------------


def units_at(
    session: Session,
    at: date,
    level: str | None = None,
    in_city: bool | None = None,
    q: str | None = None,
) -> list[AdminUnit]:
    """The units in force on ``at``, ordered by code, optionally filtered.

    ``q`` is matched accent-insensitively against the full name and the English name, and
    as a prefix of the code ("nghi thuy" finds "Phường Nghi Thuỷ").
    """
    stmt = select(AdminUnit).where(
        or_(AdminUnit.valid_from.is_(None), AdminUnit.valid_from <= at),
        or_(AdminUnit.valid_to.is_(None), AdminUnit.valid_to > at),
    )
    if level is not None:
        stmt = stmt.where(AdminUnit.level == level)
    if in_city is not None:
        stmt = stmt.where(AdminUnit.in_city.is_(in_city))
    units = list(session.scalars(stmt.order_by(AdminUnit.code, AdminUnit.valid_from)))
    folded = fold(q or "")
    if folded:
        # Folding is done in Python rather than SQL: neither SQLite nor a stock PostgreSQL
        # can strip Vietnamese diacritics, and the table holds a few hundred rows at most.
        units = [
            u
            for u in units
            if folded in fold(u.full_name) or folded in fold(u.name_en or "") or u.code.startswith(folded)
        ]
    return units


def get_unit(session: Session, code: str, at: date | None = None) -> AdminUnit | None:
    """The unit with ``code`` in force on ``at``.

    Without ``at``: the version in force today, else the most recent former version, so that
    a code of a unit abolished in 2025 still resolves to what it was.
    """
    versions = list(session.scalars(select(AdminUnit).where(AdminUnit.code == code.strip())))
    if at is not None:
        return next((u for u in versions if u.in_force(at)), None)
    today = vn_today()
    current = next((u for u in versions if u.in_force(today)), None)
    if current is not None or not versions:
        return current
    return max(versions, key=lambda u: u.valid_to or date.max)


def city_wards(session: Session) -> list[AdminUnit]:
    """The six wards of the former Vinh area that are in force, in code order."""
    stmt = (
        select(AdminUnit)
        .where(AdminUnit.in_city.is_(True), AdminUnit.level == "ward", AdminUnit.valid_to.is_(None))
        .order_by(AdminUnit.code)
    )
    return list(session.scalars(stmt))


def crosswalk(session: Session) -> list[WardCrosswalk]:
    """The stored old → new rows, ordered by old code."""
    return list(session.scalars(select(WardCrosswalk).order_by(WardCrosswalk.effective, WardCrosswalk.old_code)))


def to_current_ward(code: str, at: date | None = None) -> str | None:
    """The code of the unit in force now that covers what ``code`` designated on ``at``.

    ``at`` is the date the data was recorded. Before 2025-07-01 a code names a former unit,
    even when a 2025 ward reuses it (16681 was Quang Trung then), and is mapped through the
    crosswalk. From that day on, or without a date, a current code maps to itself; a former
    code still sent by a legacy system after the reform is mapped through the crosswalk too.
    Returns None for a code the reference does not know on that date (including former units
    outside Vinh, which the reference does not hold).
    """
    code = code.strip()
    if at is not None and at < REFORM_DATE:
        return _old_to_new().get(code)
    if code in _current_codes():
        return code
    return _old_to_new().get(code)


# --- point → ward ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WardInfo:
    """What an answer about a ward shows: its code and names."""

    code: str
    name: str
    full_name: str
    name_en: str | None


class WardLocator:
    """Point → ward for the six city wards, built once from their stored boundaries.

    Coordinates are ``(lat, lon)`` in this API, as people say them; GeoJSON and the
    underlying :class:`~ioc.core.geo.PolygonIndex` use ``(lon, lat)``.
    """

    def __init__(self, wards: Sequence[tuple[WardInfo, BaseGeometry]], geojson: dict[str, Any] | None = None) -> None:
        self.wards: dict[str, WardInfo] = {info.code: info for info, _ in wards}
        self._index: PolygonIndex[str] = PolygonIndex([(info.code, geom) for info, geom in wards])
        #: FeatureCollection of the wards, for the map; built by :meth:`from_session`.
        self.geojson: dict[str, Any] = geojson or {"type": "FeatureCollection", "features": []}

    @classmethod
    def from_session(cls, session: Session) -> WardLocator:
        """A locator over the city wards stored in the database."""
        wards: list[tuple[WardInfo, BaseGeometry]] = []
        features: list[dict[str, Any]] = []
        for unit in city_wards(session):
            if unit.geometry is None:
                continue
            info = WardInfo(unit.code, unit.name, unit.full_name, unit.name_en)
            wards.append((info, shape_from_geojson(unit.geometry)))
            features.append(
                {
                    "type": "Feature",
                    "id": unit.code,
                    "properties": {
                        "code": unit.code,
                        "name": unit.name,
                        "full_name": unit.full_name,
                        "name_en": unit.name_en,
                        "area_km2": unit.area_km2,
                    },
                    "geometry": unit.geometry,
                }
            )
        return cls(wards, {"type": "FeatureCollection", "features": features})

    def __len__(self) -> int:
        """The number of wards."""
        return len(self._index)

    @property
    def bounds(self) -> BBox | None:
        """The bbox ``(min_lon, min_lat, max_lon, max_lat)`` of all wards; None without wards."""
        return self._index.bounds

    def locate(self, lat: float, lon: float) -> str | None:
        """The code of the ward containing the point, or None outside the six wards."""
        return self._index.locate(lon, lat)

    def locate_many(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """Ward codes for many points (object array, None outside); see ``PolygonIndex``."""
        return self._index.locate_many(lons, lats)


# Keyed by the Database object itself (weakly, so a disposed test database does not linger):
# two databases can share a URL across tests, and a locator must never outlive its data.
_LOCATORS: weakref.WeakKeyDictionary[Database, WardLocator] = weakref.WeakKeyDictionary()
# A locator with no wards, and when it was built: kept EMPTY_LOCATOR_SECONDS, so that code
# locating many points before the reference data is loaded does not read the table each time.
_EMPTY: weakref.WeakKeyDictionary[Database, tuple[float, WardLocator]] = weakref.WeakKeyDictionary()
EMPTY_LOCATOR_SECONDS = 30.0


def ward_locator(db: Database, session: Session | None = None) -> WardLocator:
    """The cached :class:`WardLocator` of ``db``, built on first use.

    A locator with no wards (reference data not loaded yet) is kept only EMPTY_LOCATOR_SECONDS,
    so that it is rebuilt once the data is there. Code inside a transaction passes its
    ``session``, so that a first build reads through it instead of taking a second connection.
    """
    locator = _LOCATORS.get(db)
    if locator is not None:
        return locator
    empty = _EMPTY.get(db)
    if empty is not None and time.monotonic() - empty[0] < EMPTY_LOCATOR_SECONDS:
        return empty[1]
    if session is not None:
        locator = WardLocator.from_session(session)
    else:
        with db.session() as own:
            locator = WardLocator.from_session(own)
    if len(locator):
        _LOCATORS[db] = locator
        _EMPTY.pop(db, None)
    else:
        _EMPTY[db] = (time.monotonic(), locator)
    return locator


def forget_ward_locator(db: Database) -> None:
    """Drop the cached locator of ``db`` (after ward boundaries change)."""
    _LOCATORS.pop(db, None)
    _EMPTY.pop(db, None)
