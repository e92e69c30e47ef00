"""services: daily and monthly roll-ups of dossier events (the monitor reads them, not raw history)

Revision ID: services_0002
Revises: services_0001
Create Date: 2026-12-04 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "services_0002"
down_revision: str | None = "services_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "received",
    "online",
    "full",
    "online_service",
    "closed",
    "resolved",
    "early",
    "late",
    "closed_other",
    "late_open",
    "late_close",
    "nearly_open",
    "nearly_close",
)


def upgrade() -> None:
    op.create_table(
        "svc_dossier_rollups",
        sa.Column("level", sa.String(length=3), nullable=False),
        sa.Column("grain", sa.String(length=1), nullable=False),
        sa.Column("bucket", sa.Date(), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("ward_code", sa.String(length=8), nullable=False),
        sa.Column("procedure_code", sa.String(length=64), nullable=False),
        *(sa.Column(c, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False) for c in COUNTERS),
        sa.PrimaryKeyConstraint(
            "level",
            "grain",
            "bucket",
            "agency_id",
            "ward_code",
            "procedure_code",
            name=op.f("pk_svc_dossier_rollups"),
        ),
    )
    with op.batch_alter_table("svc_dossier_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_svc_dossier_rollups_procedure", ["procedure_code", "level", "grain", "bucket"], unique=False
        )
    # Count the dossiers already stored (an upgraded database ends like a fresh one plus its data).
    from ioc.modules.services.rollups import rebuild

    with Session(bind=op.get_bind()) as session:
        rebuild(session)
        session.flush()


def downgrade() -> None:
    with op.batch_alter_table("svc_dossier_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_svc_dossier_rollups_procedure")
    op.drop_table("svc_dossier_rollups")
