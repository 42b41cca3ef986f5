"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:51:22.911615
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "codecs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("precision", sa.String(length=16), nullable=False),
        sa.Column("architecture", sa.String(length=64), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("archive_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_table(
        "fingerprints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("arch", sa.String(length=64), nullable=False),
        sa.Column("emulated", sa.Boolean(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("image_set", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("codec_digests", sa.JSON(), nullable=False),
        sa.Column("image_digests", sa.JSON(), nullable=False),
        sa.Column("encoder_targets", sa.JSON(), nullable=False),
        sa.Column("decoder_targets", sa.JSON(), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "bd_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=160), nullable=False),
        sa.Column("anchor", sa.String(length=160), nullable=False),
        sa.Column("test", sa.String(length=160), nullable=False),
        sa.Column("bd_rate", sa.Float(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "kind", "device", "anchor", "test"),
    )
    with op.batch_alter_table("bd_rates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bd_rates_job_id"), ["job_id"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=512), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("health_detail", sa.Text(), nullable=False),
        sa.Column("fingerprint_id", sa.Integer(), nullable=True),
        sa.Column("claimed_fingerprint", sa.JSON(), nullable=True),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_check", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fingerprint_id"],
            ["fingerprints.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "rd_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("codec_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("encoder_target", sa.String(length=64), nullable=False),
        sa.Column("decoder_target", sa.String(length=64), nullable=False),
        sa.Column("bpp", sa.Float(), nullable=False),
        sa.Column("psnr", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["codec_id"],
            ["codecs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "codec_id", "image_id", "encoder_target", "decoder_target"),
    )
    with op.batch_alter_table("rd_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rd_points_job_id"), ["job_id"], unique=False)

    op.create_table(
        "encodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("codec_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("bitstream_sha256", sa.String(length=64), nullable=True),
        sa.Column("bpp", sa.Float(), nullable=True),
        sa.Column("psnr", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint_id", sa.Integer(), nullable=True),
        sa.Column("emulated", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("stage_hashes", sa.JSON(), nullable=True),
        sa.Column("recon_sha256", sa.String(length=64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["codec_id"],
            ["codecs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["fingerprint_id"],
            ["fingerprints.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "codec_id", "image_id", "target", "repeat"),
    )
    with op.batch_alter_table("encodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_encodes_job_id"), ["job_id"], unique=False)

    op.create_table(
        "decodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("encode_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("psnr", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint_id", sa.Integer(), nullable=True),
        sa.Column("emulated", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("stage_hashes", sa.JSON(), nullable=True),
        sa.Column("recon_sha256", sa.String(length=64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.ForeignKeyConstraint(
            ["encode_id"],
            ["encodes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["fingerprint_id"],
            ["fingerprints.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("encode_id", "target", "repeat"),
    )
    with op.batch_alter_table("decodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decodes_job_id"), ["job_id"], unique=False)

    op.create_table(
        "cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("codec_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("encoder_target", sa.String(length=64), nullable=False),
        sa.Column("decoder_target", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("encode_id", sa.Integer(), nullable=True),
        sa.Column("decode_id", sa.Integer(), nullable=True),
        sa.Column("encoder_fingerprint_id", sa.Integer(), nullable=True),
        sa.Column("decoder_fingerprint_id", sa.Integer(), nullable=True),
        sa.Column("emulated", sa.Boolean(), nullable=False),
        sa.Column("nondeterministic", sa.Boolean(), nullable=False),
        sa.Column("nondeterminism_detail", sa.Text(), nullable=False),
        sa.Column("first_stage", sa.String(length=32), nullable=True),
        sa.Column("max_abs_diff", sa.Integer(), nullable=True),
        sa.Column("recon_psnr", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["codec_id"],
            ["codecs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["decode_id"],
            ["decodes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["decoder_fingerprint_id"],
            ["fingerprints.id"],
        ),
        sa.ForeignKeyConstraint(
            ["encode_id"],
            ["encodes.id"],
        ),
        sa.ForeignKeyConstraint(
            ["encoder_fingerprint_id"],
            ["fingerprints.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "codec_id", "image_id", "encoder_target", "decoder_target"),
    )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cells_job_id"), ["job_id"], unique=False)

    op.create_table(
        "mismatches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("flat_index", sa.Integer(), nullable=True),
        sa.Column("channel", sa.Integer(), nullable=True),
        sa.Column("y", sa.Integer(), nullable=True),
        sa.Column("x", sa.Integer(), nullable=True),
        sa.Column("encoder_level", sa.Integer(), nullable=True),
        sa.Column("decoder_level", sa.Integer(), nullable=True),
        sa.Column("encoder_value", sa.Integer(), nullable=True),
        sa.Column("decoder_value", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_id"],
            ["cells.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("cell_id"),
    )


def downgrade() -> None:
    op.drop_table("mismatches")
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cells_job_id"))

    op.drop_table("cells")
    with op.batch_alter_table("decodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decodes_job_id"))

    op.drop_table("decodes")
    with op.batch_alter_table("encodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_encodes_job_id"))

    op.drop_table("encodes")
    with op.batch_alter_table("rd_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rd_points_job_id"))

    op.drop_table("rd_points")
    op.drop_table("devices")
    with op.batch_alter_table("bd_rates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bd_rates_job_id"))

    op.drop_table("bd_rates")
    op.drop_table("jobs")
    op.drop_table("images")
    op.drop_table("fingerprints")
    op.drop_table("codecs")
