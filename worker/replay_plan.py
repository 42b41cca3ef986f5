"""What each side of a repro bundle replays, and those tasks run once per setting on its compute process.

A task several bundles share runs once per setting: the cells of one encoder and one image share that encode,
and a decoder given the same bitstream bytes by several encoders decodes them once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec.errors import CodecError
from codec.vocabulary import TaskStatus
from worker.bundle import BITSTREAM_NAME, DECODER_PACKAGE_NAME, IMAGE_NAME, PACKAGE_NAME, Bundle
from worker.contract import TaskReport
from worker.offline import Runner, SetError
from worker.replay_setting import ReplayUnavailable, Setting, launch_of, setting_of
from worker.supervisor import ComputeError

FAILURES_WITH_A_CODE = (TaskStatus.FAILED, TaskStatus.ERROR)  # a typed failure is reproducible too
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Task:
    """One encode or decode; bundles that ask for the same one share its run."""

    kind: str  # encode | decode
    codec: str
    payload_sha256: str
    allow_foreign: bool


@dataclass(frozen=True)
class Work:
    task: Task
    archive: bytes
    payload: bytes  # the PNG to encode or the bitstream to decode


@dataclass
class Planned:
    bundle: Bundle
    side: str
    recorded: dict[str, Any] | None
    setting: Setting | None = None
    work: Work | None = None
    reason: str | None = None  # why it cannot run


def plan(bundle: Bundle, side: str) -> Planned:
    recorded = bundle.side(side)
    planned = Planned(bundle, side, recorded)
    try:
        _check_recorded(side, recorded)
        planned.setting = setting_of(recorded or {})
        planned.work = _work(bundle, side)
    except ReplayUnavailable as exc:
        planned.reason = str(exc)
    return planned


def _check_recorded(side: str, recorded: dict[str, Any] | None) -> None:
    if recorded is None:
        raise ReplayUnavailable(f"the cell has no {side} task: nothing to reproduce")
    status = recorded.get("status")
    if status == TaskStatus.DONE and not recorded.get("stage_hashes"):
        raise ReplayUnavailable(f"the {side} recorded no stage hashes: nothing to compare")
    if status != TaskStatus.DONE and not (status in FAILURES_WITH_A_CODE and recorded.get("error_code")):
        raise ReplayUnavailable(f"the {side} produced no result ({status}): nothing to reproduce")


def _work(bundle: Bundle, side: str) -> Work:
    cell = bundle.cell
    if side == "encoder":
        kind, codec, foreign = "encode", cell["codec"], False
        archive_name, payload_name = PACKAGE_NAME, IMAGE_NAME
    else:
        other = cell.get("decoder_codec")  # a compatibility cell: another release decoded
        kind, codec, foreign = "decode", other or cell["codec"], bool(other)
        archive_name, payload_name = DECODER_PACKAGE_NAME if other else PACKAGE_NAME, BITSTREAM_NAME
    missing = [name for name in (archive_name, payload_name) if name not in bundle.files]
    if missing:
        raise ReplayUnavailable(f"the bundle has no {' and no '.join(missing)}")
    payload = bundle.files[payload_name]
    task = Task(kind, codec, hashlib.sha256(payload).hexdigest(), foreign)
    return Work(task, bundle.files[archive_name], payload)


@dataclass
class GroupRun:
    """What one setting's compute process answered: a report per task, or why a task did not run."""

    fingerprint: dict[str, Any] = field(default_factory=dict)
    reports: dict[Task, TaskReport | str] = field(default_factory=dict)


async def run_plans(
    plans: list[Planned], cache_dir: Path, timeout_s: float, memory_limit_mb: float, progress: Progress
) -> dict[Setting, GroupRun]:
    """Every planned task, once, on its setting's compute process; the settings' processes in parallel."""
    groups: dict[Setting, dict[Task, Work]] = {}
    for planned in plans:
        if planned.work is not None and planned.setting is not None:
            groups.setdefault(planned.setting, {})[planned.work.task] = planned.work
    runs = await asyncio.gather(
        *(
            _run_group(setting, works, cache_dir, timeout_s, memory_limit_mb, progress)
            for setting, works in groups.items()
        )
    )
    return dict(zip(groups, runs, strict=True))


async def _run_group(
    setting: Setting,
    works: dict[Task, Work],
    cache_dir: Path,
    timeout_s: float,
    memory_limit_mb: float,
    progress: Progress,
) -> GroupRun:
    try:
        launch = launch_of(setting, memory_limit_mb)
    except ReplayUnavailable as exc:
        return GroupRun(reports=dict.fromkeys(works, str(exc)))
    progress(f"replay: starting {setting.describe()} for {len(works)} task(s)")
    run = GroupRun()
    try:
        async with Runner(setting.spec, launch, cache_dir, timeout_s) as runner:
            run.fingerprint = runner.fingerprint
            for task, work in works.items():
                run.reports[task] = await _run_task(runner, work)
    except (SetError, ComputeError) as exc:
        reason = f"the {setting.spec} compute process did not start: {exc}"
        return GroupRun(run.fingerprint, {task: run.reports.get(task, reason) for task in works})
    return run


async def _run_task(runner: Runner, work: Work) -> TaskReport | str:
    task = work.task
    try:
        if not runner.store.has(task.codec):
            runner.store.put(task.codec, work.archive)
        if task.kind == "encode":
            return await runner.encode(task.codec, work.payload)
        return await runner.decode(task.codec, work.payload, task.allow_foreign)
    except CodecError as exc:
        return f"the bundle's input cannot be used: {exc}"
