"""Readers of the five source kinds, the ``Source`` config union, and partition planning."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

import fsspec
from pydantic import Field

from tasks.readers import books, code, commoncrawl, reddit, wikipedia
from tasks.readers.base import (
    InputPartition,
    ReadContext,
    Shard,
    SourceBase,
    Split,
    _piece_bytes,
    expand_paths,
    fingerprint,
)
from tasks.readers.books import BooksSource
from tasks.readers.code import CodeSource
from tasks.readers.commoncrawl import CommonCrawlSource
from tasks.readers.reddit import RedditSource
from tasks.readers.wikipedia import WikipediaSource
from tasks.schema import Document

Source = Annotated[
    BooksSource | CommonCrawlSource | RedditSource | WikipediaSource | CodeSource,
    Field(discriminator="kind"),
]

_READERS: dict[str, Callable[[InputPartition, Any, ReadContext], Iterator[Document]]] = {
    "books": books.read_books,
    "commoncrawl": commoncrawl.read_commoncrawl,
    "reddit": reddit.read_reddit,
    "wikipedia": wikipedia.read_wikipedia,
    "code": code.read_code,
}
_SPLITS: dict[str, Callable[[str, int, Any], list[Split]]] = {
    "books": books.splits,
    "commoncrawl": commoncrawl.splits,
    "reddit": reddit.splits,
    "wikipedia": wikipedia.splits,
    "code": code.splits,
}


def plan_partitions(sources: Sequence[SourceBase]) -> list[InputPartition]:
    """Expand every source's paths into numbered partitions (the shard ids of all later stages).

    Large files become several partitions (byte ranges or record strides, per source kind).
    The order is deterministic (source order, sorted paths, split order), so the same inputs
    always get the same shard numbers.
    """
    parts: list[InputPartition] = []
    unmatched = []
    for index, source in enumerate(sources):
        kind = source.kind  # type: ignore[attr-defined]
        seen: set[str] = set()
        for pattern in source.paths:
            matches = expand_paths(pattern, want_dirs=kind == "code")
            if not matches:
                unmatched.append(f"sources.{index} ({kind}): {pattern}")
            for url, rel, info in matches:
                if url in seen or (kind != "code" and info["type"] == "directory"):
                    continue
                seen.add(url)
                size = _size(url, info)
                for split in _SPLITS[kind](url, size, source):
                    parts.append(InputPartition(
                        source_index=index, kind=kind, path=url, rel=rel,
                        size=size, fingerprint=fingerprint(info), start=split.start,
                        end=split.end, piece=split.piece, pieces=split.pieces))
    if unmatched:
        raise FileNotFoundError("no input matches " + "; ".join(unmatched))
    return parts


def plan_shards(sources: Sequence[SourceBase]) -> list[Shard]:
    """Pack the partitions into shards: a piece of a big file is a shard of its own; small
    inputs of one source are grouped until a shard holds about ``split_bytes``, so a folder of
    thousands of books does not become thousands of tiny tasks."""
    shards: list[Shard] = []
    group: list[InputPartition] = []
    group_bytes = 0

    def close() -> None:
        nonlocal group, group_bytes
        if group:
            shards.append(Shard(len(shards), group[0].source_index, group[0].kind,
                                tuple(group)))
        group, group_bytes = [], 0

    for part in plan_partitions(sources):
        limit = sources[part.source_index].split_bytes
        size = partition_bytes(part)
        if group and (group[0].source_index != part.source_index
                      or group_bytes + size > limit):
            close()
        group.append(part)
        group_bytes += size
    close()
    return shards


def _size(url: str, info: Any) -> int:
    if info["type"] == "directory":  # a source tree: the bytes of its files
        fs, path = fsspec.core.url_to_fs(url)
        return int(fs.du(path, total=True) or 0)
    return int(info.get("size") or 0)


def read_partition(part: InputPartition, source: SourceBase, ctx: ReadContext
                   ) -> Iterator[Document]:
    """Documents of one partition; every yielded document is counted as read and kept. The
    ingest stage's ``bytes_in`` is the input bytes of the partition (compressed, as stored);
    its ``bytes_out`` is the UTF-8 text of the documents."""
    ctx.tally.add_bytes_in(part.kind, partition_bytes(part))
    for doc in _READERS[part.kind](part, source, ctx):
        ctx.tally.seen(doc.source, 0)
        ctx.tally.kept(doc.source, doc.nbytes)
        yield doc


def partition_bytes(part: InputPartition) -> int:
    return _piece_bytes(part)


__all__ = [
    "BooksSource", "CodeSource", "CommonCrawlSource", "InputPartition", "ReadContext",
    "RedditSource", "Shard", "Source", "WikipediaSource", "plan_partitions", "plan_shards",
    "read_partition",
]
