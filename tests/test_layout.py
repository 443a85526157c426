"""The layout's rules (docs/layout.md), checked on the source: imports point one way and nothing imports an
entry script; the project never reaches outside its folder."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A package may import its own modules and those of packages of a lower rank only. The class tables
# (eomt.classes, numpy only) sit at the bottom with metrics: every layer names classes.
LEAVES = {"eomt.classes"}
RANKS = {"metrics": 0, "eomt": 1, "segdata": 2, "training": 3, "dump": 3, "viewer": 4, "predict_dump": 5,
         "gradio_app": 5}
PRODUCT = [path for name in RANKS for path in (sorted((ROOT / name).rglob("*.py")) or [ROOT / f"{name}.py"])]


def _imports(path: Path) -> set[str]:
    """The top-level packages `path` imports, leaving out the LEAVES modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in LEAVES else node.module
                           for alias in node.names)
    return {module.split(".")[0] for module in modules - LEAVES}


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def test_imports_point_one_way_and_never_into_an_entry_script():
    wrong = []
    for path in PRODUCT:
        own = _package(path)
        for name in _imports(path) & set(RANKS):
            if name != own and RANKS[name] >= RANKS[own]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_benchmarks_and_builders_do_not_import_the_tests():
    for path in [*sorted((ROOT / "bench").glob("*.py")), *sorted((ROOT / "synthetic").glob("*.py"))]:
        assert "tests" not in _imports(path), path


def test_nothing_reads_outside_the_repository():
    for path in ROOT.rglob("*"):
        if path.suffix in (".py", ".md", ".js", ".toml") and ".venv" not in path.parts and path.is_file():
            assert "../shared" not in path.read_text(errors="ignore") or path.name == "test_layout.py", path
