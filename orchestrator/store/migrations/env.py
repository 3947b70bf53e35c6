"""Alembic environment: runs the revisions in `versions/` against nasloop's database.

`orchestrator.store.database.upgrade()` passes its engine in `config.attributes["engine"]`. For the
`alembic` command line (`alembic -c orchestrator/store/migrations/alembic.ini ...`) the URL comes from
`$NASLOOP_DB_URL` or the ini's `sqlalchemy.url`.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

import orchestrator.store.schema  # noqa: F401  (registers every table on Base.metadata)
from orchestrator.store.database import Base

config = context.config
target_metadata = Base.metadata


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
        # render_as_batch: SQLite alters tables by copying them; autogenerate writes that form.
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
