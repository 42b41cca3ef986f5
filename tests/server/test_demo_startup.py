"""The demo's start-up and shutdown without processes: every worker is registered (and health-checked by the
coordinator) at the same time, not one after another; a worker that exits is reported without holding up the
rest; targets are provisioned side by side; an opt-in target starts only when named; at the end the workers
stop side by side."""

import threading
import time
from pathlib import Path

from bitmatch.console import Console
from bitmatch.enlist import enlist_workers
from bitmatch.fleet import Fleet, Service

CHECK_S = 0.5  # how long the stand-in coordinator takes over one worker's known-answer test


class StandInService(Service):
    def __init__(self, name: str, alive: bool = True) -> None:
        super().__init__(name, [], f"http://{name}", Path("/nonexistent") / f"{name}.log")
        self._alive = alive

    def alive(self) -> bool:
        return self._alive

    def ready(self) -> bool:
        return self._alive


class StandInCoordinator:
    """Registers a worker after a known-answer test of CHECK_S seconds, recording when each one ran."""

    def __init__(self) -> None:
        self.intervals: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def register_worker(self, url: str, token: str, name: str, target: str) -> dict:
        start = time.monotonic()
        time.sleep(CHECK_S)
        with self.lock:
            self.intervals[target] = (start, time.monotonic())
        emulated = target.startswith("qemu")
        return {
            "id": len(self.intervals),
            "status": "healthy",
            "health_detail": "passed",
            "emulated": emulated,
        }


def test_every_worker_is_registered_and_checked_at_the_same_time():
    targets = ["cpu", "onnx-ref", "qemu-aarch64", "qemu-x86-sse"]
    fleet = Fleet(StandInService("coordinator"), {t: StandInService(t) for t in targets})
    coordinator = StandInCoordinator()
    started = time.monotonic()
    healthy = enlist_workers(fleet, coordinator, "token", Console(json_mode=True))
    assert list(healthy) == targets  # in the fleet's order, whichever answered first
    assert healthy == {"cpu": False, "onnx-ref": False, "qemu-aarch64": True, "qemu-x86-sse": True}
    latest_start = max(start for start, _ in coordinator.intervals.values())
    earliest_end = min(end for _, end in coordinator.intervals.values())
    assert latest_start < earliest_end  # all four checks overlap
    assert time.monotonic() - started < CHECK_S * len(targets)


def test_a_worker_that_exited_is_reported_and_the_others_are_enlisted(capsys):
    fleet = Fleet(
        StandInService("coordinator"), {"cpu": StandInService("cpu"), "gone": StandInService("gone", False)}
    )
    healthy = enlist_workers(fleet, StandInCoordinator(), "token", Console(json_mode=True))
    assert healthy == {"cpu": False}
    err = capsys.readouterr().err
    assert "gone: worker exited" in err and "1 of 2 workers passed the known-answer test" in err


def test_an_opt_in_target_is_started_only_when_named(capsys):
    from bitmatch.local_targets import local_targets

    console = Console(json_mode=True)
    assert "onnx-ref-naive" not in local_targets(console, provision=False, only=None)
    assert "not started unless named (--targets onnx-ref-naive)" in capsys.readouterr().err
    assert local_targets(console, provision=False, only=["onnx-ref-naive"]) == ["onnx-ref-naive"]


class SlowToStop(StandInService):
    """Records when it was asked to stop and when it had stopped."""

    def __init__(self, name: str, log: list) -> None:
        super().__init__(name)
        self.log = log

    def start(self) -> "SlowToStop":
        return self

    def stop(self) -> None:
        begun = time.monotonic()
        time.sleep(CHECK_S)
        self.log.append((self.name, begun, time.monotonic()))


def test_the_coordinator_stops_first_and_then_every_worker_at_once():
    from bitmatch.fleet import running

    log: list = []
    fleet = Fleet(SlowToStop("coordinator", log), {t: SlowToStop(t, log) for t in ("a", "b", "c")})
    with running(fleet):
        pass
    stopped = {name: (begun, ended) for name, begun, ended in log}
    assert set(stopped) == {"coordinator", "a", "b", "c"}
    workers = [stopped[t] for t in ("a", "b", "c")]
    assert all(begun >= stopped["coordinator"][1] for begun, _ in workers)
    assert max(begun for begun, _ in workers) < min(ended for _, ended in workers)  # side by side


class SlowToProvision:
    """A target that needs a setup of CHECK_S seconds before it can run; records when it was set up."""

    opt_in = False

    def __init__(self, name: str, log: dict) -> None:
        self.name, self.log, self.ready = name, log, False

    def check(self) -> str | None:
        return None if self.ready else "not provisioned"

    def provision_blocker(self) -> str | None:
        return None

    def setup(self) -> None:
        begun = time.monotonic()
        time.sleep(CHECK_S)
        self.log[self.name] = (begun, time.monotonic())
        self.ready = True


def test_targets_are_provisioned_side_by_side_and_listed_in_order(capsys):
    from bitmatch.local_targets import local_targets

    log: dict = {}
    catalog = [SlowToProvision(name, log) for name in ("emulated-a", "emulated-b", "emulated-c")]
    usable = local_targets(Console(json_mode=True), provision=True, only=None, catalog=catalog)
    assert usable == ["emulated-a", "emulated-b", "emulated-c"]
    assert max(begun for begun, _ in log.values()) < min(ended for _, ended in log.values())
    listed = [line for line in capsys.readouterr().err.splitlines() if line.endswith(": available")]
    assert listed == [f"  {name}: available" for name in usable]
