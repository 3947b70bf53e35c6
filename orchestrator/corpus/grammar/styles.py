"""The grammar's code styles: one architecture written as a PyTorch program in the API contract.

Every style tracks the current channel count in one variable while it builds the layers from a
short plan (a config list, tuples of widths and depths, (width, stride) pairs), so that no layer's
input width is written as a literal: a program is valid because of its structure, not because its
numbers happen to agree. The styles differ in how the plan is laid out, where the layers live
(one Sequential, block classes, a helper function, ModuleLists with an explicit forward), and in
surface choices (names, loss and optimizer options, gradient clipping, method order).
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

_ACTIVATION_MODULES = {
    "relu": ("nn.ReLU()", "nn.ReLU(inplace=True)"),
    "leaky_relu": ("nn.LeakyReLU(0.1)", "nn.LeakyReLU(0.2, inplace=True)"),
    "gelu": ("nn.GELU()",),
    "silu": ("nn.SiLU()",),
    "elu": ("nn.ELU()",),
    "hardswish": ("nn.Hardswish()",),
}
_ACTIVATION_FUNCTIONS = {
    "relu": "F.relu({})", "leaky_relu": "F.leaky_relu({}, 0.1)", "gelu": "F.gelu({})", "silu": "F.silu({})",
    "elu": "F.elu({})", "hardswish": "F.hardswish({})",
}
_BLOCK_CLASSES = {
    "conv": "ConvBlock", "separable": "SeparableConv", "residual": "ResidualBlock", "bottleneck": "Bottleneck",
    "inverted": "InvertedResidual", "inception": "InceptionBlock",
}


def draw_program(rng: random.Random, style: str, block: str) -> Architecture:
    """An architecture of `block`s that this style can write (styles with one kernel use it for the
    stem too)."""
    arch = draw_architecture(rng, block, STYLES[style][1])
    if arch.block == "inception" and arch.downsample == "stride":
        arch = replace(arch, downsample=rng.choice(("max", "avg")))
    if style in ("cfg", "modulelist"):
        arch = replace(arch, stem_kernel=arch.kernel)
    return arch


@dataclass(frozen=True)
class _Surface:
    """The program's choices of names and idioms (no effect on what it computes)."""

    act: str  # the activation module's constructor
    channels: str  # the variable tracking the current channel count
    features: str
    head: str
    dropout: str  # the expression of the dropout rate
    criteria_tuple: bool
    label_smoothing: bool
    sgd_extra: str
    clip: bool
    train_mode: bool
    loop_names: tuple[str, str]
    typed: bool
    setup_first: bool
    classic_super: bool
    flatten: str
    split_forward: bool  # `x = self.features(x)` on its own line


def _surface(rng: random.Random, arch: Architecture) -> _Surface:
    return _Surface(
        act=rng.choice(_ACTIVATION_MODULES[arch.activation]),
        channels=rng.choice(("channels", "c", "in_ch", "ch", "prev", "in_channels")),
        features=rng.choice(("features", "body", "backbone", "layers", "trunk")),
        head=rng.choice(("classifier", "head", "fc")),
        dropout=rng.choice(("prm['dropout']", "prm['dropout']", "prm.get('dropout', 0.2)", "float(prm['dropout'])")),
        criteria_tuple=rng.random() < 0.3,
        label_smoothing=rng.random() < 0.2,
        sgd_extra=rng.choice(("", "", "", ", weight_decay=5e-4", ", nesterov=True", ", weight_decay=1e-4")),
        clip=rng.random() < 0.3,
        train_mode=rng.random() < 0.5,
        loop_names=rng.choice((("inputs", "labels"), ("x", "y"), ("images", "targets"), ("data", "target"))),
        typed=rng.random() < 0.3,
        setup_first=rng.random() < 0.3,
        classic_super=rng.random() < 0.25,
        flatten=rng.choice(("torch.flatten(x, 1)", "x.view(x.size(0), -1)", "x.flatten(1)")),
        split_forward=rng.random() < 0.5,
    )


