"""dvc.yaml and the code -> each stage's declared deps checked against the modules its code imports; every imported name exists."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def imported_names(source: Path) -> set[str]:
    """Every module name an import statement in the file could mean, including imports inside functions."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}  # `from pipeline import io`
    return names


def import_closure(module: str, root: Path = ROOT) -> set[str]:
    """The project files (relative paths) that importing the module loads: its own, its packages' __init__, and theirs."""
    found, pending = set(), [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for candidate in (Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")):
            if (root / candidate).is_file() and candidate.as_posix() not in found:
                found.add(candidate.as_posix())
                pending += [*imported_names(root / candidate), *(".".join(parts[:i]) for i in range(1, len(parts)))]
    return found


def undeclared(stage: dict, root: Path = ROOT) -> set[str]:
    """The files the stage's command imports that none of its deps (a file or a folder) covers."""
    module = stage["cmd"].split()[2]  # "python -m pipeline.<stage> ..."
    deps = [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]
    return {f for f in import_closure(module, root) if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)}


def missing_names(source: Path) -> list[str]:
    """`from pipeline.x import y` lines, in functions too, whose y is neither defined in pipeline.x nor a module."""
    missing = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in ("pipeline", "serve"):
            module = importlib.import_module(node.module)
            missing += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
            ]
    return missing


PROJECT_CODE = sorted(p.relative_to(ROOT).as_posix() for folder in ("pipeline", "serve", "benchmarks", "tests") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("source", PROJECT_CODE)
def test_every_name_imported_from_the_project_exists(source):
    """A name moved to another module breaks a stage only when dvc runs it, 10 minutes into the slow tier: find it here."""
    assert not missing_names(ROOT / source)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_declares_every_module_it_imports(name):
    assert STAGES[name]["cmd"].startswith("python -m pipeline."), STAGES[name]["cmd"]
    assert not undeclared(STAGES[name]), f"dvc.yaml: stage {name} imports files its deps do not list"


def test_a_missing_module_is_found_even_when_imported_inside_a_function(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline/__init__.py").write_text("")
    (tmp_path / "pipeline/stage.py").write_text("from pipeline import helper\n")
    (tmp_path / "pipeline/helper.py").write_text("def later():\n    from pipeline.deep import x\n")
    (tmp_path / "pipeline/deep.py").write_text("x = 1\n")
    stage = {"cmd": "python -m pipeline.stage", "deps": ["pipeline/__init__.py", "pipeline/stage.py", "pipeline/helper.py"]}
    assert undeclared(stage, tmp_path) == {"pipeline/deep.py"}
    assert undeclared({**stage, "deps": ["pipeline"]}, tmp_path) == set()


def test_editing_the_model_card_code_reruns_no_backbone():
    """The register stage, the model card and the packaging are in no stage's deps but register's (which hashes the whole folder)."""
    for name in ("embed", "train", "evaluate"):
        for code in ("pipeline/stages/register.py", "pipeline/model_card.py", "pipeline/packaging.py", "pipeline"):
            assert code not in STAGES[name]["deps"], (name, code)
