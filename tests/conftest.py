"""Shared fixtures: paths, the shared LEMUR corpus, Docker and the sandbox image, the database on
each backend.

Tests that need Docker skip when it is unavailable, unless NASLOOP_REQUIRE_DOCKER=1 (CI sets it),
in which case they fail: CI must never pass by skipping the sandbox.

`db_url` runs a test once on SQLite and once on PostgreSQL. The PostgreSQL server comes from
NASLOOP_TEST_POSTGRES_URL (e.g. postgresql+psycopg://nasloop:nasloop@127.0.0.1/nasloop_test; the
role needs CREATE on that database); each test gets a schema of its own there, dropped afterwards.
Without the variable the PostgreSQL variants skip, unless NASLOOP_REQUIRE_POSTGRES=1 (CI sets it).

`ray_cluster` is a Ray cluster of two nodes on this machine, started once for the session; without
Ray its tests skip, unless NASLOOP_REQUIRE_RAY=1 (CI sets it).
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
LEMUR_JSONL = SHARED / "data" / "lemur" / "lemur-img-classification.jsonl.gz"
POSTGRES_URL_ENV = "NASLOOP_TEST_POSTGRES_URL"


def _unavailable(reason: str) -> None:
    if os.environ.get("NASLOOP_REQUIRE_DOCKER") == "1":
        pytest.fail(f"NASLOOP_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lemur_records() -> list[dict[str, Any]]:
    if not LEMUR_JSONL.is_file():
        pytest.skip(f"shared LEMUR corpus not found at {LEMUR_JSONL}")
    with gzip.open(LEMUR_JSONL, "rt") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    from orchestrator.containers.client import ImageError, docker_client
    from orchestrator.containers.labels import sweep_orphans

    try:
        client = docker_client()
    except ImageError as exc:
        _unavailable(str(exc))
    # As every nasloop run does at start: containers and volumes of runs that are gone (an earlier
    # session killed on this daemon) are swept, so that `leftovers` counts only this run's.
    sweep_orphans(client)
    return client


def _image(client, name: str):  # type: ignore[no-untyped-def]
    from orchestrator.containers.client import ImageError
    from orchestrator.containers.images import resolve

    try:
        return resolve(client, name)
    except ImageError as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def sandbox_image(docker_client):  # type: ignore[no-untyped-def]
    return _image(docker_client, "sandbox")


@pytest.fixture(scope="session")
def llm_image(docker_client):  # type: ignore[no-untyped-def]
    return _image(docker_client, "llm")


def leftovers(client) -> list[str]:  # type: ignore[no-untyped-def]
    """nasloop containers and output volumes left behind by this test run: those of this process and
    of processes that are gone (e.g. a killed `nasloop cycle`). Live nasloop runs of other processes
    on the same daemon are not ours to count."""
    from orchestrator.containers.labels import MANAGED_LABEL, OWNER_LABEL, _owner_alive, owner_id

    ours = owner_id()

    def left(labels: dict[str, str]) -> bool:
        owner = labels.get(OWNER_LABEL, "")
        return owner == ours or not _owner_alive(owner)

    def described(name: str, labels: dict[str, str], state: str) -> str:
        """The name with what tells where it came from (a failing assertion shows it)."""
        keys = ("org.nasloop.role", "org.nasloop.phase", OWNER_LABEL)
        return f"{name} ({state}; " + ", ".join(f"{k.rsplit('.', 1)[1]}={labels.get(k, '-')}" for k in keys) + ")"

    managed = {"label": f"{MANAGED_LABEL}=1"}
    return ([described(c.name, c.labels, c.status)
             for c in client.containers.list(all=True, filters=managed, ignore_removed=True) if left(c.labels)]
            + [described(v.name, v.attrs.get("Labels") or {}, "volume")
               for v in client.volumes.list(filters=managed) if left(v.attrs.get("Labels") or {})])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database's URL: the SQLite file `tmp_path/nasloop.db`, or a new schema on the
    PostgreSQL server of $NASLOOP_TEST_POSTGRES_URL (the connection's search_path), dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nasloop.db'}"
        return
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        reason = f"{POSTGRES_URL_ENV} is not set (e.g. postgresql+psycopg://nasloop:nasloop@127.0.0.1/nasloop_test)"
        if os.environ.get("NASLOOP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"NASLOOP_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    schema = f"nasloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        pytest.fail(f"cannot reach the PostgreSQL server of {POSTGRES_URL_ENV}: {exc}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass(frozen=True)
class RayCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    address: str  # its head's GCS address, for ray.init or --ray-address
    secret: str  # in its workers' environment, which no container may see
    env: dict[str, str]  # the environment a driver process needs to join it (nasloop cycle --executor ray)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Two Ray nodes on this machine, each its own raylet with 1 CPU and its own resource (node_a,
    node_b). Their workers import this checkout and hold a secret in their environment; everything of
    Ray lives in a temporary directory of its own (short: Ray's socket paths are capped), and the
    nodes' processes are killed at the end (never `ray stop`, which would stop every Ray here)."""
    try:
        from ray.cluster_utils import Cluster
    except ImportError as exc:
        if os.environ.get("NASLOOP_REQUIRE_RAY") == "1":
            pytest.fail(f"NASLOOP_REQUIRE_RAY=1 but Ray cannot be imported: {exc}")
        pytest.skip(f"Ray is not installed ({exc}): pip install 'nasloop[ray]'")
    temp = tempfile.mkdtemp(prefix="nlray-")
    secret = secrets.token_hex(8)
    env = {"RAY_TMPDIR": temp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    saved = {key: os.environ.get(key) for key in [*env, "NASLOOP_TEST_SECRET"]}
    os.environ.update(env, NASLOOP_TEST_SECRET=secret)
    started = None
    try:
        started = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {"node_a": 1}, "include_dashboard": False,
            # A lost node is noticed within about 3 s rather than 15.
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
        started.add_node(num_cpus=1, resources={"node_b": 1})
        started.wait_for_nodes()
        os.environ.pop("NASLOOP_TEST_SECRET")  # the nodes have it; later drivers need not
        yield RayCluster(started, started.address, secret, {**os.environ, **env})
    finally:
        if started is not None:
            started.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)
