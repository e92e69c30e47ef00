"""Stations known from their NGSI-LD entities, and the dialect-aware upsert the module's tables use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ioc.core.admin_units import WardLocator
from ioc.core.db import utcnow

from .models import EnvStation

KINDS = ("air", "water", "gauge", "rain")


def upsert(
    session: Session,
    table: Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    update: Mapping[str, Any] | None = None,
) -> None:
    """INSERT ``values``; on a conflict on ``keys`` SET ``update`` (column -> value or SQL expression,
    e.g. ``{"total": table.c.total + 5}`` to accumulate). Without ``update`` a conflicting row is left
    as it is. One statement on SQLite and PostgreSQL.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(dict(values))
        stmt: Any = (
            pg.on_conflict_do_update(index_elements=list(keys), set_=dict(update))
            if update
            else pg.on_conflict_do_nothing(index_elements=list(keys))
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table).values(dict(values))
        stmt = (
            lite.on_conflict_do_update(index_elements=list(keys), set_=dict(update))
            if update
            else lite.on_conflict_do_nothing(index_elements=list(keys))
        )
    else:  # pragma: no cover - the product runs on SQLite and PostgreSQL
        stmt = insert(table).values(dict(values))
    session.execute(stmt)


def short_name(entity_id: str) -> str:
    """A readable fallback name from an entity id (``urn:ngsi-ld:AirQualityObserved:hs1`` -> ``hs1``)."""
    return entity_id.rsplit(":", 1)[-1] or entity_id


_PLACE = select(EnvStation.lat, EnvStation.lon, EnvStation.name).where(
    EnvStation.tenant == bindparam("tenant"), EnvStation.entity_id == bindparam("entity_id")
)


def already_placed(session: Session, tenant: str, entity_id: str, name: str | None, lat: float, lon: float) -> bool:
    """Whether the station of ``entity_id`` exists at (lat, lon) with this name (when one is given):
    a column read, much cheaper than loading the station, for entities that re-send their place
    (a Core statement on the session's connection: run once per event, the ORM's own execution
    path would cost several times the read)."""
    row = session.connection().execute(_PLACE, {"tenant": tenant, "entity_id": entity_id}).first()
    return row is not None and (row.lat, row.lon) == (lat, lon) and (not name or row.name == name[:200])


def ensure_station(
    session: Session,
    *,
    tenant: str,
    entity_id: str,
    kind: str,
    seen_at: datetime | None,
    locator: WardLocator | None,
    name: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
) -> EnvStation:
    """The station of ``entity_id`` (created on first sight), with its name, place and ward kept current.

    ``seen_at`` is the time of the reading that brought it; None when only its place or name came
    (an entity registered before it reports)."""
    stmt = select(EnvStation).where(EnvStation.tenant == tenant, EnvStation.entity_id == entity_id)
    station = session.scalar(stmt)
    if station is None:
        upsert(
            session,
            EnvStation.__table__,  # type: ignore[arg-type]
            {
                "tenant": tenant,
                "entity_id": entity_id,
                "kind": kind,
                "name": (name or short_name(entity_id))[:200],
                "created_at": seen_at or utcnow(),
                "alert_level": 0,
                "hysteresis_m": 0.1,
            },
            ["tenant", "entity_id"],
        )
        station = session.scalar(stmt)
        assert station is not None
    if name and station.name != name[:200]:
        station.name = name[:200]
    if lat is not None and lon is not None and (station.lat != lat or station.lon != lon):
        station.lat, station.lon = lat, lon
        if locator is not None:
            station.ward_code = locator.locate(lat, lon)
    if seen_at is not None and (station.last_seen_at is None or seen_at > station.last_seen_at):
        station.last_seen_at = seen_at
    return station
