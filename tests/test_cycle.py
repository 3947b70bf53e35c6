"""The loop end to end with real parts: the tiny model, the LLM and sandbox containers, synthetic
data, a SQLite database. Plus kill-and-resume, the workspace lock and schema upgrades."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from orchestrator.cli import main
from tests.conftest import leftovers
from orchestrator.store.schema import Program
from orchestrator.loop.lock import workspace_lock
from orchestrator.store.readers import EXPORT_FIELDS
from orchestrator.store.database import open_database
from orchestrator.store.schema import Adapter, Candidate, Cycle, Experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow]
pytest.importorskip("transformers")

from tests.test_llm_model import PROGRAMS  # noqa: E402

# Shrinks the smoke profile: a micro model that memorises the corpus (so that its samples are valid
# programs), three candidates a cycle, small limits. The smoke profile itself is unchanged.
TEST_CONFIG = """
[tiny_model]
vocab_size = 1024
layers = 2
hidden_size = 96
intermediate_size = 192
heads = 2
context = 1024
steps = 150
batch_size = 4
lr = 5e-3
warmup_steps = 4

[generation]
temperature = 0.2
max_new_tokens = 420
batch_size = 3
candidates_per_cycle = 3

[finetune]
lr = 1e-3
warmup_steps = 1
max_seq_length = 2048

