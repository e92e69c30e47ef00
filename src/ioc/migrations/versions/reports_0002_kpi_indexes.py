"""reports: indexes for the KPI measures (closed and received in a period)

Revision ID: reports_0002
Revises: reports_0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "reports_0002"
down_revision: str | None = "reports_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_reports_closed_kpi", "reports", ["closed_at", "status", "resolve_due", "rating", "ward_code"], unique=False
    )
    op.create_index("ix_reports_created_ward", "reports", ["created_at", "ward_code"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reports_created_ward", table_name="reports")
    op.drop_index("ix_reports_closed_kpi", table_name="reports")
