"""Drawing the grammar's programs: program i of seed S from its own random stream, in a style taken
in turn, with a block kind the style writes, redrawn until it fits the budgets."""

from __future__ import annotations

import random
from dataclasses import dataclass

from orchestrator.corpus.grammar.architecture import Architecture, Size, size_of, within
from orchestrator.corpus.grammar.styles import STYLES, draw_program, render

MAX_DRAWS = 10_000


@dataclass(frozen=True)
class GrammarProgram:
    name: str
    code: str
    style: str
    architecture: Architecture
    size: Size  # at 3x32x32, ten classes


def synthesize(count: int, seed: int, param_budget: int, buffer_allowance: int,
               first: int = 0) -> list[GrammarProgram]:
    """Programs `first` .. `first + count - 1` of `seed`, each within the budgets."""
    styles = list(STYLES) + ["blocks"]  # block classes twice as often: they hold five of the six block kinds
    programs = []
    for i in range(first, first + count):
        rng = random.Random(f"nasloop-grammar:{seed}:{i}")
        style = styles[i % len(styles)]
        block = rng.choice(STYLES[style][0])  # chosen first: the budgets must not thin out the big kinds
        for _ in range(MAX_DRAWS):
            arch = draw_program(rng, style, block)
            size = size_of(arch)
            if within(size, param_budget, buffer_allowance):
                break
        else:
            raise ValueError(f"no {style} architecture of {block} blocks within {param_budget:,} parameters in {MAX_DRAWS} draws")
        programs.append(GrammarProgram(f"grammar-{seed}-{i:05d}", render(arch, style, rng), style, arch, size))
    return programs
