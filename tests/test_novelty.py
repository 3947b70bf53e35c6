"""Novelty: tokens, shingles, MinHash signatures, the exact nearest-neighbour index, J_gen."""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import re
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from orchestrator.config import load_config
from orchestrator.corpus.minhash import (
    MinHasher,
    _c_lexer_tokens,
    _tokenize_module_tokens,
    estimated_jaccard,
    exact_jaccard,
    shingles,
    tokenize_code,
)
from orchestrator.corpus.novelty import CycleNovelty, NoveltyIndex

LEMUR_JSONL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lemur" / \
    "lemur-img-classification.jsonl.gz"
NOVELTY = load_config("paper").novelty


@pytest.fixture(scope="module")
def lemur() -> list[dict]:
    if not LEMUR_JSONL.is_file():
        pytest.skip(f"shared LEMUR corpus not found at {LEMUR_JSONL}")
    with gzip.open(LEMUR_JSONL, "rt") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher(NOVELTY.shingle_size, NOVELTY.num_perm)


@pytest.fixture(scope="module")
def lemur_signatures(lemur: list[dict], hasher: MinHasher) -> np.ndarray:
    return hasher.signatures([r["code"] for r in lemur]).values


def test_paper_parameters_come_from_the_profile() -> None:
    assert (NOVELTY.shingle_size, NOVELTY.num_perm, NOVELTY.lsh_threshold, NOVELTY.tau) == \
        (10, 256, 0.85, 0.90)


# --- tokens and shingles -----------------------------------------------------------------------

def test_tokens_drop_comments_layout_and_encoding_markers() -> None:
    code = "# header\n\nclass Net:  # trailing\n\n    def f(self, x):\n        return x + 1\n"
    toks = tokenize_code(code)
    assert not toks.fallback
    assert toks.tokens == ["class", "Net", ":", "def", "f", "(", "self", ",", "x", ")", ":",
                           "return", "x", "+", "1"]


def test_layout_only_changes_give_identical_tokens() -> None:
    original = "x = f(a, b)\nif x:\n    y = [1, 2]\n"
    variants = [
        "x = f(\n    a,\n    b\n)\n\n\nif x:  # why\n  y = [\n    1, 2]\n",
        "x = f(a, \\\n      b)\nif x:\n\ty = [1, 2]\n",
        "\ufeffx = f(a, b)\r\nif x:\r\n    y = [1, 2]\r\n",
    ]
    for variant in variants:
        assert tokenize_code(variant).tokens == tokenize_code(original).tokens


@pytest.mark.parametrize("code", [
    "s = '''never closed\n",
    "if x:\n    a = 1\n  b = 2\n",  # dedent to no enclosing level
    "x = 1\0\n",
    "def f(:\n    return 'unterminated\n",
])
def test_code_the_lexer_rejects_falls_back_and_is_flagged(code: str) -> None:
    toks = tokenize_code(code)
    assert toks.fallback
    assert toks.tokens  # still something to shingle


def test_c_lexer_equals_the_tokenize_module_on_lemur(lemur: list[dict]) -> None:
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the C lexer fast path is only used on Python 3.11")
    for record in lemur[::2]:  # every other program: the public tokenizer is slow
        assert _c_lexer_tokens(record["code"]) == _tokenize_module_tokens(record["code"]), record["name"]


def test_shingles_are_k_token_windows_and_short_programs_are_one_shingle() -> None:
    tokens = [str(i) for i in range(12)]
    grams = shingles(tokens, 10)
    assert grams == {" ".join(tokens[i:i + 10]).encode() for i in range(3)}
    assert shingles(["a", "b"], 10) == {b"a b"}
    assert shingles([], 10) == {b""}
    assert shingles(["é", "x"], 1) == {"é".encode(), b"x"}


# --- signatures --------------------------------------------------------------------------------

def test_signatures_equal_datasketch_per_shingle_update(lemur: list[dict], hasher: MinHasher) -> None:
    for record in random.Random(0).sample(lemur, 25):
        naive = MinHash(num_perm=NOVELTY.num_perm)
        grams, _ = hasher.shingles(record["code"])
        for gram in grams:
            naive.update(gram)
        assert np.array_equal(hasher.signature(record["code"]).values, naive.hashvalues)


