"""context: entity maps (§5.14)

Revision ID: context_0005
Revises: context_0004
Create Date: 2026-12-05 07:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "context_0005"
down_revision: str | None = "context_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ngsild_entity_maps",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("map_id", sa.String(length=1024), nullable=False),
        sa.Column("entity_ids", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "map_id", name=op.f("pk_ngsild_entity_maps")),
    )
    op.create_index("ix_ngsild_entity_maps_expires", "ngsild_entity_maps", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ngsild_entity_maps_expires", table_name="ngsild_entity_maps")
    op.drop_table("ngsild_entity_maps")
