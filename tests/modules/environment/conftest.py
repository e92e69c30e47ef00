"""Fixtures of the environment tests: an app with the context, reports, kpi and environment modules,
the event consumers driven by hand (no background threads), and helpers to feed entity changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from ioc.core.admin_units import city_wards
from ioc.core.db import Database
from ioc.core.events import EventCursor, latest_event_id
from ioc.core.geo import shape_from_geojson
from ioc.modules.environment.service import Runtime
from ioc.modules.environment.settings import EnvironmentSettings
from ioc.modules.environment.topics import EntityChange
from ioc.settings import Settings

MODULES = ["context", "reports", "kpi", "environment"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with the modules these tests need (others' work does not interfere)."""
    return settings.model_copy(update={"modules": MODULES})


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app without its lifespan: the tests drive the durable consumers with :func:`drain`."""
    test_client = TestClient(app)
    yield test_client
    test_client.close()
    app.state.db.dispose()


def drain(app: FastAPI, rounds: int = 30) -> None:
    """Run the durable consumers until every one has caught up (fails on a consumer error)."""
    bus = app.state.bus
    db: Database = app.state.db
    for _ in range(rounds):
        bus.consume_once()
        with db.session() as s:
            latest = latest_event_id(s)
            cursors = list(s.scalars(select(EventCursor)))
        failed = [c for c in cursors if c.failures]
        assert not failed, [(c.name, c.last_error) for c in failed]
        if cursors and all(c.last_id >= latest for c in cursors):
            return
    raise AssertionError("the consumers did not catch up")


@pytest.fixture
def rt(db: Database) -> Runtime:
    return Runtime(EnvironmentSettings(), db=db)


@pytest.fixture
def points(db: Database) -> dict[str, tuple[float, float]]:
    """(lat, lon) inside each city ward."""
    with db.session() as s:
        out = {}
        for unit in city_wards(s):
            assert unit.geometry is not None
            p = shape_from_geojson(unit.geometry).representative_point()
            out[unit.code] = (p.y, p.x)
    return out


def hour(k: int, base: datetime | None = None) -> datetime:
    """An hour end ``k`` hours after a fixed base (2025-09-10 00:00 UTC = 07:00 in Vinh)."""
    return (base or datetime(2025, 9, 10, tzinfo=UTC)) + timedelta(hours=k)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def air_change(
    entity_id: str,
    at: datetime,
    values: dict[str, float],
    *,
    unit: str = "GQ",
    lat: float | None = None,
    lon: float | None = None,
    created: bool = False,
) -> EntityChange:
    """An AirQualityObserved change as the context module publishes it (normalized attributes)."""
    attrs: dict[str, Any] = {
        name: {"type": "Property", "value": v, "unitCode": unit, "observedAt": iso(at)} for name, v in values.items()
    }
    if lat is not None and lon is not None:
        attrs["location"] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    return EntityChange(
        tenant="",
        id=entity_id,
        type=["AirQualityObserved"],
        type_iris=["https://uri.etsi.org/ngsi-ld/default-context/AirQualityObserved"],
        attributes=attrs,
        at=at,
    )


def simple_change(entity_id: str, type_: str, at: datetime, **attrs: Any) -> EntityChange:
    """A change of another type (FloodMonitoring, WeatherObserved, WaterQualityObserved)."""
    body: dict[str, Any] = {}
    for name, value in attrs.items():
        if name == "location":
            lat, lon = value
            body[name] = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
        else:
            body[name] = {"type": "Property", "value": value, "observedAt": iso(at)}
    return EntityChange(tenant="", id=entity_id, type=[type_], attributes=body, at=at)


Feed = Callable[[EntityChange], None]


@pytest.fixture
def feed(db: Database, rt: Runtime) -> Feed:
    """Hand one entity change to the module's listener, in its own transaction."""
    from ioc.modules.environment.listeners import handle_entity

    def run(change: EntityChange) -> None:
        with db.session() as s:
            handle_entity(s, rt, change)

    return run
