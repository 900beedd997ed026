"""Source code: one document per source file, with language and licence, from trees,
archives and git repositories (``tasks.readers.containers`` reads them safely).

Which files are code to learn from follows GitHub linguist's rules through go-enry (its port,
``enry-python``): ``vendor.yml`` (vendored and minified files), ``documentation.yml`` and
``generated.rb`` (files that say or show they were generated), plus binary and oversized files.
linguist's list has no rule for Python's vendoring folders (pip's ``src/pip/_vendor``,
setuptools' ``_vendor``, botocore's ``vendored``), so :data:`PYTHON_VENDOR` adds them.

The licence of each file is decided in :mod:`tasks.readers.licenses` (SPDX identifier, file
header, nearest licence file, each matched whole against the SPDX licence list); only the
configured licences are kept. Every skip records its evidence in ``rejected/`` ``detail``.
Symlinks, unsafe member names and compression bombs are quarantined, never followed or
extracted.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from typing import Literal

import enry
import fsspec
from pydantic import Field

from tasks.readers.base import (
    InputPartition,
    ReadContext,
    SourceBase,
    SourceSpec,
    Split,
    strides,
)
from tasks.readers.containers import (
    ArchiveLimit,
    Entry,
    archive_entries,
    container_kind,
    git_entries,
    tree_entries,
)
from tasks.readers.licenses import LicenseIndex, file_license, is_license_file
from tasks.schema import Document

LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".jsx": "javascript", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cxx": "cpp",
    ".cs": "csharp", ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php",
    ".scala": "scala", ".kt": "kotlin", ".swift": "swift", ".m": "objective-c",
    ".sh": "shell", ".bash": "shell", ".sql": "sql", ".r": "r", ".jl": "julia",
    ".lua": "lua", ".pl": "perl", ".hs": "haskell", ".ml": "ocaml", ".ex": "elixir",
    ".erl": "erlang", ".clj": "clojure", ".dart": "dart", ".f90": "fortran",
    ".md": "markdown", ".rst": "restructuredtext", ".html": "html", ".css": "css",
    ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
}
# The Stack's permissive licences that occur most (Kocetkov et al. 2022, App. A), plus the
# CPython licence stack (Python-2.0 / Python-2.0.1, the PSF agreement first among them).
PERMISSIVE = ["MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear",
              "ISC", "Unlicense", "CC0-1.0", "0BSD", "Zlib", "PSF-2.0", "Python-2.0",
              "Python-2.0.1", "BSL-1.0", "X11", "HPND", "NCSA", "UPL-1.0", "BlueOak-1.0.0",
              "MIT-CMU", "libpng-2.0", "curl", "WTFPL", "AFL-3.0", "PostgreSQL"]
PYTHON_VENDOR = re.compile(r"(^|/)(_vendor|_vendored|vendored)/")
SkipRule = Literal["vendored", "generated", "documentation"]


class CodeSource(SourceBase):
    """Source trees, archives (.tar.gz, .zip, ...) and git repositories (normal or bare)."""

    kind: Literal["code"]
    licenses: list[str] | None = Field(
        default=PERMISSIVE, description="SPDX ids to keep (an expression must be satisfied by "
        "them: every part of an AND, one branch of an OR); None keeps every licence, unknown "
        "too")
    skip: list[SkipRule] = Field(
        default=["vendored", "generated", "documentation"],
        description="GitHub linguist's file classes to leave out: vendored (vendor.yml and "
        "Python's _vendor folders), generated (generated.rb), documentation "
        "(documentation.yml: docs/, README, CHANGELOG ...)")
    max_file_bytes: int = Field(default=1_000_000, gt=0,
                                description="larger files are skipped (data dumps, bundles)")
    max_archive_bytes: int = Field(default=4 * 1024**3, gt=0,
                                   description="an archive holding more uncompressed bytes is "
                                   "read up to this limit and quarantined (decompression bomb)")
    extensions: list[str] | None = Field(
        default=None, description="file extensions to read; None = every known language")


def splits(url: str, size: int, source: CodeSource) -> list[Split]:
    """Big trees and archives are read by several pieces, each taking every n-th file."""
    return strides(size, source.split_bytes)


def classify(path: str, raw: bytes, source: CodeSource) -> tuple[str, dict[str, str]] | None:
    """(reason, evidence) when a file is not code to learn from, else None."""
    if len(raw) > source.max_file_bytes:
        return "too_large", {"bytes": str(len(raw)), "limit": str(source.max_file_bytes)}
    if b"\0" in raw[:8192] or enry.is_binary(raw[:8192]):
        return "binary", {"rule": "NUL byte or linguist's binary check"}
    vendored = PYTHON_VENDOR.search(path)
    checks = [
        ("vendored", enry.is_vendor(path), "linguist vendor.yml"),
        ("vendored", vendored is not None,
         f"Python vendoring folder {vendored.group(2)}/" if vendored else ""),
        ("documentation", enry.is_documentation(path), "linguist documentation.yml"),
        ("generated", "generated" in source.skip and enry.is_generated(path, raw),
         "linguist generated.rb"),
    ]
    for reason, matched, rule in checks:
        if matched and reason in source.skip:
            return reason, {"rule": rule, "path": path}
    return None


def _entries(path: str, kind: str, source: CodeSource) -> Iterator[Entry]:
    if kind == "archive":
        return archive_entries(path, source.max_archive_bytes)
    if kind == "git":
        return git_entries(fsspec.core.url_to_fs(path)[1])
    fs, root = fsspec.core.url_to_fs(path)
    return tree_entries(fs, root)


def scan_container(path: str, kind: str, source: CodeSource) -> tuple[LicenseIndex, str]:
    """Every licence file of a container, read in one pass over its listing (an archive is
    decompressed once more for it), and the folder that wraps all of an archive's files
    ("project-1.0/"), which linguist's root-anchored rules (``^docs/``) must not see."""
    files, tops = {}, set()
    try:
        for entry in _entries(path, kind, source):
            tops.add(entry.path.split("/", 1)[0] if "/" in entry.path else "")
            if entry.kind == "file" and is_license_file(entry.path) and entry.size < 1 << 20:
                files[entry.path] = entry.read(1 << 20).decode("utf-8", "replace")
    except ArchiveLimit:
        pass  # the licence files before the limit; reading the files reports the limit
    wrapper = f"{next(iter(tops))}/" if kind == "archive" and len(tops) == 1 and "" not in tops \
        else ""
    return LicenseIndex(files), wrapper


