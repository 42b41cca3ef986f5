"""Which target a recorded side of a repro bundle ran on, and the compute process that replays it there.

A setting is the target launched (natively, or under its emulator with the `-cpu` model the side recorded),
the runtime and the thread variables of the side's fingerprint.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from typing import Any

from codec.runtime import RUNTIME_NAMES
from worker.cli import target_launch, with_memory_limit
from worker.fingerprint import THREAD_VARIABLES
from worker.supervisor import ComputeLaunch
from worker.targets import TARGETS, Target, get_target

MACHINE_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}


class ReplayUnavailable(Exception):
    """This side cannot be replayed here; the message says why, in one line."""


@dataclass(frozen=True)
class Setting:
    """How a recorded side is replayed: the target launched, its runtime, its thread variables (None: as
    the target sets them)."""

    spec: str
    runtime: str
    emulated_cpu: str | None
    threads_env: tuple[tuple[str, str], ...] | None

    def describe(self) -> str:
        extras = [self.runtime]
        if self.emulated_cpu:
            extras.append(f"emulated, -cpu {self.emulated_cpu}")
        extras += [f"{name}={value}" for name, value in self.threads_env or ()]
        return f"{self.spec} ({', '.join(extras)})"

    def as_dict(self) -> dict[str, Any]:
        threads = dict(self.threads_env) if self.threads_env is not None else None
        return {
            "target": self.spec,
            "runtime": self.runtime,
            "cpu": self.emulated_cpu,
            "threads_env": threads,
        }


def setting_of(recorded: dict[str, Any]) -> Setting:
    """The target spec, runtime and thread variables that replay a recorded side (ReplayUnavailable when no
    target here is that side's)."""
    fingerprint = recorded.get("fingerprint") or {}
    spec = replay_spec(recorded)
    target = _target(spec)
    runtime = str(fingerprint.get("runtime") or target.runtime)
    if runtime not in RUNTIME_NAMES:
        raise ReplayUnavailable(f"the side ran runtime {runtime!r}, which this bitmatch does not know")
    threads = fingerprint.get("threads_env")
    threads_env = None
    if isinstance(threads, dict):
        threads_env = tuple(sorted((str(k), str(v)) for k, v in threads.items() if k in THREAD_VARIABLES))
    return Setting(spec, runtime, target.emulated_cpu(), threads_env)


def replay_spec(recorded: dict[str, Any]) -> str:
    """The target spec of a recorded side: its fingerprint's device class made a target again (cpu-aarch64
    is `cpu` on aarch64), with the emulator's -cpu model when it is not the target's default."""
    fingerprint = recorded.get("fingerprint") or {}
    label_free = str(recorded.get("target") or "").partition("@")[0]  # offline sets label cpu@macos-14
    recorded_name = str(fingerprint.get("target") or label_free)
    name, _, option = recorded_name.partition(":")
    arch = str(fingerprint.get("arch") or "")
    if name not in TARGETS and arch and name.endswith(f"-{arch}"):
        name = name.removesuffix(f"-{arch}")
    if name not in TARGETS:
        raise ReplayUnavailable(f"target {recorded_name!r} is none of this bitmatch's ({', '.join(TARGETS)})")
    spec = f"{name}:{option}" if option else name
    target = _target(spec)
    cpu = (fingerprint.get("emulator") or {}).get("cpu")
    if cpu and target.emulated_cpu() not in (None, cpu):
        spec = f"{name}:{cpu}"
        try:
            presents = get_target(spec).emulated_cpu() == cpu
        except (KeyError, TypeError, ValueError):
            presents = False
        if not presents:
            raise ReplayUnavailable(f"the side ran under -cpu {cpu}; target {name} cannot present it")
    if target.emulated_cpu() is None and arch and _machine(arch) != _machine(platform.machine()):
        raise ReplayUnavailable(
            f"the side ran {name} natively on {arch}; this host is {platform.machine()}: replay it on {arch}"
        )
    return spec


def _target(spec: str) -> Target:
    try:
        return get_target(spec)
    except (KeyError, TypeError, ValueError):
        raise ReplayUnavailable(f"target {spec!r} cannot be made here") from None


def _machine(name: str) -> str:
    return MACHINE_ALIASES.get(name.lower(), name.lower())


def launch_of(setting: Setting, memory_limit_mb: float) -> ComputeLaunch:
    """The compute process of a setting, or ReplayUnavailable with the line that says what to do."""
    target = _target(setting.spec)
    reason = target.check()
    if reason is not None:
        raise ReplayUnavailable(_cannot_run(setting.spec, target, reason))
    launch = with_memory_limit(target_launch(target, setting.spec, setting.runtime), memory_limit_mb)
    if setting.threads_env is None:
        return launch
    env = {k: v for k, v in launch.env.items() if k not in THREAD_VARIABLES} | dict(setting.threads_env)
    return replace(launch, env=env)


def _cannot_run(spec: str, target: Target, reason: str) -> str:
    line = f"target {spec} is not available here: {reason}"
    setup = f"`bitmatch targets setup {spec}`"
    if "targets setup" in line:
        return line.replace(f"`bitmatch targets setup {target.name}`", setup)
    if type(target).setup is not Target.setup and target.provision_blocker() is None:
        return f"{line}; run {setup}"
    return line
