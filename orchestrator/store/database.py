"""The experiment database: engine and sessions, the declarative base, Alembic migrations.

By default a SQLite file `<workdir>/nasloop.db`; any SQLAlchemy URL may replace it (option
`--db-url` or the environment variable `NASLOOP_DB_URL`); PostgreSQL (`postgresql+psycopg://...`)
is tested alongside SQLite. The schema is owned by the Alembic revisions in
`orchestrator/store/migrations/versions/`: `open_database` upgrades to the newest one, so a new
table is a new revision plus its mapped class in `orchestrator/store/schema.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

DB_FILENAME = "nasloop.db"
DB_URL_ENV = "NASLOOP_DB_URL"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Deterministic constraint names: Alembic's batch mode (how SQLite alters tables) needs them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def database_url(workdir: Path, url: str | None = None) -> str:
    """`url`, else `$NASLOOP_DB_URL`, else the SQLite file in `workdir`."""
    url = url or os.environ.get(DB_URL_ENV)
    if url:
        return url
    return f"sqlite:///{(Path(workdir) / DB_FILENAME).resolve()}"


def create_db_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        if engine.url.database not in (None, "", ":memory:"):
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Write-ahead logging: readers (`nasloop status`, the dashboard) never block the cycle's writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest)."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@dataclass
class Database:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One session, committed on success, rolled back on any exception."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_database(workdir: Path, url: str | None = None, migrate: bool = True) -> Database:
    """Connect (creating the SQLite file if needed) and upgrade the schema to the newest revision."""
    resolved = database_url(workdir, url)
    engine = create_db_engine(resolved)
    if migrate:
        upgrade(engine)
    return Database(resolved, engine, sessionmaker(engine, expire_on_commit=False))