def _padding(k: int) -> str:
    return str(k // 2)


def _conv(cin: str, cout: str, k: int, norm: bool, stride: str | None = None, groups: str | None = None) -> str:
    args = [cin, cout, f"kernel_size={k}" if k != 1 else "1"]
    if stride and stride != "1":
        args.append(f"stride={stride}")
    if k != 1:
        args.append(f"padding={_padding(k)}")
    if groups:
        args.append(f"groups={groups}")
    if norm:
        args.append("bias=False")
    return f"nn.Conv2d({', '.join(args)})"


def _conv_unit(cin: str, cout: str, k: int, norm: bool, act: str, stride: str | None = None,
               groups: str | None = None) -> list[str]:
    """A convolution, its BatchNorm (when on) and the activation, as module constructors."""
    return [_conv(cin, cout, k, norm, stride, groups)] + ([f"nn.BatchNorm2d({cout})"] if norm else []) + [act]


def _pool(arch: Architecture) -> str:
    return "nn.MaxPool2d(2)" if arch.downsample != "avg" else "nn.AvgPool2d(2)"


def _head_modules(arch: Architecture, s: _Surface, width: str) -> list[str]:
    if arch.head == "mlp":
        return ["nn.AdaptiveAvgPool2d(1)", "nn.Flatten()", f"nn.Linear({width}, {arch.hidden})", s.act,
                f"nn.Dropout({s.dropout})", f"nn.Linear({arch.hidden}, out_shape[0])"]
    pooled = "1" if arch.head == "gap" else "2"
    n_in = width if arch.head == "gap" else f"{width} * 4"
    return [f"nn.AdaptiveAvgPool2d({pooled})", "nn.Flatten()"] + \
        ([f"nn.Dropout({s.dropout})"] if arch.dropout else []) + [f"nn.Linear({n_in}, out_shape[0])"]


def _sequential(modules: list[str], indent: str) -> str:
    if len(modules) <= 3:
        return f"nn.Sequential({', '.join(modules)})"
    inner = indent + "    "
    return "nn.Sequential(\n" + "".join(f"{inner}{m},\n" for m in modules) + f"{indent})"


class _Code:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str = "", level: int = 0) -> None:
        for line in text.split("\n"):
            self.lines.append(("    " * level + line) if line else "")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def _header(code: _Code, functional: bool) -> None:
    code.add("import torch")
    code.add("import torch.nn as nn")
    if functional:
        code.add("import torch.nn.functional as F")
    code.add()
    code.add()
    code.add("def supported_hyperparameters():")
    code.add("return {'lr', 'momentum'}", 1)
    code.add()
    code.add()


def _init_signature(code: _Code, s: _Surface) -> None:
    if s.typed:
        code.add("def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:", 1)
    else:
        code.add("def __init__(self, in_shape, out_shape, prm, device):", 1)
    code.add("super(Net, self).__init__()" if s.classic_super else "super().__init__()", 2)
    code.add("self.device = device", 2)


def _training_methods(code: _Code, s: _Surface) -> None:
    loss = "nn.CrossEntropyLoss(label_smoothing=0.1)" if s.label_smoothing else "nn.CrossEntropyLoss()"
    code.add("def train_setup(self, prm):", 1)
    code.add("self.to(self.device)", 2)
    code.add(f"self.criteria = ({loss}.to(self.device),)" if s.criteria_tuple else f"self.criteria = {loss}", 2)
    code.add("self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'], "
             f"momentum=prm['momentum']{s.sgd_extra})", 2)
    code.add()
    x, y = s.loop_names
    code.add("def learn(self, train_data):", 1)
    if s.train_mode:
        code.add("self.train()", 2)
    code.add(f"for {x}, {y} in train_data:", 2)
    code.add(f"{x}, {y} = {x}.to(self.device), {y}.to(self.device)", 3)
    code.add("self.optimizer.zero_grad()", 3)
    criteria = "self.criteria[0]" if s.criteria_tuple else "self.criteria"
    code.add(f"loss = {criteria}(self({x}), {y})", 3)
    code.add("loss.backward()", 3)
    if s.clip:
        code.add("nn.utils.clip_grad_norm_(self.parameters(), 3)", 3)
    code.add("self.optimizer.step()", 3)


