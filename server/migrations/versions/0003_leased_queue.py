"""leased task queue: leases, pins, forensic maps, device modes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TASK_TABLES = ("encodes", "decodes")


def upgrade() -> None:
    for table in TASK_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("pinned_device_id", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("lease_token", sa.String(length=32), nullable=True))
            batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("maps_sha256", sa.String(length=64), nullable=True))
            batch.create_index(f"ix_{table}_status", ["status"])
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("mode", sa.String(length=8), nullable=False, server_default="push"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("encoder_pins", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("decoder_pins", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("decoder_pins")
        batch.drop_column("encoder_pins")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("mode")
    for table in TASK_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_status")
            for column in ("maps_sha256", "lease_expires_at", "lease_token", "pinned_device_id"):
                batch.drop_column(column)
