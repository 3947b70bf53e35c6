"""What the corpus holds (`corpus stats`) and the fine-tuning dataset written from it: per corpus
program a CIFAR-10 and an MNIST chat example (the paper's scheme), in program id order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.files import write_jsonl_atomic
from llm.prompt import chat_example, corpus_tasks
from orchestrator.corpus.index import CORPUS
from orchestrator.store.schema import Program



def corpus_stats(session: Session) -> dict[str, Any]:
    kept = CORPUS
    by_source: dict[str, dict[str, int]] = {}
    for source, is_kept, count in session.execute(
            select(Program.source, kept, func.count()).group_by(Program.source, kept)):
        entry = by_source.setdefault(source, {"corpus": 0, "near_duplicates": 0})
        entry["corpus" if is_kept else "near_duplicates"] += count
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
        "with_cifar10_epoch1_accuracy": with_accuracy,
        "chat_examples": 2 * corpus,
    }


def chat_examples(session: Session, param_budget: int,
                  program_ids: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """The fine-tuning dataset: per corpus program (id order; only those in `program_ids` if given)
    a CIFAR-10 and an MNIST example."""
    tasks = corpus_tasks(param_budget)
    for program_id, code in session.execute(select(Program.id, Program.code).where(CORPUS).order_by(Program.id)):
        if program_ids is not None and program_id not in program_ids:
            continue
        for task in tasks:
            yield {"messages": chat_example(task, code)}


def export_chat_jsonl(session: Session, out: Path, param_budget: int,
                      program_ids: set[int] | None = None) -> int:
    """Write `chat_examples` as JSON lines to `out` (atomically); returns the number of examples."""
    return write_jsonl_atomic(out, chat_examples(session, param_budget, program_ids))
