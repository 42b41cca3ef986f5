"""Runs .github/scripts/nightly.sh on this machine the way the nightly workflow's jobs run it."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "nightly.sh"
BITMATCH = Path(sys.executable).parent / "bitmatch"
# (target, label, artifact suffix): two "runners" of this machine, as the workflow's matrix names them
DEVICES = (("cpu", "cpu@linux", "linux"), ("cpu-1t-noopt", "cpu@linux-1t", "linux-1t"))


@dataclass(frozen=True)
class Night:
    sets: Path  # every encode and decode set, one subdirectory each (what the aggregate job downloads)
    report: Path
    summary: Path
    output: str  # the script's stdout and stderr over the night


def nightly(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The script, run as a workflow step runs it: the venv's bitmatch, GITHUB_STEP_SUMMARY only if given."""
    base = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        env={**base, "BITMATCH": str(BITMATCH), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _step(*args: object, env: dict[str, str] | None = None) -> str:
    done = nightly(*args, env=env)
    assert done.returncode == 0, f"nightly.sh {args[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def run_night(base: Path, history: Path, summary: Path | None) -> Night:
    """Encode on both devices, decode every encode set on both, aggregate into `history`."""
    encodes, decodes, sets = base / "encode-sets", base / "decode-sets", base / "sets"
    output = ""
    for target, label, suffix in DEVICES:
        output += _step("encode", target, label, encodes / f"encode-set-{suffix}")
    for target, label, suffix in DEVICES:
        output += _step("decode", target, label, encodes, decodes / f"decode-set-{suffix}")
    for directory in (*encodes.iterdir(), *decodes.iterdir()):
        shutil.copytree(directory, sets / directory.name)
    env = {"GITHUB_STEP_SUMMARY": str(summary)} if summary else None
    output += _step("aggregate", sets, history, base / "report", env=env)
    return Night(sets, base / "report", summary or base / "report" / "summary.md", output)
