"""cells.y_hat_max_abs_diff: the y_hat drift of a symbol-exact cell

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.add_column(sa.Column("y_hat_max_abs_diff", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_column("y_hat_max_abs_diff")
