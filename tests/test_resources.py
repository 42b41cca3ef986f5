"""codec.resources: the setting wins, a missing resource is a typed error, a wheel finds what it ships."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from codec import resources
from codec.importers import calibration
from codec.resources import IMAGE_SETS_SETTING, PACKAGES_SETTING, ResourceMissing

CHECKOUT = Path(__file__).resolve().parents[1]
# What the wheel build reads; build/ and *.egg-info land in the copy, not in the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "codec", "worker", "server", "bitmatch", "packages", "data")


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch):
    monkeypatch.delenv(PACKAGES_SETTING, raising=False)
    monkeypatch.delenv(IMAGE_SETS_SETTING, raising=False)


def test_a_checkout_finds_its_packages_and_image_sets():
    assert resources.packages_dir() == CHECKOUT / "packages"
    assert resources.shipped_package("int16/q2") == CHECKOUT / "packages" / "int16" / "q2"
    assert resources.image_set("testset") == CHECKOUT / "data" / "testset"
    assert resources.image_set_to_write("heldout") == CHECKOUT / "data" / "heldout"
    assert resources.shipped_relative(CHECKOUT / "packages" / "int8" / "q1") == "packages/int8/q1"


def test_the_setting_wins(monkeypatch, tmp_path):
    (tmp_path / "int16" / "q2").mkdir(parents=True)
    (tmp_path / "int16" / "q2" / "manifest.json").write_text("{}")
    (tmp_path / "testset").mkdir()
    monkeypatch.setenv(PACKAGES_SETTING, str(tmp_path))
    monkeypatch.setenv(IMAGE_SETS_SETTING, str(tmp_path))
    assert resources.shipped_package("int16/q2") == tmp_path / "int16" / "q2"
    assert resources.image_set("testset") == tmp_path / "testset"
    assert resources.image_set_to_write("kodak") == tmp_path / "kodak"


def test_a_setting_without_the_resource_is_a_typed_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv(IMAGE_SETS_SETTING, str(tmp_path))
    with pytest.raises(ResourceMissing, match=f"data/calibration is not in .*{IMAGE_SETS_SETTING}="):
        calibration.images(None)
    monkeypatch.setenv(PACKAGES_SETTING, str(tmp_path))
    with pytest.raises(ResourceMissing, match="no shipped codec package int16/q2"):
        resources.shipped_package("int16/q2")


def test_an_image_set_nowhere_names_the_setting_and_where_to_fetch_it():
    with pytest.raises(ResourceMissing) as raised:
        resources.image_set("no-such-set")
    message = str(raised.value)
    assert IMAGE_SETS_SETTING in message and "clone the bitmatch repository" in message
    assert "\n" not in message and raised.value.code == "resource-missing"


def test_an_install_without_the_packages_falls_back_to_the_random_health_package(monkeypatch, tmp_path):
    from server.knownanswer import RANDOM_HEALTH_PACKAGE, health_package

    monkeypatch.setenv(PACKAGES_SETTING, str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert health_package(None, tmp_path) == tmp_path / RANDOM_HEALTH_PACKAGE


# The wheel's own check runs in a child interpreter that sees only the unpacked wheel and the venv's
# site-packages (for numpy and friends): -I drops the cwd and PYTHONPATH, -S the editable install's finder.
WHEEL_CHECK = """
import json, sys
sys.path[:0] = sys.argv[1:3]
from codec import resources
from server import knownanswer
out = {
    "codec": resources.__file__,
    "health": str(knownanswer.shipped_health_package()),
    "demo": sorted(p.name for p in (resources.image_set("testset") / "demo").glob("*.png")),
    "kodak": len(list(resources.image_set("kodak").glob("*.png"))),
    "rd": (resources.packages_dir() / "rd.json").is_file(),
    "relative": resources.shipped_relative(knownanswer.shipped_health_package()),
}
for lookup in (lambda: resources.image_set("heldout"), lambda: resources.image_set_to_write("testset")):
    try:
        lookup()
        out.setdefault("errors", []).append(None)
    except resources.ResourceMissing as exc:
        out.setdefault("errors", []).append(str(exc))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_built_wheel_ships_the_known_answer_package_and_the_demo_images(tmp_path):
    source = tmp_path / "source"
    for name in BUILD_INPUTS:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif path.is_file():
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*pip, str(source)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("bitmatch-*.whl")
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITMATCH_") and k != "PYTHONPATH"}
    child = [sys.executable, "-I", "-S", "-c", WHEEL_CHECK, str(unpacked), sysconfig.get_paths()["purelib"]]
    done = subprocess.run(child, cwd=run_dir, env=env, capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    shipped = unpacked / "codec" / "_shipped"
    assert Path(found["codec"]).is_relative_to(unpacked)  # not the checkout's copy
    assert found["health"] == str(shipped / "packages" / "int16" / "q2")
    assert found["demo"] == ["astronaut.png", "coffee.png", "garden.png", "picos.png"]
    assert found["kodak"] == 8 and found["rd"] and found["relative"] == "packages/int16/q2"
    heldout, to_write = found["errors"]
    assert heldout and IMAGE_SETS_SETTING in heldout and "the wheel ships data/ calibration" in heldout
    assert to_write and "rebuilt into a source checkout" in to_write
