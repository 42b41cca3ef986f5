"""What never changes about a planned task: its job, unit, package and input digests, read once and kept.

A task row's job, unit, image and package are fixed when it is planned, and a decode's input (the encode's
bitstream) is fixed before the decode exists, so these facts can be kept in memory for good; everything a
task's lease or outcome says (status, device, attempts) is read from the database every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from server.db import Database
from server.models import Codec, Decode, Encode, Image
from server.planning import Unit

KEEP = 8192  # tasks remembered (a few hundred bytes each)


@dataclass(frozen=True)
class TaskFacts:
    kind: str
    task_id: int
    job_id: int
    encode_id: int  # the encode itself, or the one a decode reads
    unit: Unit  # (codec, image, encoder target) of the encode
    target: str  # the task's own target: the encoder's, or the decoder's
    repeat: int
    image_digest: str
    codec_id: int  # the package that runs this task (a decode's may differ: compatibility)
    codec_digest: str
    archive_sha256: str
    payload_sha256: str  # the image PNG of an encode, the bitstream of a decode

    @property
    def allow_foreign(self) -> bool:
        """A decode by another package than the encode's (compatibility)."""
        return self.codec_id != self.unit.codec_id


COLUMNS = (
    Encode.id,
    Encode.job_id,
    Encode.codec_id,
    Encode.image_id,
    Encode.target,
    Encode.repeat,
    Encode.bitstream_sha256,
    Image.digest,
    Codec.digest,
    Codec.archive_sha256,
)


QUERIES = {  # built once, the task id bound per call
    "encode": select(*COLUMNS)
    .join(Image, Image.id == Encode.image_id)
    .join(Codec, Codec.id == Encode.codec_id)
    .where(Encode.id == bindparam("task_id")),
    "decode": select(*COLUMNS, Decode.target, Decode.repeat, Decode.codec_id)
    .select_from(Decode)
    .join(Encode, Encode.id == Decode.encode_id)
    .join(Image, Image.id == Encode.image_id)
    .join(Codec, Codec.id == func.coalesce(Decode.codec_id, Encode.codec_id))
    .where(Decode.id == bindparam("task_id")),
}


DECODES_OF = (  # every decode of one encode, as planned together
    select(*COLUMNS, Decode.target, Decode.repeat, Decode.codec_id, Decode.id)
    .select_from(Decode)
    .join(Encode, Encode.id == Decode.encode_id)
    .join(Image, Image.id == Encode.image_id)
    .join(Codec, Codec.id == func.coalesce(Decode.codec_id, Encode.codec_id))
    .where(Decode.encode_id == bindparam("encode_id"))
)


def read_facts(session: Session, kind: str, task_id: int) -> TaskFacts | None:
    """One query: the task with its encode, image and package; None when there is no such task."""
    row = session.execute(QUERIES[kind], {"task_id": task_id}).first()
    return None if row is None else _facts(kind, task_id, row)


def read_decode_facts(session: Session, encode_id: int) -> list[TaskFacts]:
    """One query: the facts of every decode of an encode."""
    rows = session.execute(DECODES_OF, {"encode_id": encode_id}).all()
    return [_facts("decode", row[-1], row[:-1]) for row in rows]


def _facts(kind: str, task_id: int, row: Any) -> TaskFacts:
    encode_id, job_id, encode_codec, image_id, encode_target, repeat, bitstream, image_digest = row[:8]
    codec_digest, archive_sha256 = row[8:10]
    target, codec_id, payload = encode_target, encode_codec, image_digest
    if kind == "decode":
        target, repeat, decode_codec = row[10:]
        codec_id, payload = decode_codec or encode_codec, bitstream
    return TaskFacts(
        kind=kind,
        task_id=task_id,
        job_id=job_id,
        encode_id=encode_id,
        unit=Unit(encode_codec, image_id, encode_target),
        target=target,
        repeat=repeat,
        image_digest=image_digest,
        codec_id=codec_id,
        codec_digest=codec_digest,
        archive_sha256=archive_sha256,
        payload_sha256=payload,
    )


class TaskFactsCache:
    """`read_facts` once per task, the last `KEEP` tasks kept (thread-safe)."""

    def __init__(self, db: Database, keep: int = KEEP) -> None:
        self.db, self.keep = db, keep
        self._facts: OrderedDict[tuple[str, int], TaskFacts] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, kind: str, task_id: int) -> TaskFacts | None:
        key = (kind, task_id)
        with self._lock:
            found = self._facts.get(key)
            if found is not None:
                self._facts.move_to_end(key)
                return found
        with self.db.session() as session:
            found = read_facts(session, kind, task_id)
        if found is not None:
            self._keep([found])
        return found

    def remember(self, facts: list[TaskFacts]) -> None:
        """Keep facts read in a transaction once it has committed (`read_decode_facts`)."""
        self._keep(facts)

    def _keep(self, facts: list[TaskFacts]) -> None:
        with self._lock:
            for found in facts:
                self._facts[(found.kind, found.task_id)] = found
            while len(self._facts) > self.keep:
                self._facts.popitem(last=False)
