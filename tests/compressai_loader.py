"""CompressAI's own model code, for the tests that compare bitmatch's importer against CompressAI itself.

`compressai==1.2.8` from PyPI pins numpy < 2 and imports torchvision and torch_geometric from its package
`__init__`, neither of which can sit beside the project's numpy 2 and CPU torch. So the wheel is installed
without its dependencies into a directory of its own (`COMPRESSAI_DIR`, made by `make test`, or on first use
here), and its model modules are imported without running the package `__init__`: the package, its registry
and its `models` subpackage are registered as plain namespace modules first. What is imported is CompressAI's
unmodified code: the models, the entropy models, GDN and the compiled rANS coder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

COMPRESSAI_VERSION = "1.2.8"
REPO_ROOT = Path(__file__).resolve().parents[1]
COMPRESSAI_DIR = Path(os.environ.get("BITMATCH_COMPRESSAI_DIR", REPO_ROOT / ".venv" / "compressai"))
ARCHITECTURES = {"bmshj2018-hyperprior": "ScaleHyperprior", "mbt2018-mean": "MeanScaleHyperprior"}
_REGISTRY_HOOKS = (
    "register_model",
    "register_module",
    "register_transform",
    "register_criterion",
    "register_optimizer",
    "register_scheduler",
    "register_dataset",
)


def install(target: Path = COMPRESSAI_DIR) -> Path:
    """pip-install the wheel, without dependencies, into `target` (once)."""
    if not (target / "compressai" / "models" / "google.py").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                str(target),
                f"compressai=={COMPRESSAI_VERSION}",
            ],
            check=True,
        )
    return target


def google_models() -> types.ModuleType:
    """`compressai.models.google` (ScaleHyperprior, MeanScaleHyperprior, ...)."""
    import importlib

    if "compressai.models.google" in sys.modules:
        return sys.modules["compressai.models.google"]
    root = install() / "compressai"
    package = types.ModuleType("compressai")
    package.__path__ = [str(root)]  # type: ignore[attr-defined]
    package.get_entropy_coder = lambda: "ans"  # type: ignore[attr-defined]
    package.available_entropy_coders = lambda: ["ans"]  # type: ignore[attr-defined]
    registry = types.ModuleType("compressai.registry")
    for name in _REGISTRY_HOOKS:
        setattr(registry, name, lambda *args, **kwargs: lambda cls: cls)
    models = types.ModuleType("compressai.models")
    models.__path__ = [str(root / "models")]  # type: ignore[attr-defined]
    sys.modules.update({"compressai": package, "compressai.registry": registry, "compressai.models": models})
    return importlib.import_module("compressai.models.google")


def model_class(arch: str) -> type:
    return getattr(google_models(), ARCHITECTURES[arch])
