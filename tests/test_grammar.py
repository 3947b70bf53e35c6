"""The seed-corpus grammar: reproducible, varied, within the budgets by its own exact count, in the
API contract, and valid in the sandbox with the parameter count it computed (real containers);
`nasloop corpus synth` checks before it imports and de-duplicates as a LEMUR import does."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.corpus.checks import prompt_check_protocol
from orchestrator.corpus.grammar import synthesize
from orchestrator.corpus.grammar.architecture import BLOCKS, HEADS, MAX_MACS, size_of
from orchestrator.corpus.grammar.styles import STYLES
from orchestrator.corpus.importing import ImportReport, import_records
from orchestrator.corpus.synth import GRAMMAR, grammar_records
from orchestrator.evaluation.contract import check_contract
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.result import Submission
from orchestrator.evaluation.run import evaluate_many
from orchestrator.store.database import open_database
from orchestrator.store.schema import Program, ProgramCheck

MINI = load_config("mini")
BUDGET, ALLOWANCE = MINI.evaluation.param_budget, MINI.evaluation.buffer_allowance


@pytest.fixture(scope="module")
def programs():  # type: ignore[no-untyped-def]
    return synthesize(240, 0, BUDGET, ALLOWANCE)


def test_programs_are_reproducible_and_a_prefix_of_a_larger_count(programs) -> None:  # type: ignore[no-untyped-def]
    again = synthesize(40, 0, BUDGET, ALLOWANCE)
    assert [p.code for p in again] == [p.code for p in programs[:40]]
    assert [p.code for p in synthesize(5, 0, BUDGET, ALLOWANCE, first=100)] == [p.code for p in programs[100:105]]
    assert {p.code for p in synthesize(40, 1, BUDGET, ALLOWANCE)}.isdisjoint(p.code for p in again)
    assert len({p.name for p in programs}) == len(programs)


def test_programs_vary_in_structure_and_style(programs) -> None:  # type: ignore[no-untyped-def]
    assert set(Counter(p.style for p in programs)) == set(STYLES)
    assert set(Counter(p.architecture.block for p in programs)) == set(BLOCKS)
    assert len({p.architecture.activation for p in programs}) == 6
    assert {p.architecture.head for p in programs} == set(HEADS)
    assert len({len(p.architecture.stages) for p in programs}) == 3
    assert len({p.code for p in programs}) == len(programs)


def test_programs_are_within_the_budgets_by_their_own_count(programs) -> None:  # type: ignore[no-untyped-def]
    for p in programs:
        assert 5_000 <= p.size.params <= BUDGET and p.size.buffers <= ALLOWANCE and p.size.macs <= MAX_MACS
        assert size_of(p.architecture, 28, 1).params < p.size.params  # one input channel: fewer in the stem
    tight = synthesize(30, 0, 20_000, 1_000)
    assert all(p.size.params <= 20_000 and p.size.buffers <= 1_000 for p in tight)


def test_programs_keep_the_api_contract_and_track_channels(programs) -> None:  # type: ignore[no-untyped-def]
    for p in programs:
        assert check_contract(p.code.encode(), MINI.evaluation.max_source_bytes) is None, p.name
        # Validity is structural: the first layer reads in_shape[1], and no layer is built from a
        # literal input width except the stem's output.
        assert "in_shape[1]" in p.code and "out_shape[0]" in p.code
        assert "supported_hyperparameters" in p.code and "prm['lr']" in p.code


def test_grammar_programs_import_with_the_lemur_rules(tmp_path: Path) -> None:
    records, report = grammar_records(MINI, 30, 0)
    assert report.drawn == 30 and sum(report.styles.values()) == 30
    db = open_database(tmp_path)
    with db.transaction() as session:
        first = import_records(session, records, GRAMMAR, MINI.novelty, ImportReport("grammar"))
    with db.transaction() as session:
        again = import_records(session, records, GRAMMAR, MINI.novelty, ImportReport("grammar"))
        assert first.kept + first.near_duplicates == 30 and first.kept >= 25
        assert again.kept == 0 and again.dropped == {"already in corpus": 30}
        sources = set(session.scalars(select(Program.source)))
        assert sources == {GRAMMAR}
        assert session.scalar(select(func.count()).where(Program.cifar10_epoch1_accuracy.is_not(None))) == 0
    db.close()


@pytest.mark.docker
def test_grammar_programs_pass_the_sandbox_checks_with_their_own_count(docker_client, sandbox_image,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every style and block kind, at the mini profile's prompt shape (1x28x28) and the paper's
    (3x32x32): valid, and the runner counts exactly the parameters the grammar computed."""
    sample = synthesize(240, 0, BUDGET, ALLOWANCE)
    picked = {}
    for p in sample:  # one program per (style, block kind), plus the largest
        picked.setdefault((p.style, p.architecture.block), p)
    chosen = list(picked.values()) + [max(sample, key=lambda p: p.size.params)]
    for config, side, channels in ((MINI, 28, 1), (load_config("smoke"), 32, 3)):
        evaluation = replace(config.evaluation, check_timeout_s=120.0, memory="1g", cpus=1.0)
        protocol = prompt_check_protocol(replace(config, evaluation=evaluation))
        assert protocol.in_shape == [1, channels, side, side]
        with Checker(docker_client, sandbox_image, protocol, tmp_path / f"checks-{side}", pool_size=2) as checker:
            results = evaluate_many(checker, [Submission(key=i, source=p.code.encode(), name=p.name)
                                              for i, p in enumerate(chosen)], 2)
        for p, result in zip(chosen, results):
            assert result.valid, (p.name, p.style, result.failure, result.error)
            assert result.params == size_of(p.architecture, side, channels).params, p.name


@pytest.mark.docker
def test_corpus_synth_checks_then_imports(docker_client, sandbox_image, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    args = ["corpus", "synth", "--count", "12", "--seed", "3", "--profile", "mini", "--workdir", str(tmp_path)]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    protocol = prompt_check_protocol(MINI).id
    assert f"checked 12 in the sandbox under {protocol}: 12 valid, 0 failed" in result.output
    stats = json.loads(runner.invoke(main, ["corpus", "stats", "--json", "--workdir", str(tmp_path)]).output)
    assert stats["by_source"][GRAMMAR]["corpus"] == 12 and stats["checks"][protocol] == {"ok": 12, "unchecked": 0}
    again = runner.invoke(main, args, catch_exceptions=False)  # nothing new: nothing checked or imported
    assert "checked 0 in the sandbox" in again.output and "kept         0" in again.output
    db = open_database(tmp_path)
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ProgramCheck)) == 12
    db.close()