def _language(path: str, raw: bytes) -> str:
    ext = posixpath.splitext(path)[1].lower()
    name = enry.get_language(posixpath.basename(path), raw[:65536])
    return name.lower() if name else LANGUAGES[ext]


def _document(entry: Entry, raw: bytes, source: CodeSource, ctx: ReadContext,
              index: LicenseIndex | None, repo: str, wrapper: str = "") -> Document | None:
    if problem := classify(entry.path.removeprefix(wrapper), raw, source):
        ctx.skip(entry.path, problem[0], **problem[1])
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        ctx.bad("code/invalid_utf8", record=entry.path, offset=err.start, detail=str(err))
        return None
    found = file_license(text, entry.path, index)
    if source.licenses is not None and not found.allowed(source.licenses):
        ctx.skip(entry.path, "license", license=found.expression, evidence=found.evidence)
        return None
    return Document.new(
        "code", ctx.location(entry.path), text, title=entry.path,
        meta={"repo": repo, "path": entry.path, "language": _language(entry.path, raw),
              "license": found.primary, "license_expression": found.expression,
              "license_evidence": found.evidence})


_SKIP_KINDS = {"link": "symlink", "unsafe": "unsafe_path", "bomb": "compression_bomb"}


def read_code(part: InputPartition, source: CodeSource, ctx: ReadContext) -> Iterator[Document]:
    fs, root = fsspec.core.url_to_fs(part.path)
    kind = container_kind(fs, root)
    wanted = set(source.extensions or LANGUAGES) & set(LANGUAGES)
    repo = posixpath.basename(root.rstrip("/"))
    try:
        if kind == "file":  # a single source file: its own SPDX line or header only
            entries: Iterator[Entry] = iter([Entry(repo, "file", part.size, _file_reader(
                fs, root))])
            index, wrapper = None, ""
        else:
            index, wrapper = scan_container(part.path, kind, source)
            entries = _entries(part.path, kind, source)
        number = -1
        for entry in entries:
            if posixpath.splitext(entry.path)[1].lower() not in wanted:
                if part.piece == 0:
                    ctx.saw("file of another type")  # not source code: not a record
                continue
            number += 1
            if number % part.pieces != part.piece:
                continue
            if entry.kind != "file":
                ctx.bad(f"code/{_SKIP_KINDS.get(entry.kind, entry.kind)}", record=entry.path)
                continue
            doc = _document(entry, entry.read(source.max_file_bytes + 1), source, ctx,
                            index, repo, wrapper)
            if doc is not None:
                yield doc
    except ArchiveLimit as err:
        ctx.bad("code/archive_limit", detail=str(err))
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError,
            subprocess.CalledProcessError) as err:
        ctx.bad("code/unreadable_container", detail=str(err)[:300])


def _file_reader(fs: fsspec.AbstractFileSystem, path: str) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        with fs.open(path, "rb") as fh:
            return fh.read(n)
    return read


SOURCE = SourceSpec("code", CodeSource, splits, read_code, reads_folders=True, quality={
    "gopher": None, "repetition": None, "language": None, "uppercase_lines_min_letters": None,
    "code": {}})
