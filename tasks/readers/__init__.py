"""Readers of the five source kinds, the ``Source`` config union, and partition planning."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any

from pydantic import Field

from tasks.readers.base import (
    InputPartition,
    ReadContext,
    SourceBase,
    expand_paths,
    fingerprint,
)
from tasks.readers.books import BooksSource, read_books
from tasks.readers.code import CodeSource, read_code
from tasks.readers.commoncrawl import CommonCrawlSource, read_commoncrawl
from tasks.readers.reddit import RedditSource, read_reddit
from tasks.readers.wikipedia import WikipediaSource, read_wikipedia
from tasks.schema import Document

Source = Annotated[
    BooksSource | CommonCrawlSource | RedditSource | WikipediaSource | CodeSource,
    Field(discriminator="kind"),
]

_READERS: dict[str, Callable[[InputPartition, Any, ReadContext], Iterator[Document]]] = {
    "books": read_books,
    "commoncrawl": read_commoncrawl,
    "reddit": read_reddit,
    "wikipedia": read_wikipedia,
    "code": read_code,
}


def plan_partitions(sources: Sequence[SourceBase]) -> list[InputPartition]:
    """Expand every source's paths into numbered partitions (the shard ids of all later stages).

    The order is deterministic (source order, then sorted paths), so the same inputs always get
    the same shard numbers.
    """
    parts: list[InputPartition] = []
    for index, source in enumerate(sources):
        kind = source.kind  # type: ignore[attr-defined]
        seen: set[str] = set()
        for pattern in source.paths:
            for url, rel, info in expand_paths(pattern, want_dirs=kind == "code"):
                if url in seen or (kind != "code" and info["type"] == "directory"):
                    continue
                seen.add(url)
                parts.append(InputPartition(
                    shard=len(parts), source_index=index, kind=kind, path=url, rel=rel,
                    size=int(info.get("size") or 0), fingerprint=fingerprint(info)))
    return parts


def read_partition(part: InputPartition, source: SourceBase, ctx: ReadContext
                   ) -> Iterator[Document]:
    """Documents of one partition; every yielded document is counted as read and kept."""
    for doc in _READERS[part.kind](part, source, ctx):
        ctx.tally.seen(doc.source, doc.nbytes)
        ctx.tally.kept(doc.source, doc.nbytes)
        yield doc


__all__ = [
    "BooksSource", "CodeSource", "CommonCrawlSource", "InputPartition", "ReadContext",
    "RedditSource", "Source", "WikipediaSource", "plan_partitions", "read_partition",
]
