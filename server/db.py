"""Engine, sessions, start-up checks and migrations, and the one-writer rule.

Only portable SQL goes through here: the SQLite-specific part is the connection pragmas (WAL, busy timeout,
foreign keys), applied only when the URL is a SQLite one, so a PostgreSQL URL works unchanged.

One writer per database: on SQLite the coordinator holds an exclusive lock (flock) on `<database>.lock` for
its whole life, and a second coordinator on the same file refuses to start, naming the first one's pid. On
PostgreSQL several coordinators may share the database (the task queue claims with FOR UPDATE SKIP LOCKED).
Before migrating, an existing database is checked: a zero-length file, a file SQLite's quick_check does not
pass, or a database with tables but no bitmatch schema revision (or one this version does not know) is
refused instead of being started blank or overwritten.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_KEY = 0x6269746D  # "bitm"


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    _ensure_sqlite_parent(url)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    engine = create_engine(url, connect_args=connect_args)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class DatabaseRefused(RuntimeError):
    """The database is in use by another coordinator, or is not one this coordinator may open."""


def sqlite_path(url: str) -> Path | None:
    path = url.split(":///", 1)[-1] if url.startswith("sqlite") and ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _ensure_sqlite_parent(url: str) -> None:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent), on the given engine's connection."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # coordinators starting together migrate one at a time
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def known_revisions() -> set[str]:
    return {
        script.revision
        for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
    }


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.file = sqlite_path(url)
        self.existed = self.file is not None and self.file.exists()
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.single_writer = self.engine.dialect.name == "sqlite"
        self._lock_fd: int | None = None

    def claim_writer(self) -> None:
        """Hold the SQLite database's lock file for this process's life, or refuse: another one has it."""
        if self.file is None:
            return
        lock_path = self.file.with_name(self.file.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseRefused(
                f"another coordinator (pid {holder}) is using {self.file}; stop it, or give "
                "this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def check(self) -> None:
        """Refuse a database that is empty, damaged or foreign, before anything is written to it."""
        if self.file is not None and self.existed and self.file.stat().st_size == 0:
            raise DatabaseRefused(
                f"{self.file} is an empty file, not a bitmatch database; remove it to start a new one"
            )
        try:
            with self.engine.connect() as connection:
                if self.single_writer:
                    result = connection.execute(text("PRAGMA quick_check")).scalar()
                    if result != "ok":
                        raise DatabaseRefused(f"{self.url}: SQLite quick_check says {result!r}")
                tables = set(inspect(connection).get_table_names())
                revision = (
                    connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                    if "alembic_version" in tables
                    else None
                )
        except DatabaseError as exc:
            raise DatabaseRefused(
                f"{self.url} is not a database this coordinator can open: {exc.orig}"
            ) from None
        if tables and revision is None:
            raise DatabaseRefused(
                f"{self.url} holds tables ({', '.join(sorted(tables)[:5])}) but no bitmatch "
                "schema revision: it is not a bitmatch database"
            )
        if revision is not None and revision not in known_revisions():
            raise DatabaseRefused(
                f"{self.url} is at schema revision {revision}, which this bitmatch does not "
                "know (written by a newer version?)"
            )

    def open(self) -> None:
        """What a coordinator does first: the writer lock (SQLite), the checks, then the migrations."""
        self.claim_writer()
        self.check()
        self.migrate()

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """Whether this process may do the one-at-a-time work named `key` now (on PostgreSQL an advisory lock
        held by a connection of its own, released with it even if the process dies; on SQLite, with its one
        writer, always)."""
        if self.single_writer:
            yield True
            return
        with self.engine.connect() as connection:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            try:
                yield bool(got)
            finally:
                if got:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
