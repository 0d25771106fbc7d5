"""Static import facts about ragkit's modules, for the architecture tests (no module is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ragkit"


def module_path(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Every `ragkit...` module `module` imports, anywhere in its code, except under
    `if TYPE_CHECKING:` (those are for static typing only and never run)."""
    tree = ast.parse(module_path(module).read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                for stmt in child.orelse:
                    visit(stmt)
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("ragkit"):
                    found.add(child.module)
                    for alias in child.names:  # `from ragkit.loaders import csv` imports ragkit.loaders.csv
                        if module_path(f"{child.module}.{alias.name}").exists():
                            found.add(f"{child.module}.{alias.name}")
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("ragkit"))
            visit(child)

    visit(tree)
    return found


def all_modules() -> list[str]:
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
    )
