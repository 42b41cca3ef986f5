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

The modules: worker/replay_setting.py (which target), worker/replay_plan.py (what runs, once per setting),
worker/replay_judge.py (the outcome of each side).
"""

from __future__ import annotations

from pathlib import Path

from codec.vocabulary import ReplayOutcome
from worker.bundle import Bundle
from worker.replay_judge import BundleReplay, judge
from worker.replay_plan import Progress, plan, run_plans

SIDES = ("encoder", "decoder")


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
