"""The house's floors (docs/architecture.md): a host package imports only packages on floors below
its own, so the import graph has no cycle and nothing reaches up (the reports never stand on the
loop); the container zones (`sandbox/`, `llm/`) and `contracts/` never import the host."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Host packages (and top-level modules) by floor, bottom up; a new package gets a floor here.
FLOORS = {
    "config": 1, "untrusted": 1,
    "data": 2, "store": 2,
    "containers": 3, "report": 3,
    "executors": 4,
    "evaluation": 5,
    "corpus": 6,
    "generator": 7,
    "loop": 8,
    "dashboard": 9,
    "api": 10,
    "commands": 11,
    "cli": 12,
}


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved; lazy ones too)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def _modules(top: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if "migrations" in parts:  # Alembic's revisions import only the schema's libraries
            continue
        found[".".join(parts)] = path
    return found


def _host_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "orchestrator" and len(parts) > 1 else None


def test_every_host_package_has_a_floor() -> None:
    packages = {_host_package(m) for m in _modules("orchestrator")} - {None}
    assert packages <= set(FLOORS), f"give these a floor in FLOORS and docs/architecture.md: {packages - set(FLOORS)}"


def test_host_imports_only_go_down() -> None:
    upward: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in _modules("orchestrator").items():
        source = _host_package(module)
        if source is None:
            continue
        for name in _imports(path, module):
            target = _host_package(name)
            if target is not None and target != source and FLOORS[target] >= FLOORS[source]:
                upward[(source, target)].append(module)
    assert not upward, "imports that reach up or sideways: " + "; ".join(
        f"{s} -> {t} in {sorted(set(m))}" for (s, t), m in sorted(upward.items()))


def test_the_container_zones_never_import_the_host() -> None:
    allowed = {"contracts": {"contracts"}, "sandbox": {"sandbox", "contracts"}, "llm": {"llm", "contracts"}}
    ours = {"orchestrator", "sandbox", "llm", "contracts", "tests", "bench"}
    wrong = []
    for zone, may in allowed.items():
        for module, path in _modules(zone).items():
            for name in _imports(path, module):
                top = name.split(".")[0]
                if top in ours and top not in may:
                    wrong.append(f"{module} imports {name}")
    assert not wrong, wrong


def test_the_reports_do_not_stand_on_the_loop() -> None:
    for module, path in {**_modules("orchestrator/report"), **_modules("orchestrator/dashboard")}.items():
        assert not any(name.startswith("orchestrator.loop") for name in _imports(path, module)), module
