"""What every reader shares: source config base, input partitions, and the read context through
which readers report deliberate skips (to ``rejected/``) and unreadable input (to
``quarantine/``).

A reader is a plain generator ``read_<kind>(part, source, ctx) -> Iterator[Document]``. It never
raises on bad input: it reports the bad spot to ``ctx.bad`` and goes on with the next readable
record, so nothing readable before or after it is lost.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import fsspec
from lmforge.tasks.base import RejectSink
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from pydantic import BaseModel, ConfigDict, Field

_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceBase(BaseModel):
    """Fields every source kind has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(
        min_length=1,
        description="fsspec paths, globs or URLs (local, s3://, https://); relative local paths "
        "are resolved against the config file's folder",
    )
    split_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="larger files are read as several partitions of about this many "
        "(compressed) bytes, so one big dump keeps every worker busy")


@dataclass(frozen=True)
class InputPartition:
    """One piece of reading: a file, a byte range or record stride of one, or a code tree."""

    source_index: int
    kind: str
    path: str  # fsspec URL of the file or tree
    rel: str  # path relative to its glob root: the stable part of every document location
    size: int
    fingerprint: str  # changes when the input changes (size + mtime/etag)
    start: int = 0
    end: int | None = None  # byte range end (exclusive); None = to the end
    piece: int = 0  # for record-strided splits: this partition reads records i % pieces == piece
    pieces: int = 1


@dataclass(frozen=True)
class Shard:
    """The unit of parallel work and of output files (``part-{index:05d}``): one big input
    piece, or several small inputs of the same source packed together."""

    index: int
    source_index: int
    kind: str
    parts: tuple[InputPartition, ...]

    @property
    def size(self) -> int:
        return sum(_piece_bytes(p) for p in self.parts)


def _piece_bytes(part: InputPartition) -> int:
    if part.pieces > 1:
        return part.size // part.pieces
    return (part.end if part.end is not None else part.size) - part.start


class QuarantineSink(Protocol):
    def __call__(self, source: str, file: str, reason: str, *, offset: int | None = None,
                 record: str | None = None, detail: str | None = None) -> None: ...


class ReadContext:
    """Counts and side outputs of reading one partition."""

    def __init__(self, part: InputPartition, tally: Tally, reject: RejectSink,
                 quarantine: QuarantineSink,
                 side: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        self.part = part
        self.tally = tally
        self._reject = reject
        self._quarantine = quarantine
        self._side = side
        self.skipped = 0  # records of this partition dropped on purpose
        self.quarantined = 0  # unreadable spots of this partition
        self.seen: Counter[str] = Counter()  # records that are not documents of this source

    def location(self, key: str) -> str:
        return f"{self.part.rel}#{key}"

    def skip(self, key: str, reason: str, **values: Any) -> None:
        """A readable record that the reader drops on purpose (redirect, deleted comment, bot)."""
        kind = self.part.kind
        rule = f"{kind}/{reason}"
        self.skipped += 1
        self.tally.seen(kind, 0)
        self.tally.dropped(kind, rule)
        self._reject(Document.new(kind, self.location(key), ""), rule, values)

    def saw(self, what: str) -> None:
        """A record that is not a document of this source and not an error (a WARC request
        record, a talk page): counted, so a file that yields nothing says what it held."""
        self.seen[what] += 1

    def side(self, name: str, row: Mapping[str, Any]) -> None:
        """A side output row (e.g. the WebText URL list of Reddit submissions)."""
        if self._side is not None:
            self._side(name, row)

    def bad(self, reason: str, *, offset: int | None = None, record: str | None = None,
            detail: str | None = None, file: str | None = None) -> None:
        """Unreadable input: quarantined with where it is and why, and counted."""
        self.tally.quarantined += 1
        self.quarantined += 1
        self._quarantine(self.part.kind, file or self.part.path, reason, offset=offset,
                         record=record, detail=detail)


def glob_root(pattern: str) -> str:
    """The folder part of a path pattern before its first glob character."""
    match = _GLOB_CHARS.search(pattern)
    head = pattern[: match.start()] if match else pattern
    return head.rsplit("/", 1)[0] if "/" in head else ""


def expand_paths(pattern: str, *, want_dirs: bool) -> list[tuple[str, str, Mapping[str, Any]]]:
    """Expand one fsspec pattern into (url, path relative to the glob root, info) triples.

    Folders expand to the files under them, unless ``want_dirs`` (code trees are read whole).
    """
    fs, path_or_glob = fsspec.core.url_to_fs(pattern)
    is_glob = bool(_GLOB_CHARS.search(path_or_glob))
    if is_glob:
        paths = fs.glob(path_or_glob)
    else:
        paths = [path_or_glob] if fs.exists(path_or_glob) else []
    root = fs._strip_protocol(glob_root(pattern)) if is_glob else None
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    for path in sorted(paths):
        info = fs.info(path)
        base = root if root is not None else posixpath.dirname(path.rstrip("/"))
        if info["type"] == "directory" and not want_dirs:
            for sub in sorted(fs.find(path)):
                out.append((fs.unstrip_protocol(sub), posixpath.relpath(sub, base),
                            fs.info(sub)))
        else:
            out.append((fs.unstrip_protocol(path), posixpath.relpath(path, base), info))
    return out


def fingerprint(info: Mapping[str, Any]) -> str:
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
    return f"{info.get('size')}-{stamp}"


@dataclass(frozen=True)
class Split:
    """Which part of one input a partition reads: a byte range, or every ``pieces``-th record
    starting at record ``piece`` (for streams that cannot be entered in the middle)."""

    start: int = 0
    end: int | None = None
    piece: int = 0
    pieces: int = 1


WHOLE = [Split()]


def byte_ranges(size: int, split_bytes: int) -> list[Split]:
    """[start, end) ranges of about ``split_bytes`` covering a file; the last one is open."""
    n = max(1, -(-size // split_bytes))
    bounds = [size * i // n for i in range(n)]
    return [Split(b, bounds[i + 1] if i + 1 < n else None) for i, b in enumerate(bounds)]


def strides(size: int, split_bytes: int) -> list[Split]:
    """Record-strided pieces, about one per ``split_bytes`` of input."""
    n = max(1, -(-size // split_bytes))
    return [Split(piece=i, pieces=n) for i in range(n)]


Reader = Callable[[InputPartition, Any, ReadContext], Iterator[Document]]
Splitter = Callable[[str, int, Any], list[Split]]


@dataclass(frozen=True)
class SourceSpec:
    """One source kind: everything the rest of lmforge needs to know about it. A reader module
    ends with ``SOURCE = SourceSpec(...)``; ``tasks.readers`` finds every such record, and the
    config union, the kind list and the quality presets are derived from them, so adding a kind
    is adding one module."""

    kind: str
    config: type[SourceBase]  # its pydantic config model, with ``kind: Literal[<kind>]``
    splits: Splitter  # how one input is cut into partitions
    read: Reader  # documents of one partition
    quality: Mapping[str, Any] = field(default_factory=dict)  # QualityConfig preset overrides
    reads_folders: bool = False  # a folder is one input (a code tree), not a set of files

    def __post_init__(self) -> None:
        tag = self.config.model_fields.get("kind")
        if tag is None or getattr(tag.annotation, "__args__", None) != (self.kind,):
            raise ValueError(f"source kind {self.kind!r}: {self.config.__name__} must declare "
                             f"`kind: Literal[{self.kind!r}]`")
