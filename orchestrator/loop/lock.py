"""One `nasloop cycle` per experiment: a second one refuses instead of corrupting the first.

Two locks, both taken by `cycle_lock` for the whole run:

- the workspace lock (`workspace_lock`): an flock on `<workdir>/nasloop.lock`, one cycle per
  workspace on this machine (the workspace holds the SQLite database, the containers' artefacts,
  the adapters, and the leftovers a start sweeps);
- the experiment lock (`experiment_lock`), on PostgreSQL only: a session-level advisory lock held on
  a dedicated connection, so that two drivers on different machines sharing one database cannot run
  the same experiment. An experiment is identified by its name, unique in its database's
  `experiments` table (the configuration hash is checked against it once the lock is held, and the
  workspace path differs from machine to machine), so the key is derived from the name and the
  connection's schema (`current_schema()`, for databases holding several nasloop schemas):
  the first 8 bytes of SHA-256 of `nasloop experiment <schema>/<name>`, as a signed 64-bit
  integer (`experiment_lock_key`). PostgreSQL scopes advisory locks to the database. The server
  releases the lock when the connection ends, so a killed driver (even SIGKILL) leaves nothing
  held. SQLite needs no more than the workspace lock (its file is in the workspace), and other
  dialects get none.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from orchestrator.loop.errors import CycleError

LOCK_FILE = "nasloop.lock"


@contextmanager
def workspace_lock(workdir: Path) -> Iterator[None]:
    """Hold the workspace's lock file (flock) for the duration; CycleError if another process has it."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle: TextIO = (workdir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CycleError(f"another nasloop cycle is running on {workdir} (it holds {LOCK_FILE}); "
                         "wait for it to finish or stop it first") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def experiment_lock_key(schema: str, experiment: str) -> int:
    """The advisory lock key of `experiment` in `schema`: a signed 64-bit integer (PostgreSQL bigint)."""
    digest = hashlib.sha256(f"nasloop experiment {schema}/{experiment}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def experiment_lock(db_url: str, experiment: str) -> Iterator[None]:
    """On PostgreSQL, hold `experiment`'s advisory lock for the duration (CycleError, naming the
    holder, if another session has it); elsewhere nothing."""
    if make_url(db_url).get_backend_name() != "postgresql":
        yield
        return
    # A connection of its own (NullPool: closing it ends the session, and with it the lock), in
    # autocommit so that it never sits idle in a transaction for the hours of a run.
    holder = f"nasloop cycle {experiment} ({socket.gethostname()}, pid {os.getpid()})"[:63]
    engine = create_engine(db_url, poolclass=NullPool, connect_args={"application_name": holder})
    try:
        try:
            connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            schema = connection.scalar(text("SELECT coalesce(current_schema(), '')"))
        except SQLAlchemyError as exc:
            raise CycleError(f"cannot connect to the database to lock experiment {experiment!r}: {exc}") from None
        with connection:
            key = experiment_lock_key(str(schema), experiment)
            if not connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
                raise CycleError(f"another nasloop cycle is running experiment {experiment!r} on this database "
                                 f"({_holder(connection, key)} holds its advisory lock {key}); "
                                 "wait for it to finish or stop it first")
            try:
                yield
            finally:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                except SQLAlchemyError:
                    pass  # the connection is gone, and the lock with its session
    finally:
        engine.dispose()


def _holder(connection: Connection, key: int) -> str:
    """Who holds advisory lock `key` in this database, as far as this role may see."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = connection.execute(text(
        "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = :classid "
        "AND l.objid = :objid AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
        {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}).first()
    if row is None:
        return "another session"
    name = f"{row.application_name!r}, " if row.application_name else ""
    return f"{name}server pid {row.pid}" + (f" from {row.client_addr}" if row.client_addr else "")


@contextmanager
def cycle_lock(workdir: Path, db_url: str, experiment: str) -> Iterator[None]:
    """Everything a cycle holds for its run: the workspace lock, then the experiment's database lock."""
    with workspace_lock(workdir), experiment_lock(db_url, experiment):
        yield
