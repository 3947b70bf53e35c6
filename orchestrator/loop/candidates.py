"""A cycle's candidates in the database: raw samples stored before anything else, the extracted code,
and each evaluation result recorded on its row (the candidate's id is its key end to end)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.llm import Sample
from llm import extract_code
from orchestrator.corpus.importing import code_sha256
from orchestrator.evaluation.result import EvaluationResult, Submission
from orchestrator.loop.selection import Decision
from orchestrator.store.schema import Candidate


def store_samples(session: Session, cycle_id: int, samples: list[Sample]) -> int:
    """A candidate row per sample not stored yet (resumable), with its extracted code or the
    `extraction` outcome. Returns how many were added."""
    known = set(session.scalars(select(Candidate.sample_index).where(Candidate.cycle_id == cycle_id)))
    added = 0
    for sample in samples:
        if sample.index in known:
            continue
        code = extract_code(sample.text)
        outcome, error = (None, None) if code else ("extraction", "no program could be extracted from the sample")
        if code and "\x00" in code:  # no Python source holds NUL, and no database text column takes it
            outcome, error = "syntax", "the program contains NUL characters"
        session.add(Candidate(
            cycle_id=cycle_id, sample_index=sample.index, raw_output=without_nul(sample.text),
            finish_reason=sample.finish_reason, completion_tokens=sample.completion_tokens,
            code=without_nul(code) if code else None,
            code_sha256=code_sha256(code) if code else None,
            outcome=outcome, error=error))
        added += 1
    return added


def without_nul(text: str) -> str:
    """`text` storable in any database (PostgreSQL text refuses NUL): NUL shown as `\\x00`."""
    return text.replace("\x00", "\\x00")


def pending_submissions(session: Session, cycle_id: int) -> list[Submission]:
    """The cycle's candidates not evaluated yet, in sample order, keyed by candidate id."""
    return [Submission(key=c.id, source=(c.code or "").encode("utf-8"), name=f"sample {c.sample_index}")
            for c in session.scalars(select(Candidate).where(Candidate.cycle_id == cycle_id,
                                                            Candidate.outcome.is_(None))
                                     .order_by(Candidate.sample_index))]


def store_evaluation(candidate: Candidate, result: EvaluationResult) -> None:
    candidate.outcome = "ok" if result.valid else result.failure
    candidate.error = result.error
    candidate.params = result.params
    candidate.weights_elements = result.weights_elements
    candidate.accuracy = result.accuracy
    candidate.holdout_accuracy = result.holdout_accuracy
    candidate.train_seconds = result.train_seconds
    candidate.predict_seconds = result.predict_seconds
    candidate.learn_seconds = result.learn_seconds
    candidate.log_tail = result.log_tail or None
    candidate.gpu = result.gpu
    candidate.node = result.node or None
    candidate.image = result.image
    candidate.protocol = result.protocol
    candidate.artefacts = result.artefacts


def store_decision(candidate: Candidate, decision: Decision) -> None:
    """Selection's verdict and the paper's novelty fields on the candidate's row."""
    candidate.selected = decision.selected
    candidate.selection_reason = decision.reason
    n = decision.novelty
    if n is not None:
        candidate.nn_jaccard_train, candidate.near_dup_text_train = n.nn_jaccard_train, n.near_dup_text_train
        candidate.nearest_train, candidate.nn_jaccard_gen = n.nearest_train, n.nn_jaccard_gen
        candidate.near_dup_text_gen, candidate.nearest_gen = n.near_dup_text_gen, n.nearest_gen
        candidate.rejection_count = n.rejection_count
