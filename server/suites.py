"""`bitmatch suite make`: a conformance suite (worker/contract/suite.py) from a finished job.

Each first encode of the job that produced a bitstream becomes a positive vector expecting the encoder's
stage hashes (one per distinct bitstream: a float codec's encoders may write different ones). For every
codec, the first of its bitstreams also yields the negative vectors, each with the error code its damage
must give on every device: truncated, a flipped payload byte (crc-mismatch), another codec's digest in the
header (wrong-codec), a future container version (unsupported-version) and a bad magic. Each expected code
is checked on this machine before the suite is written.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import zlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DatabaseError

from codec.codec import Codec as LocalCodec
from codec.errors import BitstreamError
from codec.package import CodecPackage
from codec.vocabulary import TaskStatus
from server.db import Database, DatabaseRefused, sqlite_path
from server.models import Codec, Encode, Image, Job
from server.storage import BlobStore
from worker.contract.suite import Expected, Suite, SuiteCodec, TestVector, write_suite

DIGEST_AT, VERSION_AT = slice(6, 38), slice(4, 6)


class SuiteError(Exception):
    """A job a suite cannot be made of."""


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def damaged(data: bytes) -> dict[str, bytes]:
    """expected error code -> a damaged copy of a valid bitstream."""
    body = data[:-4]
    flipped = bytearray(data)
    flipped[-5] ^= 0x5A  # the last payload byte: the CRC, checked before anything reads it, must catch it
    foreign = bytearray(body)
    foreign[DIGEST_AT] = hashlib.sha256(b"another codec").digest()
    future = bytearray(body)
    future[VERSION_AT] = struct.pack("<H", 99)
    return {
        "truncated": data[: len(data) // 2],
        "crc-mismatch": bytes(flipped),
        "wrong-codec": _with_crc(bytes(foreign)),
        "unsupported-version": _with_crc(bytes(future)),
        "bad-magic": b"XXXX" + data[4:],
    }


def _error_of(codec: LocalCodec, data: bytes) -> str | None:
    try:
        codec.decode(data)
    except BitstreamError as exc:
        return exc.code
    return None


def _open_history(data_dir: Path) -> tuple[Database, BlobStore]:
    """The database and blobs of an existing coordinator data directory (SuiteError when it is not one)."""
    from server.settings import Settings

    settings = Settings(data_dir=data_dir)
    database_file = sqlite_path(settings.database_url)
    if database_file is not None and not database_file.is_file():
        raise SuiteError(f"{data_dir} is not a coordinator data directory: it has no {database_file.name}")
    db = Database(settings.database_url)
    try:
        db.check()
    except DatabaseRefused as exc:
        db.dispose()
        raise SuiteError(str(exc)) from None
    return db, BlobStore(settings.blob_dir)


def make_suite(data_dir: Path, job_id: int, out: Path, name: str | None = None) -> Suite:
    if out.exists() and any(out.iterdir()):
        raise SuiteError(f"{out} exists and is not empty")
    db, store = _open_history(data_dir)
    try:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise SuiteError(f"no job {job_id} in {data_dir}")
            rows = session.execute(
                select(Encode, Codec, Image)
                .join(Codec, Encode.codec_id == Codec.id)
                .join(Image, Encode.image_id == Image.id)
                .where(Encode.job_id == job_id, Encode.repeat == 0, Encode.status == TaskStatus.DONE)
                .order_by(Codec.name, Image.name, Encode.target)
            ).all()
            entries = [(e.target, e.bitstream_sha256, dict(e.stage_hashes), c, i.name) for e, c, i in rows]
            codecs = {c.digest: (c.name, c.precision, c.archive_sha256) for _, _, _, c, _ in entries}
    except DatabaseError as exc:
        raise SuiteError(f"{data_dir}: not a bitmatch history ({exc.orig})") from None
    finally:
        db.dispose()
    if not entries:
        raise SuiteError(f"job {job_id} has no finished encode to make vectors of")
    (out / "codecs").mkdir(parents=True, exist_ok=True)
    (out / "bitstreams").mkdir(exist_ok=True)
    suite_codecs, locals_ = {}, {}
    for digest, (codec_name, precision, archive_sha) in codecs.items():
        archive = out / "codecs" / f"{digest}.tar"
        shutil.copyfile(store.path(archive_sha), archive)
        suite_codecs[digest] = SuiteCodec(
            name=codec_name, precision=precision, archive=f"codecs/{digest}.tar"
        )
        locals_[digest] = LocalCodec(CodecPackage.load(archive), "ort-cpu")
    vectors, seen, damaged_done = [], set(), set()
    for target, bitstream_sha, hashes, codec, image_name in entries:
        if bitstream_sha in seen:
            continue
        seen.add(bitstream_sha)
        data = store.get(bitstream_sha)
        base = f"{codec.name}-{image_name}-{target}"
        vectors.append(
            _vector(
                out,
                base,
                codec.digest,
                data,
                {"encoder": target, "image": image_name},
                expected=Expected(stage_hashes=hashes),
            )
        )
        if codec.digest in damaged_done:
            continue
        damaged_done.add(codec.digest)
        for code, bad in damaged(data).items():
            found = _error_of(locals_[codec.digest], bad)
            if found != code:
                raise SuiteError(f"a {code} vector of {codec.name} gives {found or 'no error'} here")
            vectors.append(_vector(out, f"{base}-{code}", codec.digest, bad, {"damage": code}, error=code))
    suite = Suite(
        name=name or f"job-{job_id}",
        description=f"made from job {job_id} of {data_dir}: {len(vectors)} vectors",
        codecs=suite_codecs,
        test_vectors=vectors,
    )
    write_suite(out, suite)
    return suite


def _vector(out: Path, name: str, codec: str, data: bytes, source: dict[str, str], expected=None, error=None):  # type: ignore[no-untyped-def]
    sha = hashlib.sha256(data).hexdigest()
    (out / "bitstreams" / f"{sha}.bmc").write_bytes(data)
    return TestVector(
        name=name,
        codec=codec,
        input=f"bitstreams/{sha}.bmc",
        input_sha256=sha,
        expected=expected,
        expected_error=error,
        source=source,
    )
