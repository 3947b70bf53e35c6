"""A grammar of seed programs: small CNNs in the API contract, valid by construction.

Not part of the paper. On a CPU the loop's model is a tiny local Llama that knows only what it was
trained on; trained on the 58 LEMUR programs that pass the checks, it writes near-copies of them and
the novelty filter selects nothing. This grammar is a stand-in for what a 7B code model brings: a
prior over many architectures written in a few idioms, so that the tiny model learns how such
programs are built rather than a few programs. `nasloop corpus synth` imports its programs beside
LEMUR's (source "grammar", the same de-duplication), after each passed the sandbox's checks.

Productions (`architecture` draws the first, `styles` writes the rest):

    program      := imports ACT [KERNEL] supported_hyperparameters [class Block | helper+] Net
    Net          := __init__ forward train_setup learn
    architecture := stem [pool] stage{2..4} head
    stem         := conv(in_shape[1] -> w0, kernel 3|5) [BatchNorm] act
    stage_i      := [downsample if i > 0] block{1..3}           (every block of a network is one kind)
    block        := conv(KERNEL 3|5) [BN] act
                  | separable: depthwise(KERNEL) [BN] act, pointwise 1x1 [BN] act
                  | residual: 3x3 BN act, 3x3 BN, + shortcut (identity or 1x1 BN), act
                  | bottleneck: 1x1 BN act, 3x3 BN act, 1x1 BN (mid = width / 2|4), + shortcut, act
                  | inverted: 1x1 expand (x2|3|4) BN act, depthwise 3x3 BN act, 1x1 BN, + x when shapes agree
                  | inception: concat(1x1, 3x3, 5x5 branches, each [BN] act) of widths w/4, w/2, rest
    downsample   := MaxPool2d(2) | AvgPool2d(2) | stride 2 in the stage's first block
    head         := AdaptiveAvgPool2d(1) Flatten [Dropout] Linear
                  | AdaptiveAvgPool2d(1) Flatten Linear(w -> w) act Dropout Linear
    ACT          := ReLU | LeakyReLU | GELU | SiLU | ELU | Hardswish  (one module-level name)
    widths       := w0 in 8..32, each stage x1, x1.5 or x2 of the one before (multiples of 4 or 8)
    style        := cfg (VGG config list and a loop, inline or in a _make_layers method)
                  | stages (width and depth tuples, one Sequential)
                  | blocks (a block class; stages in a double loop or a _make_stage method)
                  | helper (conv_bn / sep_conv functions over a (width, stride) plan)
                  | modulelist (ModuleLists and an explicit forward loop over them)
    training     := SGD(lr, momentum [, weight_decay | nesterov]), cross-entropy [label smoothing],
                    one pass over train_data [with gradient clipping]

Every layer's input width comes from a variable that tracks the current channel count, and the head
pools adaptively, so a program is valid at any input of 16x16 pixels or more with 1 to 3 channels.
Each drawn architecture's parameters, BatchNorm buffers and multiply-accumulates are counted exactly
(`architecture.size_of`, at 3x32x32) and it is drawn again until it has 5,000 to `param_budget`
parameters, buffers within the allowance and at most 30M multiply-accumulates per image (the prompt
asks for edge-friendly networks; on a CPU the cost of one training epoch follows it).

What it cannot express: anything but a chain of same-kind blocks (no mixed block kinds, branches
across stages, dense or U-shaped connections, attention, squeeze-excitation, dilation, grouped
convolutions other than depthwise); more than one activation or block kernel size per network;
normalisation other than BatchNorm (and no block class or ModuleList network without it); heads
other than global pooling with one or two linear layers; optimizers other than SGD, schedulers,
data-dependent code, or more than four halvings of the resolution. The code is written for a small
line-by-line model (see `styles`): names agree across lines by construction. Programs of one seed
are reproducible and a prefix of a larger count (program i depends only on the seed and i).
"""

from orchestrator.corpus.grammar.programs import GrammarProgram, synthesize

__all__ = ["GrammarProgram", "synthesize"]
