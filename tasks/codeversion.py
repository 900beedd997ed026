"""Cache keys that follow the code: the version of a stage is a hash of the code it runs.

:func:`code_version` hashes the given lmforge modules and every lmforge module they import,
transitively (found by parsing their imports, not by importing them), together with the
installed versions of the third-party distributions named. A module is hashed by its syntax
tree without docstrings, so editing a comment or a docstring changes nothing, and any change
of what the code does changes the key of exactly the stages that run it: a rerun recomputes
those and reuses the rest.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path

PACKAGES = ("lmforge.tasks", "lmforge.model", "lmforge.flows", "lmforge.infra")


@cache
def _package_root(top: str) -> Path | None:
    spec = importlib.util.find_spec(top) if top in PACKAGES else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_of(name: str) -> str:
    return ".".join(name.split(".")[:2])


def _module_file(name: str) -> Path | None:
    """The source file of an lmforge module, found on disk without importing it."""
    top, rest = _package_of(name), name.split(".")[2:]
    root = _package_root(top)
    if root is None:
        return None
    base = root.joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py") if rest else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _parsed(name: str) -> tuple[str, tuple[str, ...]]:
    """(digest of the module's code, lmforge modules it imports); re-read when the file
    changes on disk (a long-lived worker sees edits)."""
    path = _module_file(name)
    if path is None:
        return "", ()
    stat = path.stat()
    return _parse(name, str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _parse(name: str, path: str, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    del mtime_ns, size  # cache key only
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    imports: set[str] = set()
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            imports.add(base)
            imports.update(f"{base}.{a.name}" for a in node.names)  # submodules imported
    ours = tuple(sorted(i for i in imports if _package_of(i) in PACKAGES
                        and _module_file(i) is not None))
    digest = hashlib.sha256(ast.dump(_without_docstrings(tree)).encode()).hexdigest()
    return digest, ours


def module_closure(modules: Sequence[str]) -> list[str]:
    """The modules and every lmforge module they import, transitively, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(_parsed(name)[1])
        parent = name.rpartition(".")[0]
        if parent:  # importing a.b.c runs a/b/__init__.py first
            todo.append(parent)
    return sorted(seen)


def _version(modules: tuple[str, ...], distributions: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in module_closure(modules):
        digest.update(f"{name}:{_parsed(name)[0]}\n".encode())
    for dist in sorted(distributions):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{dist}=={version}\n".encode())
    return digest.hexdigest()[:16]


def code_version(modules: Sequence[str], distributions: Sequence[str] = ()) -> str:
    """A short hash of the code of ``modules`` (with what they import from lmforge) and of the
    installed versions of ``distributions``."""
    missing = [m for m in modules if _module_file(m) is None]
    if missing:
        raise ValueError(f"code_version: no such lmforge module(s): {missing}")
    return _version(tuple(sorted(modules)), tuple(distributions))
