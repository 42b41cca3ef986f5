"""Replaying repro bundles (worker/bundle.py): each side of a cell on that side's own target.

The encode runs on the encoder's target and the decode of the recorded bitstream on the decoder's target, each
on the target's own compute process (natively, or under its emulator with the `-cpu` model the side
recorded), with the runtime and thread variables of the side's fingerprint: the process a worker's HTTP front
and `encode-set` use. A side is then

- reproduced: the replay gives the recorded stage hashes, the recorded reconstruction pixel for pixel and,
  for the encoder, the recorded bitstream; for a side that recorded a typed failure, the same failure;
- differs: it ran and gave something else;
- not-run: it could not be replayed here (its target is not provisioned or cannot run on this host, the
  bundle lacks an input, the side recorded nothing to compare), with the reason. Never a pass.

One compute process per setting (target, runtime, thread variables) serves every bundle of a call; the
settings' processes run side by side. A task several bundles share runs once per setting: the cells of one
encoder and one image share that encode, as in the job, and a decoder given the same bitstream bytes by
several encoders (int16 encodes are identical across devices) decodes them once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from codec.errors import CodecError
from codec.images import decode_png
from codec.runtime import RUNTIME_NAMES
from codec.vocabulary import ReplayOutcome, Stage, TaskStatus
from worker.bundle import (
    BITSTREAM_NAME,
    DECODER_PACKAGE_NAME,
    IMAGE_NAME,
    PACKAGE_NAME,
    RECON_NAMES,
    Bundle,
)
from worker.cli import target_launch, with_memory_limit
from worker.contract import DecodeResult, EncodeResult, TaskReport
from worker.fingerprint import THREAD_VARIABLES
from worker.offline import Runner, SetError
from worker.supervisor import ComputeError, ComputeLaunch
from worker.targets import TARGETS, Target, get_target

SIDES = ("encoder", "decoder")
FAILURES_WITH_A_CODE = (TaskStatus.FAILED, TaskStatus.ERROR)  # a typed failure is reproducible too
MACHINE_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}
Progress = Callable[[str], None]


class ReplayUnavailable(Exception):
    """This side cannot be replayed here; the message says why, in one line."""


@dataclass(frozen=True)
class Setting:
    """How a recorded side is replayed: the target launched, its runtime, its thread variables (None: as
    the target sets them)."""

    spec: str
    runtime: str
    emulated_cpu: str | None
    threads_env: tuple[tuple[str, str], ...] | None

    def describe(self) -> str:
        extras = [self.runtime]
        if self.emulated_cpu:
            extras.append(f"emulated, -cpu {self.emulated_cpu}")
        extras += [f"{name}={value}" for name, value in self.threads_env or ()]
        return f"{self.spec} ({', '.join(extras)})"

    def as_dict(self) -> dict[str, Any]:
        threads = dict(self.threads_env) if self.threads_env is not None else None
        return {
            "target": self.spec,
            "runtime": self.runtime,
            "cpu": self.emulated_cpu,
            "threads_env": threads,
        }


# --- which target a recorded side ran on --------------------------------------------------------------


def setting_of(recorded: dict[str, Any]) -> Setting:
    """The target spec, runtime and thread variables that replay a recorded side (ReplayUnavailable when no
    target here is that side's)."""
    fingerprint = recorded.get("fingerprint") or {}
    spec = replay_spec(recorded)
    target = _target(spec)
    runtime = str(fingerprint.get("runtime") or target.runtime)
    if runtime not in RUNTIME_NAMES:
        raise ReplayUnavailable(f"the side ran runtime {runtime!r}, which this bitmatch does not know")
    threads = fingerprint.get("threads_env")
    threads_env = None
    if isinstance(threads, dict):
        threads_env = tuple(sorted((str(k), str(v)) for k, v in threads.items() if k in THREAD_VARIABLES))
    return Setting(spec, runtime, target.emulated_cpu(), threads_env)


def replay_spec(recorded: dict[str, Any]) -> str:
    """The target spec of a recorded side: its fingerprint's device class made a target again (cpu-aarch64
    is `cpu` on aarch64), with the emulator's -cpu model when it is not the target's default."""
    fingerprint = recorded.get("fingerprint") or {}
    label_free = str(recorded.get("target") or "").partition("@")[0]  # offline sets label cpu@macos-14
    recorded_name = str(fingerprint.get("target") or label_free)
    name, _, option = recorded_name.partition(":")
    arch = str(fingerprint.get("arch") or "")
    if name not in TARGETS and arch and name.endswith(f"-{arch}"):
        name = name.removesuffix(f"-{arch}")
    if name not in TARGETS:
        raise ReplayUnavailable(f"target {recorded_name!r} is none of this bitmatch's ({', '.join(TARGETS)})")
    spec = f"{name}:{option}" if option else name
    target = _target(spec)
    cpu = (fingerprint.get("emulator") or {}).get("cpu")
    if cpu and target.emulated_cpu() not in (None, cpu):
        spec = f"{name}:{cpu}"
        try:
            presents = get_target(spec).emulated_cpu() == cpu
        except (KeyError, TypeError, ValueError):
            presents = False
        if not presents:
            raise ReplayUnavailable(f"the side ran under -cpu {cpu}; target {name} cannot present it")
    if target.emulated_cpu() is None and arch and _machine(arch) != _machine(platform.machine()):
        raise ReplayUnavailable(
            f"the side ran {name} natively on {arch}; this host is {platform.machine()}: replay it on {arch}"
        )
    return spec


def _target(spec: str) -> Target:
    try:
        return get_target(spec)
    except (KeyError, TypeError, ValueError):
        raise ReplayUnavailable(f"target {spec!r} cannot be made here") from None


def _machine(name: str) -> str:
    return MACHINE_ALIASES.get(name.lower(), name.lower())


def launch_of(setting: Setting, memory_limit_mb: float) -> ComputeLaunch:
    """The compute process of a setting, or ReplayUnavailable with the line that says what to do."""
    target = _target(setting.spec)
    reason = target.check()
    if reason is not None:
        raise ReplayUnavailable(_cannot_run(setting.spec, target, reason))
    launch = with_memory_limit(target_launch(target, setting.spec, setting.runtime), memory_limit_mb)
    if setting.threads_env is None:
        return launch
    env = {k: v for k, v in launch.env.items() if k not in THREAD_VARIABLES} | dict(setting.threads_env)
    return replace(launch, env=env)


def _cannot_run(spec: str, target: Target, reason: str) -> str:
    line = f"target {spec} is not available here: {reason}"
    setup = f"`bitmatch targets setup {spec}`"
    if "targets setup" in line:
        return line.replace(f"`bitmatch targets setup {target.name}`", setup)
    if type(target).setup is not Target.setup and target.provision_blocker() is None:
        return f"{line}; run {setup}"
    return line


# --- what each side runs ------------------------------------------------------------------------------


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


# --- running ------------------------------------------------------------------------------------------


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


# --- judging ------------------------------------------------------------------------------------------


@dataclass
class SideReplay:
    side: str
    recorded_target: str | None
    setting: Setting | None
    outcome: ReplayOutcome
    detail: str
    checks: dict[str, bool] = field(default_factory=dict)
    differing_stages: list[str] = field(default_factory=list)
    stage_hashes: dict[str, str] = field(default_factory=dict)
    fingerprint_differs: list[str] = field(default_factory=list)
    recon_png: bytes | None = None
    bitstream: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "detail": self.detail,
            "recorded_target": self.recorded_target,
            "replayed_as": self.setting.as_dict() if self.setting else None,
            "checks": self.checks,
            "differing_stages": self.differing_stages,
            "stage_hashes": self.stage_hashes,
            "fingerprint_differs": self.fingerprint_differs,
        }

    def line(self) -> str:
        where = f"on {self.setting.describe()}" if self.setting else f"({self.recorded_target or 'none'})"
        return f"{self.side} {where}: {self.outcome}: {self.detail}"


