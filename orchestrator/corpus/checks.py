"""Validity checks of the corpus programs, stored per check protocol.

Most LEMUR programs are not valid answers to the generation prompt: of the 361 corpus programs of
the shared LEMUR file, 273 exceed the 500,000-parameter budget at 3x32x32 and others need packages
the sandbox does not have. `nasloop corpus check` runs every corpus program through the sandbox's
validity checks (`Checker`: contract, then one hardened container for import, instantiation,
parameter budget and a dummy forward) at the shape the generation prompt states, and records each
outcome here, so that `nasloop corpus export --valid-only` can write the programs that pass (what
the tiny local model learns from). Results are keyed by the check protocol's id: a change of shape,
budget or hyperparameters checks again; a new sandbox image does not (the image is recorded).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.config import ExperimentConfig
from orchestrator.corpus.index import CORPUS
from orchestrator.corpus.tasks import generation_task
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.protocol import CheckProtocol, make_check_protocol
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.evaluation.run import Placement, evaluate_many
from orchestrator.store.database import Database
from orchestrator.store.schema import Program, ProgramCheck


def prompt_check_protocol(config: ExperimentConfig) -> CheckProtocol:
    """The checks at the shape the profile's generation prompt states (the paper: CIFAR-10, 3x32x32,
    ten classes)."""
    task = generation_task(config)
    return make_check_protocol(config.evaluation, [1, task.channels, task.height, task.width], task.num_classes)


def unchecked_programs(session: Session, protocol_id: str) -> list[tuple[int, str, str]]:
    """(id, name, code) of the corpus programs with no result under `protocol_id`, in id order."""
    checked = select(ProgramCheck.program_id).where(ProgramCheck.protocol == protocol_id)
    return [tuple(row) for row in session.execute(  # type: ignore[misc]
        select(Program.id, Program.name, Program.code).where(CORPUS, Program.id.not_in(checked))
        .order_by(Program.id))]


def check_counts(session: Session, protocol_id: str) -> dict[str, int]:
    """Corpus programs by outcome under `protocol_id`: "ok", each failure kind, and "unchecked"."""
    counts = {("ok" if valid else str(failure)): n for valid, failure, n in session.execute(
        select(ProgramCheck.valid, ProgramCheck.failure, func.count())
        .join(Program, Program.id == ProgramCheck.program_id)
        .where(CORPUS, ProgramCheck.protocol == protocol_id)
        .group_by(ProgramCheck.valid, ProgramCheck.failure))}
    counts["unchecked"] = len(unchecked_programs(session, protocol_id))
    return dict(sorted(counts.items()))


def checked_protocols(session: Session) -> list[str]:
    return list(session.scalars(select(ProgramCheck.protocol).distinct().order_by(ProgramCheck.protocol)))


class ChecksMissing(RuntimeError):
    """The corpus is not (fully) checked under a protocol, or nothing in it passed."""


def valid_program_ids(session: Session, protocol_id: str) -> set[int]:
    """The corpus programs that passed under `protocol_id`; ChecksMissing while any corpus program
    has no result there (a partial answer would silently depend on how far a check run got) or when
    none passed."""
    unchecked = len(unchecked_programs(session, protocol_id))
    if unchecked:
        raise ChecksMissing(f"{unchecked} corpus program(s) have no check result under {protocol_id}: "
                            "run `nasloop corpus check` with the same profile first")
    ids = set(session.scalars(select(ProgramCheck.program_id).join(Program, Program.id == ProgramCheck.program_id)
                              .where(CORPUS, ProgramCheck.protocol == protocol_id, ProgramCheck.valid.is_(True))))
    if not ids:
        raise ChecksMissing(f"no corpus program passed the checks under {protocol_id}")
    return ids


def check_row(program_id: int, result: EvaluationResult) -> ProgramCheck:
    """The stored outcome of `result`, a check of program `program_id`."""
    return ProgramCheck(program_id=program_id, protocol=result.protocol, valid=result.valid, failure=result.failure,
                        error=result.error, params=result.params, seconds=result.check_seconds, image=result.image,
                        checked_at=datetime.now(timezone.utc))


def check_corpus(db: Database, checker: Checker, jobs: int | Placement, limit: int | None = None,
                 on_result: Callable[[EvaluationResult], None] | None = None) -> int:
    """Check the unchecked corpus programs (at most `limit`), `jobs` at a time (or as placed), committing each
    result as it lands: an interrupted run loses nothing and resumes with the rest. Returns how many
    were checked. An infrastructure failure (Docker) is re-raised after the finished ones are kept."""
    with db.transaction() as session:
        pending = unchecked_programs(session, checker.protocol.id)[:limit]

    def record(result: EvaluationResult) -> None:
        with db.transaction() as session:
            session.add(check_row(result.key, result))
        if on_result:
            on_result(result)

    evaluate_many(checker, [Submission(key=pid, source=code.encode("utf-8"), name=name) for pid, name, code in pending],
                  jobs, on_result=record)
    return len(pending)