def _net_class(code: _Code, s: _Surface, init_body: list[str], forward_body: list[str],
               extra_methods: list[str] | None = None) -> None:
    code.add("class Net(nn.Module):")
    parts: list[str] = ["init", "forward", "training"]
    if s.setup_first:
        parts = ["training", "init", "forward"]
    for n, part in enumerate(parts):
        if n:
            code.add()
        if part == "init":
            _init_signature(code, s)
            for line in init_body:
                code.add(line, 2)
            for method in extra_methods or []:
                code.add()
                code.add(method, 1)
        elif part == "forward":
            code.add("def forward(self, x):" if not s.typed else
                     "def forward(self, x: torch.Tensor) -> torch.Tensor:", 1)
            for line in forward_body:
                code.add(line, 2)
        else:
            _training_methods(code, s)


def _stage_plan(arch: Architecture, rng: random.Random) -> tuple[list[str], str]:
    """The stages as code: (lines defining the plan, the loop header's iterable)."""
    widths = ", ".join(str(st.width) for st in arch.stages)
    depths = ", ".join(str(st.depth) for st in arch.stages)
    if rng.random() < 0.5:
        pairs = ", ".join(f"({st.width}, {st.depth})" for st in arch.stages)
        return [f"stages = [{pairs}]"], "stages"
    return [f"widths = ({widths})", f"depths = ({depths})"], "zip(widths, depths)"  # two stages at least


def _forward_features_head(s: _Surface) -> list[str]:
    return [f"x = self.{s.features}(x)", f"return self.{s.head}(x)"] if s.split_forward else \
        [f"return self.{s.head}(self.{s.features}(x))"]


# --- the styles -----------------------------------------------------------------------------------

def _cfg(arch: Architecture, s: _Surface, rng: random.Random) -> str:
    entries: list[str] = [str(arch.stem_width)] + (["'P'"] if arch.stem_pool else [])
    for i, stage in enumerate(arch.stages):
        if i:
            entries.append("'P'")
        entries += [str(stage.width)] * stage.depth
    marker = "'M'" if arch.downsample == "max" else "'A'"
    entries = [marker if e == "'P'" else e for e in entries]
    c, k = s.channels, arch.kernel
    unit = ", ".join(_conv_unit(c, "v", k, arch.norm, s.act))
    loop = [f"for v in cfg:",
            f"    if v == {marker}:",
            f"        layers.append({_pool(arch)})",
            f"    else:",
            f"        layers += [{unit}]",
            f"        {c} = v"]
    head = _sequential(_head_modules(arch, s, c), "")
    code = _Code()
    _header(code, functional=False)
    if rng.random() < 0.5:  # the layers built inline
        init = [f"cfg = [{', '.join(entries)}]", "layers = []", f"{c} = in_shape[1]", *loop,
                f"self.{s.features} = nn.Sequential(*layers)", f"self.{s.head} = {head}"]
        extra: list[str] = []
    else:  # a method that returns the layers and the width they end at
        init = [f"self.{s.features}, {c} = self._make_layers([{', '.join(entries)}], in_shape[1])",
                f"self.{s.head} = {head}"]
        body = "\n".join("    " + line for line in ["layers = []", *loop, f"return nn.Sequential(*layers), {c}"])
        extra = [f"def _make_layers(self, cfg, {c}):\n{body}"]
    _net_class(code, s, init, _forward_features_head(s), extra)
    return code.text()


def _stem_lines(arch: Architecture, s: _Surface, stem_call: str | None = None) -> list[str]:
    c = s.channels
    stem = stem_call or ", ".join(_conv_unit("in_shape[1]", c, arch.stem_kernel, arch.norm, s.act))
    lines = [f"{c} = {arch.stem_width}", f"layers = [{stem}]"]
    if arch.stem_pool:
        lines.append("layers.append(nn.MaxPool2d(2))")
    return lines


