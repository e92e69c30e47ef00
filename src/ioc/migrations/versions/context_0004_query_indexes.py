"""context: spatial grid key of GeoProperties and the geo-query index

Revision ID: context_0004
Revises: context_0003
Create Date: 2026-12-04 19:10:00.000000
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "context_0004"
down_revision: str | None = "context_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The grid of ioc.modules.context.store (copied: a migration does not import the code it migrates).
_CELL0 = 0.01
_LEVELS = 8


def _index(value: float, origin: float, size: float, span: float) -> int:
    return min(max(math.floor((value + origin) / size), 0), math.ceil(span / size) - 1)


def _geo_cell(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> int:
    for level in range(_LEVELS):
        size = _CELL0 * 4**level
        ix0, ix1 = _index(min_lon, 180.0, size, 360.0), _index(max_lon, 180.0, size, 360.0)
        iy0, iy1 = _index(min_lat, 90.0, size, 180.0), _index(max_lat, 90.0, size, 180.0)
        if ix0 == ix1 and iy0 == iy1:
            return level * 2**42 + ix0 * 2**21 + iy0
    return _LEVELS * 2**42


def upgrade() -> None:
    with op.batch_alter_table("ngsild_attributes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("geo_cell", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    attrs = sa.table(
        "ngsild_attributes",
        sa.column("entity_pk", sa.BigInteger()),
        sa.column("name", sa.String()),
        sa.column("dataset_id", sa.String()),
        sa.column("min_lon", sa.Float()),
        sa.column("min_lat", sa.Float()),
        sa.column("max_lon", sa.Float()),
        sa.column("max_lat", sa.Float()),
        sa.column("geo_cell", sa.BigInteger()),
    )
    rows = conn.execute(
        sa.select(
            attrs.c.entity_pk,
            attrs.c.name,
            attrs.c.dataset_id,
            attrs.c.min_lon,
            attrs.c.min_lat,
            attrs.c.max_lon,
            attrs.c.max_lat,
        ).where(attrs.c.min_lon.is_not(None))
    ).all()
    stmt = (
        sa.update(attrs)
        .where(
            attrs.c.entity_pk == sa.bindparam("b_pk"),
            attrs.c.name == sa.bindparam("b_name"),
            attrs.c.dataset_id == sa.bindparam("b_ds"),
        )
        .values(geo_cell=sa.bindparam("b_cell"))
    )
    for i in range(0, len(rows), 5000):
        conn.execute(
            stmt,
            [{"b_pk": r[0], "b_name": r[1], "b_ds": r[2], "b_cell": _geo_cell(*r[3:])} for r in rows[i : i + 5000]],
        )
    with op.batch_alter_table("ngsild_attributes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ngsild_attributes_geo",
            ["tenant", "name", "geo_cell", "min_lon", "min_lat", "max_lon", "max_lat", "entity_pk"],
            unique=False,
            sqlite_where=sa.text("geo_cell IS NOT NULL"),
            postgresql_where=sa.text("geo_cell IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("ngsild_attributes", schema=None) as batch_op:
        batch_op.drop_index("ix_ngsild_attributes_geo")
        batch_op.drop_column("geo_cell")
