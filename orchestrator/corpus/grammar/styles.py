"""The grammar's code styles: one architecture written as a PyTorch program in the API contract.

Every style tracks the current channel count in one variable while it builds the layers from a
short plan (a config list, tuples of widths and depths, (width, stride) pairs), so that no layer's
input width is written as a literal: a program is valid because of its structure, not because its
numbers happen to agree. The styles differ in how the plan is laid out and where the layers live
(one Sequential, block classes, helper functions, ModuleLists with an explicit forward).

Written for a small model that writes one line after another, which keeps a line consistent far
better than lines with each other: a choice is made on one line and referred to by name elsewhere
(the activation `ACT`, the kernel size `KERNEL`, the block class `Block`); a head is one line; widths
come from a short ladder of round numbers and every number list is in square brackets; and all
styles share their names (`channels`, `layers`, `self.features`, `self.classifier`), so that a line
in one style's idiom after another's still refers to what exists. What would have to agree between
__init__ and forward (BatchNorm or not in a block class or a ModuleList) is fixed. With names,
activations and literals drawn per program and repeated on many lines, 17 of 32 of the tiny model's
samples parsed and 2 were valid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from orchestrator.corpus.grammar.architecture import Architecture, draw_architecture

# style -> (block kinds it writes, downsamplings it writes)
STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cfg": (("conv",), ("max", "avg")),
    "stages": (("conv", "separable"), ("max", "avg", "stride")),
    "blocks": (("conv", "separable", "residual", "bottleneck", "inverted", "inception"), ("max", "avg", "stride")),
    "helper": (("conv", "separable"), ("stride",)),
    "modulelist": (("conv",), ("max", "avg")),
}

_ACTIVATIONS = {"relu": "nn.ReLU", "leaky_relu": "nn.LeakyReLU", "gelu": "nn.GELU", "silu": "nn.SiLU",
                "elu": "nn.ELU", "hardswish": "nn.Hardswish"}

# style -> (channel variable, features attribute, head attribute): one set of names for all styles, so
# that a line written in one style's idiom after another's still refers to what exists
_NAMES = {style: ("channels", "features", "classifier") for style in STYLES}
_ACT = "ACT()"
_DROPOUT = "nn.Dropout(prm['dropout'])"


def draw_program(rng: random.Random, style: str, block: str) -> Architecture:
    """An architecture of `block`s that this style can write (styles with one kernel use it for the
    stem too)."""
    arch = draw_architecture(rng, block, STYLES[style][1])
    if style in ("cfg", "modulelist"):
        arch = replace(arch, stem_kernel=arch.kernel)
    if style in ("blocks", "modulelist"):  # BatchNorm or not would have to agree between __init__ and forward
        arch = replace(arch, norm=True)
    return arch


@dataclass(frozen=True)
class _Training:
    """Choices of train_setup() and learn(), each on one line."""

    label_smoothing: bool
    sgd_extra: str
    clip: bool


def _conv(cin: str, cout: str, k: int | str, norm: bool, stride: str | None = None, groups: str | None = None) -> str:
    """`nn.Conv2d` with 'same' padding; `k` a number or the name of one (KERNEL, kernel_size)."""
    args = [cin, cout, str(k)]
    if stride and stride != "1":
        args.append(f"stride={stride}")
    if k != 1:
        args.append(f"padding={k // 2}" if isinstance(k, int) else f"padding={k} // 2")
    if groups:
        args.append(f"groups={groups}")
    if norm:
        args.append("bias=False")
    return f"nn.Conv2d({', '.join(args)})"


def _conv_unit(cin: str, cout: str, k: int | str, norm: bool, stride: str | None = None,
               groups: str | None = None) -> list[str]:
    """A convolution, its BatchNorm (when on) and the activation, as module constructors."""
    return [_conv(cin, cout, k, norm, stride, groups)] + ([f"nn.BatchNorm2d({cout})"] if norm else []) + [_ACT]


def _pool(arch: Architecture) -> str:
    return "nn.MaxPool2d(2)" if arch.downsample != "avg" else "nn.AvgPool2d(2)"


def _head(arch: Architecture, attribute: str, width: str) -> list[str]:
    """The line that builds the head into `self.<attribute>` from `width` channels."""
    modules = ["nn.AdaptiveAvgPool2d(1)", "nn.Flatten()"] + _classifier(arch, width)
    return [f"self.{attribute} = nn.Sequential({', '.join(modules)})"]


def _classifier(arch: Architecture, width: str) -> list[str]:
    """The linear layers of the head (an MLP's hidden layer as wide as its input)."""
    hidden = [f"nn.Linear({width}, {width})", _ACT] if arch.head == "mlp" else []
    return hidden + ([_DROPOUT] if arch.dropout else []) + [f"nn.Linear({width}, out_shape[0])"]


def _sequential(modules: list[str]) -> str:
    if len(modules) <= 3:
        return f"nn.Sequential({', '.join(modules)})"
    return "nn.Sequential(\n" + "".join(f"    {m},\n" for m in modules) + ")"


class _Code:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str = "", level: int = 0) -> None:
        for line in text.split("\n"):
            self.lines.append(("    " * level + line) if line else "")

    def blank(self, n: int = 1) -> None:
        self.lines.extend([""] * n)

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def _header(code: _Code, arch: Architecture, kernel: bool) -> None:
    code.add("import torch")
    code.add("import torch.nn as nn")
    code.blank()
    code.add(f"ACT = {_ACTIVATIONS[arch.activation]}")
    if kernel:
        code.add(f"KERNEL = {arch.kernel}")
    code.blank(2)
    code.add("def supported_hyperparameters():")
    code.add("return {'lr', 'momentum'}", 1)
    code.blank(2)


