"""The claim order (server/claimorder.py) on a real SQLite file: a device makes first the bitstreams that the
most work waits on, and decodes first where nobody waits."""

import pytest
from server_harness import placeholder_codec

from server.db import Database
from server.models import Decode, Device, Encode, Image, Job
from server.taskqueue import TaskQueue


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    database.open()
    yield database
    database.dispose()


def add_job(session, targets: list[str], decoders: list[str] | None = None) -> int:
    job = Job(
        status="running",
        request={},
        codec_digests=[],
        image_digests=[],
        encoder_targets=targets,
        decoder_targets=targets if decoders is None else decoders,
    )
    session.add(job)
    session.flush()
    return job.id


@pytest.fixture
def site(db):
    """Devices of targets fast, slow and other; one codec; 10x10 images, a fresh one for each encode."""
    with db.session() as session:
        session.add_all(
            Device(name=t, url=f"http://{t}", target=t, source="config", status="healthy")
            for t in ("fast", "slow", "other")
        )
        codec = placeholder_codec()
        images = [Image(digest=f"{i:064x}", name=f"i{i}", width=10, height=10, size=1) for i in range(4)]
        session.add_all([codec, *images])
        session.flush()
        return codec.id, iter([image.id for image in images] * 4)


def encode(session, job_id: int, target: str, ids: tuple[int, int], **done) -> int:
    codec_id, images = ids
    row = Encode(job_id=job_id, codec_id=codec_id, image_id=next(images), target=target, repeat=0, **done)
    session.add(row)
    session.flush()
    return row.id


def finished(milliseconds: float) -> dict:
    from server.models import utcnow

    return {"status": "done", "finished_at": utcnow(), "timings": {"compute_total": milliseconds}}


def test_the_encodes_the_slow_target_waits_for_come_before_older_work(db, site):
    with db.session() as session:
        alone = add_job(session, ["fast", "other"])  # older: fast and other, both quick
        for target in ("fast", "other"):
            encode(session, alone, target, site, **finished(1.0))
        older = encode(session, alone, "fast", site)
        encode(session, alone, "other", site)
        shared = add_job(session, ["fast", "slow"])  # newer: slow is a thousand times slower
        encode(session, shared, "slow", site, **finished(1000.0))
        encode(session, shared, "slow", site)
        newer = encode(session, shared, "fast", site)
    queue = TaskQueue(db, 30, 3)
    lease = queue.claim(1, "fast", slots=1)
    assert lease.task_id == older  # nothing estimated yet: the oldest first
    queue.release(lease, "put back", counted=False)
    queue.reorder()
    assert queue.urgencies[shared, "fast"] > 0  # slow has more left than fast
    assert queue.urgencies[alone, "fast"] == 0  # other, as quick as fast, has no more left than it
    assert queue.claim(1, "fast", slots=1).task_id == newer


def test_encodes_come_before_decodes_while_another_decoder_waits_and_after_where_none_does(db, site):
    with db.session() as session:
        job = add_job(session, ["fast", "slow"])
        first = encode(session, job, "fast", site, **finished(1.0))
        session.add(Decode(job_id=job, encode_id=first, target="fast", repeat=0))
        later = encode(session, job, "fast", site)
        encode(session, job, "slow", site, **finished(1000.0))  # measured a thousand times slower
        encode(session, job, "slow", site)
        solo = add_job(session, ["fast", "slow"], decoders=["fast"])  # slow decodes nothing here
        own = encode(session, solo, "fast", site, **finished(1.0))
        session.add(Decode(job_id=solo, encode_id=own, target="fast", repeat=0))
        encode(session, solo, "fast", site)
        encode(session, solo, "slow", site)
    queue = TaskQueue(db, 30, 3)
    queue.reorder()
    assert queue.urgencies[job, "fast"] > 0 and queue.urgencies[solo, "fast"] == 0
    lease = queue.claim(1, "fast", slots=1)
    assert (lease.kind, lease.task_id) == ("encode", later)  # slow will decode it: the encode first
    with db.session() as session:
        session.get(Job, job).status = "done"
    assert queue.claim(1, "fast", slots=2).kind == "decode"  # nobody waits for solo's encodes
