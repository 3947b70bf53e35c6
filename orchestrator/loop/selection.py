"""Selection, the paper's step 4: valid AND accuracy >= threshold AND novel (not a near-duplicate
of the corpus nor of an earlier candidate of the cycle). Novelty is measured after evaluation, in
sample order, for valid candidates only; the ablations switch single conditions off while every
similarity is still measured and logged. J_gen's archive follows the profile's reading
(`[novelty] gen_archive`): "generated" holds every earlier sample of the cycle with code, valid or
not (the paper's Eq. 1); "accepted" only the earlier selected ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.config import Ablations, ExperimentConfig
from orchestrator.corpus.novelty import CycleNovelty, NoveltyIndex, NoveltyResult
from orchestrator.evaluation.protocol import RecordedProtocol

SELECTION_PROTOCOL_NAME = "nasloop-select-v1"


@dataclass(frozen=True)
class SelectionProtocol(RecordedProtocol):
    """Everything that decides which candidates are selected, recorded (name and hash) per cycle."""

    shingle_size: int
    num_perm: int
    lsh_threshold: float
    tau: float
    gen_archive: str
    accuracy_threshold: float
    no_novelty: bool
    no_threshold: bool
    no_iteration: bool
    name: str = SELECTION_PROTOCOL_NAME


def selection_protocol(config: ExperimentConfig, ablations: Ablations) -> SelectionProtocol:
    n = config.novelty
    return SelectionProtocol(shingle_size=n.shingle_size, num_perm=n.num_perm, lsh_threshold=n.lsh_threshold,
                             tau=n.tau, gen_archive=n.gen_archive,
                             accuracy_threshold=config.selection.accuracy_threshold,
                             no_novelty=ablations.no_novelty, no_threshold=ablations.no_threshold,
                             no_iteration=ablations.no_iteration)


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
                      ablations: Ablations, gen_archive: str = "generated") -> list[Decision]:
    """One decision per candidate, same order. The corpus index itself is not changed."""
    assert gen_archive in ("generated", "accepted"), gen_archive
    novelty = CycleNovelty(index, tau)
    decisions = []
    for candidate in candidates:
        if not candidate.valid or candidate.code is None:
            if candidate.code is not None and gen_archive == "generated":
                novelty.remember(candidate.name, candidate.code)
            decisions.append(Decision(False, "invalid", None))
            continue
        result = novelty.assess(candidate.name, candidate.code, remember=gen_archive == "generated")
        if not ablations.no_novelty and result.near_dup_text_train:
            decisions.append(Decision(False, "near_duplicate_train", result))
        elif not ablations.no_novelty and result.near_dup_text_gen:
            decisions.append(Decision(False, "near_duplicate_gen", result))
        elif not ablations.no_threshold and (candidate.accuracy is None or candidate.accuracy < threshold):
            decisions.append(Decision(False, "below_threshold", result))
        else:
            decisions.append(Decision(True, "selected", result))
            if gen_archive == "accepted":
                novelty.remember(candidate.name, candidate.code)
    return decisions