def _training(rng: random.Random) -> _Training:
    return _Training(label_smoothing=rng.random() < 0.2,
                     sgd_extra=rng.choice(("", "", "", ", weight_decay=5e-4", ", nesterov=True", ", weight_decay=1e-4")),
                     clip=rng.random() < 0.3)


def _net_class(code: _Code, t: _Training, init: list[str], forward: list[str], methods: list[list[str]] = ()) -> None:  # type: ignore[assignment]
    code.add("class Net(nn.Module):")
    code.add("def __init__(self, in_shape, out_shape, prm, device):", 1)
    code.add("super().__init__()", 2)
    code.add("self.device = device", 2)
    for line in init:
        code.add(line, 2)
    for method in methods:
        code.blank()
        code.add(method[0], 1)
        for line in method[1:]:
            code.add(line, 2)
    code.blank()
    code.add("def forward(self, x):", 1)
    for line in forward:
        code.add(line, 2)
    code.blank()
    loss = "nn.CrossEntropyLoss(label_smoothing=0.1)" if t.label_smoothing else "nn.CrossEntropyLoss()"
    code.add("def train_setup(self, prm):", 1)
    code.add("self.to(self.device)", 2)
    code.add(f"self.criteria = {loss}", 2)
    code.add(f"self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'], momentum=prm['momentum']{t.sgd_extra})", 2)
    code.blank()
    code.add("def learn(self, train_data):", 1)
    code.add("self.train()", 2)
    code.add("for inputs, labels in train_data:", 2)
    code.add("inputs, labels = inputs.to(self.device), labels.to(self.device)", 3)
    code.add("self.optimizer.zero_grad()", 3)
    code.add("loss = self.criteria(self(inputs), labels)", 3)
    code.add("loss.backward()", 3)
    if t.clip:
        code.add("nn.utils.clip_grad_norm_(self.parameters(), 3)", 3)
    code.add("self.optimizer.step()", 3)


def _features_then_head(features: str, head: str) -> list[str]:
    return [f"x = self.{features}(x)", f"return self.{head}(x)"]


# --- the styles -----------------------------------------------------------------------------------

