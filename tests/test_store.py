"""The experiment database, on SQLite and on PostgreSQL (`db_url`): Alembic migrations (up, down, in
place from an older schema), the schema they build, which must be exactly the mapped classes'
(autogenerate finds no difference), 64-bit counts, and the cycle's locks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url, select

from orchestrator.loop.errors import CycleError
from orchestrator.loop.lock import cycle_lock, experiment_lock, experiment_lock_key
from orchestrator.store.database import (Base, alembic_config, create_db_engine, current_revision, head_revision,
                                         open_database, upgrade)
from orchestrator.store import schema

EVERY_TABLE = {"programs", "program_signatures", "program_checks", "experiments", "cycles", "candidates", "adapters"}
HEAD = "0007_big_counts"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def repo_env() -> dict[str, str]:
    """The environment for a Python subprocess that imports this checkout's nasloop."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def test_every_mapped_table_is_on_the_metadata_alembic_uses() -> None:
    assert set(Base.metadata.tables) == EVERY_TABLE
    assert {cls.__tablename__ for cls in (schema.Program, schema.ProgramSignature, schema.ProgramCheck,
                                          schema.Experiment, schema.Cycle, schema.Candidate,
                                          schema.Adapter)} == EVERY_TABLE


def test_migrations_build_exactly_the_mapped_schema(tmp_path: Path, db_url: str) -> None:
    db = open_database(tmp_path, db_url)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.close()


def test_migrations_upgrade_and_downgrade(tmp_path: Path, db_url: str) -> None:
    db = open_database(tmp_path, db_url, migrate=False)
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    assert EVERY_TABLE <= set(inspect(db.engine).get_table_names())
    upgrade(db.engine)  # idempotent
    command.downgrade(alembic_config(db.engine), "base")
    assert "programs" not in inspect(db.engine).get_table_names()
    db.close()
    if is_sqlite(db_url):
        assert (tmp_path / "nasloop.db").is_file()


def test_database_from_the_first_schema_upgrades_in_place(tmp_path: Path, db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0001_corpus")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO programs (id, name, source, origin, code, code_sha256, added_at) "
            "VALUES (1, 'kept', 'lemur', 'x', 'import torch', 'abc', '2025-01-01 00:00:00')")
    engine.dispose()
    db = open_database(tmp_path, db_url)
    assert current_revision(db.engine) == head_revision() == HEAD
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM programs").fetchall() == [("kept",)]
        assert connection.exec_driver_sql("SELECT count(*) FROM experiments").scalar() == 0
    db.close()


def test_counts_past_32_bits_are_stored(tmp_path: Path, db_url: str) -> None:
    """A runner may report any int64 as `params`; PostgreSQL's INTEGER would refuse it (0007)."""
    big, now = 2**62 + 1, datetime.now(timezone.utc)
    db = open_database(tmp_path, db_url)
    with db.transaction() as session:
        program = schema.Program(name="p", source="lemur", origin="x", code="import torch", code_sha256="a" * 64,
                                 added_at=now)
        experiment = schema.Experiment(name="e", profile="smoke", config={}, config_sha256="b" * 64,
                                       code_version="test")
        session.add_all([program, experiment])
        session.flush()
        cycle = schema.Cycle(experiment_id=experiment.id, index=1, phase="evaluate")
        session.add_all([cycle, schema.ProgramCheck(program_id=program.id, protocol="check", valid=False,
                                                    params=big, image="i", checked_at=now)])
        session.flush()
        session.add(schema.Candidate(cycle_id=cycle.id, sample_index=0, raw_output="x", params=big,
                                     weights_elements=-big))
    with db.transaction() as session:
        assert session.execute(select(schema.Candidate.params, schema.Candidate.weights_elements)).one() == (big, -big)
        assert session.scalar(select(schema.ProgramCheck.params)) == big
    db.close()


def test_counts_recorded_before_0007_are_kept_and_widened(tmp_path: Path, db_url: str) -> None:
    engine = create_db_engine(db_url)
    upgrade(engine, "0006_selection_protocol")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO programs (id, name, source, origin, code, code_sha256, added_at) "
            "VALUES (1, 'p', 'lemur', 'x', 'import torch', 'abc', '2025-01-01 00:00:00')")
        connection.exec_driver_sql(
            "INSERT INTO program_checks (program_id, protocol, valid, params, image, checked_at) "
            "VALUES (1, 'check', true, 123456, 'i', '2025-01-01 00:00:00')")
    upgrade(engine)
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT params FROM program_checks").scalar() == 123456
        connection.exec_driver_sql(f"UPDATE program_checks SET params = {2**40}")
        assert connection.exec_driver_sql("SELECT params FROM program_checks").scalar() == 2**40
    engine.dispose()


