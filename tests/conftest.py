"""Shared fixtures: paths, the shared LEMUR corpus, Docker and the sandbox image.

Tests that need Docker skip when it is unavailable, unless NASLOOP_REQUIRE_DOCKER=1 (CI sets it),
in which case they fail: CI must never pass by skipping the sandbox.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
LEMUR_JSONL = SHARED / "data" / "lemur" / "lemur-img-classification.jsonl.gz"


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


@pytest.fixture(scope="session")
def sandbox_image(docker_client):  # type: ignore[no-untyped-def]
    from orchestrator.containers.client import ImageError
    from orchestrator.containers.images import resolve

    try:
        return resolve(docker_client, "sandbox")
    except ImageError as exc:
        _unavailable(str(exc))


def leftovers(client) -> list[str]:  # type: ignore[no-untyped-def]
    """nasloop containers and output volumes left behind by this test run: those of this process and
    of processes that are gone (e.g. a killed `nasloop cycle`). Live nasloop runs of other processes
    on the same daemon are not ours to count."""
    from orchestrator.containers.labels import MANAGED_LABEL, OWNER_LABEL, _owner_alive, owner_id

    ours = owner_id()

    def left(labels: dict[str, str]) -> bool:
        owner = labels.get(OWNER_LABEL, "")
        return owner == ours or not _owner_alive(owner)

    managed = {"label": f"{MANAGED_LABEL}=1"}
    return ([c.name for c in client.containers.list(all=True, filters=managed) if left(c.labels)]
            + [v.name for v in client.volumes.list(filters=managed) if left(v.attrs.get("Labels") or {})])