def _stages(arch: Architecture, s: _Surface, rng: random.Random) -> str:
    c, k = s.channels, arch.kernel
    plan, iterable = _stage_plan(arch, rng)
    stride = "stride" if arch.downsample == "stride" else None
    if arch.block == "conv":
        unit = _conv_unit(c, "width", k, arch.norm, s.act, stride)
    else:
        unit = _conv_unit(c, c, k, arch.norm, s.act, stride, groups=c) + _conv_unit(c, "width", 1, arch.norm, s.act)
    body = [f"for i, (width, depth) in enumerate({iterable}):"]
    if arch.downsample == "stride":
        body += ["    for j in range(depth):",
                 "        stride = 2 if i > 0 and j == 0 else 1"]
    else:
        body += ["    if i > 0:", f"        layers.append({_pool(arch)})", "    for _ in range(depth):"]
    body += [f"        layers += [{', '.join(unit)}]", f"        {c} = width"]
    init = plan + _stem_lines(arch, s) + body + [
        f"self.{s.features} = nn.Sequential(*layers)",
        f"self.{s.head} = {_sequential(_head_modules(arch, s, c), '')}"]
    code = _Code()
    _header(code, functional=False)
    _net_class(code, s, init, _forward_features_head(s))
    return code.text()


def _block_class(arch: Architecture, s: _Surface) -> str:
    name, norm, act = _BLOCK_CLASSES[arch.block], arch.norm, s.act
    takes_stride = arch.block != "inception"
    signature = "def __init__(self, in_channels, out_channels, stride=1):" if takes_stride else \
        "def __init__(self, in_channels, out_channels):"
    init: list[str] = []
    forward: list[str] = []
    shortcut = ["self.shortcut = nn.Sequential()",
                "if stride != 1 or in_channels != out_channels:",
                "    self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), "
                "nn.BatchNorm2d(out_channels))"]
    if arch.block == "conv":
        init = [f"self.conv = {_conv('in_channels', 'out_channels', arch.kernel, norm, 'stride')}"]
        init += ["self.bn = nn.BatchNorm2d(out_channels)"] if norm else []
        init += [f"self.act = {act}"]
        forward = ["return self.act(self.bn(self.conv(x)))" if norm else "return self.act(self.conv(x))"]
    elif arch.block == "separable":
        init = [f"self.depthwise = {_conv('in_channels', 'in_channels', arch.kernel, norm, 'stride', 'in_channels')}",
                f"self.pointwise = {_conv('in_channels', 'out_channels', 1, norm)}"]
        init += ["self.bn1 = nn.BatchNorm2d(in_channels)", "self.bn2 = nn.BatchNorm2d(out_channels)"] if norm else []
        init += [f"self.act = {act}"]
        forward = (["x = self.act(self.bn1(self.depthwise(x)))", "return self.act(self.bn2(self.pointwise(x)))"]
                   if norm else ["x = self.act(self.depthwise(x))", "return self.act(self.pointwise(x))"])
    elif arch.block == "residual":
        init = [f"self.conv1 = {_conv('in_channels', 'out_channels', 3, True, 'stride')}",
                "self.bn1 = nn.BatchNorm2d(out_channels)",
                f"self.conv2 = {_conv('out_channels', 'out_channels', 3, True)}",
                "self.bn2 = nn.BatchNorm2d(out_channels)",
                f"self.act = {act}", *shortcut]
        forward = ["out = self.act(self.bn1(self.conv1(x)))", "out = self.bn2(self.conv2(out))",
                   "return self.act(out + self.shortcut(x))"]
    elif arch.block == "bottleneck":
        body = (_conv_unit("in_channels", "mid", 1, True, act) + _conv_unit("mid", "mid", 3, True, act, "stride")
                + [_conv("mid", "out_channels", 1, True), "nn.BatchNorm2d(out_channels)"])
        init = [f"mid = out_channels // {arch.expansion}", f"self.body = {_sequential(body, '')}", *shortcut,
                f"self.act = {act}"]
        forward = ["return self.act(self.body(x) + self.shortcut(x))"]
    elif arch.block == "inverted":
        body = (_conv_unit("in_channels", "hidden", 1, True, act)
                + _conv_unit("hidden", "hidden", 3, True, act, "stride", "hidden")
                + [_conv("hidden", "out_channels", 1, True), "nn.BatchNorm2d(out_channels)"])
        init = [f"hidden = in_channels * {arch.expansion}",
                "self.use_residual = stride == 1 and in_channels == out_channels",
                f"self.block = {_sequential(body, '')}"]
        forward = ["out = self.block(x)", "return x + out if self.use_residual else out"]
    else:  # inception
        init = ["b1 = out_channels // 4", "b3 = out_channels // 2", "b5 = out_channels - b1 - b3"]
        for width, k in (("b1", 1), ("b3", 3), ("b5", 5)):
            init.append(f"self.branch{k} = {_sequential(_conv_unit('in_channels', width, k, norm, act), '')}")
        forward = ["return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x)], dim=1)"]
    code = _Code()
    code.add(f"class {name}(nn.Module):")
    code.add(signature, 1)
    code.add("super().__init__()", 2)
    for line in init:
        code.add(line, 2)
    code.add()
    code.add("def forward(self, x):", 1)
    for line in forward:
        code.add(line, 2)
    return code.text()


