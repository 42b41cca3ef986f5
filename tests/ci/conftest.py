"""Fixtures for the CI tests: two nights of the nightly script on this machine, one history."""

from pathlib import Path

import pytest
from nightly_harness import Night, run_night


@pytest.fixture(scope="session")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Night, Night, Path]:
    """Night 1 writes its summary to REPORT/summary.md, night 2 to a GITHUB_STEP_SUMMARY file; one history."""
    base = tmp_path_factory.mktemp("nightly")
    history = base / "history"
    first = run_night(base / "night-1", history, None)
    second = run_night(base / "night-2", history, base / "step-summary.md")
    return first, second, history
