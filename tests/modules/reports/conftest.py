"""Fixtures of the reports tests: points inside each ward, helpers to create and act on reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ioc.core.admin_units import city_wards
from ioc.core.db import Database
from ioc.core.geo import shape_from_geojson
from ioc.settings import Settings

#: A point well outside the six wards (Hà Nội).
OUTSIDE = (21.0285, 105.8542)
#: Personal data used by the privacy tests: must never appear in a public answer.
SECRET_NAME = "Nguyễn Thị Bí Mật"
SECRET_PHONE = "0912345678"
SECRET_EMAIL = "bi.mat.reporter@example.vn"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with only this module loaded (other modules' work does not interfere)."""
    return settings.model_copy(update={"modules": ["reports"]})


@pytest.fixture
def points(db: Database) -> dict[str, tuple[float, float]]:
    """(lat, lon) inside each city ward."""
    with db.session() as s:
        out = {}
        for unit in city_wards(s):
            p = shape_from_geojson(unit.geometry).representative_point()
            out[unit.code] = (p.y, p.x)
    return out


CreateFn = Callable[..., dict[str, Any]]


@pytest.fixture
def create(client: TestClient, points: dict[str, tuple[float, float]]) -> CreateFn:
    """POST a report as an anonymous citizen (JSON); returns the answer."""

    def make(ward: str = "16681", category: str = "rac-thai", expect: int = 201, **extra: Any) -> dict[str, Any]:
        lat, lon = points[ward]
        body: dict[str, Any] = {"category": category, "description": "Rác tồn đọng ở đầu ngõ", "lat": lat, "lon": lon}
        body.update(extra)
        r = client.post("/api/v1/reports", json=body)
        assert r.status_code == expect, r.text
        result: dict[str, Any] = r.json()
        return result

    return make
