"""Per-candidate records for reports, loaded and validated from exported JSONL logs.

One line of `nasloop export --format jsonl` is one candidate. The report needs only a few of its
fields (`REQUIRED_FIELDS`); the others are optional and type-checked when present, unknown keys are
ignored.
Every problem is reported with the file, the line and the field.

Without logs, `load_records` reads the same records from the workspace's experiment database.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.files import JsonlError, read_jsonl

REQUIRED_FIELDS = ("experiment", "cycle", "valid", "accuracy", "selected")


class RecordError(ValueError):
    """A log is unreadable, malformed, lacks a needed field, or names an unknown experiment."""


@dataclass(frozen=True)
class CandidateRecord:
    """One generated candidate, with the export fields a report can use.

    Accuracies and similarities are fractions in [0, 1]. `corpus_size` is optional: the size of the
    training corpus after this candidate's cycle, when the exporter knows it.
    """

    experiment: str
    cycle: int
    valid: bool
    accuracy: float | None
    selected: bool
    candidate: int | None = None
    failure: str | None = None
    holdout_accuracy: float | None = None
    params: int | None = None
    nn_jaccard_train: float | None = None
    near_dup_text_train: bool | None = None
    nn_jaccard_gen: float | None = None
    near_dup_text_gen: bool | None = None
    rejection_count: int | None = None
    code_sha256: str | None = None
    corpus_size: int | None = None
    source: str = ""  # "FILE:LINE", for messages


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fraction(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0.0 <= value <= 1.0)


# field -> (check, what the value must be); None is accepted for every optional field.
_CHECKS: dict[str, tuple[Any, str]] = {
    "experiment": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "cycle": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "valid": (lambda v: isinstance(v, bool), "true or false"),
    "selected": (lambda v: isinstance(v, bool), "true or false"),
    "accuracy": (_fraction, "a fraction in [0, 1] (not a percentage) or null"),
    "candidate": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "failure": (lambda v: isinstance(v, str), "a string"),
    "holdout_accuracy": (_fraction, "a fraction in [0, 1] (not a percentage)"),
    "params": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "nn_jaccard_train": (_fraction, "a similarity in [0, 1]"),
    "near_dup_text_train": (lambda v: isinstance(v, bool), "true or false"),
    "nn_jaccard_gen": (_fraction, "a similarity in [0, 1]"),
    "near_dup_text_gen": (lambda v: isinstance(v, bool), "true or false"),
    "rejection_count": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "code_sha256": (lambda v: isinstance(v, str), "a string"),
    "corpus_size": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}
_NULLABLE_REQUIRED = {"accuracy"}


def parse_record(obj: Any, where: str) -> CandidateRecord:
    """Validate one decoded JSON line; `where` ("FILE:LINE") prefixes every error."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(repr(m) for m in missing)}")
    values: dict[str, Any] = {}
    for name, (check, expected) in _CHECKS.items():
        value = obj.get(name)
        if value is None:
            if name in REQUIRED_FIELDS and name not in _NULLABLE_REQUIRED:
                raise RecordError(f"{where}: field {name!r} must be {expected}, got null")
        elif not check(value):
            raise RecordError(f"{where}: field {name!r} must be {expected}, got {value!r}")
        values[name] = float(value) if value is not None and check is _fraction else value
    if values["valid"] and values["accuracy"] is None:
        raise RecordError(f"{where}: field 'accuracy' is null but the candidate is valid")
    if values["selected"] and not values["valid"]:
        raise RecordError(f"{where}: field 'selected' is true but the candidate is not valid")
    if not values["valid"]:
        values["accuracy"] = None  # an invalid candidate has no accuracy the statistics may use
    return CandidateRecord(**values, source=where)


def load_jsonl(path: Path) -> list[CandidateRecord]:
    """All records of one JSONL log (blank lines skipped)."""
    try:
        records = [parse_record(obj, f"{path}:{number}") for number, obj in read_jsonl(path)]
    except JsonlError as exc:
        raise RecordError(f"{exc.location}: cannot read log: {exc.reason}" if exc.line is None
                          else f"{exc.location}: not valid JSON ({exc.reason.removeprefix('invalid JSON: ')})") from None
    if not records:
        raise RecordError(f"{path}: no candidate records")
    return records


def _check_unique(records: Iterable[CandidateRecord]) -> None:
    """The same candidate twice (e.g. one log passed twice) would be counted twice: refuse."""
    seen: dict[tuple[str, int, int], str] = {}
    for record in records:
        if record.candidate is None:
            continue
        key = (record.experiment, record.cycle, record.candidate)
        if key in seen:
            raise RecordError(f"{record.source}: candidate {record.candidate} of cycle "
                              f"{record.cycle} of experiment {record.experiment!r} already "
                              f"appeared at {seen[key]}")
        seen[key] = record.source


def group_experiments(records: Sequence[CandidateRecord],
                      names: Sequence[str] = ()) -> dict[str, list[CandidateRecord]]:
    """Records by experiment: the `names` asked for, in that order, or all as they appear."""
    _check_unique(records)
    grouped: dict[str, list[CandidateRecord]] = {}
    for record in records:
        grouped.setdefault(record.experiment, []).append(record)
    if not names:
        return grouped
    unknown = [name for name in names if name not in grouped]
    if unknown:
        raise RecordError(f"unknown experiment(s) {', '.join(repr(u) for u in unknown)}; "
                          f"the logs hold: {', '.join(repr(k) for k in grouped)}")
    return {name: grouped[name] for name in dict.fromkeys(names)}


def load_records(logs: Sequence[Path], workdir: Path) -> list[CandidateRecord]:
    """Candidate records from the given JSONL logs or, without logs, from the workspace database."""
    if logs:
        return [record for path in logs for record in load_jsonl(path)]
    from orchestrator.store.database import DB_FILENAME, DB_URL_ENV, open_database
    from orchestrator.store.readers import export_rows

    if not (Path(workdir) / DB_FILENAME).is_file() and not os.environ.get(DB_URL_ENV):
        raise RecordError(f"no --log FILE.jsonl given and no experiment database in {workdir}: "
                          f"run `nasloop cycle` there, or pass exported logs with --log")
    db = open_database(Path(workdir))
    try:
        with db.transaction() as session:
            records = [parse_record(row, f"db:{row['experiment']}/cycle {row['cycle']}/candidate {row['candidate']}")
                       for row in export_rows(session)]
    finally:
        db.close()
    if not records:
        raise RecordError(f"the experiment database in {workdir} holds no candidates yet")
    return records
