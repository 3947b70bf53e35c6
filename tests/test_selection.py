"""Selection on recorded candidates: the paper's rule and each ablation."""

from __future__ import annotations

import pytest

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
