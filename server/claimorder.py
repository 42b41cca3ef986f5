"""Which encodes a device claims first: those of the job whose other decoders have the most work left.

A device's own work takes as long in any order; what its order changes is how long the other targets of a job
wait for the bitstreams they decode. So a device claims first the encodes of the job where a slower target
waits on them: the job's `urgency` for its target is how much more estimated work the busiest other decoder
target of the job has left than this target has (each counts its encodes, its decodes, and the decodes of
every encode not yet done). Where it is positive, encodes come before decodes (nobody waits for a decode);
elsewhere decodes come first, as they finish cells, so targets of equal speed show cells from the start.
So the slowest target is never left idle while the others finish other work, and a fast target never idles
at the end of a job while a slow one still has the job's bitstreams to make.

Work is estimated in seconds: the pixels a target has left to encode or decode in the job, times that
target's measured seconds per pixel (its finished tasks in the running jobs; a target not measured yet counts
as the slowest one measured, and before anything is measured a pixel counts one second), over its healthy
devices. The scheduler's sweep computes the urgencies (server/scheduler.py); claims read the last ones.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from codec.vocabulary import DeviceStatus, JobStatus, TaskStatus
from server.models import Decode, Device, Encode, Image, Job

LEFT = (TaskStatus.PENDING, TaskStatus.RUNNING)
Urgencies = dict[tuple[int, str], float]  # (job id, target) -> seconds a slower decoder has left over it


def urgencies(session: Session) -> Urgencies:
    """Per running job and each of its targets, how many more estimated seconds the busiest of the job's
    other decoder targets has left than this target (0 where none has more)."""
    jobs = running_jobs(session)
    pixels = pixels_left(session, jobs)
    rates = seconds_per_pixel(session)
    fallback = max(rates.values(), default=1.0)
    devices = healthy_devices(session)
    left: dict[int, dict[str, float]] = defaultdict(dict)
    for (job_id, target), count in pixels.items():
        left[job_id][target] = count * rates.get(target, fallback) / max(1, devices.get(target, 0))
    result: Urgencies = {}
    for job_id, by_target in left.items():
        decoders = jobs[job_id][0] if job_id in jobs else ()
        for target, own in by_target.items():
            waiting = [by_target.get(u, 0.0) for u in decoders if u != target]
            result[job_id, target] = max(0.0, max(waiting, default=0.0) - own)
    return result


def running_jobs(session: Session) -> dict[int, tuple[list[str], int]]:
    """Each running job's decoder targets and repeat count."""
    query = select(Job.id, Job.decoder_targets, Job.repeat).where(Job.status == JobStatus.RUNNING)
    return {job_id: (list(targets or ()), repeat) for job_id, targets, repeat in session.execute(query)}


def pixels_left(session: Session, jobs: dict[int, tuple[list[str], int]]) -> dict[tuple[int, str], float]:
    """Pixels each target of each running job has left: its pending and running tasks, and the decodes that
    every encode not yet done will bring (one per decoder target and repeat)."""
    area = Image.width * Image.height
    left: dict[tuple[int, str], float] = defaultdict(float)
    encodes = (
        select(Encode.job_id, Encode.target, Encode.repeat, area)
        .join(Image, Image.id == Encode.image_id)
        .join(Job, Job.id == Encode.job_id)
        .where(Job.status == JobStatus.RUNNING, Encode.status.in_(LEFT))
    )
    for job_id, target, repeat, pixels in session.execute(encodes):
        left[job_id, target] += pixels
        targets, repeats = jobs.get(job_id, ((), 1))
        if repeat == 0:  # the first encode of a unit: its decodes are planned when it is done
            for decoder in targets:
                left[job_id, decoder] += pixels * repeats
    source = aliased(Encode)
    decodes = (
        select(Decode.job_id, Decode.target, func.sum(area))
        .join(source, source.id == Decode.encode_id)
        .join(Image, Image.id == source.image_id)
        .join(Job, Job.id == Decode.job_id)
        .where(Job.status == JobStatus.RUNNING, Decode.status.in_(LEFT))
        .group_by(Decode.job_id, Decode.target)
    )
    for job_id, target, pixels in session.execute(decodes):
        left[job_id, target] += pixels
    return dict(left)


def seconds_per_pixel(session: Session) -> dict[str, float]:
    """Each target's compute seconds per pixel over its finished tasks in the running jobs."""
    area = Image.width * Image.height
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    source = aliased(Encode)
    for model, image_of in ((Encode, Encode.image_id), (Decode, source.image_id)):
        compute_ms = model.timings["compute_total"].as_float()
        query = select(model.target, func.sum(compute_ms), func.sum(area)).join(Job, Job.id == model.job_id)
        if model is Decode:
            query = query.join(source, source.id == Decode.encode_id)
        query = (
            query.join(Image, Image.id == image_of)
            .where(Job.status == JobStatus.RUNNING, model.finished_at.is_not(None), compute_ms.is_not(None))
            .group_by(model.target)
        )
        for target, milliseconds, pixels in session.execute(query):
            totals[target][0] += (milliseconds or 0.0) / 1000
            totals[target][1] += pixels or 0
    return {target: seconds / pixels for target, (seconds, pixels) in totals.items() if pixels and seconds}


def healthy_devices(session: Session) -> dict[str, int]:
    query = select(Device.target, func.count()).where(Device.status == DeviceStatus.HEALTHY)
    return dict(session.execute(query.group_by(Device.target)).all())