@dataclass
class BundleReplay:
    bundle: Bundle
    sides: list[SideReplay]

    @property
    def outcome(self) -> ReplayOutcome:
        outcomes = {side.outcome for side in self.sides}
        for worst in (ReplayOutcome.NOT_RUN, ReplayOutcome.DIFFERS):
            if worst in outcomes:
                return worst
        return ReplayOutcome.REPRODUCED

    def heading(self) -> str:
        cell = self.bundle.cell
        return (
            f"{self.bundle.name}: {cell.get('codec_name')} {cell.get('image_name')}, "
            f"{cell.get('encoder')} -> {cell.get('decoder')} ({cell.get('verdict')}): {self.outcome}"
        )

    def as_dict(self) -> dict[str, Any]:
        cell = self.bundle.cell
        facts = ("job", "id", "codec", "codec_name", "image_name", "encoder", "decoder", "verdict")
        return {
            "bundle": str(self.bundle.path),
            "name": self.bundle.name,
            **{("cell" if key == "id" else key): cell.get(key) for key in facts},
            "outcome": self.outcome,
            "sides": {side.side: side.as_dict() for side in self.sides},
        }


def judge(planned: Planned, runs: dict[Setting, GroupRun]) -> SideReplay:
    recorded = planned.recorded or {}
    base = SideReplay(planned.side, recorded.get("target"), planned.setting, ReplayOutcome.NOT_RUN, "")
    if planned.reason is not None or planned.work is None or planned.setting is None:
        base.detail = planned.reason or "nothing to run"
        return base
    run = runs[planned.setting]
    report = run.reports[planned.work.task]
    if isinstance(report, str):
        base.detail = report
        return base
    error = report.error
    if error is not None and error.status >= 500 and error.error != recorded.get("error_code"):
        base.detail = f"the replay could not run: {error.error}: {error.detail}"  # an outage, not a finding
        return base
    base.fingerprint_differs = _fingerprint_differences(recorded.get("fingerprint") or {}, run.fingerprint)
    if report.result is not None:
        base.stage_hashes = {str(k): v for k, v in report.result.stage_hashes.items()}
        base.recon_png = _b64(report.result.recon_png)
        if isinstance(report.result, EncodeResult):
            base.bitstream = _b64(report.result.bitstream)
    if recorded.get("status") == TaskStatus.DONE:
        _compare_result(base, planned.bundle, recorded, report)
    else:
        _compare_failure(base, recorded, report)
    return base


