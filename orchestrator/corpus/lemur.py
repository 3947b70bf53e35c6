"""Reading LEMUR programs: a JSONL(.gz) export or an nn-dataset checkout directory.

JSONL: one object per line with `name`, `code` and optional `stats` (a list of
`{task, dataset, metric, epoch, best, ...}`). Checkout: model code at `ab/nn/nn/<Name>.py`,
statistics at `ab/nn/stat/<task>_<dataset>_<metric>_<Name>/<epoch>.json` (a list of trials with
`accuracy`). Broken input is returned as a `ReadProblem` with its location, never dropped silently.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.files import JsonlError, read_jsonl

IMAGE_CLASSIFICATION = "img-classification"


@dataclass(frozen=True)
class LemurRecord:
    name: str
    code: str
    origin: str  # where it was read: "file.jsonl.gz:17" or "ab/nn/nn/AlexNet.py"
    tasks: frozenset[str]
    cifar10_epoch1_accuracy: float | None  # best recorded first-epoch CIFAR-10 accuracy


@dataclass(frozen=True)
class ReadProblem:
    location: str
    message: str


@dataclass
class LemurSource:
    records: list[LemurRecord] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)


def read_lemur(path: Path) -> LemurSource:
    """All records of a JSONL(.gz) file or an nn-dataset checkout, plus what could not be read."""
    path = Path(path)
    if path.is_dir():
        return _read_checkout(path)
    source = LemurSource()

    def problem(error: JsonlError) -> None:
        source.problems.append(ReadProblem(f"{path.name}:{error.line}", error.reason))

    try:
        for number, item in read_jsonl(path, on_error=problem):
            record = _record_from_json(item, f"{path.name}:{number}", source.problems)
            if record is not None:
                source.records.append(record)
    except JsonlError as exc:  # the file itself cannot be opened
        source.problems.append(ReadProblem(exc.location, exc.reason))
    return source


def _record_from_json(item: Any, location: str, problems: list[ReadProblem]) -> LemurRecord | None:
    if not isinstance(item, dict):
        problems.append(ReadProblem(location, "not a JSON object"))
        return None
    name, code, stats = item.get("name"), item.get("code"), item.get("stats", [])
    if not isinstance(name, str) or not name.strip():
        problems.append(ReadProblem(location, "missing or empty 'name'"))
        return None
    if not isinstance(code, str):
        problems.append(ReadProblem(location, f"{name}: missing 'code'"))
        return None
    if not isinstance(stats, list) or not all(isinstance(s, dict) for s in stats):
        problems.append(ReadProblem(location, f"{name}: 'stats' is not a list of objects"))
        return None
    tasks = frozenset(s["task"] for s in stats if isinstance(s.get("task"), str))
    accuracies = [s["best"] for s in stats
                  if s.get("task") == IMAGE_CLASSIFICATION and s.get("dataset") == "cifar-10"
                  and s.get("metric") == "acc" and s.get("epoch") == 1 and _is_number(s.get("best"))]
    return LemurRecord(name, code, location, tasks, max(accuracies) if accuracies else None)


def _read_checkout(root: Path) -> LemurSource:
    source = LemurSource()
    models = root / "ab" / "nn" / "nn"
    if not models.is_dir():
        source.problems.append(ReadProblem(str(root), "not an nn-dataset checkout (no ab/nn/nn/)"))
        return source
    tasks, accuracy = _read_checkout_stats(root, source.problems)
    for file in sorted(models.glob("*.py")):
        if file.name == "__init__.py":
            continue
        origin = str(file.relative_to(root))
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            source.problems.append(ReadProblem(origin, f"cannot read: {exc}"))
            continue
        name = file.stem
        source.records.append(LemurRecord(name, code, origin, frozenset(tasks[name]),
                                          accuracy.get(name)))
    return source


def _read_checkout_stats(root: Path, problems: list[ReadProblem]
                         ) -> tuple[dict[str, set[str]], dict[str, float]]:
    """Per model name: the tasks it has statistics for, and its best CIFAR-10 epoch-1 accuracy."""
    tasks: dict[str, set[str]] = defaultdict(set)
    accuracy: dict[str, float] = {}
    stat_root = root / "ab" / "nn" / "stat"
    for run_dir in sorted(p for p in stat_root.glob("*") if p.is_dir()):
        parts = run_dir.name.split("_", 3)
        if len(parts) != 4:
            continue
        task, dataset, metric, name = parts
        tasks[name].add(task)
        if (task, dataset, metric) != (IMAGE_CLASSIFICATION, "cifar-10", "acc"):
            continue
        epoch_file = run_dir / "1.json"
        if not epoch_file.is_file():
            continue
        origin = str(epoch_file.relative_to(root))
        try:
            trials = json.loads(epoch_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(ReadProblem(origin, f"unreadable statistics: {exc}"))
            continue
        values = [t["accuracy"] for t in trials if isinstance(t, dict) and _is_number(t.get("accuracy"))] \
            if isinstance(trials, list) else []
        if values:
            accuracy[name] = max(values)
    return tasks, accuracy


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