def _cfg(arch: Architecture, rng: random.Random) -> str:
    c, features, head = _NAMES["cfg"]
    marker = "'M'"  # VGG's marker, whichever pooling follows
    entries = [str(arch.stem_width)] + ([marker] if arch.stem_pool else [])
    for i, stage in enumerate(arch.stages):
        entries += ([marker] if i else []) + [str(stage.width)] * stage.depth
    cfg = f"[{', '.join(entries)}]"
    loop = ["for v in cfg:",
            f"    if v == {marker}:",
            f"        layers.append({_pool(arch)})",
            "    else:",
            f"        layers += [{', '.join(_conv_unit(c, 'v', 'KERNEL', arch.norm))}]",
            f"        {c} = v"]
    code = _Code()
    _header(code, arch, kernel=True)
    if rng.random() < 0.5:  # the layers built inline
        init = [f"cfg = {cfg}", "layers = []", f"{c} = in_shape[1]", *loop, f"self.{features} = nn.Sequential(*layers)"]
        methods: list[list[str]] = []
    else:  # a method that returns the layers and the width they end at
        init = [f"self.{features}, {c} = self._make_layers({cfg}, in_shape[1])"]
        methods = [[f"def _make_layers(self, cfg, {c}):", "layers = []", *loop,
                    f"return nn.Sequential(*layers), {c}"]]
    _net_class(code, _training(rng), init + _head(arch, head, c), _features_then_head(features, head), methods)
    return code.text()


def _stages(arch: Architecture, rng: random.Random) -> str:
    c, features, head = _NAMES["stages"]
    strided = arch.downsample == "stride"
    stride = "stride" if strided else None
    if arch.block == "conv":
        unit = _conv_unit(c, "width", "KERNEL", arch.norm, stride)
    else:
        unit = _conv_unit(c, c, "KERNEL", arch.norm, stride, groups=c) + _conv_unit(c, "width", 1, arch.norm)
    init = [f"widths = [{', '.join(str(st.width) for st in arch.stages)}]",
            f"depths = [{', '.join(str(st.depth) for st in arch.stages)}]",
            f"{c} = {arch.stem_width}",
            f"layers = [{', '.join(_conv_unit('in_shape[1]', c, arch.stem_kernel, arch.norm))}]"]
    if arch.stem_pool:
        init.append("layers.append(nn.MaxPool2d(2))")
    init.append("for i, (width, depth) in enumerate(zip(widths, depths)):")
    if strided:
        init += ["    for j in range(depth):", "        stride = 2 if i > 0 and j == 0 else 1"]
    else:
        init += ["    if i > 0:", f"        layers.append({_pool(arch)})", "    for j in range(depth):"]
    init += [f"        layers += [{', '.join(unit)}]", f"        {c} = width", f"self.{features} = nn.Sequential(*layers)"]
    code = _Code()
    _header(code, arch, kernel=True)
    _net_class(code, _training(rng), init + _head(arch, head, c), _features_then_head(features, head))
    return code.text()


def _shortcut(cin: str, cout: str) -> list[str]:
    return ["self.shortcut = nn.Sequential()",
            f"if stride != 1 or {cin} != {cout}:",
            f"    self.shortcut = nn.Sequential({_conv(cin, cout, 1, True, 'stride')}, nn.BatchNorm2d({cout}))"]


