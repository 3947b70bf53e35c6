"""Selection, the paper's step 4: valid AND accuracy >= threshold AND novel (not a near-duplicate
of the corpus nor of an earlier candidate of the cycle). Novelty is measured after evaluation, in
sample order, for valid candidates only; the ablations switch single conditions off while every
similarity is still measured and logged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.config import Ablations
from orchestrator.corpus.novelty import CycleNovelty, NoveltyIndex, NoveltyResult


@dataclass(frozen=True)
class Evaluated:
    """What selection needs of a candidate, in sample order."""

    name: str
    valid: bool
    accuracy: float | None
    code: str | None


@dataclass(frozen=True)
class Decision:
    selected: bool
    reason: str  # "selected", "invalid", "below_threshold", "near_duplicate_train", "near_duplicate_gen"
    novelty: NoveltyResult | None  # None for invalid candidates (never assessed)


def select_candidates(candidates: Sequence[Evaluated], index: NoveltyIndex, tau: float, threshold: float,
           ablations: Ablations) -> list[Decision]:
    """One decision per candidate, same order. The corpus index itself is not changed."""
    novelty = CycleNovelty(index, tau)
    decisions = []
    for candidate in candidates:
        if not candidate.valid or candidate.code is None:
            decisions.append(Decision(False, "invalid", None))
            continue
        result = novelty.assess(candidate.name, candidate.code)
        if not ablations.no_novelty and result.near_dup_text_train:
            decisions.append(Decision(False, "near_duplicate_train", result))
        elif not ablations.no_novelty and result.near_dup_text_gen:
            decisions.append(Decision(False, "near_duplicate_gen", result))
        elif not ablations.no_threshold and (candidate.accuracy is None or candidate.accuracy < threshold):
            decisions.append(Decision(False, "below_threshold", result))
        else:
            decisions.append(Decision(True, "selected", result))
    return decisions
