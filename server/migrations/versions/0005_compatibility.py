"""codec-version compatibility: jobs.decode_with, decodes.codec_id, cells.decoder_codec_id

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("decode_with", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("decodes") as batch:
        batch.add_column(
            sa.Column(
                "codec_id",
                sa.Integer(),
                sa.ForeignKey("codecs.id", name="fk_decodes_codec_id"),
                nullable=True,
            )
        )
    with op.batch_alter_table("cells") as batch:
        batch.add_column(
            sa.Column(
                "decoder_codec_id",
                sa.Integer(),
                sa.ForeignKey("codecs.id", name="fk_cells_decoder_codec_id"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("cells") as batch:
        batch.drop_constraint("fk_cells_decoder_codec_id", type_="foreignkey")
        batch.drop_column("decoder_codec_id")
    with op.batch_alter_table("decodes") as batch:
        batch.drop_constraint("fk_decodes_codec_id", type_="foreignkey")
        batch.drop_column("codec_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("decode_with")
