"""The compose stack end to end (tests/docker/stack.py, `make docker-test`): never skipped when selected; an
engine that cannot start is a failure. Deselect it with `-m "not docker"`."""

import pytest

from tests.docker.stack import main

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(7200)]


def test_compose_stack_runs_an_entropy_exact_int16_job_across_x86_64_and_aarch64():
    timings = main()
    assert {"coordinator", "worker-cpu", "worker-arm64", "job"} <= set(timings)
