"""Device targets as plugins: one module per target (or family), each a class deriving `Target` and
registered with `@register`. An `opt_in` target (onnx-ref-naive) is listed and can be served like any other,
but the demo and `bitmatch matrix` start it only when `--targets` names it.

Adding a target is one new module in this package: the built-in ones are imported in the order below (the
order `bitmatch targets list` shows), then any other module here, by name.
"""

from __future__ import annotations

import importlib
import pkgutil

from worker.targets.base import (
    TARGETS,
    NativeTarget,
    Target,
    all_targets,
    get_target,
    launch_environment,
    ort_providers,
    project_root,
    register,
    unregister,
)

BUILTIN_MODULES = ("cpu", "onnx_ref", "openvino", "cuda", "qemu_aarch64", "qemu_x86_sse")
NOT_TARGETS = frozenset({"base", "readme"})


def _import_target_modules() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    found = sorted(info.name for info in pkgutil.iter_modules(__path__))
    for module in found:
        if module not in NOT_TARGETS and module not in BUILTIN_MODULES:
            importlib.import_module(f"{__name__}.{module}")


_import_target_modules()

__all__ = [
    "TARGETS",
    "NativeTarget",
    "Target",
    "all_targets",
    "get_target",
    "launch_environment",
    "ort_providers",
    "project_root",
    "register",
    "unregister",
]
