"""A user's mistake on any command of the CLI: a non-zero exit and one line `error: ...` naming the file or
option, never a traceback. Each mistake runs as a real subprocess, as a user would meet it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from codec.build import build_random
from codec.images import save_png
from codec.networks import synthetic_images

ROOT = Path(__file__).resolve().parents[1]
USAGE, FAILURE, INFRASTRUCTURE, INTERRUPTED = 2, 1, 2, 130


def bitmatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "bitmatch", *args]


def train(*args: str) -> list[str]:
    return [sys.executable, "-m", "codec.train", *args]


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITMATCH", "FORCE_COLOR", "TTY_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(home),  # the default data and cache directories land in the test's own folder
        BITMATCH_CACHE=str(home / "cache"),
        BITMATCH_TOKEN="test-token",
        BITMATCH_WORKER_TOKEN="test-token",
    )
    return env


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A workspace: two packages of one seed, a bitstream of the first, good and bad inputs."""
    root = tmp_path_factory.mktemp("cli-errors")
    for precision in ("int16", "float"):
        build_random(root / precision, precision, 4, 6, 5, 32)
    images = root / "images"
    images.mkdir()
    save_png(np.ascontiguousarray(synthetic_images(0, 1, 64)[0]), images / "good.png")
    (root / "notimage.png").write_text("not an image\n")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "broken.png").write_bytes((images / "good.png").read_bytes()[:60])
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "grey.png")
    (root / "empty").mkdir()
    env = environment(root / "home")
    bmc = root / "good.bmc"
    done = subprocess.run(
        bitmatch("codec", "encode", str(images / "good.png"), str(bmc), "--codec", str(root / "int16")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (root / "truncated.bmc").write_bytes(bmc.read_bytes()[:40])
    return SimpleNamespace(root=root, env=env, image=images / "good.png", bmc=bmc)


@dataclass(frozen=True)
class Mistake:
    name: str
    command: Callable[[SimpleNamespace], list[str]]
    names: Callable[[SimpleNamespace], tuple[str, ...]]  # what the error line must name
    exit_code: int
    progress: str | None = None  # a mistake found during the work: its progress lines come first


def _p(w: SimpleNamespace, name: str) -> str:
    return str(w.root / name)


MISTAKES = [
    # bitmatch codec
    Mistake(
        "encode: a missing image",
        lambda w: bitmatch(
            "codec", "encode", _p(w, "missing.png"), _p(w, "o.bmc"), "--codec", _p(w, "int16")
        ),
        lambda w: (_p(w, "missing.png"),),
        FAILURE,
    ),
    Mistake(
        "encode: not an image",
        lambda w: bitmatch(
            "codec", "encode", _p(w, "notimage.png"), _p(w, "o.bmc"), "--codec", _p(w, "int16")
        ),
        lambda w: ("bad-image", _p(w, "notimage.png"), "not an image file"),
        FAILURE,
    ),
    Mistake(
        "encode: a grey image",
        lambda w: bitmatch("codec", "encode", _p(w, "grey.png"), _p(w, "o.bmc"), "--codec", _p(w, "int16")),
        lambda w: ("bad-image", _p(w, "grey.png"), "mode is L"),
        FAILURE,
    ),
    Mistake(
        "encode: --codec is a folder that is not a package",
        lambda w: bitmatch("codec", "encode", str(w.image), _p(w, "o.bmc"), "--codec", _p(w, "empty")),
        lambda w: ("bad-package", _p(w, "empty"), "manifest.json"),
        FAILURE,
    ),
    Mistake(
        "encode: --codec does not exist",
        lambda w: bitmatch("codec", "encode", str(w.image), _p(w, "o.bmc"), "--codec", _p(w, "nowhere")),
        lambda w: ("--codec", _p(w, "nowhere")),
        USAGE,
    ),
    Mistake(
        "encode: an unknown --runtime",
        lambda w: bitmatch(
            "codec", "encode", str(w.image), _p(w, "o.bmc"), "--codec", _p(w, "int16"), "--runtime", "abacus"
        ),
        lambda w: ("runtime", "abacus"),
        FAILURE,
    ),
    Mistake(
        "encode: OUT_PATH is a folder",
        lambda w: bitmatch("codec", "encode", str(w.image), _p(w, "empty"), "--codec", _p(w, "int16")),
        lambda w: ("OUT_PATH", _p(w, "empty")),
        USAGE,
    ),
    Mistake(
        "encode: OUT_PATH's folder is a file",
        lambda w: bitmatch(
            "codec", "encode", str(w.image), _p(w, "notimage.png/o.bmc"), "--codec", _p(w, "int16")
        ),
        lambda w: (_p(w, "notimage.png"), "not a folder"),
        FAILURE,
    ),
    Mistake(
        "decode: a bitstream of another codec",
        lambda w: bitmatch("codec", "decode", str(w.bmc), _p(w, "o.png"), "--codec", _p(w, "float")),
        lambda w: ("wrong-codec", str(w.bmc)),
        FAILURE,
    ),
    Mistake(
        "decode: not a bitstream",
        lambda w: bitmatch(
            "codec", "decode", _p(w, "notimage.png"), _p(w, "o.png"), "--codec", _p(w, "int16")
        ),
        lambda w: ("bad-magic", _p(w, "notimage.png")),
        FAILURE,
    ),
    Mistake(
        "decode: a truncated bitstream",
        lambda w: bitmatch(
            "codec", "decode", _p(w, "truncated.bmc"), _p(w, "o.png"), "--codec", _p(w, "int16")
        ),
        lambda w: ("truncated", _p(w, "truncated.bmc")),
        FAILURE,
    ),
    Mistake(
        "decode: a missing bitstream",
        lambda w: bitmatch(
            "codec", "decode", _p(w, "missing.bmc"), _p(w, "o.png"), "--codec", _p(w, "int16")
        ),
        lambda w: (_p(w, "missing.bmc"), "No such file"),
        FAILURE,
    ),
    Mistake(
        "decode: --reference is not an image",
        lambda w: bitmatch(
            "codec",
            "decode",
            str(w.bmc),
            _p(w, "o.png"),
            "--codec",
            _p(w, "int16"),
            "--reference",
            _p(w, "notimage.png"),
        ),
        lambda w: ("bad-image", _p(w, "notimage.png")),
        FAILURE,
    ),
    Mistake(
        "pack: a folder that is not a package",
        lambda w: bitmatch("codec", "pack", _p(w, "empty"), _p(w, "p.tar")),
        lambda w: ("bad-package", _p(w, "empty")),
        FAILURE,
    ),
    Mistake(
        "build-random: a bad --channels",
        lambda w: bitmatch(
            "codec",
            "build-random",
            "--precision",
            "int16",
            "--channels",
            "4",
            "--seed",
            "1",
            "--out",
            _p(w, "b"),
        ),
        lambda w: ("--channels",),
        USAGE,
    ),
    Mistake(
        "build-random: an unknown --precision",
        lambda w: bitmatch(
            "codec",
            "build-random",
            "--precision",
            "int4",
            "--channels",
            "4,6",
            "--seed",
            "1",
            "--out",
            _p(w, "b"),
        ),
        lambda w: ("--precision", "int4"),
        USAGE,
    ),
    Mistake(
        "tables: --sigma-min above --sigma-max",
        lambda w: bitmatch("codec", "tables", "--sigma-min", "9", "--sigma-max", "2"),
        lambda w: ("--sigma-min",),
        USAGE,
    ),
    Mistake(
        "eval: a corrupt PNG in IMAGE_DIR",
        lambda w: bitmatch("codec", "eval", _p(w, "corrupt"), "--codec", _p(w, "int16")),
        lambda w: ("bad-image", _p(w, "corrupt/broken.png")),
        FAILURE,
        progress="codec eval: ",
    ),
    Mistake(
        "eval: --packages holds no packages",
        lambda w: bitmatch("codec", "eval", "--packages", _p(w, "empty")),
        lambda w: ("no packages in", _p(w, "empty")),
        FAILURE,
    ),
    # bitmatch import
    Mistake(
        "import compressai: a missing checkpoint",
        lambda w: bitmatch(
            "import", "compressai", _p(w, "none.pth"), "--arch", "mbt2018-mean", "--out", _p(w, "i")
        ),
        lambda w: ("bad-checkpoint", _p(w, "none.pth")),
        FAILURE,
    ),
    Mistake(
        "import compressai: not a checkpoint",
        lambda w: bitmatch(
            "import", "compressai", _p(w, "notimage.png"), "--arch", "mbt2018-mean", "--out", _p(w, "i")
        ),
        lambda w: ("bad-checkpoint", _p(w, "notimage.png")),
        FAILURE,
    ),
    Mistake(
        "import compressai: an unknown --arch",
        lambda w: bitmatch(
            "import", "compressai", _p(w, "none.pth"), "--arch", "resnet", "--out", _p(w, "i")
        ),
        lambda w: ("--arch", "resnet"),
        USAGE,
    ),
    Mistake(
        "import onnx: --spec is not JSON or TOML",
        lambda w: bitmatch("import", "onnx", "--spec", _p(w, "notimage.png"), "--out", _p(w, "i")),
        lambda w: ("bad-import-spec", _p(w, "notimage.png")),
        FAILURE,
    ),
    # targets, worker, serve, demo
    Mistake(
        "targets setup: an unknown target",
        lambda w: bitmatch("targets", "setup", "abacus"),
        lambda w: ("NAME", "abacus"),
        USAGE,
    ),
    Mistake(
        "worker: an unknown --target",
        lambda w: bitmatch("worker", "--target", "abacus", "--port", "0"),
        lambda w: ("--target", "abacus"),
        USAGE,
    ),
    Mistake(
        "worker: --compute-command is not a program",
        lambda w: bitmatch("worker", "--compute-command", _p(w, "nowhere/compute"), "--port", "0"),
        lambda w: ("--compute-command", _p(w, "nowhere/compute")),
        USAGE,
    ),
    Mistake(
        "worker: --coordinator is not a URL",
        lambda w: bitmatch("worker", "--coordinator", "lab:8100"),
        lambda w: ("--coordinator", "lab:8100"),
        USAGE,
    ),
    Mistake(
        "serve: --workers-config is not JSON or TOML",
        lambda w: bitmatch(
            "serve", "--data-dir", _p(w, "srv"), "--workers-config", _p(w, "notimage.png"), "--port", "0"
        ),
        lambda w: ("--workers-config", _p(w, "notimage.png")),
        USAGE,
    ),
    Mistake(
        "serve: --health-package is not a package",
        lambda w: bitmatch(
            "serve", "--data-dir", _p(w, "srv"), "--health-package", _p(w, "empty"), "--port", "0"
        ),
        lambda w: ("--health-package", _p(w, "empty")),
        USAGE,
    ),
    Mistake(
        "serve: --db is not a database URL",
        lambda w: bitmatch("serve", "--data-dir", _p(w, "srv"), "--db", "abacus://here", "--port", "0"),
        lambda w: ("--db",),
        USAGE,
    ),
    Mistake(
        "demo: an unknown target",
        lambda w: bitmatch("demo", "--once", "--targets", "abacus", "--data-dir", _p(w, "demo")),
        lambda w: ("abacus",),
        FAILURE,
    ),
    # the CI commands: 2 for a run that could not happen
    Mistake(
        "encode-set: --codec is not a package",
        lambda w: bitmatch("encode-set", "--codec", _p(w, "empty"), "--out", _p(w, "es")),
        lambda w: ("--codec", _p(w, "empty")),
        USAGE,
    ),
    Mistake(
        "encode-set: --images is neither a set nor a folder",
        lambda w: bitmatch(
            "encode-set", "--codec", _p(w, "int16"), "--images", _p(w, "nowhere"), "--out", _p(w, "es")
        ),
        lambda w: ("--images", _p(w, "nowhere")),
        USAGE,
    ),
    Mistake(
        "encode-set: an unknown --target",
        lambda w: bitmatch(
            "encode-set", "--codec", _p(w, "int16"), "--target", "abacus", "--out", _p(w, "es")
        ),
        lambda w: ("--target", "abacus"),
        INFRASTRUCTURE,
    ),
    Mistake(
        "decode-set: --from is not an encode set",
        lambda w: bitmatch("decode-set", "--from", _p(w, "empty"), "--out", _p(w, "ds")),
        lambda w: ("--from", _p(w, "empty")),
        USAGE,
    ),
    Mistake(
        "aggregate: not a result set",
        lambda w: bitmatch("aggregate", _p(w, "empty"), "--out", _p(w, "agg")),
        lambda w: (_p(w, "empty"), "not a result set"),
        INFRASTRUCTURE,
    ),
    Mistake(
        "matrix: --config is not TOML",
        lambda w: bitmatch("matrix", "--config", _p(w, "notimage.png"), "--out", _p(w, "mx")),
        lambda w: (_p(w, "notimage.png"),),
        INFRASTRUCTURE,
    ),
    Mistake(
        "suite make: --data-dir is not a coordinator's",
        lambda w: bitmatch("suite", "make", "--data-dir", _p(w, "empty"), "--job", "1", "--out", _p(w, "s")),
        lambda w: (_p(w, "empty"), "not a coordinator data directory"),
        INFRASTRUCTURE,
    ),
    Mistake(
        "suite run: not a suite",
        lambda w: bitmatch("suite", "run", _p(w, "empty")),
        lambda w: (_p(w, "empty"), "not a conformance suite"),
        INFRASTRUCTURE,
    ),
    Mistake(
        "an unknown command",
        lambda w: bitmatch("codec", "abacus"),
        lambda w: ("abacus",),
        USAGE,
    ),
    # python -m codec.train
    Mistake(
        "train finetune: --rate out of range",
        lambda w: train("finetune", "--rate", "9"),
        lambda w: ("--rate",),
        USAGE,
    ),
    Mistake(
        "train integerise: --out holds no packages",
        lambda w: train("integerise", "--out", _p(w, "empty")),
        lambda w: (_p(w, "empty"), "no float packages"),
        FAILURE,
    ),
]


def run(w: SimpleNamespace, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=w.env, cwd=w.root, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_is_one_error_line(w: SimpleNamespace, mistake: Mistake) -> None:
    done = run(w, mistake.command(w))
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    *before, last = done.stderr.strip().splitlines()
    assert last.startswith("error: "), done.stderr
    assert all(mistake.progress and line.startswith(mistake.progress) for line in before), done.stderr
    for name in mistake.names(w):
        assert name in last
    assert done.returncode == mistake.exit_code, done.stderr


def test_missing_output_folders_are_created(w: SimpleNamespace) -> None:
    """encode, decode and pack write into a folder that does not exist yet; pack prints the bare digest."""
    out = w.root / "new" / "deeper"
    codec = ["--codec", str(w.root / "int16")]
    assert run(w, bitmatch("codec", "encode", str(w.image), str(out / "a.bmc"), *codec)).returncode == 0
    assert run(w, bitmatch("codec", "decode", str(out / "a.bmc"), str(out / "a.png"), *codec)).returncode == 0
    packed = run(w, bitmatch("codec", "pack", str(w.root / "int16"), str(out / "more" / "p.tar")))
    digest = json.loads((w.root / "int16" / "manifest.json").read_text())["digest"]
    assert packed.returncode == 0 and packed.stdout == digest + "\n"
    assert (out / "a.png").is_file() and (out / "more" / "p.tar").is_file()


def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(w: SimpleNamespace) -> None:
    """A bug is not dressed up as the user's mistake: the traceback stays, the last line says what it is."""
    code = (
        "import sys, codec.cli\n"
        "codec.cli.output_file = lambda path: 1 / 0\n"
        "from bitmatch.cli import main\n"
        "sys.argv[0] = 'bitmatch'\n"
        "main()\n"
    )
    command = [sys.executable, "-c", code, "codec", "pack", str(w.root / "int16"), str(w.root / "p2.tar")]
    done = run(w, command)
    assert done.returncode == FAILURE
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: internal error") and "report it" in last


IMAGES_TO_INTERRUPT = 5000  # 400 took 1.2 s on a quiet machine, and the SIGINT came after the end


def test_ctrl_c_is_one_line_and_exit_130(w: SimpleNamespace) -> None:
    """SIGINT during long work: the progress says where it stopped, then `error: interrupted`."""
    many = w.root / "many"
    many.mkdir(exist_ok=True)
    png = w.image.read_bytes()
    for index in range(IMAGES_TO_INTERRUPT):  # enough that the signal always lands mid-run
        (many / f"{index:04d}.png").write_bytes(png)
    command = bitmatch("codec", "eval", str(many), "--codec", str(w.root / "int16"), "--json")
    process = subprocess.Popen(command, env=w.env, cwd=w.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr is not None
    first = process.stderr.readline().decode()  # the progress's start line: the work is under way
    assert first.startswith(f"codec eval: {IMAGES_TO_INTERRUPT} images"), first
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    text = stderr.decode()
    assert process.returncode == INTERRUPTED, text
    assert "Traceback" not in text and stdout == b""
    assert text.strip().splitlines()[-1] == "error: interrupted"
    assert "codec eval: stopped at" in text
