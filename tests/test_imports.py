"""Imports run one way: cli -> services -> training (export beside it) -> models -> data, metrics -> config.

Every ``import`` of every module is walked, those inside functions included, so a lazy import
cannot hide a dependency that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sam2tool"

#: Layer of each top-level part of the package; a module imports only from its own part or lower layers.
LAYERS = {
    "__main__": 8,
    "cli": 7,
    "services": 6,
    "training": 5,
    "export": 5,
    "models": 4,
    "data": 3,
    "metrics": 3,
    "config": 2,
    # Shared by all: writing files atomically; the version and the exceptions a user can cause.
    "atomic": 1,
    "__init__": 0,
    "errors": 0,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(name: str, source: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every sam2tool import in the module ``name``, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from sam2tool.x import y`` may import the module sam2tool.x.y
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if module_file(sub) is not None else target))
    return [(line, module) for line, module in found if module == "sam2tool" or module.startswith("sam2tool.")]


def module_file(module: str) -> Path | None:
    relative = Path(*module.split("."))
    for candidate in (PACKAGE.parent / relative.with_suffix(".py"), PACKAGE.parent / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (``sam2tool`` itself is ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(path: Path, code: str | None = None) -> list[str]:
    """Why each import of ``path`` (or of ``code`` as if it were there) that runs back up is not allowed."""
    source = module_name(path)
    code = path.read_text(encoding="utf-8") if code is None else code
    problems = []
    for line, target in imported_modules(source, code, path.name == "__init__.py"):
        here, there = part(source), part(target)
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        if here not in LAYERS or there not in LAYERS:
            problems.append(f"{where}: add {here!r} or {there!r} to LAYERS")
        elif here == "services" and there == "services" and target != source:
            problems.append(f"{where}: services do not import each other; move the shared piece down a layer")
        elif here != there and LAYERS[there] >= LAYERS[here]:
            problems.append(f"{where}: {here} (layer {LAYERS[here]}) may not import {there} (layer {LAYERS[there]})")
    return problems


def test_imports_run_one_way() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    problems = [problem for path in modules for problem in upward_imports(path)]
    assert not problems, "imports that run back up:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        (
            "metrics/fake.py",
            "def f():\n    from sam2tool.data.layout import natural_key\n",
            "metrics (layer 3) may not import data",
        ),
        ("config/fake.py", "from sam2tool.models import build\n", "config (layer 2) may not import models"),
        ("services/fake.py", "from sam2tool.services.evaluate import score_folders\n", "do not import each other"),
        ("training/fake.py", "from ..export import weights\n", "training (layer 5) may not import export"),
        ("models/fake.py", "import sam2tool.training.loss\n", "models (layer 4) may not import training"),
    ],
)
def test_the_walk_finds_an_upward_import(module: str, code: str, expected: str) -> None:
    """The check itself: an upward import in a function, a relative one, or between services is found."""
    problems = upward_imports(PACKAGE / module, code)
    assert len(problems) == 1 and expected in problems[0], problems
