"""The experiment database opened for reading only.

The dashboard never writes, never migrates and never takes the cycle's workspace lock. SQLite (the
default) is opened with `mode=ro` and `PRAGMA query_only`; the cycle keeps the file in WAL mode, so
these readers never block its writes. PostgreSQL and MySQL sessions are made read-only by the server;
on any other database every session is rolled back, never committed. Each request reads in one short
transaction (`ReadOnlyDatabase.reading`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from orchestrator.store.database import current_revision, database_url, head_revision

# How long a read waits for SQLite's lock (a WAL checkpoint, a schema change) before it fails.
BUSY_TIMEOUT_MS = 5000

# Statements that make every later transaction of a connection read-only, by dialect.
_READ_ONLY_SESSION = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


class DashboardError(Exception):
    """The database cannot be read: missing, not an experiment database, or of another schema."""


@dataclass
class ReadOnlyDatabase:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One short read transaction, always rolled back."""
        session = self.sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_engine(path: Path) -> Engine:
    if not path.is_file():
        raise DashboardError(f"no experiment database at {path}: run `nasloop cycle` there, or pass --db-url")
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the driver leaves transactions to us (the "begin" hook below).
        return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

    # QueuePool, as for any SQLite file: the "sqlite://" URL alone would get the in-memory database's
    # SingletonThreadPool, which closes connections other request threads still use.
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # One snapshot per request: every query of a page sees the same committed state of the cycle.
        connection.exec_driver_sql("BEGIN")

    return engine


def _server_engine(url: str) -> Engine:
    engine = create_engine(url)
    statement = _READ_ONLY_SESSION.get(engine.dialect.name)
    if statement is not None:
        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
    return engine


def open_readonly(workdir: Path, url: str | None = None) -> ReadOnlyDatabase:
    """`url`, else `$NASLOOP_DB_URL`, else `<workdir>/nasloop.db`, for reading; its schema must be
    the one this nasloop reads (the newest migration), since the dashboard does not migrate."""
    resolved = database_url(workdir, url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DashboardError("an in-memory SQLite database has no experiments to show")
        engine = _sqlite_engine(Path(parsed.database))
    else:
        engine = _server_engine(resolved)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DashboardError(f"cannot read the database {parsed.render_as_string(hide_password=True)}: {exc}") from None
    head = head_revision()
    if revision != head:
        engine.dispose()
        if revision is None:
            raise DashboardError(f"{parsed.render_as_string(hide_password=True)} is not a nasloop experiment database")
        raise DashboardError(f"the database's schema is at revision {revision}, this nasloop reads {head}: "
                             f"run `nasloop status` once to upgrade it")
    return ReadOnlyDatabase(parsed.render_as_string(hide_password=True), engine, sessionmaker(engine))
