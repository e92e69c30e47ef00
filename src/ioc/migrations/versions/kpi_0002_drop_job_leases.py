"""kpi: drop kpi_job_leases (the core's job_leases replaces it)

The module's jobs run in the core scheduler (ioc.core.jobs) since core revision 0002_core;
its own lease rows were only ever held for one interval, so nothing is carried over.

Revision ID: kpi_0002
Revises: kpi_0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kpi_0002"
down_revision: str | None = "kpi_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0002_core"


def upgrade() -> None:
    op.drop_table("kpi_job_leases")


def downgrade() -> None:
    op.create_table(
        "kpi_job_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kpi_job_leases")),
    )