def test_drivers_starting_together_upgrade_one_after_the_other(tmp_path: Path, db_url: str) -> None:
    """Several machines' drivers may open one PostgreSQL database at once: the migration lock orders
    their upgrades. (A SQLite database is one workspace's, opened by one driver at a time.)"""
    if is_sqlite(db_url):
        pytest.skip("SQLite: one workspace, one driver (the workspace lock)")
    script = "import sys; from orchestrator.store.database import open_database; open_database(None, sys.argv[1])"
    drivers = [subprocess.Popen([sys.executable, "-c", script, db_url], env=repo_env(), stderr=subprocess.PIPE,
                                text=True) for _ in range(3)]
    failures = [driver.communicate(timeout=120)[1] for driver in drivers if driver.wait(timeout=120) != 0]
    assert failures == []
    engine = create_db_engine(db_url)
    assert current_revision(engine) == HEAD
    engine.dispose()


# --- the cycle's locks: one driver per experiment ---------------------------------------------


def test_a_second_driver_of_an_experiment_is_refused_until_the_first_releases(tmp_path: Path, db_url: str) -> None:
    """Two drivers of one experiment on one database: on SQLite they share the workspace (its file is
    there) and the workspace lock refuses the second; on PostgreSQL they are on two machines (two
    workspaces) and the experiment's advisory lock does."""
    first = tmp_path / "machine-a"
    second = first if is_sqlite(db_url) else tmp_path / "machine-b"
    with cycle_lock(first, db_url, "smoke"):
        with pytest.raises(CycleError, match="another nasloop cycle is running"):
            with cycle_lock(second, db_url, "smoke"):
                pass
        if not is_sqlite(db_url):
            with cycle_lock(second, db_url, "smoke-no-novelty"):  # another experiment runs alongside
                pass
    with cycle_lock(second, db_url, "smoke"):  # released: the next one gets in
        pass


def test_an_unreachable_database_is_a_cycle_error(db_url: str) -> None:
    if is_sqlite(db_url):
        pytest.skip("SQLite takes no database lock")
    url = make_url(db_url)
    wrong = url.set(database=f"{url.database}_does_not_exist").render_as_string(hide_password=False)
    with pytest.raises(CycleError, match="cannot connect to the database to lock experiment 'smoke'"):
        with experiment_lock(wrong, "smoke"):
            pass


def test_sqlite_takes_no_database_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nasloop.db'}"
    with experiment_lock(url, "smoke"), experiment_lock(url, "smoke"):
        pass


def test_experiment_lock_key_is_a_stable_bigint() -> None:
    key = experiment_lock_key("public", "smoke")
    assert key == experiment_lock_key("public", "smoke") and -2**63 <= key < 2**63
    assert len({key, experiment_lock_key("public", "paper"), experiment_lock_key("other", "smoke")}) == 3


def test_a_killed_driver_leaves_nothing_held(tmp_path: Path, db_url: str) -> None:
    """A driver killed with SIGKILL: the kernel drops its flock, the PostgreSQL server ends its
    session and the advisory lock with it. While it runs, PostgreSQL's refusal names it."""
    first = tmp_path / "machine-a"
    second = first if is_sqlite(db_url) else tmp_path / "machine-b"
    script = ("import sys, time; from pathlib import Path; from orchestrator.loop.lock import cycle_lock\n"
              "with cycle_lock(Path(sys.argv[1]), sys.argv[2], 'smoke'):\n"
              "    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(first), db_url], stdout=subprocess.PIPE,
                              text=True, env=repo_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        named = "" if is_sqlite(db_url) else rf".*nasloop cycle smoke \(.*pid {holder.pid}\)"
        with pytest.raises(CycleError, match="another nasloop cycle is running" + named):
            with cycle_lock(second, db_url, "smoke"):
                pass
    finally:
        holder.kill()
        holder.wait()
    for _ in range(50):  # the server ends the session as soon as it sees the connection closed
        try:
            with cycle_lock(second, db_url, "smoke"):
                return
        except CycleError:
            time.sleep(0.1)
    pytest.fail("the killed driver's lock was not released")
