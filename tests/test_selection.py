"""Selection on recorded candidates: the paper's rule and each ablation. Plus the loop's select phase
on a SQLite database (no containers; a stand-in for the LLM container and for evaluation): what
J_train's corpus holds under --no-iteration, and `[cycle] min_selected` sampling more batches."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from orchestrator.config import load_config
from orchestrator.corpus.index import make_hasher
from orchestrator.corpus.novelty import NoveltyIndex
from orchestrator.config import Ablations
from orchestrator.loop.selection import Evaluated, select_candidates as select
from tests.hostile import Case

CONFIG = load_config("paper")


@pytest.fixture(scope="module")
def corpus_and_candidates(lemur_records):  # type: ignore[no-untyped-def]
    by_name = {r["name"]: r["code"] for r in lemur_records}
    corpus_code = by_name["DPN68"]
    index = NoveltyIndex(make_hasher(CONFIG.novelty), CONFIG.novelty.lsh_threshold)
    index.add("DPN68", index.hasher.signature(corpus_code).values)
    novel_a = Case("a", "ok").source().decode()
    novel_b = by_name["BayesianNet-3"]
    candidates = [
        Evaluated("copy-of-corpus", True, 0.9, corpus_code + "\n# a comment\n"),
        Evaluated("novel-good", True, 0.55, novel_a),
        Evaluated("invalid", False, None, "def broken(:"),
        Evaluated("copy-of-novel-good", True, 0.6, novel_a.replace("    ", "  ")),
        Evaluated("novel-weak", True, 0.2, novel_b),
        Evaluated("no-code", False, None, None),
    ]
    return index, candidates


def _decide(corpus_and_candidates, ablations: Ablations) -> dict[str, tuple[bool, str]]:  # type: ignore[no-untyped-def]
    index, candidates = corpus_and_candidates
    decisions = select(candidates, index, CONFIG.novelty.tau, CONFIG.selection.accuracy_threshold, ablations)
    return {c.name: (d.selected, d.reason) for c, d in zip(candidates, decisions)}


def test_paper_rule(corpus_and_candidates) -> None:  # type: ignore[no-untyped-def]
    assert _decide(corpus_and_candidates, Ablations()) == {
        "copy-of-corpus": (False, "near_duplicate_train"),
        "novel-good": (True, "selected"),
        "invalid": (False, "invalid"),
        "copy-of-novel-good": (False, "near_duplicate_gen"),
        "novel-weak": (False, "below_threshold"),
        "no-code": (False, "invalid"),
    }


def test_no_novelty_selects_near_duplicates_above_threshold(corpus_and_candidates) -> None:  # type: ignore[no-untyped-def]
    decided = _decide(corpus_and_candidates, Ablations(no_novelty=True))
    assert [name for name, (selected, _) in decided.items() if selected] == [
        "copy-of-corpus", "novel-good", "copy-of-novel-good"]


def test_no_threshold_selects_every_valid_novel_candidate(corpus_and_candidates) -> None:  # type: ignore[no-untyped-def]
    decided = _decide(corpus_and_candidates, Ablations(no_threshold=True))
    assert [name for name, (selected, _) in decided.items() if selected] == ["novel-good", "novel-weak"]


def test_no_iteration_does_not_change_selection(corpus_and_candidates) -> None:  # type: ignore[no-untyped-def]
    assert _decide(corpus_and_candidates, Ablations(no_iteration=True)) == _decide(corpus_and_candidates, Ablations())


def test_novelty_fields_are_logged_even_when_ignored(corpus_and_candidates) -> None:  # type: ignore[no-untyped-def]
    index, candidates = corpus_and_candidates
    decisions = select(candidates, index, CONFIG.novelty.tau, CONFIG.selection.accuracy_threshold,
                       Ablations(no_novelty=True))
    copy = decisions[0].novelty
    assert copy is not None and copy.near_dup_text_train and copy.nearest_train == "DPN68"
    assert copy.nn_jaccard_train > 0.9
    assert decisions[2].novelty is None  # invalid candidates are never assessed
    gen_copy = decisions[3].novelty
    assert gen_copy is not None and gen_copy.near_dup_text_gen and gen_copy.nearest_gen == "novel-good"
    # The gen copy was the first near-duplicate after novel-good passed; rejection_count counts the
    # rejections before it since the last accepted one.
    assert decisions[1].novelty.rejection_count == 1 and gen_copy.rejection_count == 0  # type: ignore[union-attr]
    assert len(index) == 1  # selection never changes the corpus index


def test_gen_archive_readings_differ_on_copies_of_earlier_unselected_samples(lemur_records) -> None:  # type: ignore[no-untyped-def]
    """"generated" (the paper's Eq. 1): J_gen against every earlier sample of the cycle, valid or not;
    "accepted": only against the cycle's earlier selected candidates."""
    by_name = {r["name"]: r["code"] for r in lemur_records}
    index = NoveltyIndex(make_hasher(CONFIG.novelty), CONFIG.novelty.lsh_threshold)
    index.add("DPN68", index.hasher.signature(by_name["DPN68"]).values)
    weak, broken = by_name["BayesianNet-3"], Case("broken", "ok").source().decode()
    candidates = [
        Evaluated("weak", True, 0.2, weak),  # below the threshold: never selected
        Evaluated("broken", False, None, broken),  # invalid: never assessed
        Evaluated("weak-copy-good", True, 0.6, weak + "\n# retrained\n"),
        Evaluated("broken-copy-good", True, 0.6, broken + "\n# fixed\n"),
    ]
    threshold, tau = CONFIG.selection.accuracy_threshold, CONFIG.novelty.tau

    def reasons(archive: str) -> list[str]:
        return [d.reason for d in select(candidates, index, tau, threshold, Ablations(), gen_archive=archive)]

    assert reasons("generated") == ["below_threshold", "invalid", "near_duplicate_gen", "near_duplicate_gen"]
    assert reasons("accepted") == ["below_threshold", "invalid", "selected", "selected"]



# --- the loop's select phase -------------------------------------------------------------------------

class StandInLLM:
    """Writes the generation job's samples as the LLM container does (resuming its own file): sample i
    is a fenced program, texts[i % len(texts)]."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.num_samples: list[int] = []
        self.jobs: list = []  # type: ignore[type-arg]

    def run(self, job, log_file: Path) -> None:  # type: ignore[no-untyped-def]
        from contracts.llm import SAMPLES_FILE, Sample, read_samples

        self.num_samples.append(job.num_samples)
        self.jobs.append(job)
        out = Path(job.output_dir)
        with (out / SAMPLES_FILE).open("a") as fh:
            for i in range(len(read_samples(out)), job.num_samples):
                text = f"```python\n{self.texts[i % len(self.texts)]}\n```"
                fh.write(json.dumps(Sample(i, text, 10, 10, "stop", 0.1, 1, 0).as_dict()) + "\n")


def _runner(workdir: Path, seed_code: str, ablations: Ablations, **cycle: int):  # type: ignore[no-untyped-def]
    """A CycleRunner of the paper profile on a new SQLite workspace whose corpus is `seed_code` (DPN68)."""
    from orchestrator.loop.cycle import CycleRunner
    from orchestrator.loop.experiment import open_experiment
    from orchestrator.store.database import open_database
    from orchestrator.store.schema import Program, utcnow

    config = load_config("paper", None, {"cycle": cycle, "generation": {"candidates_per_cycle": 2}})
    db = open_database(workdir)
    with db.transaction() as session:
        session.add(Program(name="DPN68", source="lemur", origin="test", code=seed_code,
                            code_sha256=hashlib.sha256(seed_code.encode()).hexdigest(), added_at=utcnow()))
        session.flush()
        experiment = open_experiment(session, "test", "paper", config, ablations)
        experiment_id, seed_ids = experiment.id, set(experiment.seed_program_ids or ())
    docker = SimpleNamespace(client=None, images={"llm": SimpleNamespace(id="sha256:llm")})
    return CycleRunner(workdir, db, config, experiment_id, ablations, seed_ids, docker,  # type: ignore[arg-type]
                       Console(file=io.StringIO()))


def _add_cycle(runner, index: int, phase: str, codes: list[str], selected: bool | None) -> int:  # type: ignore[no-untyped-def]
    """A cycle with its candidates evaluated as valid at accuracy 0.6 (above the paper's 0.40)."""
    from orchestrator.store.schema import Candidate, Cycle

    with runner.db.transaction() as session:
        cycle = Cycle(experiment_id=runner.experiment_id, index=index, phase=phase, timings={},
                      adapter_in=f"experiments/test/adapters/cycle-{index - 1}", n_generated=len(codes))
        session.add(cycle)
        session.flush()
        for i, code in enumerate(codes):
            session.add(Candidate(cycle_id=cycle.id, sample_index=i, raw_output=code, code=code,
                                  code_sha256=hashlib.sha256(code.encode()).hexdigest(), outcome="ok",
                                  accuracy=0.6, selected=selected))
        return cycle.id


def _phase(runner, cycle_id: int, phase: str) -> str:  # type: ignore[no-untyped-def]
    """Run one phase of the cycle as run_cycle does; the next phase."""
    with runner.db.transaction() as session:
        cycle = runner._cycle(session, cycle_id)
    return getattr(runner, f"_{phase}")(cycle)


@pytest.mark.parametrize("no_iteration", [False, True], ids=["iteration", "no-iteration"])
def test_no_iteration_keeps_j_trains_corpus_at_the_seed(tmp_path, lemur_records, no_iteration: bool) -> None:  # type: ignore[no-untyped-def]
    """Cycle 1 selected a program; cycle 2 samples a copy of it. J_train holds cycle 1's selection only
    when the loop iterates: under --no-iteration nothing trains on it, so the copy is novel against the
    seed corpus, which is all the training set holds, and the cycle ends without a fine-tune."""
    from orchestrator.store.schema import Candidate, Cycle

    by_name = {r["name"]: r["code"] for r in lemur_records}
    selected_before = by_name["BayesianNet-3"]
    runner = _runner(tmp_path / "runs", by_name["DPN68"], Ablations(no_iteration=no_iteration))
    _add_cycle(runner, 1, "done", [selected_before], selected=True)
    cycle_id = _add_cycle(runner, 2, "select", [selected_before + "\n# sampled again\n"], selected=None)
    next_phase = _phase(runner, cycle_id, "select")
    with runner.db.transaction() as session:
        cycle = session.get(Cycle, cycle_id)
        (copy,) = session.query(Candidate).filter(Candidate.cycle_id == cycle_id).all()
        if no_iteration:
            assert (copy.selected, copy.selection_reason, copy.nearest_train) == (True, "selected", "DPN68")
            assert next_phase == "done" and cycle.adapter_out == cycle.adapter_in  # the initial adapter, kept
            assert cycle.corpus_size == 2  # the seed program's two chat examples, no selection
        else:
            assert (copy.selected, copy.selection_reason) == (False, "near_duplicate_train")
            assert copy.nearest_train == "cycle-1/sample-0" and copy.nn_jaccard_train > 0.9
            assert next_phase == "finetune" and cycle.corpus_size == 2 + 1
    runner.db.close()


@pytest.mark.parametrize("no_iteration", [False, True], ids=["iteration", "no-iteration"])
def test_every_cycle_samples_with_a_seed_of_its_own(tmp_path, lemur_records, no_iteration: bool) -> None:  # type: ignore[no-untyped-def]
    """Under --no-iteration every cycle samples from the same adapter: with one seed for all cycles
    they would all draw the same programs. Each cycle's seed derives from the profile's seed and the
    cycle's index: distinct across cycles, the same when a cycle's sampling resumes."""
    from orchestrator.generator.jobs import cycle_seed
    from orchestrator.store.schema import Cycle

    by_name = {r["name"]: r["code"] for r in lemur_records}
    runner = _runner(tmp_path / "runs", by_name["DPN68"], Ablations(no_iteration=no_iteration))
    runner.llm = StandInLLM([by_name["BayesianNet-3"]])
    cycle_ids = []
    with runner.db.transaction() as session:
        for index in (1, 2, 3):
            cycle = Cycle(experiment_id=runner.experiment_id, index=index, phase="generate", timings={},
                          adapter_in="experiments/test/adapters/cycle-0")
            session.add(cycle)
            session.flush()
            cycle_ids.append(cycle.id)
    for cycle_id in cycle_ids:
        assert _phase(runner, cycle_id, "generate") == "evaluate"
    seeds = [job.decoding.seed for job in runner.llm.jobs]
    assert len(set(seeds)) == 3 and len({job.adapter for job in runner.llm.jobs}) == 1
    assert seeds == [cycle_seed(CONFIG.generation.seed, index) for index in (1, 2, 3)]
    assert cycle_seed(CONFIG.generation.seed, 2) == seeds[1] and cycle_seed(CONFIG.generation.seed + 1, 2) != seeds[1]
    runner.db.close()


@pytest.mark.parametrize("min_selected, batches", [(1, [2]), (2, [2, 4, 5])], ids=["enough", "cap"])
def test_min_selected_samples_more_batches_until_enough_are_selected_or_the_cap(  # type: ignore[no-untyped-def]
        tmp_path, lemur_records, min_selected: int, batches: list[int]) -> None:
    """Batches of candidates_per_cycle (2) until min_selected are selected or max_candidates_per_cycle
    (5) were sampled. The samples alternate a novel program and a copy of the seed; after the first,
    every novel one is a copy of it (J_gen): one selection per cycle, whatever is sampled."""
    from orchestrator.store.schema import Candidate, Cycle

    by_name = {r["name"]: r["code"] for r in lemur_records}
    runner = _runner(tmp_path / "runs", by_name["DPN68"], Ablations(), min_selected=min_selected,
                     max_candidates_per_cycle=5)
    runner.llm = StandInLLM([by_name["BayesianNet-3"], by_name["DPN68"] + "\n# copied\n"])
    with runner.db.transaction() as session:
        cycle = Cycle(experiment_id=runner.experiment_id, index=1, phase="generate", timings={}, adapter_in=None)
        session.add(cycle)
        session.flush()
        cycle_id = cycle.id
    phases = []
    phase = "generate"
    while phase in ("generate", "select"):
        phase = _phase(runner, cycle_id, phase)
        if phase == "evaluate":  # a stand-in evaluation: every stored program valid at 0.6
            with runner.db.transaction() as session:
                for candidate in session.query(Candidate).filter(Candidate.cycle_id == cycle_id,
                                                                 Candidate.outcome.is_(None)):
                    candidate.outcome, candidate.accuracy = "ok", 0.6
            phase = "select"
        phases.append(phase)
    assert runner.llm.num_samples == batches  # each generate job asks for one batch more, up to the cap
    assert phases == ["select", "generate"] * (len(batches) - 1) + ["select", "finetune"]
    with runner.db.transaction() as session:
        cycle = session.get(Cycle, cycle_id)
        indices = [c.sample_index for c in session.query(Candidate).filter(Candidate.cycle_id == cycle_id)]
        assert cycle.n_generated == batches[-1] and sorted(indices) == list(range(batches[-1]))  # each stored once
        assert cycle.n_selected == 1
    runner.db.close()
