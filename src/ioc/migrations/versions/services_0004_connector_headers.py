"""services: request headers of the polling connectors (credentials such as Authorization)

Revision ID: services_0004
Revises: services_0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "services_0004"
down_revision: str | None = "services_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("svc_connectors") as batch:
        batch.add_column(
            sa.Column(
                "headers",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("svc_connectors") as batch:
        batch.drop_column("headers")
