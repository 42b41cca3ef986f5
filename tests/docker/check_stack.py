"""The compose stack end to end (tests/docker/stack.py, `make docker-test`) as a pytest test: never skipped;
an engine that cannot start is a failure. Not named test_*.py, so that `pytest` alone does not collect it
until the project decides to (rename it to test_stack.py); `pytest tests/docker/check_stack.py` runs it."""

import pytest

from tests.docker.stack import main

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(7200)]


def test_compose_stack_runs_an_entropy_exact_int16_job_across_x86_64_and_aarch64():
    timings = main()
    assert {"coordinator", "worker-cpu", "worker-arm64", "job"} <= set(timings)
