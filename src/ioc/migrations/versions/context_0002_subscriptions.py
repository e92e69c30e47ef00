"""ngsi-ld subscriptions and the notification queue

Revision ID: context_0002
Revises: context_0001
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "context_0002"
down_revision: str | None = "context_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ngsild_subscriptions",
        sa.Column("pk", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("sub_id", sa.String(length=1024), nullable=False),
        sa.Column("doc", _JSON, nullable=False),
        sa.Column("context", _JSON, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("throttling", sa.Float(), nullable=True),
        sa.Column("time_interval", sa.Float(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("times_sent", sa.Integer(), nullable=False),
        sa.Column("times_failed", sa.Integer(), nullable=False),
        sa.Column("last_notification", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ngsild_subscriptions")),
        sa.UniqueConstraint("tenant", "sub_id", name="uq_ngsild_subscriptions_tenant_sub_id"),
    )
    with op.batch_alter_table("ngsild_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ngsild_subscriptions_tenant"), ["tenant"], unique=False)

    op.create_table(
        "ngsild_notifications",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("subscription_pk", _ID, nullable=False),
        sa.Column("body", _JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ngsild_notifications")),
    )
    with op.batch_alter_table("ngsild_notifications", schema=None) as batch_op:
        batch_op.create_index("ix_ngsild_notifications_due", ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ngsild_notifications_subscription_pk"), ["subscription_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ngsild_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ngsild_notifications_subscription_pk"))
        batch_op.drop_index("ix_ngsild_notifications_due")
    op.drop_table("ngsild_notifications")
    with op.batch_alter_table("ngsild_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ngsild_subscriptions_tenant"))
    op.drop_table("ngsild_subscriptions")
