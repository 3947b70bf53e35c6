"""What an experiment's adapter learns from and what its novelty is measured against: the seed
corpus plus the programs this experiment selected so far (the seed alone under --no-iteration,
where nothing trains on a selection). As in the paper's Table 1, each seed program gives two chat
examples (CIFAR-10 and MNIST, 849 x 2 = 1,698) and each selected program one (+455 = 2,153): the
training set's size is counted in these prompt-code pairs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.files import write_jsonl_atomic
from llm.prompt import chat_example, corpus_tasks
from orchestrator.config import ExperimentConfig
from orchestrator.corpus.export import chat_examples
from orchestrator.corpus.index import load_index
from orchestrator.corpus.novelty import NoveltyIndex
from orchestrator.corpus.tasks import generation_task
from orchestrator.store.names import candidate_name
from orchestrator.store.schema import Candidate, Cycle


def selected_code(session: Session, experiment_id: int, up_to_cycle: int) -> list[tuple[str, str]]:
    """(name, code) of the experiment's programs selected in cycles 1..`up_to_cycle`, in order."""
    rows = session.execute(
        select(Cycle.index, Candidate.sample_index, Candidate.code)
        .join(Cycle, Candidate.cycle_id == Cycle.id)
        .where(Cycle.experiment_id == experiment_id, Cycle.index <= up_to_cycle, Candidate.selected.is_(True))
        .order_by(Cycle.index, Candidate.sample_index))
    return [(candidate_name(c, s), code) for c, s, code in rows]


def corpus_index(session: Session, config: ExperimentConfig, seed_ids: set[int] | None, experiment_id: int,
                 before_cycle: int, with_selections: bool = True) -> NoveltyIndex:
    """J_train's corpus for cycle `before_cycle`: the seed corpus plus the selections before it (the
    seed alone without `with_selections`: --no-iteration trains on no selection)."""
    index = load_index(session, config.novelty, program_ids=seed_ids)
    if with_selections:
        for name, code in selected_code(session, experiment_id, before_cycle - 1):
            index.add(name, index.hasher.signature(code).values)
    return index


def training_examples(session: Session, config: ExperimentConfig, seed_ids: set[int] | None, experiment_id: int,
                      after_cycle: int) -> Iterator[dict[str, Any]]:
    """The fine-tuning set after cycle `after_cycle`: two chat examples per seed program, one (the
    generation prompt's task) per selected program."""
    yield from chat_examples(session, config.evaluation.param_budget, seed_ids)
    task = generation_task(config)
    for _, code in selected_code(session, experiment_id, after_cycle):
        yield {"messages": chat_example(task, code)}


def training_pairs(seed_programs: int, selected: int) -> int:
    """The training set's size in prompt-code pairs (the paper's "Total train")."""
    return len(corpus_tasks(0)) * seed_programs + selected


def write_training_set(session: Session, path: Path, config: ExperimentConfig, seed_ids: set[int] | None,
                       experiment_id: int, after_cycle: int) -> int:
    """Write `training_examples` as chat JSONL (atomically); returns how many."""
    return write_jsonl_atomic(path, training_examples(session, config, seed_ids, experiment_id, after_cycle))
