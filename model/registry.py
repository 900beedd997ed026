"""Discovery of the records that extension points register (fine-tuning methods, compression
methods, source kinds): every module of a package that defines ``METHOD``/``SOURCE`` (or a
tuple ``METHODS``) contributes its records, keyed by their ``kind``."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Record(Protocol):
    kind: str


R = TypeVar("R", bound=Record)


def discover(package: str, path: Iterable[str], record: type[R], what: str,
             names: tuple[str, ...] = ("METHOD", "METHODS")) -> dict[str, R]:
    """``{kind: record}`` over the package's modules, sorted by kind; a kind registered twice
    is an error naming ``what`` it is."""
    found: dict[str, R] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for name in names:
            value = getattr(module, name, None)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, record):
                    if item.kind in found:
                        raise ValueError(f"{what} {item.kind!r} is registered twice")
                    found[item.kind] = item
    return dict(sorted(found.items()))
