"""DESIGN §2: core imports no module; modules never import each other; relative imports inside a module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TOP_LEVEL_ONLY = ("ioc.modules", "ioc.app", "ioc.cli", "ioc.web", "ioc.api", "ioc.demo", "ioc.models")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, was relative) for every import in ``path``."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str, bool]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                found.append((node.lineno, target, True))
            elif node.module:
                found.append((node.lineno, node.module, False))
    return found


def violations(root: Path) -> list[str]:
    """Every import that breaks the rules, as 'file:line: reason'."""
    problems: list[str] = []
    for path in sorted((root / "ioc").rglob("*.py")):
        name = _module_name(path, root)
        where = path.relative_to(root)
        for line, target, relative in imports_of(path, root):
            if name.startswith("ioc.core") and target.startswith(TOP_LEVEL_ONLY):
                problems.append(f"{where}:{line}: core imports {target}")
            if name.startswith("ioc.modules."):
                own = ".".join(name.split(".")[:3])
                if target.startswith("ioc.modules.") and not target.startswith(own + ".") and target != own:
                    problems.append(f"{where}:{line}: module {own} imports another module, {target}")
                elif target.startswith(own) and not relative:
                    problems.append(f"{where}:{line}: use a relative import inside {own}, not {target}")
                elif target.startswith(TOP_LEVEL_ONLY) and not target.startswith("ioc.modules"):
                    problems.append(f"{where}:{line}: module {own} imports {target}")
    return problems


def test_the_source_tree_keeps_the_import_rules() -> None:
    assert violations(SRC) == []


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    _write(tmp_path, "ioc/__init__.py", "")
    _write(tmp_path, "ioc/core/__init__.py", "")
    _write(tmp_path, "ioc/core/bad.py", "from ioc.modules.reports import service\n")
    _write(tmp_path, "ioc/core/worse.py", "import ioc.web.routes\n")
    _write(tmp_path, "ioc/modules/__init__.py", "")
    _write(tmp_path, "ioc/modules/reports/__init__.py", "")
    _write(tmp_path, "ioc/modules/reports/service.py", "from ..environment import rules\nfrom . import models\n")
    _write(tmp_path, "ioc/modules/reports/api.py", "from ioc.modules.reports import service\nfrom ioc.core import db\n")
    _write(tmp_path, "ioc/modules/environment/__init__.py", "from ioc.app import create_app\n")
    found = violations(tmp_path)
    assert any("core/bad.py:1: core imports ioc.modules.reports" in v for v in found)
    assert any("core/worse.py:1: core imports ioc.web.routes" in v for v in found)
    assert any("reports/service.py:1: module ioc.modules.reports imports another module" in v for v in found)
    assert any("reports/api.py:1: use a relative import" in v for v in found)
    assert any("environment/__init__.py:1: module ioc.modules.environment imports ioc.app" in v for v in found)
    assert len(found) == 5  # `from . import models` and `from ioc.core import db` are fine
