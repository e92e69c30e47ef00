"""Administrative units: reference data, dates of validity, the 2025 crosswalk, point → ward.

The ``db`` fixture is a fresh migrated database (SQLite and PostgreSQL) on which
``load_reference_units`` has already run.
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from typing import Any

import numpy as np
import pytest
import shapely
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ioc.core import admin_units as au
from ioc.core.admin_units import AdminUnit, WardCrosswalk
from ioc.core.db import Database
from ioc.core.geo import shape_from_geojson

BEFORE = date(2025, 6, 30)
REFORM = date(2025, 7, 1)
SIX = ["16681", "16690", "16702", "16708", "16732", "17920"]
SHARED_CODES = SIX  # each new ward took over the code of one former unit

OLD_UNITS = {
    "16663": "16681", "16666": "16702", "16669": "16681", "16670": "17920", "16672": "16681",
    "16673": "16690", "16675": "16690", "16678": "16681", "16681": "16681", "16690": "16690",
    "16693": "16690", "16699": "16690", "16702": "16702", "16705": "17920", "16708": "16708",
    "16711": "16690", "16714": "16690", "16717": "16732", "16720": "16732", "16723": "16732",
    "16726": "16732", "16729": "16732", "16732": "16732", "16735": "16732", "17902": "16708",
    "17905": "16708", "17908": "17920", "17914": "16702", "17917": "16708", "17920": "17920",
    "17923": "16702", "17926": "16708", "18013": "16681",
}  # fmt: skip


def _count(db: Database, model: type[Any]) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _feature(code: str) -> dict[str, Any]:
    folder = resources.files("ioc") / "data" / "admin_units"
    entry = next(e for e in folder.iterdir() if e.name.startswith(f"{code}_") and e.name.endswith(".geojson"))
    feature: dict[str, Any] = json.loads(entry.read_text(encoding="utf-8"))["features"][0]
    return feature


# --- reference data --------------------------------------------------------------------------


def test_reference_data_ships_in_the_package() -> None:
    folder = resources.files("ioc") / "data" / "admin_units"
    names = {e.name for e in folder.iterdir()}
    assert {"PROVENANCE.md", "LICENSE_MIT_thanglequoc.txt", "nghe-an-units-2025-07.csv"} <= names
    assert {"vinh-old-units-to-2025-wards.csv", "40_nghe_an_province.geojson"} <= names
    assert sum(n.endswith(".geojson") for n in names) == 7


def test_reference_units_content() -> None:
    rows = au.reference_units()
    assert len(rows) == 1 + 130 + 1 + 33
    keys = [(r["code"], r["valid_from"]) for r in rows]
    assert len(set(keys)) == len(keys)
    by_level: dict[str, int] = {}
    for r in rows:
        by_level[r["level"]] = by_level.get(r["level"], 0) + 1
    assert by_level["province"] == 1
    assert by_level["district"] == 1
    assert by_level["ward"] + by_level["commune"] == 163
    assert sum(r["in_city"] for r in rows) == 6 + 33
    assert au.crosswalk_rows()[0].old_code == "16663"
    assert {c.old_code: c.new_code for c in au.crosswalk_rows()} == OLD_UNITS


def test_load_is_idempotent(db: Database) -> None:
    expected_units = len(au.reference_units())
    assert _count(db, AdminUnit) == expected_units
    assert _count(db, WardCrosswalk) == 33
    with db.session() as s:
        assert au.load_reference_units(s) == 0
    assert _count(db, AdminUnit) == expected_units
    assert _count(db, WardCrosswalk) == 33


def test_load_fills_in_what_is_missing(db: Database) -> None:
    with db.session() as s:
        s.execute(delete(AdminUnit).where(AdminUnit.code == "16663"))
        s.execute(delete(AdminUnit).where(AdminUnit.code == "16681", AdminUnit.valid_from.is_not(None)))
        s.execute(delete(WardCrosswalk).where(WardCrosswalk.old_code == "16663"))
    with db.session() as s:
        assert au.load_reference_units(s) == 3
    with db.session() as s:
        assert au.get_unit(s, "16663", BEFORE) is not None
        thanh_vinh = au.get_unit(s, "16681", REFORM)
        assert thanh_vinh is not None
        assert thanh_vinh.full_name == "Phường Thành Vinh"
    assert _count(db, WardCrosswalk) == 33


def _insert(db: Database, **columns: Any) -> None:
    with db.session() as s:
        s.add(AdminUnit(**columns))
        s.flush()


def test_a_unit_cannot_be_stored_twice_for_the_same_start(db: Database) -> None:
    # Both the (code, valid_from) constraint and the partial index for unknown starts hold.
    for valid_from in (None, REFORM):
        with pytest.raises(IntegrityError):
            _insert(db, code="16681", name="x", full_name="Phường x", level="ward", valid_from=valid_from)
    assert _count(db, AdminUnit) == len(au.reference_units())


def test_level_is_constrained(db: Database) -> None:
    with pytest.raises(IntegrityError):
        _insert(db, code="99999", name="x", full_name="x", level="hamlet", valid_from=REFORM)


# --- queries by date -------------------------------------------------------------------------


def test_before_the_reform_the_city_is_its_33_former_units(db: Database) -> None:
    with db.session() as s:
        units = au.units_at(s, BEFORE, in_city=True)
        assert sorted(u.code for u in units) == sorted(OLD_UNITS)
        assert all(u.parent_code == "412" and u.valid_to == REFORM for u in units)
        assert {u.level for u in units} == {"ward", "commune"}
        names = {u.code: u.full_name for u in units}
        assert names["16663"] == "Phường Đông Vĩnh"
        assert names["16681"] == "Phường Quang Trung"
        assert names["17920"] == "Xã Nghi Kim"
        district = au.units_at(s, BEFORE, level="district")
        assert [(u.code, u.full_name) for u in district] == [("412", "Thành phố Vinh")]


def test_from_the_reform_the_city_is_six_wards(db: Database) -> None:
    with db.session() as s:
        for day in (REFORM, date(2026, 1, 1)):
            units = au.units_at(s, day, in_city=True)
            assert [u.code for u in units] == SIX
            assert all(u.level == "ward" and u.parent_code == "40" for u in units)
        assert au.units_at(s, REFORM, level="district") == []
        assert len(au.units_at(s, REFORM, level="ward")) + len(au.units_at(s, REFORM, level="commune")) == 130
        assert [u.code for u in au.units_at(s, REFORM, level="province")] == ["40"]


def test_search_folds_accents(db: Database) -> None:
    with db.session() as s:
        assert [u.code for u in au.units_at(s, BEFORE, q="dong vinh")] == ["16663"]
        assert [u.code for u in au.units_at(s, BEFORE, q="NGHI THUY")] == ["16717"]
        assert [u.code for u in au.units_at(s, REFORM, q="Cua Lo")] == ["16732"]
        assert [u.code for u in au.units_at(s, REFORM, q="vinh loc ward")] == ["16708"]  # English name
        assert [u.code for u in au.units_at(s, REFORM, q="1792")] == ["17920"]  # code prefix
        assert len(au.units_at(s, REFORM, q="  ")) == len(au.units_at(s, REFORM))
        assert au.units_at(s, REFORM, q="Nui Quyet") == []


def test_get_unit_tells_shared_codes_apart_by_date(db: Database) -> None:
    with db.session() as s:
        old = au.get_unit(s, "16681", BEFORE)
        new = au.get_unit(s, "16681", REFORM)
        assert old is not None
        assert new is not None
        assert old.full_name == "Phường Quang Trung"
        assert old.geometry is None  # the larger new ward's boundary is not the old unit's
        assert new.full_name == "Phường Thành Vinh"
        assert new.geometry is not None
        today = au.get_unit(s, "16681")
        assert today is not None
        assert today.id == new.id
        # A former unit without a date resolves to what it was.
        former = au.get_unit(s, "16663")
        assert former is not None
        assert former.valid_to == REFORM
        assert au.get_unit(s, "16663", REFORM) is None
        assert au.get_unit(s, "99999") is None
        assert au.get_unit(s, " 40 ") is not None


def test_city_wards_carry_the_published_boundaries(db: Database) -> None:
    with db.session() as s:
        wards = au.city_wards(s)
        assert [w.code for w in wards] == SIX
        for ward in wards:
            feature = _feature(ward.code)
            # kept exactly as published, not simplified
            assert ward.geometry == feature["geometry"]
            assert ward.area_km2 == feature["properties"]["areaKm2"]
            assert ward.name == feature["properties"]["name"]
            assert ward.name_en == feature["properties"]["fullNameEn"]
            geom = shape_from_geojson(feature["geometry"])
            assert (ward.min_lon, ward.min_lat, ward.max_lon, ward.max_lat) == pytest.approx(geom.bounds)
        names = [w.full_name for w in wards]
        assert names == [
            "Phường Thành Vinh",
            "Phường Trường Vinh",
            "Phường Vinh Phú",
            "Phường Vinh Lộc",
            "Phường Cửa Lò",
            "Phường Vinh Hưng",
        ]


def test_crosswalk_rows_are_stored(db: Database) -> None:
    with db.session() as s:
        rows = au.crosswalk(s)
    assert {r.old_code: r.new_code for r in rows} == OLD_UNITS
    assert all(r.effective == REFORM for r in rows)
    dong_vinh = next(r for r in rows if r.old_code == "16663")
    assert (dong_vinh.old_name, dong_vinh.new_name) == ("Phường Đông Vĩnh", "Phường Thành Vinh")


# --- old code → current ward -----------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), sorted(OLD_UNITS.items()))
def test_every_former_unit_maps_to_its_ward(old: str, new: str) -> None:
    assert au.to_current_ward(old, BEFORE) == new
    assert au.to_current_ward(old, date(2019, 1, 1)) == new


def test_to_current_ward_with_dates() -> None:
    assert au.to_current_ward("16663", BEFORE) == "16681"
    # a legacy system still sending a former code after the reform
    assert au.to_current_ward("16663", REFORM) == "16681"
    assert au.to_current_ward("16663") == "16681"
    for code in SHARED_CODES:
        # dated before the reform it is the former unit, after it the ward itself
        assert au.to_current_ward(code, BEFORE) == OLD_UNITS[code]
        assert au.to_current_ward(code, REFORM) == code
        assert au.to_current_ward(code) == code
    # a current commune outside the city is its own current unit…
    assert au.to_current_ward("16738", REFORM) == "16738"
    # …but before the reform the code is not one the reference knows
    assert au.to_current_ward("16738", BEFORE) is None
    assert au.to_current_ward("99999") is None
    assert au.to_current_ward("", REFORM) is None
    assert au.to_current_ward(" 16663 ", BEFORE) == "16681"


def test_records_under_former_units_aggregate_to_the_six_wards() -> None:
    # One record per former unit, dated before the reform: the totals per ward are the
    # number of former units each ward absorbed.
    totals: dict[str | None, int] = {}
    for old in OLD_UNITS:
        ward = au.to_current_ward(old, BEFORE)
        totals[ward] = totals.get(ward, 0) + 1
    assert totals == {"16681": 6, "16690": 7, "16702": 4, "16708": 5, "16732": 7, "17920": 4}
    assert sum(totals.values()) == 33


# --- point → ward ----------------------------------------------------------------------------


def test_locator_finds_each_ward_from_a_point_inside_it(db: Database) -> None:
    locator = au.ward_locator(db)
    assert len(locator) == 6
    assert sorted(locator.wards) == SIX
    with db.session() as s:
        for ward in au.city_wards(s):
            assert ward.geometry is not None
            point = shapely.point_on_surface(shape_from_geojson(ward.geometry))
            assert locator.locate(point.y, point.x) == ward.code


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (18.80, 105.90),  # in the sea, east of Cửa Lò, inside Cửa Lò's bbox
        (21.03, 105.85),  # Hà Nội
        (18.35, 105.90),  # Hà Tĩnh
        (105.68, 18.68),  # lat/lon swapped
        (0.0, 0.0),
    ],
)
def test_points_outside_the_city(db: Database, lat: float, lon: float) -> None:
    assert au.ward_locator(db).locate(lat, lon) is None


def test_known_places(db: Database) -> None:
    locator = au.ward_locator(db)
    assert locator.locate(18.6796, 105.6813) == "16681"  # city centre, map default
    assert locator.locate(18.8100, 105.7150) == "16732"  # Cửa Lò beach


def test_bulk_locate_agrees_with_one_by_one(db: Database) -> None:
    locator = au.ward_locator(db)
    rng = np.random.default_rng(42)
    lats = rng.uniform(18.63, 18.84, 2000)
    lons = rng.uniform(105.62, 105.98, 2000)
    bulk = locator.locate_many(lats, lons)
    assert list(bulk) == [locator.locate(la, lo) for la, lo in zip(lats, lons, strict=True)]
    assert set(bulk) == {*SIX, None}


def test_locator_is_cached_per_database(db: Database) -> None:
    first = au.ward_locator(db)
    assert au.ward_locator(db) is first
    au.forget_ward_locator(db)
    rebuilt = au.ward_locator(db)
    assert rebuilt is not first
    assert rebuilt.locate(18.6796, 105.6813) == "16681"


def test_locator_geojson_lists_the_six_wards(db: Database) -> None:
    collection = au.ward_locator(db).geojson
    assert collection["type"] == "FeatureCollection"
    assert [f["properties"]["code"] for f in collection["features"]] == SIX
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in collection["features"])
