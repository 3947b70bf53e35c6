"""The API contract, checked on the source text alone (AST, nothing executed) before any
container starts: one strict-UTF-8 module (no other coding declaration) under a size cap, a
module-level `supported_hyperparameters()`,
and `class Net(nn.Module)` with `__init__(self, in_shape, out_shape, prm, device)`, `forward`,
`train_setup` and `learn`. Very large literals are refused: they are how a program would smuggle
a label table for a public test set."""

from __future__ import annotations

import ast
import codecs
import io
import tokenize
from dataclasses import dataclass

from contracts.source import SourceProblem, parse_source

REQUIRED_METHODS = ("__init__", "forward", "train_setup", "learn")
INIT_ARGS = ("self", "in_shape", "out_shape", "prm", "device")
MAX_LITERAL_CHARS = 16_384
MAX_LITERAL_ITEMS = 1_000


@dataclass(frozen=True)
class ContractViolation:
    kind: str  # "syntax" or "contract"
    message: str


def check_contract(source: bytes, max_bytes: int) -> ContractViolation | None:
    """None if `source` may be run, else why not."""
    if len(source) > max_bytes:
        return ContractViolation("contract", f"source is {len(source):,} bytes, over the {max_bytes:,}-byte cap")
    try:
        text = source.decode("utf-8-sig")  # a byte-order mark is UTF-8's, and Python's, own marker
    except UnicodeDecodeError as exc:
        return ContractViolation("syntax", f"source is not UTF-8: {exc}")
    # What the container compiles is these bytes: Python would honour a PEP 263 coding cookie, so any
    # other declared encoding would make it run text this check never saw.
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError as exc:
        return ContractViolation("contract", f"unusable coding declaration: {exc}")
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        return ContractViolation("contract", f"the source declares coding {encoding!r}: only UTF-8 is allowed")
    tree = parse_source(text, filename="candidate.py")
    if isinstance(tree, SourceProblem):
        return ContractViolation("syntax", str(tree))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            return ContractViolation("contract", f"relative import on line {node.lineno}: a candidate is one module")
        problem = _oversized_literal(node)
        if problem:
            return ContractViolation("contract", problem)

    functions = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if "supported_hyperparameters" not in functions:
        return ContractViolation("contract", "no module-level function supported_hyperparameters()")
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    net = classes.get("Net")
    if net is None:
        return ContractViolation("contract", "no module-level class Net")
    if not net.bases:
        return ContractViolation("contract", "class Net has no base class (expected nn.Module)")

    methods = _methods(net, classes)
    missing = [m for m in REQUIRED_METHODS if m not in methods]
    if missing:
        return ContractViolation("contract", f"class Net lacks {', '.join(missing)}")
    init = methods["__init__"]
    names = [a.arg for a in init.args.posonlyargs + init.args.args]
    if names[:5] != list(INIT_ARGS) and not (init.args.vararg and len(names) <= 5 and names == list(INIT_ARGS[:len(names)])):
        return ContractViolation("contract", f"Net.__init__ takes ({', '.join(names)}), expected ({', '.join(INIT_ARGS)})")
    return None


def _methods(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Methods of `cls`, including those inherited from base classes defined in the same module."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    seen: set[str] = set()
    queue = [cls]
    while queue:
        current = queue.pop(0)
        if current.name in seen:
            continue
        seen.add(current.name)
        for item in current.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(item.name, item)
        queue.extend(classes[b.id] for b in current.bases if isinstance(b, ast.Name) and b.id in classes)
    return found


def _oversized_literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) > MAX_LITERAL_CHARS:
        return f"a {len(node.value):,}-character literal on line {node.lineno} (cap {MAX_LITERAL_CHARS:,})"
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(node.elts) > MAX_LITERAL_ITEMS:
        return f"a {len(node.elts):,}-item literal on line {node.lineno} (cap {MAX_LITERAL_ITEMS:,})"
    if isinstance(node, ast.Dict) and len(node.keys) > MAX_LITERAL_ITEMS:
        return f"a {len(node.keys):,}-item dict literal on line {node.lineno} (cap {MAX_LITERAL_ITEMS:,})"
    return None
