"""Judging a replayed side against what the bundle recorded: reproduced, differs, or not-run (never a pass).

Reproduced: the replay gives the recorded stage hashes, the recorded reconstruction pixel for pixel and, for
the encoder, the recorded bitstream; for a side that recorded a typed failure, the same failure.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codec.errors import CodecError
from codec.images import decode_png
from codec.vocabulary import ReplayOutcome, Stage, TaskStatus
from worker.bundle import BITSTREAM_NAME, RECON_NAMES, Bundle
from worker.contract import DecodeResult, EncodeResult, TaskReport
from worker.replay_plan import GroupRun, Planned
from worker.replay_setting import Setting


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
