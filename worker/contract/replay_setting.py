"""How a recorded side is replayed, as the worker that ran it reports it: the fingerprint's `replay` entry.

    "replay": {"target": "qemu-aarch64:cortex-a72",   the target spec `bitmatch replay` launches
               "runtime": "ort-cpu",                  the codec runtime of the compute process
               "cpu": "cortex-a72",                   the emulator's -cpu model; null when native
               "threads_env": {"OMP_NUM_THREADS": "1"}}  the thread variables it ran with

The compute process writes it into its fingerprint (worker/fingerprint.py), so `GET /v1/info`, a pull
worker's registration and an offline set's `set.json` all carry it, and the coordinator keeps it with the
fingerprint each task recorded: a repro bundle can describe its replay after the worker is gone. A
fingerprint recorded before workers reported it is described from its other fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPLAY_KEY = "replay"
MACHINE_ALIASES = {"arm64": "aarch64", "amd64": "x86_64"}


@dataclass(frozen=True)
class ReplaySetting:
    target: str
    runtime: str
    cpu: str | None = None
    threads_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, Any], recorded_target: str = "") -> ReplaySetting:
        """The setting a fingerprint reports, else the one its target, runtime and emulator fields give
        (`recorded_target`, the task's, when it names no target either)."""
        reported = fingerprint.get(REPLAY_KEY)
        source = reported if isinstance(reported, dict) else _from_fields(fingerprint, recorded_target)
        threads = source.get("threads_env")
        return cls(
            target=str(source.get("target") or "unknown"),
            runtime=str(source.get("runtime") or "ort-cpu"),
            cpu=str(source["cpu"]) if source.get("cpu") else None,
            threads_env=tuple(sorted((str(k), str(v)) for k, v in (threads or {}).items())),
        )

    def describe(self) -> str:
        """e.g. `qemu-aarch64:cortex-a72 (ort-cpu, emulated, -cpu cortex-a72, OMP_NUM_THREADS=1)`."""
        extras = [self.runtime]
        if self.cpu:
            extras.append(f"emulated, -cpu {self.cpu}")
        extras += [f"{name}={value}" for name, value in self.threads_env]
        return f"{self.target} ({', '.join(extras)})"


def machine_name(name: str) -> str:
    """One name per machine architecture (`arm64` is `aarch64`), to compare a fingerprint's with a host's."""
    return MACHINE_ALIASES.get(name.lower(), name.lower())


def _from_fields(fingerprint: dict[str, Any], recorded_target: str) -> dict[str, Any]:
    emulator = fingerprint.get("emulator")
    threads = fingerprint.get("threads_env")
    return {
        "target": _target_of_class(fingerprint, recorded_target),
        "runtime": fingerprint.get("runtime"),
        "cpu": emulator.get("cpu") if isinstance(emulator, dict) else None,
        "threads_env": threads if isinstance(threads, dict) else {},
    }


def _target_of_class(fingerprint: dict[str, Any], recorded_target: str) -> str:
    """The target a device class names: worker/fingerprint.py's device_class qualifies a native target off
    x86-64 by its machine (`cpu-aarch64` is `cpu` on aarch64); an offline set labels one `cpu@macos-14`."""
    name = str(fingerprint.get("target") or recorded_target.partition("@")[0])
    arch = str(fingerprint.get("arch") or "")
    native_elsewhere = arch not in ("", "x86_64", "AMD64") and not name.startswith("qemu-")
    return name.removesuffix(f"-{arch}") if native_elsewhere else name
