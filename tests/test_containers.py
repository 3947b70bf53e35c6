"""One hardened phase container with real Docker: its removal left to a `Reaper` happens after the
outcome is back (off the candidate's critical path), and closing the reaper leaves nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.containers.client import InfraError
from orchestrator.containers.hardened import Limits, Phase, Reaper, run_phase
from tests.conftest import leftovers

pytestmark = pytest.mark.docker

LIMITS = Limits(timeout_s=60.0, memory="256m", cpus=1.0, pids=32, tmpfs_size="16m", max_output_bytes=1 << 20)
WRITE_OUTPUT = "open('/out/result.txt', 'w').write('done')"


class _Held:
    """A removal that waits until released (the reaper's single thread is busy meanwhile)."""

    def __init__(self, fail: bool = False) -> None:
        self.release, self.fail = threading.Event(), fail

    def remove(self) -> None:
        self.release.wait(timeout=60)
        if self.fail:
            raise InfraError("could not remove the held container")


def _phase(sandbox_image, tmp_path: Path) -> Phase:  # type: ignore[no-untyped-def]
    job = tmp_path / "job"
    job.mkdir(parents=True)
    return Phase("reaper-test", sandbox_image.id, ["python3", "-c", WRITE_OUTPUT], {job: "/job"})


def test_removal_is_left_to_the_reaper_and_close_waits_for_it(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reaper = Reaper()
    held = _Held()
    reaper.defer(held)  # type: ignore[arg-type]
    outcome = run_phase(docker_client, _phase(sandbox_image, tmp_path), LIMITS, reaper)
    assert outcome.exit_code == 0 and not outcome.timed_out, outcome.log_tail
    assert outcome.outputs.files == {"result.txt": b"done"}
    # The outcome came back while the phase's container, keeper and volume were still there.
    left = leftovers(docker_client)
    assert any("role=sandbox" in x for x in left) and any("volume" in x for x in left), left
    held.release.set()
    reaper.close()
    assert leftovers(docker_client) == []
    # Still usable after close; without a reaper everything is removed before the return.
    run_phase(docker_client, _phase(sandbox_image, tmp_path / "again"), LIMITS, reaper)
    reaper.close()
    assert leftovers(docker_client) == []
    run_phase(docker_client, _phase(sandbox_image, tmp_path / "cold"), LIMITS)
    assert leftovers(docker_client) == []


def test_a_failed_removal_is_reported_when_the_reaper_closes(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    reaper = Reaper()
    held = _Held(fail=True)
    reaper.defer(held)  # type: ignore[arg-type]
    held.release.set()
    with pytest.raises(InfraError, match="could not remove the held container"):
        reaper.close()
    reaper.close()  # reported once
