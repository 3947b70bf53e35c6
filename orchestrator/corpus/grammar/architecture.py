"""The grammar's architectures: what a program computes, drawn at random within the budgets, with
its size counted exactly (parameters, BatchNorm buffers, multiply-accumulates).

An architecture is a stem convolution, then stages of blocks of one kind (each stage but the
first halves the resolution at its start), then a head. Every block takes its input width from the
block before it, so the rendered code only has to track one channel count; the spatial size never
enters a layer's shape (the head pools adaptively), so a program is valid at any input of at least
16x16 pixels with any number of channels up to `MAX_CHANNELS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The counts hold for inputs of up to this many channels (the corpus's prompts: 3 and 1).
MAX_CHANNELS = 3
NUM_CLASSES = 10
# Multiply-accumulates of one forward pass at 32x32, the largest input the prompts state: the prompt
# asks for edge-friendly networks, and on a CPU one epoch costs about this per image, three times over.
MAX_MACS = 30_000_000
MIN_PARAMS = 5_000
# Halvings of the resolution: 28 -> 14 -> 7 -> 3 (or 4) -> 1 (or 2) still leaves a pixel.
MAX_DOWNSAMPLES = 4

# Channel widths: a short ladder of round numbers (fewer distinct numbers for a small model to learn).
WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
BLOCKS = ("conv", "separable", "residual", "bottleneck", "inverted", "inception")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "elu", "hardswish")
HEADS = ("gap", "mlp")


@dataclass(frozen=True)
class Stage:
    width: int
    depth: int  # blocks


@dataclass(frozen=True)
class Architecture:
    stem_width: int
    stem_kernel: int
    stem_pool: bool  # a 2x2 pooling right after the stem
    block: str  # one of BLOCKS, for every stage
    kernel: int  # of "conv" and "separable" blocks (3 or 5); other blocks fix their own
    norm: bool  # BatchNorm after every convolution (always on for the residual kinds)
    activation: str
    downsample: str  # "max" or "avg" pooling at a stage's start, or "stride" (its first block strides)
    stages: tuple[Stage, ...]
    expansion: int  # "inverted": hidden = input * expansion; "bottleneck": mid = output // expansion
    head: str  # "gap": pool to 1x1 + linear; "mlp": pool + linear (as wide as its input)-act-dropout-linear
    dropout: bool  # a dropout (p = prm['dropout']) before the last linear layer


@dataclass(frozen=True)
class Size:
    params: int
    buffers: int  # BatchNorm running statistics and counters
    macs: int  # at 32x32


def _conv(cin: int, cout: int, k: int, groups: int = 1, bias: bool = True) -> int:
    return cout * (cin // groups) * k * k + (cout if bias else 0)


class _Counter:
    """Adds up parameters, buffers and multiply-accumulates layer by layer at a given resolution."""

    def __init__(self, side: int) -> None:
        self.params = self.buffers = self.macs = 0
        self.side = side

    def conv(self, cin: int, cout: int, k: int, norm: bool, stride: int = 1, groups: int = 1) -> None:
        out_side = (self.side - 1) // stride + 1  # padding k // 2 with an odd kernel
        self.params += _conv(cin, cout, k, groups, bias=not norm)
        self.macs += cout * (cin // groups) * k * k * out_side * out_side
        if norm:
            self.params += 2 * cout
            self.buffers += 2 * cout + 1
        self.pending_side = out_side

    def commit(self) -> None:
        self.side = self.pending_side

    def pool(self) -> None:
        self.side //= 2

    def linear(self, n_in: int, n_out: int) -> None:
        self.params += n_in * n_out + n_out
        self.macs += n_in * n_out


def inception_widths(width: int) -> tuple[int, int, int]:
    """An inception block's branch widths: 1x1, 3x3 and 5x5 convolutions, concatenated."""
    a, b = width // 4, width // 2
    return a, b, width - a - b


