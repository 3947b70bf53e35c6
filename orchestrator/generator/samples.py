"""How good are a model's samples? Parse, pass the sandbox's validity checks, and are new.

Used by `nasloop llm tiny-model` to report what its default budget buys: of N samples drawn with
the profile's prompt and decoding, how many parse, how many pass every validity check (contract,
import, instantiation, parameter budget, dummy forward; in the sandbox, never in this process), and
how many of those valid ones are not near-copies (MinHash-Jaccard > tau) of a training program.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Sequence
from typing import Any

from contracts.llm import Sample
from contracts.source import parse_source
from llm import extract_code
from orchestrator.config import NoveltyConfig
from orchestrator.corpus.index import make_hasher
from orchestrator.corpus.novelty import NoveltyIndex
from orchestrator.evaluation.evaluator import Checker
from orchestrator.evaluation.result import Submission
from orchestrator.evaluation.run import evaluate_many


def _parses(code: str | None) -> ast.Module | None:
    tree = parse_source(code) if code is not None else None
    return tree if isinstance(tree, ast.Module) else None


def assess_samples(samples: Sequence[Sample], training_programs: Sequence[str], novelty: NoveltyConfig,
                   checker: Checker | None, jobs: int) -> dict[str, Any]:
    """Counts over `samples` (see module doc). Without a checker, validity is not measured (None)."""
    n = len(samples)
    codes = [extract_code(s.text) for s in samples]
    trees = [_parses(code) for code in codes]
    parsed = [i for i, tree in enumerate(trees) if tree is not None]
    report: dict[str, Any] = {
        "samples": n,
        "extracted": sum(code is not None for code in codes),
        "parsed": len(parsed),
        "has_net": sum(any(isinstance(node, ast.ClassDef) and node.name == "Net" for node in tree.body)
                       for tree in trees if tree is not None),
        "stopped": sum(s.finish_reason == "stop" for s in samples),
        "mean_completion_tokens": round(sum(s.completion_tokens for s in samples) / n, 1) if n else None,
        "valid": None, "failures": None, "check_protocol": None, "image": None, "in_shape": None,
        "param_budget": None,
    }
    assessed = parsed  # the samples whose novelty is measured: the valid ones when validity is known
    if checker is not None:
        results = evaluate_many(checker, [Submission(key=i, source=codes[i].encode("utf-8")) for i in parsed],  # type: ignore[union-attr]
                                jobs)
        failures = Counter(r.failure for r in results if not r.valid)
        failures["syntax"] += n - len(parsed)
        assessed = [i for i, r in zip(parsed, results) if r.valid]
        report.update(valid=len(assessed), failures=dict(sorted((k, v) for k, v in failures.items() if v)),
                      check_protocol=checker.protocol.id, image=str(checker.image),
                      in_shape=checker.protocol.in_shape, param_budget=checker.protocol.param_budget)
    hasher = make_hasher(novelty)
    index = NoveltyIndex(hasher, novelty.lsh_threshold)
    batch = hasher.signatures(list(training_programs))
    index.add_many([f"train-{i}" for i in range(len(training_programs))], batch.values)
    similarities = [index.nearest(hasher.signature(codes[i]).values).similarity for i in assessed]  # type: ignore[arg-type]
    report["assessed_for_novelty"] = "valid" if checker is not None else "parsed"
    report["near_copies"] = sum(j > novelty.tau for j in similarities)
    report["mean_nn_jaccard_train"] = round(sum(similarities) / len(similarities), 4) if similarities else None
    report["tau"] = novelty.tau
    return report
