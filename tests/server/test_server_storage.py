"""Content-addressed blob storage and the database layer (migrations, WAL, unique keys)."""

import hashlib

import pytest
from server_harness import placeholder_codec
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from server.db import Database
from server.models import Encode, Image, Job
from server.storage import BlobNotFound, BlobStore


def test_blobs_are_named_by_their_sha256_and_stored_once(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    assert store.path(digest).relative_to(tmp_path / "blobs").parts[:2] == (digest[:2], digest[2:4])
    assert not [p for p in (tmp_path / "blobs").rglob(".tmp-*")]


def test_unknown_and_malformed_digests(tmp_path):
    store = BlobStore(tmp_path)
    with pytest.raises(BlobNotFound):
        store.get("0" * 64)
    assert not store.exists("../../etc/passwd")
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_migrations_create_every_table_and_are_idempotent(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    db.migrate()
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "jobs",
        "devices",
        "fingerprints",
        "images",
        "codecs",
        "encodes",
        "decodes",
        "cells",
        "mismatches",
        "rd_points",
        "bd_rates",
    } <= tables
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.dispose()


def test_an_encode_is_recorded_once_per_key(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    db.migrate()
    with db.session() as session:
        codec = placeholder_codec()
        image = Image(digest="c" * 64, name="i", width=1, height=1, size=1)
        job = Job(request={}, codec_digests=[], image_digests=[], encoder_targets=[], decoder_targets=[])
        session.add_all([codec, image, job])
        session.flush()
        key = {"job_id": job.id, "codec_id": codec.id, "image_id": image.id, "target": "cpu", "repeat": 0}
        session.add(Encode(**key))
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Encode(**key))
    db.dispose()


def test_the_migration_renders_for_postgresql_unchanged():
    """No SQLite-only SQL: the same Alembic revision compiles for PostgreSQL (offline, no server needed)."""
    import io

    from alembic import command

    from server.db import alembic_config

    config = alembic_config("postgresql://bitmatch@localhost/bitmatch")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert sql.count("CREATE TABLE") == 13  # twelve tables and alembic_version
    assert "UNIQUE (job_id, codec_id, image_id, encoder_target, decoder_target)" in sql
    assert "PRAGMA" not in sql
