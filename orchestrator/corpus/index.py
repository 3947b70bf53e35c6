"""The novelty index over the corpus, from the MinHash signatures stored beside each program."""

from __future__ import annotations

import os

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.config import NoveltyConfig
from orchestrator.corpus.minhash import MinHasher
from orchestrator.corpus.novelty import NoveltyIndex
from orchestrator.store.schema import Program, ProgramSignature

CORPUS = Program.duplicate_of_id.is_(None)  # the corpus: programs that are no near-duplicate


def make_hasher(novelty: NoveltyConfig) -> MinHasher:
    return MinHasher(shingle_size=novelty.shingle_size, num_perm=novelty.num_perm)


def default_workers(n_programs: int) -> int:
    return min(os.cpu_count() or 1, 4) if n_programs >= 2000 else 1



def load_index(session: Session, novelty: NoveltyConfig, workers: int | None = None,
               program_ids: set[int] | None = None) -> NoveltyIndex:
    """The novelty index over the corpus (only the programs in `program_ids` if given), from stored
    signatures (missing ones are computed and stored, e.g. after a change of shingle size). Rows are
    in program id order."""
    hasher = make_hasher(novelty)
    stored = (ProgramSignature.program_id == Program.id) & (ProgramSignature.scheme == hasher.key)
    missing = session.execute(select(Program.id, Program.code).outerjoin(ProgramSignature, stored)
                              .where(CORPUS, ProgramSignature.program_id.is_(None))
                              .order_by(Program.id)).all()
    if missing:
        batch = hasher.signatures([row.code for row in missing],
                                  workers or default_workers(len(missing)))
        for j, row in enumerate(missing):
            store_signature(session, row.id, hasher, batch.values[j], batch.tokenizer_fallback[j])
        session.flush()
    rows = session.execute(select(Program.id, Program.name, ProgramSignature.signature)
                           .join(ProgramSignature, stored).where(CORPUS).order_by(Program.id)).all()
    values = np.empty((len(rows), hasher.num_perm), dtype=np.uint32)
    for i, row in enumerate(rows):
        values[i] = np.frombuffer(row.signature, dtype="<u4")
    if program_ids is not None:
        keep = [i for i, row in enumerate(rows) if row.id in program_ids]
        rows, values = [rows[i] for i in keep], values[keep]
    index = NoveltyIndex(hasher, novelty.lsh_threshold)
    index.add_many([r.name for r in rows], values, [r.id for r in rows])
    return index


def store_signature(session: Session, program_id: int, hasher: MinHasher, values: np.ndarray,
                     tokenizer_fallback: bool) -> None:
    session.add(ProgramSignature(program_id=program_id, scheme=hasher.key,
                                 signature=values.astype("<u4").tobytes(),
                                 tokenizer_fallback=bool(tokenizer_fallback)))