def _block(counter: _Counter, arch: Architecture, cin: int, cout: int, stride: int) -> None:
    kind, norm = arch.block, arch.norm
    if kind == "conv":
        counter.conv(cin, cout, arch.kernel, norm, stride)
        counter.commit()
    elif kind == "separable":
        counter.conv(cin, cin, arch.kernel, norm, stride, groups=cin)
        counter.commit()
        counter.conv(cin, cout, 1, norm)
        counter.commit()
    elif kind in ("residual", "bottleneck"):
        side = counter.side
        if kind == "residual":
            counter.conv(cin, cout, 3, True, stride)
            counter.commit()
            counter.conv(cout, cout, 3, True)
        else:
            mid = cout // arch.expansion
            counter.conv(cin, mid, 1, True)
            counter.commit()
            counter.conv(mid, mid, 3, True, stride)
            counter.commit()
            counter.conv(mid, cout, 1, True)
        end_side = counter.pending_side
        if stride != 1 or cin != cout:  # the shortcut projects
            counter.side = side
            counter.conv(cin, cout, 1, True, stride)
        counter.side = end_side
    elif kind == "inverted":
        hidden = cin * arch.expansion
        counter.conv(cin, hidden, 1, True)
        counter.commit()
        counter.conv(hidden, hidden, 3, True, stride, groups=hidden)
        counter.commit()
        counter.conv(hidden, cout, 1, True)
        counter.commit()
    elif kind == "inception":
        side = counter.side
        for width, k in zip(inception_widths(cout), (1, 3, 5)):
            counter.side = side
            counter.conv(cin, width, k, norm, stride)
        counter.commit()
    else:  # pragma: no cover
        raise ValueError(kind)


def block_strides(arch: Architecture) -> bool:
    """Whether the first block of a downsampling stage strides (else a pooling layer comes first)."""
    return arch.downsample == "stride"


def size_of(arch: Architecture, side: int = 32, channels: int = MAX_CHANNELS) -> Size:
    """Exact counts of the rendered program (every style renders the same layers)."""
    counter = _Counter(side)
    counter.conv(channels, arch.stem_width, arch.stem_kernel, arch.norm)
    counter.commit()
    if arch.stem_pool:
        counter.pool()
    c = arch.stem_width
    for i, stage in enumerate(arch.stages):
        for j in range(stage.depth):
            down = i > 0 and j == 0
            if down and not block_strides(arch):
                counter.pool()
            _block(counter, arch, c, stage.width, 2 if down and block_strides(arch) else 1)
            c = stage.width  # every block kind ends at its stage's width
    if arch.head == "mlp":
        counter.linear(c, c)
    counter.linear(c, NUM_CLASSES)
    return Size(counter.params, counter.buffers, counter.macs)


def _widths(rng: random.Random, stem: int, n: int) -> list[int]:
    """Each stage one, two or no steps up the ladder from the one before (x1, ~x1.5, x2)."""
    widths, step = [], WIDTHS.index(stem)
    for i in range(n):
        step = min(len(WIDTHS) - 1, step + (rng.choice((0, 1, 2, 2)) if i else rng.choice((0, 0, 1, 2))))
        widths.append(WIDTHS[step])
    return widths


def draw_architecture(rng: random.Random, block: str, downsamples: tuple[str, ...]) -> Architecture:
    """One architecture of `block`s with a downsampling from `downsamples` (what the chosen code
    style can write), not yet checked against any budget."""
    residual_kind = block in ("residual", "bottleneck", "inverted")
    stem = rng.choice((8, 16, 16, 24, 32))
    n_stages = rng.choice((2, 3, 3, 4))
    stem_pool = n_stages < MAX_DOWNSAMPLES and rng.random() < 0.3
    depths = [rng.choice((1, 1, 2, 2, 3)) for _ in range(n_stages)]
    widths = _widths(rng, stem, n_stages)
    head = rng.choice(HEADS)
    return Architecture(
        stem_width=stem, stem_kernel=rng.choice((3, 3, 3, 5)), stem_pool=stem_pool, block=block,
        kernel=rng.choice((3, 3, 5)) if block in ("conv", "separable") else 3,
        norm=True if residual_kind else rng.random() < 0.8,
        activation=rng.choice(ACTIVATIONS),
        downsample=rng.choice(downsamples),
        stages=tuple(Stage(w, d) for w, d in zip(widths, depths)),
        expansion=rng.choice((2, 4)) if block == "bottleneck" else rng.choice((2, 3, 4)) if block == "inverted" else 1,
        head=head, dropout=head == "mlp" or rng.random() < 0.5,
    )


def within(size: Size, param_budget: int, buffer_allowance: int) -> bool:
    return MIN_PARAMS <= size.params <= param_budget and size.buffers <= buffer_allowance \
        and size.macs <= MAX_MACS
