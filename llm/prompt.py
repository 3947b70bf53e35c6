"""The versioned prompt template, rendered as chat messages.

`prompt_messages()` builds the system and user messages of a generation request;
`chat_example()` adds the assistant's answer (the code in one python fence) for fine-tuning.
Rendering to model text is the tokenizer's own chat template (`apply_chat_template`), done where
the tokenizer lives; this module only produces the messages and stays dependency-free.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_VERSION = "v1"


@dataclass(frozen=True)
class PromptTask:
    """What the user message states about the task."""

    dataset: str  # display name, e.g. "CIFAR-10"
    channels: int
    height: int
    width: int
    num_classes: int
    param_budget: int


def corpus_tasks(param_budget: int) -> tuple[PromptTask, PromptTask]:
    """The paper's corpus scheme: each program becomes a CIFAR-10 and an MNIST example."""
    return (PromptTask("CIFAR-10", 3, 32, 32, 10, param_budget),
            PromptTask("MNIST", 1, 28, 28, 10, param_budget))


def generation_task(param_budget: int) -> PromptTask:
    """The task every generation prompt states: CIFAR-10 images, 3x32x32, ten classes."""
    return corpus_tasks(param_budget)[0]


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.version}\0{self.system}\0{self.user}".encode()).hexdigest()


@lru_cache(maxsize=None)
def load_template(version: str = DEFAULT_VERSION) -> PromptTemplate:
    path = TEMPLATES_DIR / f"prompt-{version}.toml"
    if not path.is_file():
        raise ValueError(f"unknown prompt template version {version!r}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if data.get("version") != version:
        raise ValueError(f"{path.name}: version field {data.get('version')!r} != {version!r}")
    return PromptTemplate(version=version, system=data["system"], user=data["user"])


def prompt_messages(task: PromptTask, version: str = DEFAULT_VERSION) -> list[dict[str, str]]:
    """System + user messages asking for one architecture for `task`."""
    template = load_template(version)
    user = template.user.format(
        dataset=task.dataset, channels=task.channels, height=task.height, width=task.width,
        num_classes=task.num_classes, param_budget=f"{task.param_budget:,}",
    )
    return [{"role": "system", "content": template.system}, {"role": "user", "content": user}]


def chat_example(task: PromptTask, code: str, version: str = DEFAULT_VERSION) -> list[dict[str, str]]:
    """A fine-tuning example: the prompt for `task` answered by `code` in one python fence."""
    answer = f"```python\n{code.strip()}\n```"
    return prompt_messages(task, version) + [{"role": "assistant", "content": answer}]
