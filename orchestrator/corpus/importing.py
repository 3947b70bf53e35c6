"""Importing seed programs into the corpus: LEMUR records (or the grammar's programs, as records of
source "grammar"), screened, ranked and de-duplicated.

Every imported program is stored once per distinct code (exact duplicates are not stored). A
program that is a near-duplicate (estimated Jaccard > tau) of a corpus program is stored too,
pointing at it (`duplicate_of_id`), but is not part of the corpus: the corpus ("kept") is the
programs without `duplicate_of_id`, and no two of them are near-duplicates. Each corpus program
is one cluster; its near-duplicates are the cluster's other members.

De-duplication rule: within one import, programs are ranked by recorded CIFAR-10 first-epoch
accuracy (highest first, unknown last), then documentation (docstring and comment lines, most
first), then name; in that order, each program is kept unless it is a near-duplicate of a corpus
program or of one kept before it. Programs already in the corpus are never replaced, so earlier
experiments keep referring to the same corpus.
"""

from __future__ import annotations

import ast
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.source import SourceProblem, parse_source
from orchestrator.config import NoveltyConfig
from orchestrator.corpus.index import default_workers, load_index, make_hasher, store_signature
from orchestrator.corpus.lemur import IMAGE_CLASSIFICATION, LemurRecord, ReadProblem, read_lemur
from orchestrator.corpus.minhash import MinHasher, SignatureBatch
from orchestrator.store.schema import Program

LEMUR = "lemur"


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()



@dataclass(frozen=True)
class Drop:
    name: str
    origin: str
    reason: str
    detail: str = ""


@dataclass
class ImportReport:
    source: str
    read: int = 0
    kept: int = 0
    near_duplicates: int = 0  # stored, pointing at their corpus program
    drops: list[Drop] = field(default_factory=list)  # not stored
    problems: list[ReadProblem] = field(default_factory=list)

    @property
    def dropped(self) -> Counter[str]:
        counts = Counter(d.reason for d in self.drops)
        if self.near_duplicates:
            counts["near-duplicate"] = self.near_duplicates
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "kept": self.kept,
                "dropped": dict(sorted(self.dropped.items())),
                "problems": [{"location": p.location, "message": p.message} for p in self.problems]}


@dataclass
class _Candidate:
    record: LemurRecord
    sha256: str
    documentation: int


@dataclass
class ImportPlan:
    """What importing some records would store, in order: each screened record with its signature,
    the id it would get, and the corpus program it is a near-duplicate of (None: it joins the corpus)."""

    candidates: list[_Candidate]
    hasher: MinHasher
    signatures: SignatureBatch | None
    first_id: int
    duplicate_of: list[tuple[int, float] | None]

    def kept(self) -> list[LemurRecord]:
        """The records that would join the corpus."""
        return [c.record for c, dup in zip(self.candidates, self.duplicate_of) if dup is None]


def import_lemur(session: Session, path: Path, novelty: NoveltyConfig,
                 workers: int | None = None) -> ImportReport:
    """Import LEMUR programs into the corpus within the caller's transaction (see module doc)."""
    source = read_lemur(path)
    report = ImportReport(source=str(path), read=len(source.records), problems=list(source.problems))
    return import_records(session, source.records, LEMUR, novelty, report, workers)


def plan_import(session: Session, records: list[LemurRecord], novelty: NoveltyConfig, report: ImportReport,
                workers: int | None = None) -> ImportPlan:
    """Screen, rank and de-duplicate `records` against the corpus and each other (see module doc),
    storing nothing but missing corpus signatures; what is dropped goes to `report`."""
    candidates = _screen(session, records, report)
    first_id = (session.scalar(select(func.max(Program.id))) or 0) + 1
    if not candidates:
        return ImportPlan([], make_hasher(novelty), None, first_id, [])
    index = load_index(session, novelty, workers)
    batch = index.hasher.signatures([c.record.code for c in candidates],
                                    workers or default_workers(len(candidates)))
    duplicate_of: list[tuple[int, float] | None] = []
    for i, candidate in enumerate(candidates):
        nearest = index.nearest(batch.values[i])
        if nearest.similarity > novelty.tau:
            duplicate_of.append((nearest.key, nearest.similarity))
        else:
            index.add(candidate.record.name, batch.values[i], first_id + i)
            duplicate_of.append(None)
    return ImportPlan(candidates, index.hasher, batch, first_id, duplicate_of)


