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


@dataclass(frozen=True)
class ReplaySetting:
    target: str
    runtime: str
    cpu: str | None = None
    threads_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, Any]) -> ReplaySetting:
        """The setting a fingerprint reports, else the one its target, runtime and emulator fields give."""
        reported = fingerprint.get(REPLAY_KEY)
        source = reported if isinstance(reported, dict) else _from_fields(fingerprint)
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


def _from_fields(fingerprint: dict[str, Any]) -> dict[str, Any]:
    emulator = fingerprint.get("emulator")
    threads = fingerprint.get("threads_env")
    return {
        "target": fingerprint.get("target"),
        "runtime": fingerprint.get("runtime"),
        "cpu": emulator.get("cpu") if isinstance(emulator, dict) else None,
        "threads_env": threads if isinstance(threads, dict) else {},
    }
