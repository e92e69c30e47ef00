"""context: device registry and device keys

Revision ID: context_0003
Revises: context_0001
Create Date: 2026-12-04 18:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "context_0003"
down_revision: str | None = "context_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "context_devices",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("entity_id", sa.String(length=1024), nullable=False),
        sa.Column("entity_type", sa.String(length=256), nullable=False),
        sa.Column("attributes", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("location", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.Column("ward_code", sa.String(length=8), nullable=True),
        sa.Column("agency_id", sa.String(length=64), nullable=True),
        sa.Column("expected_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_devices")),
    )
    with op.batch_alter_table("context_devices", schema=None) as batch_op:
        batch_op.create_index("ix_context_devices_tenant_entity", ["tenant", "entity_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_context_devices_ward_code"), ["ward_code"], unique=False)

    op.create_table(
        "context_device_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["context_devices.id"],
            name=op.f("fk_context_device_keys_device_id_context_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_device_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_context_device_keys_prefix")),
    )
    with op.batch_alter_table("context_device_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_context_device_keys_device_id"), ["device_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("context_device_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_context_device_keys_device_id"))
    op.drop_table("context_device_keys")
    with op.batch_alter_table("context_devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_context_devices_ward_code"))
        batch_op.drop_index("ix_context_devices_tenant_entity")
    op.drop_table("context_devices")
