"""`bitmatch replay`: repro bundles replayed, each side on that side's own target (worker/replay.py).

Exit 0 when every side replayed reproduced its record, 1 when a side differs, 2 when a side could not be
replayed here (its target not provisioned, an input missing, nothing recorded) or a bundle is unreadable; 2
wins over 1, as in `bitmatch matrix`: the replay did not see everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from codec.vocabulary import ReplayOutcome
from worker.bundle import Bundle, BundleError, load_bundle
from worker.cli import default_cache_dir
from worker.offline import run
from worker.replay import SIDES, exit_code, replay_bundles, write_outputs
from worker.replay_judge import BundleReplay

INFRASTRUCTURE_EXIT = 2


@click.command(name="replay")
@click.argument("paths", nargs=-1, required=True, metavar="BUNDLE...", type=click.Path(path_type=Path))
@click.option(
    "--side",
    type=click.Choice([*SIDES, "both"]),
    default="both",
    show_default=True,
    help="Which side of each cell to replay.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the replay as JSON.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each replayed side's reconstruction (and the encoder's bitstream) under OUT/<bundle>/.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds one encode or decode may take.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where packages are unpacked [default: the worker's cache].",
)
@click.option(
    "--memory-limit-mb",
    type=click.FloatRange(min=0),
    default=6144.0,
    show_default=True,
    help="Address-space limit of each compute process (0: none).",
)
def replay_command(
    paths: tuple[Path, ...],
    side: str,
    as_json: bool,
    out: Path | None,
    timeout: float,
    cache_dir: Path | None,
    memory_limit_mb: float,
) -> None:
    """Replay repro bundles (zips or extracted folders): the encode on the encoder's target, the decode on
    the decoder's target, each compared with the recorded stage hashes and reconstruction."""
    bundles = [_load(path) for path in paths]
    sides = SIDES if side == "both" else (side,)
    cache = cache_dir or default_cache_dir()
    replays = run(replay_bundles(bundles, sides, cache, timeout, memory_limit_mb, _say))
    written = write_outputs(replays, out) if out is not None else {}
    code = exit_code(replays)
    if as_json:
        click.echo(json.dumps(_document(replays, written, code), indent=1))
    else:
        for line in _lines(replays):
            click.echo(line)
    raise SystemExit(code)


def _load(path: Path) -> Bundle:
    try:
        if not path.exists():
            raise BundleError(f"{path} does not exist")
        return load_bundle(path)
    except BundleError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(INFRASTRUCTURE_EXIT) from None


def _say(line: str) -> None:
    click.echo(line, err=True)


def _counts(replays: list[BundleReplay]) -> dict[str, int]:
    counts = dict.fromkeys(ReplayOutcome, 0)
    for replay in replays:
        for side in replay.sides:
            counts[side.outcome] += 1
    return {str(outcome): n for outcome, n in counts.items()}


def _lines(replays: list[BundleReplay]) -> list[str]:
    lines = []
    for replay in replays:
        lines.append(replay.heading())
        lines += [f"  {side.line()}" for side in replay.sides]
    counts = _counts(replays)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    lines.append(f"{len(replays)} bundle(s), sides: {summary}")
    return lines


def _document(replays: list[BundleReplay], written: dict[str, dict[str, str]], code: int) -> dict:
    bundles = []
    for replay in replays:
        entry = replay.as_dict()
        if replay.bundle.name in written:
            entry["files"] = written[replay.bundle.name]
        bundles.append(entry)
    return {"exit_code": code, "sides": _counts(replays), "bundles": bundles}