def _blocks(arch: Architecture, s: _Surface, rng: random.Random) -> str:
    c = s.channels
    name = _BLOCK_CLASSES[arch.block]
    strided = arch.downsample == "stride"
    plan, iterable = _stage_plan(arch, rng)
    stem = _conv_unit("in_shape[1]", str(arch.stem_width), arch.stem_kernel, arch.norm, s.act) + \
        (["nn.MaxPool2d(2)"] if arch.stem_pool else [])
    init = plan + [f"self.stem = {_sequential(stem, '')}", f"{c} = {arch.stem_width}"]
    extra: list[str] = []
    if rng.random() < 0.5:  # blocks appended in a double loop
        init.append("blocks = []")
        init.append(f"for i, (width, depth) in enumerate({iterable}):")
        if strided:
            init += ["    for j in range(depth):",
                     f"        blocks.append({name}({c}, width, 2 if i > 0 and j == 0 else 1))"]
        else:
            init += ["    if i > 0:", f"        blocks.append({_pool(arch)})", "    for _ in range(depth):",
                     f"        blocks.append({name}({c}, width))"]
        init += [f"        {c} = width", f"self.{s.features} = nn.Sequential(*blocks)"]
    else:  # a _make_stage method per stage
        init.append("modules = []")
        init.append(f"for i, (width, depth) in enumerate({iterable}):")
        if strided:
            init.append(f"    modules.append(self._make_stage({c}, width, depth, 1 if i == 0 else 2))")
            method = ["def _make_stage(self, in_channels, out_channels, depth, stride):",
                      f"    layers = [{name}(in_channels, out_channels, stride)]"]
        else:
            init += ["    if i > 0:", f"        modules.append({_pool(arch)})",
                     f"    modules.append(self._make_stage({c}, width, depth))"]
            method = ["def _make_stage(self, in_channels, out_channels, depth):",
                      f"    layers = [{name}(in_channels, out_channels)]"]
        method += ["    for _ in range(depth - 1):", f"        layers.append({name}(out_channels, out_channels))",
                   "    return nn.Sequential(*layers)"]
        init += [f"    {c} = width", f"self.{s.features} = nn.Sequential(*modules)"]
        extra.append("\n".join(method))
    init.append(f"self.{s.head} = {_sequential(_head_modules(arch, s, c), '')}")
    forward = ["x = self.stem(x)", f"x = self.{s.features}(x)", f"return self.{s.head}(x)"]
    code = _Code()
    _header(code, functional=False)
    code.add(_block_class(arch, s).rstrip())
    code.add()
    code.add()
    _net_class(code, s, init, forward, extra)
    return code.text()


