"""Shard I/O: the output directory layout, streaming Parquet writers that appear atomically, and
streaming readers.

Layout of an output directory ``DIR``::

    DIR/curated/part-00000.parquet        the curated documents (CURATED_SCHEMA)
    DIR/rejected/<stage>-part-00000.parquet   one row per removed document (REJECTED_SCHEMA)
    DIR/quarantine/part-00000.parquet     unreadable files and records (QUARANTINE_SCHEMA)
    DIR/manifest.json                     per source and stage counts, config hash
    DIR/_work/<stage>/...                 intermediates; DIR/_work/reports/<stage>/part-*.json

A writer writes to a hidden temporary name and renames on success, so a shard file either exists
complete or not at all; a shard's report is written after its files, so "report exists" means
"every output of this shard exists" and reruns skip it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from lmforge.model.atomic import commit, temporary_path
from lmforge.tasks.schema import (
    CURATED_SCHEMA,
    QUARANTINE_SCHEMA,
    REJECTED_SCHEMA,
    Document,
    documents_to_table,
    dump_json,
    table_to_documents,
)

COMPRESSION = "zstd"


def shard_name(shard: int, prefix: str = "") -> str:
    return f"{prefix}part-{shard:05d}.parquet"


@dataclass(frozen=True)
class Layout:
    """Paths of one output directory."""

    root: Path

    @property
    def curated(self) -> Path:
        return self.root / "curated"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def work(self, stage: str) -> Path:
        return self.root / "_work" / stage

    def report(self, stage: str, shard: int | None = None) -> Path:
        name = "all.json" if shard is None else f"part-{shard:05d}.json"
        return self.root / "_work" / "reports" / stage / name

    def make_dirs(self) -> None:
        for path in (self.curated, self.rejected, self.quarantine):
            path.mkdir(parents=True, exist_ok=True)


class AtomicParquetWriter:
    """Stream tables into ``path`` through a temporary file; rename on clean exit only."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int = 2048,
                 keep_empty: bool = True) -> None:
        self.path = path
        self.keep_empty = keep_empty
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._tmp = temporary_path(path)
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> AtomicParquetWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=COMPRESSION)
        return self

    def write_table(self, table: pa.Table) -> None:
        assert self._writer is not None, "use AtomicParquetWriter as a context manager"
        if table.num_rows:
            self._writer.write_table(table, row_group_size=self.rows_per_group)
            self.rows += table.num_rows

    def write_row(self, row: Mapping[str, Any]) -> None:
        self._pending.append(dict(row))
        if len(self._pending) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
            self._pending = []

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._writer is not None
        try:
            if exc_type is None:
                self.flush()
            self._writer.close()
        finally:
            if exc_type is None and (self.rows or self.keep_empty):
                commit(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)
                if exc_type is None:  # nothing to write: no stale file from an earlier run
                    self.path.unlink(missing_ok=True)


class DocumentWriter(AtomicParquetWriter):
    """Writes documents in the curated schema, buffering one row group at a time."""

    def __init__(self, path: Path, rows_per_group: int = 1024) -> None:
        super().__init__(path, CURATED_SCHEMA, rows_per_group)
        self._docs: list[Document] = []
        self.nbytes = 0

    def write(self, doc: Document) -> None:
        self._docs.append(doc)
        self.nbytes += doc.nbytes
        if len(self._docs) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if self._docs:
            self.write_table(documents_to_table(self._docs))
            self._docs = []


class RejectWriter(AtomicParquetWriter):
    """The reject sink of one stage on one shard: records why, never the text itself."""

    def __init__(self, path: Path, stage: str) -> None:
        super().__init__(path, REJECTED_SCHEMA, keep_empty=False)
        self.stage = stage

    def __call__(self, doc: Document, reason: str, values: Mapping[str, Any]) -> None:
        self.write(doc.id, doc.source, reason, doc.location, len(doc.text), values)

    def write(self, id: str, source: str, reason: str, location: str, chars: int,
              values: Mapping[str, Any]) -> None:
        self.write_row({
            "id": id, "source": source, "reason": f"{self.stage}:{reason}",
            "location": location, "chars": chars,
            "detail": dump_json(dict(values)) if values else None,
        })


class QuarantineWriter(AtomicParquetWriter):
    """Unreadable files and records, with where they are and why."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, QUARANTINE_SCHEMA, keep_empty=False)

    def __call__(self, source: str, file: str, reason: str, *, offset: int | None = None,
                 record: str | None = None, detail: str | None = None) -> None:
        self.write_row({"source": source, "file": file, "offset": offset, "record": record,
                        "reason": reason, "detail": detail[:500] if detail else None})


def iter_documents(path: Path, batch_rows: int = 512) -> Iterator[Document]:
    """Stream the documents of one curated-schema shard, one row group slice at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        yield from table_to_documents(pa.Table.from_batches([batch]))


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def output_digests(root: Path, paths: Iterable[Path]) -> dict[str, str | None]:
    """Relative path -> ``"SHA-256 size mtime_ns"`` of each output (None: the step
    legitimately wrote nothing). Stored in the step's report, which is written last and so
    marks the step finished."""
    return {str(p.relative_to(root)): _stamp(p) if p.exists() else None for p in sorted(paths)}


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{file_digest(path)} {stat.st_size} {stat.st_mtime_ns}"


def outputs_intact(root: Path, recorded: Mapping[str, str | None] | None) -> bool:
    """True when every recorded output is still there with the same bytes: a finished step
    whose files were lost or corrupted (a killed worker, a bad disk) is recomputed instead.
    A file whose size and modification time are the recorded ones is taken as unchanged
    without reading it (make's and rsync's quick check; a rerun of a big corpus would
    otherwise hash every output again); any other file is hashed and compared."""
    if recorded is None:
        return False
    for rel, stamp in recorded.items():
        path = root / rel
        if (stamp is None) != (not path.exists()):
            return False
        if stamp is None:
            continue
        sha, *quick = stamp.split()  # records written before the quick check hold the SHA
        stat = path.stat()
        if quick == [str(stat.st_size), str(stat.st_mtime_ns)]:
            continue
        if file_digest(path) != sha:
            return False
    return True


def list_shards(directory: Path, prefix: str = "") -> list[Path]:
    return sorted(p for p in directory.glob(f"{prefix}part-*.parquet")
                  if not p.name.startswith("."))


def shard_number(path: Path) -> int | None:
    """The ``N`` of any ``...part-N.<ext>`` file name."""
    stem = path.name.split("part-")[-1].split(".")[0]
    return int(stem) if stem.isdigit() else None


def prune_shards(layout: Layout, n_shards: int) -> list[Path]:
    """Remove outputs of shard numbers >= ``n_shards`` left by an earlier run over more inputs,
    so the output datasets hold this run's shards only."""
    removed = []
    for path in layout.root.rglob("*part-*"):
        number = shard_number(path)
        if number is not None and number >= n_shards and path.is_file():
            path.unlink()
            removed.append(path)
    return removed
