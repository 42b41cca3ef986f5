"""The leased task queue, on a real SQLite file: claims, slots, pins, leases, expiry, exactly-once results."""

import time

import pytest
from server_harness import placeholder_codec

from server.db import Database
from server.models import Decode, Device, Encode, Image, Job
from server.taskqueue import TaskQueue

LEASE_S = 0.5


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    database.open()
    yield database
    database.dispose()


@pytest.fixture
def job(db):
    """A running job with three pending encodes for target cpu and one for target arm; devices 1-3."""
    with db.session() as session:
        session.add_all(
            [
                Device(name=f"d{i}", url=f"http://d{i}", target=t, source="config", status="healthy")
                for i, t in ((1, "cpu"), (2, "cpu"), (3, "arm"))
            ]
        )
        codec = placeholder_codec()
        images = [Image(digest=f"{i:064x}", name=f"i{i}", width=1, height=1, size=1) for i in range(3)]
        job = Job(
            status="running",
            request={},
            codec_digests=[],
            image_digests=[],
            encoder_targets=[],
            decoder_targets=[],
        )
        session.add_all([codec, *images, job])
        session.flush()
        for image in images:
            session.add(Encode(job_id=job.id, codec_id=codec.id, image_id=image.id, target="cpu", repeat=0))
        session.add(Encode(job_id=job.id, codec_id=codec.id, image_id=images[0].id, target="arm", repeat=0))
        return job.id


def queue(db, attempts: int = 3) -> TaskQueue:
    return TaskQueue(db, LEASE_S, attempts)


def status(db, task_id: int) -> tuple[str, int | None, int]:
    with db.session() as session:
        row = session.get(Encode, task_id)
        return row.status, row.device_id, row.attempts


def test_a_device_claims_only_its_targets_work_oldest_first_and_never_beyond_its_slots(db, job):
    q = queue(db)
    first, second = q.claim(1, "cpu", slots=2), q.claim(1, "cpu", slots=2)
    assert (first.task_id, second.task_id) == (1, 2)
    assert q.claim(1, "cpu", slots=2) is None  # both slots busy
    assert q.claim(2, "cpu", slots=2).task_id == 3  # the other cpu device takes the rest
    assert q.claim(2, "cpu", slots=2) is None  # nothing pending for cpu
    assert q.claim(3, "arm", slots=1).task_id == 4
    assert status(db, 1) == ("running", 1, 1)


def test_decodes_are_claimed_before_encodes(db, job):
    with db.session() as session:
        session.add(Decode(job_id=job, encode_id=1, target="cpu", repeat=0))
    assert queue(db).claim(1, "cpu", slots=1).kind == "decode"


def test_a_pinned_task_goes_to_its_device_only(db, job):
    with db.session() as session:
        for encode in session.query(Encode).filter(Encode.target == "cpu"):
            encode.pinned_device_id = 2
    q = queue(db)
    assert q.claim(1, "cpu", slots=3) is None
    assert q.claim(2, "cpu", slots=3).task_id == 1


def test_a_result_is_recorded_only_under_the_lease_it_was_claimed_with(db, job):
    q = queue(db)
    lease = q.claim(1, "cpu", slots=1)
    time.sleep(LEASE_S * 1.5)
    assert q.reap() == [1]  # the device went silent: the task is pending again
    assert status(db, 1)[0] == "pending"
    again = q.claim(2, "cpu", slots=1)
    assert again.task_id == 1 and again.attempt == 2
    assert not q.renew(lease) and not q.finish(lease, lambda s, row: setattr(row, "status", "done"))
    assert q.finish(again, lambda s, row: setattr(row, "status", "done"))
    assert status(db, 1) == ("done", 2, 2)


def test_a_database_without_update_returning_reads_the_attempt_after_the_claim(db, job):
    """SQLite before 3.35 has no UPDATE ... RETURNING: the claim reads the attempt in a second statement."""
    db.engine.dialect.update_returning = False
    q = queue(db)
    first = q.claim(1, "cpu", slots=1)
    q.release(first, "given back")
    again = q.claim(2, "cpu", slots=1)
    assert (first.attempt, again.task_id, again.attempt) == (1, first.task_id, 2)


def test_a_renewed_lease_outlives_its_first_expiry(db, job):
    q = queue(db)
    lease = q.claim(1, "cpu", slots=1)
    for _ in range(3):
        time.sleep(LEASE_S / 2)
        assert q.renew(lease)
        assert q.reap() == []
    assert status(db, 1)[0] == "running"


def test_after_the_last_attempt_a_task_is_worker_lost(db, job):
    q = queue(db, attempts=2)
    for device in (1, 2):
        lease = q.claim(device, "cpu", slots=1)
        assert lease.task_id == 1
        q.release(lease, f"device {device} lost")
    assert status(db, 1) == ("worker-lost", 2, 2)


def test_a_busy_device_does_not_use_up_an_attempt(db, job):
    q = queue(db, attempts=1)
    lease = q.claim(1, "cpu", slots=1)
    assert q.release(lease, "busy", counted=False) == "pending"
    assert status(db, 1)[2] == 0


def test_a_restarted_single_writer_puts_every_running_task_back_without_counting_it(db, job):
    q = queue(db)
    q.claim(1, "cpu", slots=2)
    q.claim(1, "cpu", slots=2)
    assert q.release_all_running() == 2
    assert status(db, 1) == ("pending", 1, 0)


def test_a_second_coordinator_on_the_same_sqlite_file_is_refused(tmp_path):
    from server.db import DatabaseRefused

    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    first = Database(url)
    first.open()
    with pytest.raises(DatabaseRefused, match="another coordinator"):
        Database(url).open()
    first.dispose()
    again = Database(url)
    again.open()  # the lock went with the first one
    again.dispose()


@pytest.mark.parametrize(
    ("content", "message"), [(b"", "empty file"), (b"not sqlite at all" * 100, "not a database")]
)
def test_an_empty_or_foreign_database_file_is_refused(tmp_path, content, message):
    from server.db import DatabaseRefused

    path = tmp_path / "odd.sqlite3"
    path.write_bytes(content)
    with pytest.raises(DatabaseRefused, match=message):
        Database(f"sqlite:///{path}").open()


def test_a_sqlite_database_of_another_application_is_refused(tmp_path):
    import sqlite3

    from server.db import DatabaseRefused

    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(DatabaseRefused, match="not a bitmatch database"):
        Database(f"sqlite:///{path}").open()
