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
def app_factory(tmp_path: Path, db_url: str):
    """An in-process coordinator app (no workers) with its scheduler, via Starlette's TestClient, on SQLite
    and on PostgreSQL."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import Settings

    clients = []

    def make(**overrides) -> TestClient:
        settings = Settings(
            **{
                "data_dir": tmp_path / "data",
                "db_url": db_url if db_url.startswith("postgresql") else None,
                "token": TOKEN,
                "health_interval": 3600,
                **overrides,
            }
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server (tests/pg_cluster.py) for the whole session."""
    import tempfile

    from tests.pg_cluster import Cluster

    # a short path: the server's Unix socket path must stay under about 100 characters
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bm-pg-", dir="/tmp"))).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh database URL of each kind the coordinator supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bitmatch.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()
