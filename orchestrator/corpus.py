"""The supervised corpus: LEMUR programs plus accepted generations, stored in the database.

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
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from llm.prompt import chat_example, corpus_tasks
from orchestrator.config import NoveltyConfig
from orchestrator.db import Base
from orchestrator.lemur import IMAGE_CLASSIFICATION, LemurRecord, ReadProblem, read_lemur
from orchestrator.novelty import MinHasher, NoveltyIndex

LEMUR = "lemur"
GENERATED = "generated"


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    source: Mapped[str] = mapped_column(String)  # LEMUR or GENERATED
    origin: Mapped[str] = mapped_column(String)  # file location, or "cycle N"
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    cifar10_epoch1_accuracy: Mapped[float | None] = mapped_column(Float)
    cycle: Mapped[int | None] = mapped_column(Integer)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), index=True)
    duplicate_similarity: Mapped[float | None] = mapped_column(Float)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProgramSignature(Base):
    __tablename__ = "program_signatures"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"),
                                            primary_key=True)
    scheme: Mapped[str] = mapped_column(String, primary_key=True)  # MinHasher.key
    signature: Mapped[bytes] = mapped_column(LargeBinary)  # num_perm little-endian uint32
    tokenizer_fallback: Mapped[bool] = mapped_column(Boolean)


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def make_hasher(novelty: NoveltyConfig) -> MinHasher:
    return MinHasher(shingle_size=novelty.shingle_size, num_perm=novelty.num_perm)


def default_workers(n_programs: int) -> int:
    return min(os.cpu_count() or 1, 4) if n_programs >= 2000 else 1


# --- the novelty index over the corpus ---------------------------------------------------------


def load_index(session: Session, novelty: NoveltyConfig, workers: int | None = None,
               program_ids: set[int] | None = None) -> NoveltyIndex:
    """The novelty index over the corpus (only the programs in `program_ids` if given), from stored
    signatures (missing ones are computed and stored, e.g. after a change of shingle size). Rows are
    in program id order."""
    hasher = make_hasher(novelty)
    stored = (ProgramSignature.program_id == Program.id) & (ProgramSignature.scheme == hasher.key)
    corpus = Program.duplicate_of_id.is_(None)
    missing = session.execute(select(Program.id, Program.code).outerjoin(ProgramSignature, stored)
                              .where(corpus, ProgramSignature.program_id.is_(None))
                              .order_by(Program.id)).all()
    if missing:
        batch = hasher.signatures([row.code for row in missing],
                                  workers or default_workers(len(missing)))
        for j, row in enumerate(missing):
            _store_signature(session, row.id, hasher, batch.values[j], batch.tokenizer_fallback[j])
        session.flush()
    rows = session.execute(select(Program.id, Program.name, ProgramSignature.signature)
                           .join(ProgramSignature, stored).where(corpus).order_by(Program.id)).all()
    values = np.empty((len(rows), hasher.num_perm), dtype=np.uint32)
    for i, row in enumerate(rows):
        values[i] = np.frombuffer(row.signature, dtype="<u4")
    if program_ids is not None:
        keep = [i for i, row in enumerate(rows) if row.id in program_ids]
        rows, values = [rows[i] for i in keep], values[keep]
    index = NoveltyIndex(hasher, novelty.lsh_threshold)
    index.add_many([r.name for r in rows], values, [r.id for r in rows])
    return index


def _store_signature(session: Session, program_id: int, hasher: MinHasher, values: np.ndarray,
                     tokenizer_fallback: bool) -> None:
    session.add(ProgramSignature(program_id=program_id, scheme=hasher.key,
                                 signature=values.astype("<u4").tobytes(),
                                 tokenizer_fallback=bool(tokenizer_fallback)))


# --- import ------------------------------------------------------------------------------------


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


def import_lemur(session: Session, path: Path, novelty: NoveltyConfig,
                 workers: int | None = None) -> ImportReport:
    """Import LEMUR programs into the corpus within the caller's transaction (see module doc)."""
    source = read_lemur(path)
    report = ImportReport(source=str(path), read=len(source.records), problems=list(source.problems))
    candidates = _screen(session, source.records, report)
    if not candidates:
        return report
    index = load_index(session, novelty, workers)
    batch = index.hasher.signatures([c.record.code for c in candidates],
                                    workers or default_workers(len(candidates)))
    first_id = (session.scalar(select(func.max(Program.id))) or 0) + 1
    now = datetime.now(timezone.utc)
    for i, candidate in enumerate(candidates):
        record, signature, program_id = candidate.record, batch.values[i], first_id + i
        nearest = index.nearest(signature)
        duplicate = nearest.similarity > novelty.tau
        session.add(Program(
            id=program_id, name=record.name, source=LEMUR, origin=record.origin, code=record.code,
            code_sha256=candidate.sha256, cifar10_epoch1_accuracy=record.cifar10_epoch1_accuracy,
            duplicate_of_id=nearest.key if duplicate else None,
            duplicate_similarity=nearest.similarity if duplicate else None, added_at=now))
        if duplicate:
            report.near_duplicates += 1
        else:
            index.add(record.name, signature, program_id)
            report.kept += 1
    session.flush()  # programs before their signatures (foreign key)
    for i in range(len(candidates)):
        _store_signature(session, first_id + i, index.hasher, batch.values[i],
                         batch.tokenizer_fallback[i])
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
        try:
            with warnings.catch_warnings():  # e.g. invalid escapes in the program's strings
                warnings.simplefilter("ignore")
                tree = ast.parse(record.code)
        except (SyntaxError, ValueError) as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
            message = f"{record.name}: code does not parse: {getattr(exc, 'msg', exc)}{where}"
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


