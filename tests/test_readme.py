"""The README works as written: every ```sh block runs, in order, in a fresh copy of the tree (only what git
tracks or would track: no .venv, no caches), with the ports taken from the environment.

The opening block is `make demo` and `make test`: `make demo` builds the copy's own .venv (the base package,
no torch) and is stopped with Ctrl-C once its dashboard is up; `make test` is the command this test runs in.
The later blocks use that .venv, as a newcomer's shell would after `make demo`."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.qemu]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
OPENING = ["make demo", "make test"]
DEMO_READY = re.compile(r"dashboard.*(http://\S+)", re.IGNORECASE)
BLOCK_TIMEOUT_S = 1500


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


BLOCKS = shell_blocks(README.read_text(encoding="utf-8"))


def commands_of(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_copy(destination: Path) -> Path:
    """The files a fresh clone has: tracked ones and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def user_environment(ports: dict[str, int]) -> dict[str, str]:
    """This process's environment without its virtualenv: the README must activate its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update({name: str(port) for name, port in ports.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def same_versions_as_this_venv(directory: Path) -> Path:
    """A pip constraints file pinning every package to the version this venv has. The emulated targets'
    provisioning (shared, under the user cache directory) is stamped with the host's package versions; a
    second venv with newer ones would rebuild it under the feet of the tests that run beside this one."""
    freeze = [sys.executable, "-m", "pip", "freeze", "--exclude-editable"]
    frozen = subprocess.run(freeze, check=True, capture_output=True, text=True).stdout
    lines = [line for line in frozen.splitlines() if line and not line.startswith(("#", "-e"))]
    constraints = directory / "constraints.txt"
    constraints.write_text("\n".join(lines) + "\n")
    return constraints


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 60) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        return process.wait(wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(30)


def leftovers(session: int) -> list[str]:
    """Processes still running in the session a block started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture(scope="module")
def blocks() -> list[str]:
    return BLOCKS


def block_id(index: int) -> str:
    first = next(c for c in commands_of(BLOCKS[index]) if not c.startswith(". "))  # not the activation
    return f"{index}-" + re.sub(r"[^A-Za-z0-9]+", "-", first)[:40].strip("-")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"BITMATCH_PORT": free_port(), "BITMATCH_WORKER_PORT": free_port()}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield fresh_copy(tmp_path_factory.mktemp("readme") / "bitmatch")


def test_the_readme_opens_with_the_two_commands(blocks: list[str]) -> None:
    assert commands_of(blocks[0]) == OPENING
    text = README.read_text(encoding="utf-8")
    assert text.index("```sh") < text.index("\n## "), "the two commands come before any section"


def test_make_demo_runs_on_a_fresh_copy_without_torch(clone: Path, ports: dict[str, int]) -> None:
    """`make demo PORT=...` installs the base package only, runs the jobs, serves the dashboard, and stops
    cleanly on Ctrl-C."""
    port = ports["BITMATCH_PORT"]
    env = user_environment(ports)
    env["PIP_CONSTRAINT"] = str(same_versions_as_this_venv(clone.parent))
    log = clone.parent / "make-demo.log"
    with log.open("w") as sink:
        demo = subprocess.Popen(
            ["make", "demo", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = _wait_for(lambda: DEMO_READY.search(log.read_text()), demo, log)
        assert f":{port}" in url.group(1)
        status = stop_group(demo, signal.SIGINT, wait_s=120)  # Ctrl-C: the whole foreground group
    output = log.read_text()
    # make reports its child's interrupt as its own (exit 2, "Interrupt"); the demo must have stopped cleanly.
    assert status in (0, 2, -signal.SIGINT), output[-3000:]
    assert "stopping ..." in output and "Traceback" not in output, output[-3000:]
    assert leftovers(demo.pid) == []
    venv = clone / ".venv"
    site = next(venv.glob("lib/python3*/site-packages"))
    assert not (site / "torch").exists(), "make demo installed torch"
    size_mb = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    print(f"\n.venv after make demo: {size_mb:.0f} MiB")


@pytest.mark.parametrize("index", range(1, len(BLOCKS)), ids=block_id)
def test_readme_block_runs_as_written(
    index: int, blocks: list[str], clone: Path, ports: dict[str, int]
) -> None:
    if not (clone / ".venv" / "bin" / "bitmatch").exists():
        pytest.fail("the .venv `make demo` builds is missing: test_make_demo_runs_on_a_fresh_copy failed")
    block = blocks[index]
    script = clone.parent / f"block-{index}.sh"
    script.write_text(block)
    log = clone.parent / f"block-{index}.log"
    with log.open("w") as sink:
        run = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", str(script)],
            cwd=clone,
            env=user_environment(ports),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = run.wait(BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            for left in leftovers(run.pid) if run.poll() is not None else []:
                print(f"stopping what the block left running: {left}")
            stop_group(run)
    output = log.read_text()
    assert status == 0, f"block {index} exited {status}:\n{block}\n--- output ---\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]


def _wait_for(probe, process: subprocess.Popen, log: Path, timeout_s: float = BLOCK_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"make demo exited {process.returncode} early:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    stop_group(process, signal.SIGKILL)
    pytest.fail(f"make demo did not bring up its dashboard:\n{log.read_text()[-4000:]}")
