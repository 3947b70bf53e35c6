"""The CPU miniature end to end (`configs/mini.toml`, smaller only in counts): the grammar's programs
checked into the corpus, the tiny model pre-trained on them, real Fashion-MNIST, and two cycles of
the full method that select at least one novel program and grow the training set by exactly the
selected ones, which the smoke loop cannot show (its model writes near-copies)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from orchestrator.config import load_config
from orchestrator.corpus.checks import prompt_check_protocol
from orchestrator.data import FASHION_MNIST_DEBIAN
from orchestrator.store.database import open_database
from orchestrator.store.schema import Adapter, Experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(not FASHION_MNIST_DEBIAN.is_dir(),
                                 reason="Debian's dataset-fashion-mnist is not installed")]
pytest.importorskip("transformers")
from tests.test_cycle import _invoke  # noqa: E402

# The mini profile with fewer grammar programs, a shorter pre-training and fewer candidates; its
# data, selection rules, novelty settings and decoding are unchanged.
TEST_CONFIG = """
[grammar]
programs = 120

[tiny_model]
steps = 70

[generation]
candidates_per_cycle = 6
batch_size = 6

[cycle]
max_candidates_per_cycle = 6
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sandbox_image, llm_image):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("mini")
    workdir, config = root / "runs", root / "test.toml"
    config.write_text(TEST_CONFIG)
    common = ("--profile", "mini", "--config", str(config), "--workdir", str(workdir))
    synth = _invoke("corpus", "synth", *common)
    assert "0 failed" in synth  # valid by construction, as the sandbox confirms
    corpus = workdir / "models" / "tiny-corpus.jsonl"
    _invoke("corpus", "export", "--format", "chat-jsonl", "--valid-only", str(corpus), *common)
    _invoke("llm", "tiny-model", str(workdir / "models" / "tiny"), "--corpus", str(corpus), "--samples", "0", *common)
    return workdir, config


def test_two_cycles_select_novel_programs_and_grow_the_training_set_by_them(workspace) -> None:  # type: ignore[no-untyped-def]
    workdir, config = workspace
    command = [sys.executable, "-m", "orchestrator.cli", "cycle", "--profile", "mini", "--config", str(config),
               "--workdir", str(workdir), "--cycles", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    profile = load_config("mini", config)
    threshold, tau = profile.selection.accuracy_threshold, profile.novelty.tau

    db = open_database(workdir)
    with db.transaction() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == "mini"))
        cycles = experiment.cycles
        assert [c.index for c in cycles] == [1, 2] and all(c.phase == "done" for c in cycles)
        seed = len(experiment.seed_program_ids)
        assert seed >= 100  # the grammar's programs that passed the checks, no near-duplicate among them
        selected = [x for c in cycles for x in c.candidates if x.selected]
        assert selected, "two cycles of the miniature selected nothing"
        for x in selected:  # the paper's rule: valid, accurate enough, novel to corpus and cycle
            assert x.outcome == "ok" and x.accuracy >= threshold
            assert x.nn_jaccard_train <= tau and not x.near_dup_text_train and not x.near_dup_text_gen
            assert x.protocol.startswith("nasloop-eval-v2:")
        # The training set grew by exactly one prompt-code pair per selected program, in order.
        base = 2 * seed
        assert cycles[0].corpus_size == base + cycles[0].n_selected
        assert cycles[1].corpus_size == base + cycles[0].n_selected + cycles[1].n_selected
        files = {k: workdir / "experiments" / "mini" / f"cycle-{k}" / "corpus.jsonl" for k in (0, 1, 2)}
        examples = {k: [json.loads(line) for line in f.read_text().splitlines()] for k, f in files.items()}
        assert len(examples[0]) == base
        assert examples[2][:len(examples[1])] == examples[1] and examples[1][:base] == examples[0]
        added = [e["messages"][-1]["content"] for e in examples[2][base:]]
        assert added == [f"```python\n{x.code.strip()}\n```" for x in selected]
        # The prompt of a selected program is the generation prompt's: Fashion-MNIST's shape.
        assert "(1, 1, 28, 28)" in examples[2][-1]["messages"][1]["content"]
        adapters = {a.cycle_index: a.meta for a in session.scalars(
            select(Adapter).where(Adapter.experiment_id == experiment.id))}
        assert [adapters[k]["corpus"]["examples"] for k in (0, 1, 2)] == [len(examples[k]) for k in (0, 1, 2)]
    db.close()
    stats = json.loads(_invoke("corpus", "stats", "--json", "--workdir", str(workdir)))
    assert stats["checks"][prompt_check_protocol(profile).id]["unchecked"] == 0
