"""context: expiresAt of transient entities and attribute instances (v1.9.1); hosted @contexts per tenant

Revision ID: context_0006
Revises: context_0005
Create Date: 2026-12-05 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "context_0006"
down_revision: str | None = "context_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (("ngsild_entities", "ix_ngsild_entities_expires"), ("ngsild_attributes", "ix_ngsild_attributes_expires"))


def upgrade() -> None:
    with op.batch_alter_table("ngsild_contexts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant", sa.String(length=128), server_default="", nullable=False))
    for table, index in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
            batch_op.create_index(
                index,
                ["expires_at"],
                unique=False,
                sqlite_where=sa.text("expires_at IS NOT NULL"),
                postgresql_where=sa.text("expires_at IS NOT NULL"),
            )


def downgrade() -> None:
    for table, index in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
            batch_op.drop_column("expires_at")
    with op.batch_alter_table("ngsild_contexts", schema=None) as batch_op:
        batch_op.drop_column("tenant")
