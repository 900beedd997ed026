"""The source registry, the ``Source`` config union, and partition planning.

Every module of this package that ends with ``SOURCE = SourceSpec(...)`` is a source kind; the
kinds, their config union and their quality presets are all derived from those records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, Union

import fsspec
from lmforge.model.registry import discover
from lmforge.tasks.readers.base import (
    InputPartition,
    ReadContext,
    Shard,
    SourceBase,
    SourceSpec,
    _piece_bytes,
    expand_paths,
    fingerprint,
)
from lmforge.tasks.schema import Document
from pydantic import Field

SOURCES: dict[str, SourceSpec] = discover(__name__, __path__, SourceSpec, "source kind",
                                          ("SOURCE",))
SOURCE_KINDS: tuple[str, ...] = tuple(SOURCES)
SourceKind = Literal[SOURCE_KINDS]  # type: ignore[valid-type]
Source = Annotated[Union[tuple(s.config for s in SOURCES.values())],  # type: ignore[valid-type]  # noqa: UP007
                   Field(discriminator="kind")]


def source_config(kind: str) -> type[SourceBase] | None:
    """The config model of a source kind (None if there is no such kind)."""
    spec = SOURCES.get(kind)
    return spec.config if spec else None


# A corpus is cut into about this many shards when split_bytes would give fewer, so a 200 MB
# crawl keeps every worker busy instead of running as one 256 MiB shard; shards never go below
# MIN_SHARD_BYTES, where per-shard start-up would cost more than the balance gains. The plan
# depends on the inputs only (not on the worker count), so the same inputs always get the same
# shards and cache keys, whatever cluster runs them, and ``lmforge explain`` finds them again.
TARGET_SHARDS = 64
MIN_SHARD_BYTES = 8 * 1024 * 1024


def shard_bytes(total: int, split_bytes: int) -> int:
    """The bytes a shard holds: ``split_bytes``, or less where that gives < TARGET_SHARDS."""
    return min(split_bytes, max(MIN_SHARD_BYTES, -(-total // TARGET_SHARDS)))


def _matches(sources: Sequence[SourceBase]) -> list[tuple[int, str, str, Any, int]]:
    """(source index, url, rel, info, size) of every input, in plan order."""
    found, unmatched = [], []
    for index, source in enumerate(sources):
        spec = SOURCES[source.kind]  # type: ignore[attr-defined]
        seen: set[str] = set()
        for pattern in source.paths:
            matches = expand_paths(pattern, want_dirs=spec.reads_folders)
            if not matches:
                unmatched.append(f"sources.{index} ({spec.kind}): {pattern}")
            for url, rel, info in matches:
                if url in seen or (not spec.reads_folders and info["type"] == "directory"):
                    continue
                seen.add(url)
                found.append((index, url, rel, info, _size(url, info)))
    if unmatched:
        raise FileNotFoundError("no input matches " + "; ".join(unmatched))
    return found


def plan_partitions(sources: Sequence[SourceBase]) -> list[InputPartition]:
    """Expand every source's paths into numbered partitions (the shard ids of all later stages).

    Large files become several partitions (byte ranges or record strides, per source kind) of
    about ``shard_bytes`` each. The order is deterministic (source order, sorted paths, split
    order), so the same inputs always get the same shard numbers.
    """
    matches = _matches(sources)
    total = sum(m[4] for m in matches)
    parts: list[InputPartition] = []
    for index, url, rel, info, size in matches:
        source = sources[index]
        spec = SOURCES[source.kind]  # type: ignore[attr-defined]
        piece = shard_bytes(total, source.split_bytes)
        splits = spec.splits(url, size, source.model_copy(update={"split_bytes": piece}))
        if any(split.pieces > 1 for split in splits):
            # record strides each read the whole stream (a .zst cannot be entered in the
            # middle), so more of them multiply the reading: they keep the configured size
            splits = spec.splits(url, size, source)
        for split in splits:
            parts.append(InputPartition(
                source_index=index, kind=spec.kind, path=url, rel=rel,
                size=size, fingerprint=fingerprint(info), start=split.start,
                end=split.end, piece=split.piece, pieces=split.pieces))
    return parts


def plan_shards(sources: Sequence[SourceBase]) -> list[Shard]:
    """Pack the partitions into shards: a piece of a big file is a shard of its own; small
    inputs of one source are grouped until a shard holds about ``shard_bytes``, so a folder of
    thousands of books does not become thousands of tiny tasks."""
    parts = plan_partitions(sources)
    total = sum(partition_bytes(p) for p in parts)
    shards: list[Shard] = []
    group: list[InputPartition] = []
    group_bytes = 0

    def close() -> None:
        nonlocal group, group_bytes
        if group:
            shards.append(Shard(len(shards), group[0].source_index, group[0].kind,
                                tuple(group)))
        group, group_bytes = [], 0

    for part in parts:
        limit = shard_bytes(total, sources[part.source_index].split_bytes)
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
    its ``bytes_out`` is the UTF-8 text of the documents. Once the partition is read, its
    input file's line in the report's ``inputs`` gets its bytes, documents, skipped and
    quarantined records (summed over the file's partitions when reports merge)."""
    ctx.tally.add_bytes_in(part.kind, partition_bytes(part))
    documents = 0
    for doc in SOURCES[part.kind].read(part, source, ctx):
        ctx.tally.seen(doc.source, 0)
        ctx.tally.kept(doc.source, doc.nbytes)
        documents += 1
        yield doc
    ctx.tally.add_extra("inputs", {part.path: {
        "source": part.kind, "rel": part.rel, "bytes": partition_bytes(part),
        "partitions": 1, "documents": documents, "skipped": ctx.skipped,
        "quarantined": ctx.quarantined, "seen": dict(ctx.seen)}})


def partition_bytes(part: InputPartition) -> int:
    return _piece_bytes(part)


__all__ = [
    "SOURCES", "SOURCE_KINDS", "InputPartition", "ReadContext", "Shard", "Source",
    "SourceKind", "SourceSpec", "plan_partitions", "plan_shards", "read_partition",
    "shard_bytes", "source_config",
]
