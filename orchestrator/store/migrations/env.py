"""Alembic environment: runs the revisions in `versions/` against nasloop's database.

`orchestrator.store.database.upgrade()` passes its engine in `config.attributes["engine"]`. For the
`alembic` command line (`alembic -c orchestrator/store/migrations/alembic.ini ...`) the URL comes from
`$NASLOOP_DB_URL` or the ini's `sqlalchemy.url`.

On PostgreSQL the upgrade first takes a transaction-level advisory lock (`MIGRATION_LOCK_KEY`), so
that drivers starting together on several machines upgrade one after the other: the later ones find
the schema already at the newest revision.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, text

import orchestrator.store.schema  # noqa: F401  (registers every table on Base.metadata)
from orchestrator.store.database import Base

config = context.config
target_metadata = Base.metadata

# pg_advisory_xact_lock's key for schema changes: the first 8 bytes of SHA-256("nasloop migrations").
MIGRATION_LOCK_KEY = 0x692722F8937EA789


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    return create_engine(os.environ.get("NASLOOP_DB_URL") or config.get_main_option("sqlalchemy.url"))


def run_migrations_offline() -> None:
    context.configure(url=str(_engine().url), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with _engine().begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction commits; DDL is transactional on PostgreSQL.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        # render_as_batch: SQLite alters tables by copying them; autogenerate writes that form.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
