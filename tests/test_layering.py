"""The packages' floors (docs/layout.md): every import, function-local ones included, runs
down or sideways, never up, so no two top-level packages import each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ["core", "hw", "gen", "sim", "export", "asqgen"]       # lowest first


def imports(path):
    """The top-level package of every absolute import in ``path``, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def arrows_up(root=ROOT):
    for floor, package in enumerate(FLOORS):
        for path in sorted((root / package).rglob("*.py")):
            for target, line in imports(path):
                if target in FLOORS and FLOORS.index(target) > floor:
                    yield f"{path.relative_to(root)}:{line} imports {target}"


def test_every_package_has_its_floor():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(FLOORS)


def test_no_import_runs_up_the_floors():
    assert list(arrows_up()) == []


def test_the_check_sees_function_local_imports(tmp_path):
    """A module of ``core`` that imports ``sim`` inside a function is caught; ``hw`` importing
    ``core`` is not."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text("def f():\n    from sim import report\n")
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / "good.py").write_text("import core.numerics\nfrom . import pe\n")
    assert list(arrows_up(tmp_path)) == ["core/bad.py:2 imports sim"]
