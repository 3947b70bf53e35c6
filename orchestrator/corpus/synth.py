"""`nasloop corpus synth`: the grammar's programs into the corpus, each checked in the sandbox first.

Programs are drawn (`corpus.grammar`), then screened and de-duplicated exactly as a LEMUR import is
(they have no recorded accuracy, so of near-duplicates the best documented, then the first name, is
kept). Those that would join the corpus go through the sandbox's validity checks at the profile's
prompt shape (the `Checker` of `nasloop corpus check`), and only those that pass are imported, with
their check results stored, so `nasloop corpus check` has nothing left to do for them. A program
that fails is the grammar's fault: it is reported with its failure and left out, and the
de-duplication is done again without it (checking whatever then joins the corpus instead).
Not part of the paper: a CPU stand-in for what a 7B model knows (see `corpus.grammar`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from orchestrator.config import ExperimentConfig
from orchestrator.corpus.checks import check_row
from orchestrator.corpus.grammar import synthesize
from orchestrator.corpus.importing import ImportReport, code_sha256, import_records, plan_import
from orchestrator.corpus.index import CORPUS
from orchestrator.corpus.lemur import IMAGE_CLASSIFICATION, LemurRecord
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.run import Placement, evaluate_many
from orchestrator.store.database import Database
from orchestrator.store.schema import Program, ProgramCheck

GRAMMAR = "grammar"


@dataclass
class SynthReport:
    drawn: int
    styles: Counter[str]
    blocks: Counter[str]
    checked: int = 0
    failed: list[tuple[str, EvaluationResult]] = field(default_factory=list)  # (program name, its check)
    imported: ImportReport | None = None


def grammar_records(config: ExperimentConfig, count: int, seed: int) -> tuple[list[LemurRecord], SynthReport]:
    """The grammar's programs `0 .. count - 1` of `seed` within the profile's budgets, as records."""
    evaluation = config.evaluation
    programs = synthesize(count, seed, evaluation.param_budget, evaluation.buffer_allowance)
    records = [LemurRecord(p.name, p.code, f"grammar seed {seed} #{i} ({p.style}, {p.architecture.block} blocks)",
                           frozenset({IMAGE_CLASSIFICATION}), None) for i, p in enumerate(programs)]
    report = SynthReport(len(programs), Counter(p.style for p in programs),
                         Counter(p.architecture.block for p in programs))
    return records, report


def synthesize_into_corpus(db: Database, config: ExperimentConfig, checker: Checker, jobs: int | Placement,
                           count: int, seed: int,
                           on_result: Callable[[EvaluationResult], None] | None = None) -> SynthReport:
    """Draw, check and import (see module doc). InfraError (Docker) leaves the corpus as it was."""
    records, report = grammar_records(config, count, seed)
    checks: dict[str, EvaluationResult] = {}  # by code hash
    while True:
        with db.transaction() as session:
            kept = plan_import(session, records, config.novelty, ImportReport(GRAMMAR)).kept()
        pending = [r for r in kept if code_sha256(r.code) not in checks]
        if not pending:
            break
        results = evaluate_many(checker, [Submission(key=i, source=r.code.encode("utf-8"), name=r.name)
                                          for i, r in enumerate(pending)], jobs, on_result=on_result)
        for record, result in zip(pending, results):
            checks[code_sha256(record.code)] = result
            if not result.valid:
                report.failed.append((record.name, result))
        failed = {sha for sha, result in checks.items() if not result.valid}
        records = [r for r in records if code_sha256(r.code) not in failed]
    report.checked = len(checks)
    with db.transaction() as session:
        report.imported = import_records(session, records, GRAMMAR, config.novelty,
                                         ImportReport(f"grammar seed {seed}", read=len(records)))
        stored = set(session.scalars(select(ProgramCheck.program_id).where(ProgramCheck.protocol == checker.protocol.id)))
        for program_id, sha in session.execute(select(Program.id, Program.code_sha256)
                                               .where(CORPUS, Program.source == GRAMMAR)):
            if sha in checks and program_id not in stored:
                session.add(check_row(program_id, checks[sha]))
    return report
