"""Run one reader over one file, collecting documents, skips and quarantine rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.tasks.readers import Source, plan_partitions, read_partition
from lmforge.tasks.readers.base import ReadContext
from lmforge.tasks.report import StageReport, Tally
from lmforge.tasks.schema import Document
from pydantic import TypeAdapter


@dataclass
class ReadResult:
    docs: list[Document]
    report: StageReport
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    side: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    partitions: int = 0

    def by_title(self) -> dict[str | None, Document]:
        return {d.title: d for d in self.docs}


def read(kind: str, pattern: str | Path, **options: Any) -> ReadResult:
    source = TypeAdapter(Source).validate_python({"kind": kind, "paths": [str(pattern)],
                                                  **options})
    parts = plan_partitions([source])
    assert parts, f"nothing matched {pattern}"
    tally = Tally("ingest")
    result = ReadResult([], tally.report())

    def quarantine(source: str, file: str, reason: str, **kw: Any) -> None:
        result.quarantined.append({"source": source, "file": file, "reason": reason, **kw})

    for part in parts:
        ctx = ReadContext(part, tally, lambda d, r, v: result.skipped.append((d.id, r)),
                          quarantine, side=lambda name, row: result.side.append((name, row)))
        result.docs.extend(read_partition(part, source, ctx))
    result.report = tally.report()
    result.partitions = len(parts)
    return result
