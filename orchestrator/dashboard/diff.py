"""Side-by-side line diffs (difflib) of a candidate against its nearest training program or earlier
generation: plain rows the templates escape and the JSON endpoints return as they are."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DiffRow:
    kind: str  # "equal", "replace", "delete" (left only), "insert" (right only)
    left_line: int | None  # 1-based line numbers; None where that side has no line
    left: str | None
    right_line: int | None
    right: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DiffSummary:
    rows: tuple[DiffRow, ...]
    equal_lines: int
    changed_lines: int  # rows that are not "equal"
    line_ratio: float  # difflib's similarity of the two line sequences, in [0, 1]


def side_by_side(left: str, right: str) -> DiffSummary:
    """Every line of both texts, paired where difflib matches them."""
    a, b = left.splitlines(), right.splitlines()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [DiffRow("equal", i + 1, a[i], j + 1, b[j]) for i, j in zip(range(i1, i2), range(j1, j2))]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            kind = "replace" if has_left and has_right else "delete" if has_left else "insert"
            rows.append(DiffRow(kind, i + 1 if has_left else None, a[i] if has_left else None,
                                j + 1 if has_right else None, b[j] if has_right else None))
    equal = sum(1 for r in rows if r.kind == "equal")
    return DiffSummary(rows=tuple(rows), equal_lines=equal, changed_lines=len(rows) - equal,
                       line_ratio=matcher.ratio())
