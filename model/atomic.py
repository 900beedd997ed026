"""The one way lmforge writes an output file: to a temporary name unique to the writer (process
id and a random part) in the target folder, then renamed over the target, optionally synced to
disk first. A reader sees the old file or the new one, never half of one, and two writers on a
shared folder (the nodes of a multi-node run, two Dask workers) never share a temporary name.

It lives in ``model/``, the lowest layer, only so that every layer can use it (imports point
down); it has nothing to do with models.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (hidden, unique to this writer)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def commit(tmp: Path, path: Path, *, fsync: bool = False) -> Path:
    """Rename a finished temporary file (or folder) over ``path``. A folder replacing a
    folder: the old one is renamed aside first and removed after (a rename cannot replace a
    non-empty folder), so ``path`` is never a mix of both."""
    if fsync and tmp.is_file():
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
    old = None
    if tmp.is_dir() and path.is_dir():
        old = temporary_path(path)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    if fsync:
        _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every filesystem lets a folder be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; renamed on success, removed on error.

    >>> with atomic_path(out / "model.pt") as tmp:
    ...     torch.save(state, tmp)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    commit(tmp, path, fsync=fsync)


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str, *, fsync: bool = False, encoding: str = "utf-8") -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_json(path: Path, value: Any, *, fsync: bool = False, **dumps: Any) -> Path:
    return write_text(path, json.dumps(value, **dumps), fsync=fsync)
