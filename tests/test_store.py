"""The experiment database: Alembic migrations (up, down, in place from an older schema) and the
schema they build, which must be exactly the mapped classes' (autogenerate finds no difference)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from orchestrator.store.database import (Base, alembic_config, create_db_engine, current_revision, head_revision,
                                         open_database, upgrade)
from orchestrator.store import schema

EVERY_TABLE = {"programs", "program_signatures", "program_checks", "experiments", "cycles", "candidates", "adapters"}


def test_every_mapped_table_is_on_the_metadata_alembic_uses() -> None:
    assert set(Base.metadata.tables) == EVERY_TABLE
    assert {cls.__tablename__ for cls in (schema.Program, schema.ProgramSignature, schema.ProgramCheck,
                                          schema.Experiment, schema.Cycle, schema.Candidate,
                                          schema.Adapter)} == EVERY_TABLE


def test_migrations_build_exactly_the_mapped_schema(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.close()


def test_migrations_upgrade_and_downgrade(tmp_path: Path) -> None:
    db = open_database(tmp_path, migrate=False)
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    assert EVERY_TABLE <= set(inspect(db.engine).get_table_names())
    upgrade(db.engine)  # idempotent
    command.downgrade(alembic_config(db.engine), "base")
    assert "programs" not in inspect(db.engine).get_table_names()
    db.close()
    assert (tmp_path / "nasloop.db").is_file()


def test_database_from_the_first_schema_upgrades_in_place(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'nasloop.db'}")
    upgrade(engine, "0001_corpus")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO programs (id, name, source, origin, code, code_sha256, added_at) "
            "VALUES (1, 'kept', 'lemur', 'x', 'import torch', 'abc', '2025-01-01 00:00:00')")
    engine.dispose()
    db = open_database(tmp_path)
    assert current_revision(db.engine) == head_revision() == "0006_selection_protocol"
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM programs").fetchall() == [("kept",)]
        assert connection.exec_driver_sql("SELECT count(*) FROM experiments").scalar() == 0
    db.close()
