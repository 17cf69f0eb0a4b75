"""The two pillars stay independent: imports point down only (docs/architecture.md).

Scans every module's import statements (including lazy imports inside functions) with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "albumen"

# package -> albumen subpackages it must never import
FORBIDDEN = {
    "library": ("vision", "search", "people", "places", "llm", "cli"),
    "llm": ("library", "vision", "search", "people", "places", "cli"),
    "vision": ("search", "cli", "llm"),
    "people": ("search", "cli", "llm"),
}


def _imported_albumen_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("albumen"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("albumen"):
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_down_only(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found under {SRC / package}"
    violations = []
    for path in files:
        for module in _imported_albumen_modules(path):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                violations.append(f"{path.relative_to(SRC)} imports {module}")
    assert not violations, "layering broken:\n" + "\n".join(violations)
