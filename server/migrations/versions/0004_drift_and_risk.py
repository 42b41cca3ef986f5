"""drift per stage and near-miss risk per cell

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("risk", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("min_margin_ulp", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("predicted_flips", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("observed_flips", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("failure_probability", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("silent_corruption", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "drifts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cell_id", sa.Integer(), sa.ForeignKey("cells.id"), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("elements", sa.BigInteger(), nullable=False),
        sa.Column("differing", sa.BigInteger(), nullable=False),
        sa.Column("max_abs_diff", sa.Float(), nullable=False),
        sa.Column("max_ulp", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("cell_id", "stage"),
    )
    op.create_index("ix_drifts_cell_id", "drifts", ["cell_id"])


def downgrade() -> None:
    op.drop_index("ix_drifts_cell_id", "drifts")
    op.drop_table("drifts")
    with op.batch_alter_table("cells") as batch:
        for column in (
            "silent_corruption",
            "failure_probability",
            "observed_flips",
            "predicted_flips",
            "min_margin_ulp",
            "risk",
        ):
            batch.drop_column(column)