# --- accepted generations ----------------------------------------------------------------------


def add_generated(session: Session, index: NoveltyIndex, name: str, code: str, cycle: int,
                  accuracy: float) -> Program:
    """Append an accepted generation to the corpus and to `index` (incremental update)."""
    sha = code_sha256(code)
    if session.scalar(select(Program.id).where((Program.code_sha256 == sha) | (Program.name == name))):
        raise ValueError(f"{name}: a program with this name or this exact code is already stored")
    next_id = (session.scalar(select(func.max(Program.id))) or 0) + 1
    program = Program(id=next_id, name=name, source=GENERATED, origin=f"cycle {cycle}", code=code,
                      code_sha256=sha, cifar10_epoch1_accuracy=accuracy, cycle=cycle,
                      added_at=datetime.now(timezone.utc))
    session.add(program)
    session.flush()
    signature = index.hasher.signature(code)
    _store_signature(session, next_id, index.hasher, signature.values, signature.tokenizer_fallback)
    index.add(name, signature.values, next_id)
    return program


# --- stats and export --------------------------------------------------------------------------


def corpus_stats(session: Session) -> dict[str, Any]:
    kept = Program.duplicate_of_id.is_(None)
    by_source: dict[str, dict[str, int]] = {}
    for source, is_kept, count in session.execute(
            select(Program.source, kept, func.count()).group_by(Program.source, kept)):
        entry = by_source.setdefault(source, {"corpus": 0, "near_duplicates": 0})
        entry["corpus" if is_kept else "near_duplicates"] += count
    by_cycle = {str(cycle): count for cycle, count in session.execute(
        select(Program.cycle, func.count()).where(kept, Program.cycle.is_not(None))
        .group_by(Program.cycle).order_by(Program.cycle))}
    corpus = sum(v["corpus"] for v in by_source.values())
    largest = session.scalar(select(func.count()).where(Program.duplicate_of_id.is_not(None))
                             .group_by(Program.duplicate_of_id)
                             .order_by(func.count().desc()).limit(1)) or 0
    with_accuracy = session.scalar(select(func.count()).where(
        kept, Program.cifar10_epoch1_accuracy.is_not(None))) or 0
    return {
        "programs": corpus + sum(v["near_duplicates"] for v in by_source.values()),
        "corpus_programs": corpus,
        "clusters": corpus,
        "largest_cluster": largest + 1 if corpus else 0,
        "by_source": by_source,
        "generated_by_cycle": by_cycle,
        "with_cifar10_epoch1_accuracy": with_accuracy,
        "chat_examples": 2 * corpus,
    }


def chat_examples(session: Session, param_budget: int,
                  program_ids: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """The fine-tuning dataset: per corpus program (id order; only those in `program_ids` if given)
    a CIFAR-10 and an MNIST example."""
    tasks = corpus_tasks(param_budget)
    for program_id, code in session.execute(select(Program.id, Program.code)
                                            .where(Program.duplicate_of_id.is_(None)).order_by(Program.id)):
        if program_ids is not None and program_id not in program_ids:
            continue
        for task in tasks:
            yield {"messages": chat_example(task, code)}


def export_chat_jsonl(session: Session, out: Path, param_budget: int,
                      program_ids: set[int] | None = None) -> int:
    """Write `chat_examples` as JSON lines to `out` (atomically); returns the number of examples."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    count = 0
    with partial.open("w", encoding="utf-8") as fh:
        for example in chat_examples(session, param_budget, program_ids):
            fh.write(json.dumps(example, ensure_ascii=False) + "\n")
            count += 1
    partial.replace(out)
    return count