def _compare_result(side: SideReplay, bundle: Bundle, recorded: dict[str, Any], report: TaskReport) -> None:
    failure = _failure_code(report)
    if failure is not None:
        side.outcome, side.detail = ReplayOutcome.DIFFERS, f"recorded a result; the replay failed: {failure}"
        return
    side.differing_stages = _differing(recorded.get("stage_hashes") or {}, side.stage_hashes)
    side.checks["stage hashes"] = not side.differing_stages
    recorded_png = bundle.files.get(RECON_NAMES[side.side])
    if recorded_png is not None:
        side.checks["reconstruction"] = _same_pixels(recorded_png, side.recon_png)
    if side.side == "encoder":
        bits = bundle.files.get(BITSTREAM_NAME)
        expected_sha = hashlib.sha256(bits).hexdigest() if bits else recorded.get("bitstream")
        side.checks["bitstream"] = isinstance(report.result, EncodeResult) and (
            report.result.bitstream_sha256 == expected_sha
        )
    _conclude(side, "" if recorded_png is not None else " (the bundle holds no recorded reconstruction)")


def _compare_failure(side: SideReplay, recorded: dict[str, Any], report: TaskReport) -> None:
    expected, failure = recorded.get("error_code"), _failure_code(report)
    side.checks["failure"] = failure == expected
    partial = recorded.get("stage_hashes") or {}  # a decode that stopped in the y section: what it got to
    side.differing_stages = _differing(partial, side.stage_hashes)
    if partial:
        side.checks["stage hashes"] = not side.differing_stages
    replayed = failure or "a result"
    _conclude(side, f" (recorded {expected}; the replay gave {replayed})")


def _conclude(side: SideReplay, note: str) -> None:
    differing = [name for name, ok in side.checks.items() if not ok]
    if differing:
        stages = f" ({', '.join(side.differing_stages)})" if side.differing_stages else ""
        side.outcome, side.detail = ReplayOutcome.DIFFERS, f"{', '.join(differing)} differ{stages}{note}"
    else:
        side.outcome, side.detail = ReplayOutcome.REPRODUCED, f"same {', '.join(side.checks)}{note}"


def _differing(expected: dict[str, str], replayed: dict[str, str]) -> list[str]:
    """The recorded stages the replay hashed otherwise, in coding order."""
    order = {str(stage): i for i, stage in enumerate(Stage)}
    stages = [stage for stage in expected if replayed.get(stage) != expected[stage]]
    return sorted(stages, key=lambda stage: order.get(stage, len(order)))


def _failure_code(report: TaskReport) -> str | None:
    if report.error is not None:
        return report.error.error
    result = report.result
    if isinstance(result, DecodeResult) and result.partial and result.decode_error is not None:
        return result.decode_error.error
    return None


def _same_pixels(recorded_png: bytes, replayed_png: bytes | None) -> bool:
    if replayed_png is None:
        return False
    try:
        return bool(np.array_equal(decode_png(recorded_png), decode_png(replayed_png)))
    except CodecError:
        return False


def _fingerprint_differences(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    if not recorded:
        return []
    return sorted(key for key in set(recorded) | set(replayed) if recorded.get(key) != replayed.get(key))


def _b64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None


# --- the whole call -----------------------------------------------------------------------------------


async def replay_bundles(
    bundles: list[Bundle],
    sides: tuple[str, ...],
    cache_dir: Path,
    timeout_s: float = 300.0,
    memory_limit_mb: float = 6144.0,
    progress: Progress = print,
) -> list[BundleReplay]:
    plans = [[plan(bundle, side) for side in sides] for bundle in bundles]
    runs = await run_plans(
        [p for group in plans for p in group], cache_dir, timeout_s, memory_limit_mb, progress
    )
    return [
        BundleReplay(bundle, [judge(p, runs) for p in group])
        for bundle, group in zip(bundles, plans, strict=True)
    ]


def exit_code(replays: list[BundleReplay]) -> int:
    """0 every side reproduced, 1 a side differs, 2 a side could not run (it wins: not all was seen)."""
    outcomes = {side.outcome for replay in replays for side in replay.sides}
    if ReplayOutcome.NOT_RUN in outcomes:
        return 2
    return 1 if ReplayOutcome.DIFFERS in outcomes else 0


def write_outputs(replays: list[BundleReplay], out: Path) -> dict[str, dict[str, str]]:
    """Each replayed side's reconstruction (and the encoder's bitstream) under OUT/<bundle>/."""
    written: dict[str, dict[str, str]] = {}
    for replay in replays:
        folder = out / replay.bundle.name
        for side in replay.sides:
            for suffix, data in (("recon.png", side.recon_png), ("bits.bmc", side.bitstream)):
                if data is None:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{side.side}-replay-{suffix}"
                path.write_bytes(data)
                written.setdefault(replay.bundle.name, {})[f"{side.side}-{suffix}"] = str(path)
    return written
