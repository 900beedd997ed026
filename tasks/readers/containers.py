"""The files of a source tree, an archive or a git repository, read without extracting
anything to disk.

Every container yields :class:`Entry` objects in a deterministic order. Nothing is ever
written out, and names are checked anyway: absolute paths and ``..`` components are refused
(path traversal), links are never followed (symlink escape), and reads are capped per member
and per archive, with a compression-ratio check on zip members (decompression bombs).
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import fsspec

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
MAX_ZIP_RATIO = 200  # uncompressed/compressed beyond this (for members over 1 MiB) is a bomb


class ArchiveLimit(Exception):
    """The archive holds more (uncompressed) data than allowed."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, "/"-separated
    kind: Literal["file", "link", "unsafe", "other", "bomb"]
    size: int
    read: Callable[[int], bytes]  # read(at most n bytes)


def safe_path(name: str) -> str | None:
    """The normalised relative path, or None if it would escape the container."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def container_kind(fs: fsspec.AbstractFileSystem, path: str) -> str:
    if fs.isdir(path):
        if fs.exists(posixpath.join(path, ".git")):
            return "git"
        if fs.exists(posixpath.join(path, "HEAD")) and fs.exists(posixpath.join(path, "objects")):
            return "git"  # a bare repository
        return "tree"
    if path.lower().endswith(ARCHIVE_SUFFIXES):
        return "archive"
    return "file"


def tree_entries(fs: fsspec.AbstractFileSystem, root: str) -> Iterator[Entry]:
    """Files of a folder tree, sorted; one listing (with sizes) for the whole tree."""
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    listing = fs.find(root, detail=True)
    for path in sorted(listing):
        rel = posixpath.relpath(path, root)
        if rel.split("/", 1)[0] == ".git":
            continue
        if local and os.path.islink(path):
            yield Entry(rel, "link", 0, lambda n: b"")
            continue

        def read(n: int, path: str = path) -> bytes:
            with fs.open(path, "rb") as fh:
                return fh.read(n)

        yield Entry(rel, "file", int(listing[path].get("size") or 0), read)


def tar_entries(fh: object, max_total: int) -> Iterator[Entry]:
    total = 0
    with tarfile.open(fileobj=fh, mode="r|*") as archive:  # type: ignore[call-overload]
        for member in archive:
            rel = safe_path(member.name)
            if rel is None:
                yield Entry(member.name, "unsafe", member.size, lambda n: b"")
                continue
            if member.issym() or member.islnk():
                yield Entry(rel, "link", 0, lambda n: b"")
                continue
            if not member.isfile():
                continue
            total += member.size
            if total > max_total:
                raise ArchiveLimit(f"more than {max_total} bytes uncompressed")
            data = archive.extractfile(member)

            def read(n: int, data: object = data) -> bytes:
                return data.read(n) if data is not None else b""  # type: ignore[attr-defined]

            yield Entry(rel, "file", member.size, read)


def zip_entries(fh: object, max_total: int) -> Iterator[Entry]:
    total = 0
    with zipfile.ZipFile(fh) as archive:  # type: ignore[arg-type]
        for info in archive.infolist():
            rel = safe_path(info.filename)
            if info.is_dir():
                continue
            if rel is None:
                yield Entry(info.filename, "unsafe", info.file_size, lambda n: b"")
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink member
                yield Entry(rel, "link", 0, lambda n: b"")
                continue
            if info.file_size > 1 << 20 and info.file_size > MAX_ZIP_RATIO * max(
                    1, info.compress_size):
                yield Entry(rel, "bomb", info.file_size, lambda n: b"")
                continue
            total += info.file_size
            if total > max_total:
                raise ArchiveLimit(f"more than {max_total} bytes uncompressed")

            def read(n: int, info: zipfile.ZipInfo = info) -> bytes:
                with archive.open(info) as member:
                    return member.read(n)

            yield Entry(rel, "file", info.file_size, read)


def archive_entries(path: str, max_total: int) -> Iterator[Entry]:
    with fsspec.open(path, "rb") as fh:
        if path.lower().endswith(".zip"):
            yield from zip_entries(fh, max_total)
        else:
            yield from tar_entries(fh, max_total)


def git_entries(repo: str) -> Iterator[Entry]:
    """Files committed at HEAD of a (bare or normal) local repository, via the git CLI."""
    git = ["git", "-c", "safe.directory=*", "--git-dir", _git_dir(repo)]
    listing = subprocess.run([*git, "ls-tree", "-r", "-l", "-z", "HEAD"], capture_output=True,
                             check=True).stdout
    rows = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, name = item.split(b"\t", 1)
        mode, kind, sha, size = meta.split()
        rows.append((name.decode("utf-8", "replace"), mode, kind, sha, size))
    with subprocess.Popen([*git, "cat-file", "--batch"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as cat:
        for name, mode, kind, sha, size in sorted(rows):
            if kind != b"blob":
                continue  # submodules
            if mode == b"120000":
                yield Entry(name, "link", 0, lambda n: b"")
                continue
            yield Entry(name, "file", int(size), _blob_reader(cat, sha))
        if cat.stdin is not None:
            cat.stdin.close()


def _blob_reader(cat: subprocess.Popen[bytes], sha: bytes) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        assert cat.stdin is not None and cat.stdout is not None
        cat.stdin.write(sha + b"\n")
        cat.stdin.flush()
        header = cat.stdout.readline().split()
        size = int(header[2])
        data = cat.stdout.read(size)
        cat.stdout.read(1)  # the newline after the object
        return data[:n]
    return read


def _git_dir(repo: str) -> str:
    dot_git = os.path.join(repo, ".git")
    return dot_git if os.path.exists(dot_git) else repo
