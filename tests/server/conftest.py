"""Fixtures for the coordinator tests: seeded codec packages and an in-process app."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from server_harness import TOKEN, build_package


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SimpleNamespace]:
    """A seeded int16 package and its float twin (same weights)."""
    root = tmp_path_factory.mktemp("server-packages")
    return {precision: build_package(root / precision, precision) for precision in ("int16", "float")}


@pytest.fixture
def app_factory(tmp_path: Path):
    """An in-process coordinator app (no workers) with its scheduler, via Starlette's TestClient."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(
            **{"data_dir": tmp_path / "data", "token": TOKEN, "health_interval": 3600, **overrides}
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
