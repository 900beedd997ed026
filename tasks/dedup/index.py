"""The incremental dedup index: signatures of every document kept by earlier runs, as
append-only versions of Parquet files::

    INDEX/versions.json          [{"version": 1, "documents": 1200, "created": ..., ...}, ...]
    INDEX/v00001/part-*.parquet  the signature rows (SIGNATURE_SCHEMA) that version added

A run dedups its new documents against every version and against each other, then appends the
survivors it added as the next version. Rows are keyed by document id, so re-running a batch
whose documents are already indexed adds nothing and removes nothing.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pyarrow as pa
import pyarrow.parquet as pq
from lmforge.model.atomic import commit, temporary_path, write_json
from lmforge.tasks.dedup.signatures import SIGNATURE_SCHEMA
from lmforge.tasks.shards import list_shards


class DedupIndex:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def versions_file(self) -> Path:
        return self.root / "versions.json"

    def versions(self) -> list[dict[str, Any]]:
        if not self.versions_file.exists():
            return []
        return json.loads(self.versions_file.read_text())

    @property
    def version(self) -> int:
        versions = self.versions()
        return versions[-1]["version"] if versions else 0

    def files(self) -> list[Path]:
        return [f for v in self.versions() for f in list_shards(self.root / f"v{v['version']:05d}")]

    def read(self, columns: list[str]) -> dd.DataFrame | None:
        files = self.files()
        return dd.read_parquet([str(f) for f in files], columns=columns) if files else None

    def append(self, rows: dd.DataFrame, *, run: dict[str, Any], partitions: int = 8
               ) -> dict[str, Any] | None:
        """Write ``rows`` as the next version (nothing when empty); returns its record."""
        version = self.version + 1
        folder = self.root / f"v{version:05d}"
        tmp = temporary_path(folder)  # a folder of Parquet parts, renamed whole
        shutil.rmtree(folder, ignore_errors=True)  # left by a crash before it was listed
        schema = pa.schema([SIGNATURE_SCHEMA.field(c) for c in rows.columns])
        rows.repartition(npartitions=max(1, min(rows.npartitions, partitions))).to_parquet(
            str(tmp), write_index=False, compression="zstd", schema=schema,
            name_function=lambda i: f"part-{i:05d}.parquet")
        files = list_shards(tmp)
        count = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        if count == 0:
            shutil.rmtree(tmp)
            return None
        commit(tmp, folder)
        record = {"version": version, "documents": int(count),
                  "created": datetime.now(UTC).isoformat(timespec="seconds"), **run}
        versions = [*self.versions(), record]
        write_json(self.versions_file, versions, indent=1)  # the version exists once listed
        return record