def test_memoised_hashing_equals_hashing_the_shingle_set(lemur: list[dict]) -> None:
    cached = MinHasher(NOVELTY.shingle_size, NOVELTY.num_perm)
    cached._CACHE_LIMIT = 50  # forces the memo to be cleared and rebuilt repeatedly
    fresh = MinHasher(NOVELTY.shingle_size, NOVELTY.num_perm)
    for record in lemur[:40] + lemur[:10]:
        grams, _ = fresh.shingles(record["code"])
        assert np.array_equal(cached.signature(record["code"]).values, fresh.signature_of(grams))
    assert np.array_equal(cached.signature("x = 1").values, fresh.signature_of({b"x = 1"}))


def test_parallel_signatures_equal_serial(lemur: list[dict], hasher: MinHasher) -> None:
    codes = [r["code"] for r in lemur[:80]]
    serial = hasher.signatures(codes)
    parallel = hasher.signatures(codes, workers=2)
    assert np.array_equal(serial.values, parallel.values)
    assert serial.values.shape == (80, NOVELTY.num_perm)


def test_identical_code_is_1_and_layout_edits_are_near_duplicates(lemur: list[dict],
                                                                    hasher: MinHasher) -> None:
    code = next(r["code"] for r in lemur if r["name"] == "AlexNet")
    edited = "# An AlexNet variant.\n\n" + re.sub(r"\n(\s*)(self\.\w+ = )", r"\n\1# layer\n\n\1\2", code)
    edited = edited.replace("    ", "  ")  # two-space indentation
    assert edited != code
    a, b = hasher.signature(code).values, hasher.signature(edited).values
    assert estimated_jaccard(a, hasher.signature(code).values) == 1.0
    assert estimated_jaccard(a, b) > NOVELTY.tau


def test_unrelated_architectures_are_far_below_tau(lemur: list[dict], hasher: MinHasher) -> None:
    by_name = {r["name"]: r["code"] for r in lemur}
    for x, y in [("AlexNet", "ResNet"), ("AirNet", "DenseNet"), ("GoogLeNet", "MobileNetV2")]:
        similarity = estimated_jaccard(hasher.signature(by_name[x]).values,
                                       hasher.signature(by_name[y]).values)
        assert similarity < 0.5, (x, y, similarity)


def test_estimate_matches_exact_jaccard_within_minhash_error(lemur: list[dict], hasher: MinHasher,
                                                             lemur_signatures: np.ndarray) -> None:
    rng = random.Random(1)
    grams = {}
    errors, pairs = [], []
    # Pairs across the whole range: random pairs (mostly dissimilar) and pairs from one family.
    families: dict[str, list[int]] = {}
    for i, r in enumerate(lemur):
        families.setdefault(r["name"].split("-")[0], []).append(i)
    big = [members for members in families.values() if len(members) > 5]
    for _ in range(100):
        pairs.append(tuple(rng.sample(range(len(lemur)), 2)))
        pairs.append(tuple(rng.sample(rng.choice(big), 2)))
    spread = set()
    for i, j in pairs:
        for k in (i, j):
            if k not in grams:
                grams[k] = hasher.shingles(lemur[k]["code"])[0]
        exact = exact_jaccard(grams[i], grams[j])
        estimate = estimated_jaccard(lemur_signatures[i], lemur_signatures[j])
        sigma = math.sqrt(exact * (1 - exact) / NOVELTY.num_perm)
        assert abs(estimate - exact) <= 4.5 * sigma + 1 / NOVELTY.num_perm, (i, j, exact, estimate)
        errors.append(estimate - exact)
        spread.add(round(exact, 1))
    assert len(spread) >= 5  # the pairs cover low, middle and high similarity
    assert abs(float(np.mean(errors))) < 0.01  # no bias


# --- the corpus index --------------------------------------------------------------------------

def _brute_force(values: np.ndarray, query: np.ndarray) -> tuple[float, int]:
    counts = (values == query).sum(axis=1)
    return counts.max() / values.shape[1], int(np.argmax(counts))


