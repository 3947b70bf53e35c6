"""The task a profile's generation prompt states: the corpus's prompt variant whose image shape is
the dataset's (CIFAR-10 for CIFAR-10 and the CIFAR-shaped synthetic data, MNIST for MNIST and
Fashion-MNIST), so that the prompt, the validity checks of the corpus and the data agree."""

from __future__ import annotations

from llm.prompt import PromptTask, corpus_tasks
from orchestrator.config import ExperimentConfig
from orchestrator.data import DATASET_SHAPES


def generation_task(config: ExperimentConfig) -> PromptTask:
    """The prompt variant of the profile's dataset (the paper: CIFAR-10, 3x32x32, ten classes)."""
    shape = DATASET_SHAPES[config.data.dataset]
    for task in corpus_tasks(config.evaluation.param_budget):
        if (task.channels, task.height, task.width) == shape:
            return task
    raise ValueError(f"no prompt variant states the shape {shape} of {config.data.dataset}")  # pragma: no cover
