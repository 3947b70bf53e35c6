"""How a generated candidate is named where the database stores a program's name (`nearest_train`,
`nearest_gen`: a corpus program's name, or a candidate of this experiment): one format, one parser."""

from __future__ import annotations

import re

_CANDIDATE_NAME = re.compile(r"cycle-(\d+)/sample-(\d+)")


def candidate_name(cycle: int, sample_index: int) -> str:
    """`cycle-k/sample-s`: candidate `s` of cycle `k`."""
    return f"cycle-{cycle}/sample-{sample_index}"


def parse_candidate_name(name: str | None) -> tuple[int, int] | None:
    """(cycle, sample index) when `name` names a candidate, else None (a corpus program's name)."""
    match = None if name is None else _CANDIDATE_NAME.fullmatch(name)
    return None if match is None else (int(match[1]), int(match[2]))