def _block_class(arch: Architecture) -> list[str]:
    """The block class: its lines, at module level."""
    cin, cout = "in_channels", "out_channels"
    norm = arch.norm
    init: list[str]
    if arch.block == "conv":
        init = [f"self.conv = {_conv(cin, cout, 'KERNEL', norm, 'stride')}"] + \
            ([f"self.bn = nn.BatchNorm2d({cout})"] if norm else []) + ["self.act = ACT()"]
        forward = ["return self.act(self.bn(self.conv(x)))" if norm else "return self.act(self.conv(x))"]
    elif arch.block == "separable":
        init = [f"self.depthwise = {_conv(cin, cin, 'KERNEL', norm, 'stride', cin)}",
                f"self.pointwise = {_conv(cin, cout, 1, norm)}"]
        init += [f"self.bn1 = nn.BatchNorm2d({cin})", f"self.bn2 = nn.BatchNorm2d({cout})"] if norm else []
        init += ["self.act = ACT()"]
        forward = (["x = self.act(self.bn1(self.depthwise(x)))", "return self.act(self.bn2(self.pointwise(x)))"]
                   if norm else ["x = self.act(self.depthwise(x))", "return self.act(self.pointwise(x))"])
    elif arch.block == "residual":
        init = [f"self.conv1 = {_conv(cin, cout, 3, True, 'stride')}", f"self.bn1 = nn.BatchNorm2d({cout})",
                f"self.conv2 = {_conv(cout, cout, 3, True)}", f"self.bn2 = nn.BatchNorm2d({cout})",
                "self.act = ACT()", *_shortcut(cin, cout)]
        forward = ["out = self.act(self.bn1(self.conv1(x)))", "out = self.bn2(self.conv2(out))",
                   "return self.act(out + self.shortcut(x))"]
    elif arch.block == "bottleneck":
        body = (_conv_unit(cin, "mid", 1, True) + _conv_unit("mid", "mid", 3, True, "stride")
                + [_conv("mid", cout, 1, True), f"nn.BatchNorm2d({cout})"])
        init = [f"mid = {cout} // {arch.expansion}", f"self.body = {_sequential(body)}", *_shortcut(cin, cout),
                "self.act = ACT()"]
        forward = ["return self.act(self.body(x) + self.shortcut(x))"]
    elif arch.block == "inverted":
        body = (_conv_unit(cin, "hidden", 1, True) + _conv_unit("hidden", "hidden", 3, True, "stride", "hidden")
                + [_conv("hidden", cout, 1, True), f"nn.BatchNorm2d({cout})"])
        init = [f"hidden = {cin} * {arch.expansion}", f"self.use_residual = stride == 1 and {cin} == {cout}",
                f"self.block = {_sequential(body)}"]
        forward = ["out = self.block(x)", "return x + out if self.use_residual else out"]
    else:  # inception: 1x1, 3x3 and 5x5 branches of a quarter, a half and the rest of the width
        init = [f"b1 = {cout} // 4", f"b3 = {cout} // 2", f"b5 = {cout} - b1 - b3"]
        for width, k in (("b1", 1), ("b3", 3), ("b5", 5)):
            init.append(f"self.branch{k} = {_sequential(_conv_unit(cin, width, k, norm, 'stride'))}")
        forward = ["return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x)], dim=1)"]
    code = _Code()
    code.add("class Block(nn.Module):")
    code.add(f"def __init__(self, {cin}, {cout}, stride=1):", 1)
    code.add("super().__init__()", 2)
    for line in init:
        code.add(line, 2)
    code.blank()
    code.add("def forward(self, x):", 1)
    for line in forward:
        code.add(line, 2)
    return code.lines


def _blocks(arch: Architecture, rng: random.Random) -> str:
    c, features, head = _NAMES["blocks"]
    name = "Block"
    strided = arch.downsample == "stride"
    stem = _conv_unit("in_shape[1]", c, arch.stem_kernel, arch.norm) + (["nn.MaxPool2d(2)"] if arch.stem_pool else [])
    init = [f"plan = [{', '.join(f'({st.width}, {st.depth})' for st in arch.stages)}]",
            f"{c} = {arch.stem_width}", f"self.stem = {_sequential(stem)}"]
    methods: list[list[str]] = []
    if rng.random() < 0.5:  # blocks appended in a double loop
        init += ["layers = []", "for i, (width, depth) in enumerate(plan):"]
        if strided:
            init += ["    for j in range(depth):", f"        layers.append({name}({c}, width, 2 if i > 0 and j == 0 else 1))"]
        else:
            init += ["    if i > 0:", f"        layers.append({_pool(arch)})", "    for j in range(depth):",
                     f"        layers.append({name}({c}, width))"]
        init += [f"        {c} = width", f"self.{features} = nn.Sequential(*layers)"]
    else:  # a _make_stage method per stage
        init += ["layers = []", "for i, (width, depth) in enumerate(plan):"]
        if strided:
            init.append(f"    layers.append(self._make_stage({c}, width, depth, 1 if i == 0 else 2))")
        else:
            init += ["    if i > 0:", f"        layers.append({_pool(arch)})",
                     f"    layers.append(self._make_stage({c}, width, depth))"]
        methods.append(["def _make_stage(self, in_channels, out_channels, depth, stride=1):",
                        f"layers = [{name}(in_channels, out_channels, stride)]", "for _ in range(depth - 1):", f"    layers.append({name}(out_channels, out_channels))",
                                 "return nn.Sequential(*layers)"])
        init += [f"    {c} = width", f"self.{features} = nn.Sequential(*layers)"]
    code = _Code()
    _header(code, arch, kernel=arch.block in ("conv", "separable"))
    code.lines += _block_class(arch)
    code.blank(2)
    forward = ["x = self.stem(x)", *_features_then_head(features, head)]
    _net_class(code, _training(rng), init + _head(arch, head, c), forward, methods)
    return code.text()