def import_records(session: Session, records: list[LemurRecord], source: str, novelty: NoveltyConfig,
                   report: ImportReport, workers: int | None = None) -> ImportReport:
    """Import `records` as programs of `source` within the caller's transaction (see module doc)."""
    plan = plan_import(session, records, novelty, report, workers)
    now = datetime.now(timezone.utc)
    for i, (candidate, duplicate) in enumerate(zip(plan.candidates, plan.duplicate_of)):
        record = candidate.record
        session.add(Program(
            id=plan.first_id + i, name=record.name, source=source, origin=record.origin, code=record.code,
            code_sha256=candidate.sha256, cifar10_epoch1_accuracy=record.cifar10_epoch1_accuracy,
            duplicate_of_id=duplicate[0] if duplicate else None,
            duplicate_similarity=duplicate[1] if duplicate else None, added_at=now))
        if duplicate:
            report.near_duplicates += 1
        else:
            report.kept += 1
    session.flush()  # programs before their signatures (foreign key)
    if plan.signatures is not None:
        for i in range(len(plan.candidates)):
            store_signature(session, plan.first_id + i, plan.hasher, plan.signatures.values[i],
                             plan.signatures.tokenizer_fallback[i])
    return report


def _screen(session: Session, records: list[LemurRecord], report: ImportReport) -> list[_Candidate]:
    """Ranked records that are image classifiers, parse, and are new; the rest go to `report`."""
    known_sha = set(session.scalars(select(Program.code_sha256)))
    parsed: list[_Candidate] = []
    for record in records:
        sha = code_sha256(record.code)
        if sha in known_sha:
            report.drops.append(Drop(record.name, record.origin, "already in corpus"))
            continue
        if IMAGE_CLASSIFICATION not in record.tasks:
            report.drops.append(Drop(record.name, record.origin, "not image-classification"))
            continue
        tree = parse_source(record.code)
        if isinstance(tree, SourceProblem):
            message = f"{record.name}: code does not parse: {tree}"
            report.problems.append(ReadProblem(record.origin, message))
            report.drops.append(Drop(record.name, record.origin, "code does not parse", message))
            continue
        parsed.append(_Candidate(record, sha, _documentation_lines(record.code, tree)))
    parsed.sort(key=_rank)
    known_names = set(session.scalars(select(Program.name)))
    seen_sha: dict[str, str] = {}
    candidates = []
    for c in parsed:
        name = c.record.name
        if c.sha256 in seen_sha:
            report.drops.append(Drop(name, c.record.origin, "exact duplicate",
                                     f"same code as {seen_sha[c.sha256]}"))
        elif name in known_names:
            report.drops.append(Drop(name, c.record.origin, "name taken by other code"))
        else:
            seen_sha[c.sha256] = name
            known_names.add(name)
            candidates.append(c)
    return candidates


def _rank(c: _Candidate) -> tuple[float, int, str]:
    accuracy = c.record.cifar10_epoch1_accuracy
    return (-accuracy if accuracy is not None else float("inf"), -c.documentation, c.record.name)


def _documentation_lines(code: str, tree: ast.Module) -> int:
    """Full-line comments plus docstring lines of the module, its classes and functions."""
    comments = sum(1 for line in code.splitlines() if line.lstrip().startswith("#"))
    docstrings, pending = 0, [tree]
    while pending:  # only through def/class bodies: ast.walk over every expression is slow
        node = pending.pop()
        doc = ast.get_docstring(node, clean=False)
        docstrings += len(doc.splitlines()) if doc else 0
        pending.extend(child for child in node.body
                       if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
    return comments + docstrings