def _helper(arch: Architecture, s: _Surface, rng: random.Random) -> str:
    c, norm, act = s.channels, arch.norm, s.act
    code = _Code()
    _header(code, functional=False)
    code.add("def conv_bn(in_channels, out_channels, kernel_size=3, stride=1):")
    conv = ("nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2"
            + (", bias=False)" if norm else ")"))
    code.add(f"return {_sequential([conv] + (['nn.BatchNorm2d(out_channels)'] if norm else []) + [act], '')}", 1)
    code.add()
    code.add()
    helper = "conv_bn"
    if arch.block == "separable":
        helper = "sep_conv"
        depthwise = ("nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=kernel_size // 2, "
                     "groups=in_channels" + (", bias=False)" if norm else ")"))
        modules = [depthwise] + (["nn.BatchNorm2d(in_channels)"] if norm else []) + [act] + \
            [_conv("in_channels", "out_channels", 1, norm)] + (["nn.BatchNorm2d(out_channels)"] if norm else []) + [act]
        code.add("def sep_conv(in_channels, out_channels, kernel_size=3, stride=1):")
        code.add(f"return {_sequential(modules, '')}", 1)
        code.add()
        code.add()
    plan = [(stage.width, 2 if i > 0 and j == 0 else 1)
            for i, stage in enumerate(arch.stages) for j in range(stage.depth)]
    kernel = f", {arch.kernel}" if arch.kernel != 3 else ""
    init = [f"plan = [{', '.join(f'({w}, {st})' for w, st in plan)}]",
            *_stem_lines(arch, s, f"conv_bn(in_shape[1], {c}"
                         + (f", {arch.stem_kernel})" if arch.stem_kernel != 3 else ")")),
            "for width, stride in plan:",
            f"    layers.append({helper}({c}, width{kernel}, stride=stride))" if kernel else
            f"    layers.append({helper}({c}, width, stride=stride))",
            f"    {c} = width",
            f"self.{s.features} = nn.Sequential(*layers)",
            f"self.{s.head} = {_sequential(_head_modules(arch, s, c), '')}"]
    _net_class(code, s, init, _forward_features_head(s))
    return code.text()


def _modulelist(arch: Architecture, s: _Surface, rng: random.Random) -> str:
    c, k, norm = s.channels, arch.kernel, arch.norm
    widths = [arch.stem_width] + [st.width for st in arch.stages for _ in range(st.depth)]
    pools, index = ([0] if arch.stem_pool else []), 0
    for i, stage in enumerate(arch.stages):
        if i:
            pools.append(index)
        index += stage.depth
    pool_fn = "F.max_pool2d" if arch.downsample == "max" else "F.avg_pool2d"
    act = _ACTIVATION_FUNCTIONS[arch.activation]
    init = [f"self.widths = ({', '.join(map(str, widths))})",
            f"self.pool_after = ({', '.join(map(str, pools))}{',' if len(pools) == 1 else ''})",
            "self.convs = nn.ModuleList()"] + (["self.norms = nn.ModuleList()"] if norm else []) + [
            f"{c} = in_shape[1]",
            "for width in self.widths:",
            f"    self.convs.append({_conv(c, 'width', k, norm)})"] + (
            ["    self.norms.append(nn.BatchNorm2d(width))"] if norm else []) + [f"    {c} = width"]
    if arch.head == "mlp":
        init += [f"self.fc1 = nn.Linear({c}, {arch.hidden})", f"self.fc2 = nn.Linear({arch.hidden}, out_shape[0])"]
    else:
        init.append(f"self.fc = nn.Linear({c}{' * 4' if arch.head == 'pool2' else ''}, out_shape[0])")
    if arch.dropout:
        init.append(f"self.dropout = nn.Dropout({s.dropout})")
    layer = "self.norms[i](conv(x))" if norm else "conv(x)"
    forward = ["for i, conv in enumerate(self.convs):",
               f"    x = {act.format(layer)}",
               "    if i in self.pool_after:",
               f"        x = {pool_fn}(x, 2)",
               f"x = F.adaptive_avg_pool2d(x, {2 if arch.head == 'pool2' else 1})",
               f"x = {s.flatten}"]
    if arch.head == "mlp":
        forward += [f"x = {act.format('self.fc1(x)')}", "x = self.dropout(x)", "return self.fc2(x)"]
    else:
        forward += (["x = self.dropout(x)"] if arch.dropout else []) + ["return self.fc(x)"]
    code = _Code()
    _header(code, functional=True)
    _net_class(code, s, init, forward)
    return code.text()


_RENDERERS = {"cfg": _cfg, "stages": _stages, "blocks": _blocks, "helper": _helper, "modulelist": _modulelist}


def render(arch: Architecture, style: str, rng: random.Random) -> str:
    """The program text of `arch` in `style`, with surface choices drawn from `rng`."""
    return _RENDERERS[style](arch, _surface(rng, arch), rng)