def _helper(arch: Architecture, rng: random.Random) -> str:
    c, features, head = _NAMES["helper"]
    norm = arch.norm
    code = _Code()
    _header(code, arch, kernel=True)
    conv = _conv("cin", "cout", "kernel_size", norm, "stride")
    code.add("def conv_bn(cin, cout, stride=1, kernel_size=KERNEL):")
    code.add(f"return {_sequential([conv] + (['nn.BatchNorm2d(cout)'] if norm else []) + [_ACT])}", 1)
    code.blank(2)
    helper = "conv_bn"
    if arch.block == "separable":
        helper = "sep_conv"
        modules = _conv_unit("cin", "cin", "kernel_size", norm, "stride", "cin") + _conv_unit("cin", "cout", 1, norm)
        code.add("def sep_conv(cin, cout, stride=1, kernel_size=KERNEL):")
        code.add(f"return {_sequential(modules)}", 1)
        code.blank(2)
    plan = [(stage.width, 2 if i > 0 and j == 0 else 1) for i, stage in enumerate(arch.stages) for j in range(stage.depth)]
    stem_kernel = f", kernel_size={arch.stem_kernel}" if arch.stem_kernel != arch.kernel else ""
    init = [f"plan = [{', '.join(f'({w}, {s})' for w, s in plan)}]", f"{c} = {arch.stem_width}",
            f"layers = [conv_bn(in_shape[1], {c}{stem_kernel})]"]
    if arch.stem_pool:
        init.append("layers.append(nn.MaxPool2d(2))")
    init += ["for width, stride in plan:", f"    layers.append({helper}({c}, width, stride))", f"    {c} = width",
             f"self.{features} = nn.Sequential(*layers)"]
    _net_class(code, _training(rng), init + _head(arch, head, c), _features_then_head(features, head))
    return code.text()


def _modulelist(arch: Architecture, rng: random.Random) -> str:
    c, _, _ = _NAMES["modulelist"]
    norm = arch.norm
    widths = [arch.stem_width] + [st.width for st in arch.stages for _ in range(st.depth)]
    pools, index = ([0] if arch.stem_pool else []), 0
    for i, stage in enumerate(arch.stages):
        if i:
            pools.append(index)
        index += stage.depth
    init = [f"self.widths = [{', '.join(map(str, widths))}]",
            f"self.pool_after = [{', '.join(map(str, pools))}]",
            "self.convs = nn.ModuleList()"] + (["self.norms = nn.ModuleList()"] if norm else []) + [
            f"{c} = in_shape[1]",
            "for width in self.widths:",
            f"    self.convs.append({_conv(c, 'width', 'KERNEL', norm)})"] + (
            ["    self.norms.append(nn.BatchNorm2d(width))"] if norm else []) + [f"    {c} = width", "self.act = ACT()",
                                                                          f"self.pool = {_pool(arch)}"]
    init += ["self.gap = nn.AdaptiveAvgPool2d(1)",
             f"self.fc = {_sequential(_classifier(arch, c))}" if arch.head == "mlp" or arch.dropout else
             f"self.fc = {_classifier(arch, c)[0]}"]
    layer = "self.norms[i](conv(x))" if norm else "conv(x)"
    forward = ["for i, conv in enumerate(self.convs):",
               f"    x = self.act({layer})",
               "    if i in self.pool_after:",
               "        x = self.pool(x)",
               "x = torch.flatten(self.gap(x), 1)"]
    forward.append("return self.fc(x)")
    code = _Code()
    _header(code, arch, kernel=True)
    _net_class(code, _training(rng), init, forward)
    return code.text()


_RENDERERS = {"cfg": _cfg, "stages": _stages, "blocks": _blocks, "helper": _helper, "modulelist": _modulelist}


def render(arch: Architecture, style: str, rng: random.Random) -> str:
    """The program text of `arch` in `style`, with its one-line choices drawn from `rng`."""
    return _RENDERERS[style](arch, rng)
