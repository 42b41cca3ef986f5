"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a fresh cluster in a temporary
directory, run by an unprivileged user, listening only on a Unix socket, with trust authentication.

`make test` installs the package (root on Debian); nothing here touches the system's own cluster.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
from pathlib import Path

RUN_AS = "nobody"
ROLE = "bitmatch"
_names = itertools.count(1)


def binaries() -> Path:
    """The newest PostgreSQL under /usr/lib/postgresql (the `postgresql` package's layout)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (make test does)")
    return versions[-1].parent


class Cluster:
    def __init__(self, root: Path, port: int = 55432) -> None:
        self.root, self.port = root, port
        self.data, self.socket = root / "data", root / "socket"
        self.bin = binaries()

    def _as_user(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", RUN_AS, "--", *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        for path in (self.root, self.socket):
            path.mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam(RUN_AS)
        for path in (self.root, self.socket):
            os.chown(path, user.pw_uid, user.pw_gid)
        self._as_user(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8"
        )
        options = (
            f"-k {self.socket} -p {self.port} -c listen_addresses='' -c max_connections=200 -c fsync=off"
        )
        self._as_user(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    RUN_AS,
                    "--",
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ROLE}@/{database}?host={self.socket}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"bitmatch_{os.getpid()}_{next(_names)}"
        with psycopg.connect(
            host=str(self.socket), port=self.port, user=ROLE, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