[evaluation]
train_timeout_s = 240
predict_timeout_s = 180
memory = "2g"
jobs = 1
"""
OVER_BUDGET = (Path(__file__).parent / "candidates" / "small_cnn.py").read_text().replace(
    "nn.Linear(128, out_shape[0])", "nn.Linear(128, 4096), nn.ReLU(), nn.Linear(4096, out_shape[0])")
STATS = [{"task": "img-classification", "dataset": "cifar-10", "metric": "acc", "epoch": 1, "n": 1,
          "best": 0.3, "median": 0.3}]


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sandbox_image, llm_image):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cycle")
    workdir, config = root / "runs", root / "test.toml"
    config.write_text(TEST_CONFIG)
    corpus = root / "programs.jsonl"
    corpus.write_text("".join(json.dumps({"name": f"p{i}", "code": code, "stats": STATS}) + "\n"
                              for i, code in enumerate(PROGRAMS)))
    seed = root / "seed.jsonl"  # the corpus: the valid programs plus one over the parameter budget
    seed.write_text(corpus.read_text() + json.dumps({"name": "too-big", "code": OVER_BUDGET, "stats": STATS}) + "\n")
    _invoke("corpus", "import", "--lemur", str(seed), "--workdir", str(workdir))
    # The smoke profile seeds the loop with the programs that pass the checks.
    with pytest.raises(AssertionError, match="nasloop corpus check"):
        _invoke("cycle", "--profile", "smoke", "--config", str(config), "--workdir", str(workdir))
    checked = _invoke("corpus", "check", "--jobs", "2", "--profile", "smoke", "--config", str(config),
                      "--workdir", str(workdir))
    kept = json.loads(_invoke("corpus", "stats", "--json", "--workdir", str(workdir)))["corpus_programs"]
    assert f"{kept - 1} of {kept} checked programs valid" in checked and "params_over_budget   1" in checked
    _invoke("llm", "tiny-model", str(workdir / "models" / "tiny"), "--corpus", str(corpus), "--samples", "0",
            "--profile", "smoke", "--config", str(config))
    return workdir, config


def _cycle_command(workdir: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "cycle", "--profile", "smoke", "--config", str(config),
            "--workdir", str(workdir), *extra]


def test_two_cycles_end_to_end(workspace) -> None:  # type: ignore[no-untyped-def]
    workdir, config = workspace
    name = "e2e"
    # Both selection conditions off, so that the corpus surely grows (the micro model writes near-copies).
    result = subprocess.run(_cycle_command(workdir, config, "--cycles", "2", "--experiment", name,
                                           "--no-novelty", "--no-threshold"),
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "cycle 2: generated 3" in result.stdout

    db = open_database(workdir)
    with db.transaction() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == name))
        cycles = experiment.cycles
        assert [c.index for c in cycles] == [1, 2] and all(c.phase == "done" for c in cycles)
        kept = session.scalar(select(func.count()).where(Program.duplicate_of_id.is_(None)))
        # The seed corpus is pinned: the checked-valid programs (the over-budget one is not part of it).
        assert len(experiment.seed_program_ids) == kept - 1 and len(experiment.seed_sha256) == 64
        base = 2 * len(experiment.seed_program_ids)  # two chat examples per seed program (Table 1)
        assert cycles[0].corpus_size == base + cycles[0].n_selected
        assert all(c.code_version and c.code_version == experiment.code_version for c in cycles)
        assert all(c.selection_protocol and c.selection_protocol.startswith("nasloop-select-v1:") for c in cycles)
        for c in cycles:
            candidates = c.candidates
            assert [x.sample_index for x in candidates] == [0, 1, 2]  # every sample stored, once
            assert all(x.outcome is not None and x.raw_output for x in candidates)
            assert c.n_selected == sum(bool(x.selected) for x in candidates)
        assert sum(c.n_selected for c in cycles) > 0, "the micro model wrote no valid program"
        # The training set grew by exactly one prompt-code pair per selected program.
        assert cycles[1].corpus_size == base + cycles[0].n_selected + cycles[1].n_selected
        corpus_file = workdir / "experiments" / name / "cycle-2" / "corpus.jsonl"
        assert len(corpus_file.read_text().splitlines()) == cycles[1].corpus_size
        assert "nn.Linear(128, 4096)" not in corpus_file.read_text()
        # Cycle 1 sampled from the initial adapter, cycle 2 from cycle 1's.
        adapters = {a.cycle_index: a for a in session.scalars(
            select(Adapter).where(Adapter.experiment_id == experiment.id))}
        assert sorted(adapters) == [0, 1, 2]
        # Stored relative to the workspace, which may move.
        assert all(not Path(a.path).is_absolute() and (workdir / a.path).is_dir() for a in adapters.values())
        assert cycles[0].adapter_in == adapters[0].path and cycles[0].adapter_out == adapters[1].path
        assert cycles[1].adapter_in == cycles[0].adapter_out
        assert adapters[2].meta["parent_adapter"]["path"].endswith("cycle-1")
    db.close()

    out = workdir / "export.jsonl"
    _invoke("export", "--experiment", name, str(out), "--workdir", str(workdir))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(set(EXPORT_FIELDS) <= set(row) for row in rows)
    # The host's own count of every valid candidate's weights file travels with it.
    valid_rows = [row for row in rows if row["valid"]]
    assert valid_rows and all(row["weights_elements"] >= row["params"] > 0 for row in valid_rows)
    assert all(row["holdout_gap"] == round(row["accuracy"] - row["holdout_accuracy"], 6) for row in valid_rows)
    report = json.loads(_invoke("report", "--workdir", str(workdir), "--experiment", name, "--json",
                                "--out", str(workdir / "report")))
    assert [c["n_gen"] for c in report["cycles"]] == [3, 3]


def _poll_db(workdir: Path, query: str, process: subprocess.Popen, timeout: float) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the cycle ended (exit {process.returncode}) before this state was seen: {query}")
        try:
            with sqlite3.connect(workdir / "nasloop.db", timeout=5) as connection:
                if connection.execute(query).fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for: {query}")


def test_sigkill_during_evaluation_then_resume(workspace, docker_client) -> None:  # type: ignore[no-untyped-def]
    workdir, config = workspace
    command = _cycle_command(workdir, config, "--until", "1", "--experiment", "killed")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # One candidate evaluated, the others not yet (one at a time): kill the orchestrator there.
        _poll_db(workdir, "SELECT sum(c.artefacts IS NOT NULL) >= 1 AND sum(c.outcome IS NULL) >= 1 "
                          "FROM candidates c JOIN cycles ON cycles.id = c.cycle_id "
                          "JOIN experiments e ON e.id = cycles.experiment_id WHERE e.name = 'killed'",
                 process, 1200)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    db = open_database(workdir)
    with db.transaction() as session:
        before = {c.sample_index: (c.outcome, c.artefacts) for c in session.scalars(
            select(Candidate).join(Cycle).join(Experiment).where(Experiment.name == "killed"))}
    assert len(before) == 3 and any(o is None for o, _ in before.values())

    result = subprocess.run(command, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with db.transaction() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == "killed"))
        (cycle,) = experiment.cycles
        after = {c.sample_index: (c.outcome, c.artefacts) for c in cycle.candidates}
        assert cycle.phase == "done" and cycle.n_generated == 3 and cycle.adapter_out
    db.close()
    assert sorted(after) == [0, 1, 2] and all(o is not None for o, _ in after.values())
    for index, (outcome, artefacts) in before.items():
        if outcome is not None:
            assert after[index] == (outcome, artefacts)  # recorded results are never redone
    assert leftovers(docker_client) == []
    # --until counts completed cycles: the resumed cycle was the one; running it again does nothing.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    with db.transaction() as session:
        assert len(session.scalar(select(Experiment).where(Experiment.name == "killed")).cycles) == 1
    db.close()


def _export(workdir: Path, name: str) -> list[dict]:  # type: ignore[type-arg]
    out = workdir / f"export-{name}.jsonl"
    _invoke("export", "--experiment", name, str(out), "--workdir", str(workdir))
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_cycle_on_ray_resumes_after_its_head_is_killed_and_equals_the_local_one(  # type: ignore[no-untyped-def]
        workspace, ray_cluster, docker_client) -> None:
    """`nasloop cycle --executor ray` on the session's two Ray nodes, its head SIGKILLed during evaluation
    and the command run again: its first cycle equals the local executor's (same seeds), apart from
    timings and node names. The local reference is the first cycle of `e2e` (run here if that test
    did not run)."""
    workdir, config = workspace
    selection = ("--no-novelty", "--no-threshold")
    db = open_database(workdir)
    with db.transaction() as session:
        reference = "e2e" if session.scalar(select(Experiment).where(Experiment.name == "e2e")) else "local-1"
    db.close()
    if reference == "local-1":
        result = subprocess.run(_cycle_command(workdir, config, "--until", "1", "--experiment", reference, *selection),
                                capture_output=True, text=True, timeout=1500)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    command = _cycle_command(workdir, config, "--until", "1", "--experiment", "on-ray", *selection, "--executor", "ray",
                             "--ray-address", ray_cluster.address)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ray_cluster.env,
                               start_new_session=True)
    try:
        _poll_db(workdir, "SELECT sum(c.artefacts IS NOT NULL) >= 1 AND sum(c.outcome IS NULL) >= 1 "
                          "FROM candidates c JOIN cycles ON cycles.id = c.cycle_id "
                          "JOIN experiments e ON e.id = cycles.experiment_id WHERE e.name = 'on-ray'",
                 process, 1200)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, env=ray_cluster.env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ray cluster at" in result.stdout
    local = [row for row in _export(workdir, reference) if row["cycle"] == 1]
    on_ray = _export(workdir, "on-ray")
    assert len(on_ray) == len(local) == 3
    differ = {"experiment", "train_seconds", "predict_seconds", "node"}
    for a, b in zip(local, on_ray):
        assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}
        assert b["node"] == "" or " ray:" in b["node"], b["node"]  # "": failed before any container
    assert leftovers(docker_client) == []


def test_second_cycle_process_on_a_workspace_refuses(workspace) -> None:  # type: ignore[no-untyped-def]
    workdir, config = workspace
    with workspace_lock(workdir):
        result = subprocess.run(_cycle_command(workdir, config, "--experiment", "other"),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "another nasloop cycle is running" in result.stderr
