"""The conventions of ../shared/STYLE.md that a machine can check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_clean() -> None:
    done = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout


# Layers, top down: a package may import the packages listed for it and nothing else of lmforge.
# (import-linter cannot read packages mapped into a namespace from other folders: grimp takes
# top-level packages only; the imports are parsed here as the cache keys parse them, lazy
# imports included.)
LAYERS = {"flows": {"tasks", "infra", "model"}, "tasks": {"model"}, "infra": {"model"},
          "model": set()}


def test_imports_point_down() -> None:
    from lmforge.tasks.codeversion import _parsed

    upward = []
    for package, allowed in LAYERS.items():
        for path in (ROOT / package).rglob("*.py"):
            if "sample" in path.relative_to(ROOT).parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("lmforge", *(parts[:-1] if parts[-1] == "__init__" else parts)))
            upward += [f"{name} -> {m}" for m in _parsed(name)[1]
                       if (target := m.split(".")[1]) != package and target not in allowed]
    assert upward == []


def test_every_package_folder_is_installed() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(("lmforge", *p.parent.relative_to(ROOT).parts))
               for pkg in LAYERS for p in (ROOT / pkg).rglob("__init__.py")
               if "sample" not in p.relative_to(ROOT).parts}
    assert folders | {"lmforge"} == set(setuptools["packages"])
    assert {f"lmforge.{pkg}": pkg for pkg in LAYERS}.items() <= setuptools["package-dir"].items()


def test_modules_stay_under_400_lines() -> None:
    too_long = [f"{p.relative_to(ROOT)}: {n}" for pkg in ("flows", "tasks", "model", "infra")
                for p in (ROOT / pkg).rglob("*.py") if "sample" not in p.relative_to(ROOT).parts
                if (n := len(p.read_text().splitlines())) > 400 and p.name != "make_sample.py"]
    assert too_long == []


def test_no_module_shadows_the_standard_library() -> None:
    """Folders whose files run as entrypoints land on sys.path (a deployment's worker adds
    flows/, `python benchmarks/x.py` adds benchmarks/): a flows/tokenize.py there replaces
    the stdlib `tokenize` and breaks every process spawned from it."""
    import sys

    clashes = [str(p.relative_to(ROOT)) for folder in ("flows", "benchmarks")
               for p in (ROOT / folder).glob("*.py") if p.stem in sys.stdlib_module_names]
    assert clashes == []


def test_tasks_are_plain_functions_and_task_names_unique() -> None:
    """Prefect lives in flows/: no module of tasks/ imports it at module level (a lazy import
    for a feature, such as a Prefect Secret block, is allowed), and every @task has its own
    name."""
    import ast
    import re

    top_level = []
    for path in (ROOT / "tasks").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "prefect" for n in names):
                top_level.append(str(path.relative_to(ROOT)))
    assert top_level == []
    names = [m for p in (ROOT / "flows").rglob("*.py")
             for m in re.findall(r'@task\(name="([^"]+)"', p.read_text())]
    assert names and len(names) == len(set(names)), names
