"""The abstract device target and the registry that `@register` fills: what every target answers (can it run
here, how to provision it, how to start its compute process, what it is) and the README row it documents.

A target's compute process is `compute_command(["-m", "worker.compute", ...])` run with `environment()`
laid over os.environ (`launch_environment()` merges them). The environment makes the project importable
(PYTHONPATH = the directory holding the `codec` package, plus the target's own site-packages when emulated)
and gives each target its own numba cache.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from worker import provision
from worker.provision import SetupResult

TARGETS: dict[str, type[Target]] = {}


def register(cls: type[Target]) -> type[Target]:
    """Class decorator: make `cls` a target known by its `name`."""
    if cls.name in TARGETS:
        raise ValueError(f"target {cls.name!r} is registered twice")
    TARGETS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget target `name` (for throwaway targets in tests)."""
    TARGETS.pop(name, None)


def get_target(spec: str) -> Target:
    """A target by name; `qemu-aarch64:cortex-a72` passes an option (the -cpu model) after the colon."""
    name, _, option = spec.partition(":")
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name](option) if option else TARGETS[name]()


def all_targets() -> list[Target]:
    return [cls() for cls in TARGETS.values()]


def project_root() -> Path:
    """The directory that holds the `codec` package, wherever the project was cloned or installed."""
    spec = importlib.util.find_spec("codec")
    if spec is None or spec.origin is None:
        raise RuntimeError("the codec package is not importable")
    return Path(spec.origin).resolve().parent.parent


@functools.cache
def ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def launch_environment(target: Target) -> dict[str, str]:
    """The complete environment of the target's compute process."""
    return {**os.environ, **target.environment()}


class Target(ABC):
    """One device target. Subclasses set the class attributes and implement check() and compute_command();
    emulated ones also override setup(), environment() and emulator()."""

    name: ClassVar[str]
    description: ClassVar[str]
    runtime: ClassVar[str]  # the codec runtime the compute process uses
    uses_gpu: ClassVar[bool] = False
    opt_in: ClassVar[bool] = (
        False  # `bitmatch demo` and `bitmatch matrix` start it only when named (--targets)
    )
    # Its row of the README's device-target table (worker/targets/readme.py): the first column's label
    # (default: the name in backticks) and the second's text. A target documented in another target's row
    # sets readme_row_of to that target's name instead; its label joins that row's first column.
    readme_label: ClassVar[str | None] = None
    readme_row: ClassVar[str | None] = None
    readme_row_of: ClassVar[str | None] = None

    @abstractmethod
    def check(self) -> str | None:
        """None when the target can run here, else the reason it cannot."""

    @abstractmethod
    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        """argv that runs the target's Python with python_args (e.g. ["-m", "worker.compute", ...])."""

    def available(self) -> bool:
        """Whether the target can run here (check() says why not)."""
        return self.check() is None

    def provision_blocker(self) -> str | None:
        """None when setup() can make this target runnable here, else why not."""
        return None

    def setup(self) -> SetupResult:
        """Install what the target needs; idempotent."""
        return SetupResult(self.name, "nothing to install", 0.0)

    def provision(self) -> SetupResult:
        """setup() by the name of issue 17's interface."""
        return self.setup()

    def environment(self) -> dict[str, str]:
        """Variables laid over os.environ for the compute process."""
        return {
            "PYTHONPATH": str(project_root()),
            "NUMBA_CACHE_DIR": str(provision.numba_cache_dir(self.cache_key())),
        }

    def emulator(self) -> dict[str, Any] | None:
        """The emulator under the compute process (binary, version, cpu), or None when native."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What the worker knows of the device from outside the compute process, which collects the rest
        itself (worker/fingerprint.py) but cannot see its emulator."""
        return {"target": self.name, "runtime": self.runtime, "emulator": self.emulator()}

    def emulated_cpu(self) -> str | None:
        """The CPU model the emulator presents (its -cpu), or None when native."""
        return None

    def cache_key(self) -> str:
        return self.name

    def describe(self) -> dict[str, Any]:
        reason = self.check()
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime,
            "available": reason is None,
            "reason": reason,
            "emulator": self.emulator() if reason is None else None,
        }


class NativeTarget(Target):
    """Runs in this interpreter's environment on the host CPU."""

    required_provider: ClassVar[str] = "CPUExecutionProvider"

    def check(self) -> str | None:
        providers = ort_providers()
        if not providers:
            return "onnxruntime is not importable in this environment"
        if self.required_provider not in providers:
            return f"{self.required_provider} is not among onnxruntime's providers {list(providers)}"
        return None

    def compute_command(self, python_args: Sequence[str]) -> list[str]:
        return [sys.executable, *python_args]
