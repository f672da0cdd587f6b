"""Imports flow one way: core <- components <- config <- run <- predict/cascade/engines <- testing <- bench <- cli.

Every ``import`` in the package counts, including those inside functions (they run too); only
imports under ``if TYPE_CHECKING:`` (annotations) are ignored. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import thrifty

SRC = Path(thrifty.__file__).parent
LAYERS = {  # top-level module or package -> rank; a module may import only modules of its rank or below
    "errors": 0, "fileio": 0, "paths": 0, "task": 0, "corpus": 0, "stopping": 0, "runlock": 0, "registry": 0,
    "teachers": 1, "features": 1, "students": 1, "strategies": 1, "synthesis": 1, "calibration": 1,
    "config": 2,
    "loop": 3, "run": 3,
    "predict": 4, "cascade": 4, "engines": 4, "labelling": 4, "report": 4, "audit": 4, "export": 4,
    "serve": 4,
    "testing": 5,  # the simulated OpenAI server: for tests, the bench and `thrifty serve-sim` only
    "bench": 6,
    "cli": 7, "__main__": 7, "__init__": 7,
}
NAMES = {0: "core", 1: "components", 2: "config", 3: "run", 4: "predict/cascade/engines/labelling/report/audit/export/serve",
         5: "testing", 6: "bench", 7: "cli"}


def _top(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level thrifty module) for every runtime import of a thrifty module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for b in node.body for n in ast.walk(b)}
    pkg = path.relative_to(SRC).with_suffix("").parts
    pkg = pkg[:-1] if pkg[-1] != "__init__" else pkg[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(pkg[: len(pkg) - node.level + 1]) + (node.module.split(".") if node.module else [])
                if not base:  # "from . import x" at the top level
                    base = [a.name for a in node.names]
                found.append((node.lineno, base[0]))
            elif node.module and node.module.split(".")[0] == "thrifty":
                parts = node.module.split(".")
                found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "thrifty":
                    found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return found


def test_every_module_has_a_layer():
    tops = {_top(p) for p in SRC.rglob("*.py")}
    assert tops <= set(LAYERS), f"place these in LAYERS (and docs/architecture.md): {sorted(tops - set(LAYERS))}"


def test_imports_flow_one_way():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        me = _top(path)
        for line, other in _imports(path):
            if other in LAYERS and LAYERS[other] > LAYERS[me]:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({NAMES[LAYERS[me]]}) imports {other} "
                             f"({NAMES[LAYERS[other]]})")
    assert not wrong, "\n".join(wrong)
