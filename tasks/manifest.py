"""``DIR/manifest.json``: what each stage did to each source, and what the outputs hold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from lmforge.model.atomic import write_json
from lmforge.tasks.report import StageReport
from lmforge.tasks.schema import SCHEMA_VERSION
from lmforge.tasks.shards import Layout, list_shards


def _dataset_rows(path: Path) -> int:
    files = [str(p) for p in list_shards(path)] + [
        str(p) for p in sorted(path.glob("*-part-*.parquet")) if not p.name.startswith(".")]
    return ds.dataset(files, format="parquet").count_rows() if files else 0


def summarise(layout: Layout) -> dict[str, Any]:
    """Row counts of the three output datasets."""
    return {
        "curated": {"shards": len(list_shards(layout.curated)),
                    "documents": _dataset_rows(layout.curated)},
        "rejected": {"documents": _dataset_rows(layout.rejected)},
        "quarantine": {"records": _dataset_rows(layout.quarantine)},
    }


def counts_table(reports: Sequence[StageReport]) -> list[dict[str, Any]]:
    """One row per (stage, source): the table shown in Prefect, MLflow and the CLI."""
    rows = []
    for report in reports:
        for source, c in report.sources.items():
            rows.append({
                "stage": report.stage, "source": source, "docs_in": c.docs_in,
                "docs_out": c.docs_out, "dropped": c.docs_dropped, "changed": c.changed,
                "bytes_in": c.bytes_in, "bytes_out": c.bytes_out,
                "top_reason": max(c.dropped, key=c.dropped.__getitem__) if c.dropped else "",
            })
    return rows


def rules_table(reports: Sequence[StageReport]) -> list[dict[str, Any]]:
    """One row per (stage, source, rule) that removed documents."""
    return [{"stage": r.stage, "source": source, "rule": reason, "dropped": n}
            for r in reports for source, c in r.sources.items()
            for reason, n in sorted(c.dropped.items(), key=lambda kv: -kv[1])]


def write_manifest(layout: Layout, reports: Sequence[StageReport], config_hash: str,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write the manifest atomically; stages in pipeline order, sources by name."""
    by_source: dict[str, dict[str, Any]] = {}
    for report in reports:
        for source, c in report.sources.items():
            by_source.setdefault(source, {})[report.stage] = {
                "docs_in": c.docs_in, "docs_out": c.docs_out, "bytes_in": c.bytes_in,
                "bytes_out": c.bytes_out, "changed": c.changed,
                "dropped": dict(sorted(c.dropped.items())),
            }
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "config_hash": config_hash,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "outputs": summarise(layout),
        "stages": {r.stage: _public(r) for r in reports},
        "sources": dict(sorted(by_source.items())),
        **(dict(extra) if extra else {}),
    }
    write_json(layout.manifest, manifest, indent=2)
    return layout.manifest


def _public(report: StageReport) -> dict[str, Any]:
    data = report.to_dict()
    data["extra"] = {k: v for k, v in data["extra"].items() if k not in ("cache_key", "outputs")}
    del data["sources"]  # per source lives under "sources"
    total = report.total
    data.update(docs_in=total.docs_in, docs_out=total.docs_out, bytes_in=total.bytes_in,
                bytes_out=total.bytes_out, dropped=dict(sorted(total.dropped.items())))
    return data