def test_nearest_is_the_exact_maximum_even_when_lsh_retrieves_nothing(
        lemur: list[dict], hasher: MinHasher, lemur_signatures: np.ndarray) -> None:
    corpus = lemur_signatures[::2]
    names = [r["name"] for r in lemur[::2]]
    index = NoveltyIndex(hasher, NOVELTY.lsh_threshold)
    index.add_many(names, corpus)
    lsh_missed_but_similar = 0
    for query in lemur_signatures[1::2][:300]:
        nearest = index.nearest(query)
        similarity, row = _brute_force(corpus, query)
        assert nearest.similarity == similarity
        assert nearest.name == (names[row] if similarity > 0 else None)
        if len(index.retrieve(query)) == 0 and similarity > 0.3:
            lsh_missed_but_similar += 1
    assert lsh_missed_but_similar >= 5  # the reference implementation logged 0.0 for these


def test_ties_go_to_the_earliest_program_and_empty_index_gives_zero(hasher: MinHasher) -> None:
    index = NoveltyIndex(hasher, NOVELTY.lsh_threshold)
    signature = hasher.signature("import torch\nx = torch.zeros(3)\n").values
    assert index.nearest(signature).similarity == 0.0 and index.nearest(signature).name is None
    index.add("first", signature, key=1)
    index.add("second", signature, key=2)
    assert index.nearest(signature).name == "first" and index.nearest(signature).key == 1


def test_band_index_retrieves_what_datasketch_lsh_retrieves(lemur: list[dict], hasher: MinHasher,
                                                            lemur_signatures: np.ndarray) -> None:
    corpus, queries = lemur_signatures[:1500], lemur_signatures[1500:1700]
    lsh = MinHashLSH(threshold=NOVELTY.lsh_threshold, num_perm=NOVELTY.num_perm)
    index = NoveltyIndex(hasher, NOVELTY.lsh_threshold)
    for i, values in enumerate(corpus):
        lsh.insert(i, LeanMinHash(seed=1, hashvalues=values, scheme="affine32"))
        index.add(str(i), values)  # one at a time: exercises the unsorted tail and re-sorting
    hits = 0
    for query in queries:
        expected = sorted(lsh.query(LeanMinHash(seed=1, hashvalues=query, scheme="affine32")))
        assert list(index.retrieve(query)) == expected
        hits += bool(expected)
    assert hits > 20


# --- the cycle: J_gen and rejection counting ----------------------------------------------------

def test_cycle_novelty_fields_j_gen_and_rejection_count(lemur: list[dict], hasher: MinHasher) -> None:
    by_name = {r["name"]: r["code"] for r in lemur}
    index = NoveltyIndex(hasher, NOVELTY.lsh_threshold)
    index.add("AlexNet", hasher.signature(by_name["AlexNet"]).values)
    cycle = CycleNovelty(index, NOVELTY.tau)

    first = cycle.assess("c1", by_name["ResNet"])
    assert first.nn_jaccard_gen == 0.0 and first.nearest_gen is None and not first.near_duplicate
    assert 0.0 < first.nn_jaccard_train < NOVELTY.tau and first.nearest_train == "AlexNet"
    assert first.rejection_count == 0

    copy_of_first = cycle.assess("c2", "# same again\n" + by_name["ResNet"])
    assert copy_of_first.nn_jaccard_gen == 1.0 and copy_of_first.near_dup_text_gen
    assert copy_of_first.nearest_gen == "c1" and not copy_of_first.near_dup_text_train
    copy_of_corpus = cycle.assess("c3", by_name["AlexNet"])
    assert copy_of_corpus.near_dup_text_train and copy_of_corpus.nn_jaccard_train == 1.0
    assert copy_of_corpus.rejection_count == 1

    novel = cycle.assess("c4", by_name["DenseNet"])
    assert not novel.near_duplicate and novel.rejection_count == 2
    assert cycle.assess("c5", by_name["GoogLeNet"]).rejection_count == 0

    record = novel.record()
    for field in ("nn_jaccard_train", "near_dup_text_train", "nn_jaccard_gen", "near_dup_text_gen",
                  "rejection_count", "nearest_train"):
        assert field in record
    json.dumps(record)


def test_tokenize_module_fallback_path_matches_on_valid_code() -> None:
    code = "import torch\n\n\nclass Net(torch.nn.Module):\n    '''doc'''\n    x = f'{1}'\n"
    public = [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
              if t.type in (tokenize.NAME, tokenize.OP, tokenize.STRING, tokenize.NUMBER)]
    assert tokenize_code(code).tokens == public == _tokenize_module_tokens(code)
