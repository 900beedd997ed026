"""Why was one document kept or removed? Re-read it from its input and run its source's
rules one by one, recording what each rule measured; then add what the later stages decided
(duplicate of which survivor, classifier and toxicity scores, PII replaced)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from lmforge.tasks.base import DocFilter, DocRewriter
from lmforge.tasks.curate import CurateConfig
from lmforge.tasks.filters.quality import build_quality_steps
from lmforge.tasks.pii import PiiScrubber
from lmforge.tasks.readers import ReadContext, plan_shards, read_partition
from lmforge.tasks.readers.base import SourceBase
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document, scores_dict
from lmforge.tasks.shards import Layout, shard_number
from lmforge.tasks.toxicity import toxic_passages


@dataclass
class RuleResult:
    rule: str
    passed: bool
    values: dict[str, Any]


@dataclass
class Explanation:
    doc_id: str
    status: str  # "kept", "removed" or "not found"
    reason: str | None = None
    source: str | None = None
    location: str | None = None
    rules: list[RuleResult] = field(default_factory=list)
    later: dict[str, Any] = field(default_factory=dict)


def _find(path: Path, doc_id: str, columns: list[str]) -> tuple[dict[str, Any], Path] | None:
    if not path.exists():
        return None
    for fragment in ds.dataset(path, format="parquet").get_fragments():
        table = fragment.to_table(columns=columns, filter=ds.field("id") == doc_id)
        if table.num_rows:
            return table.to_pylist()[0], Path(fragment.path)
    return None


def _original(shard_index: int, doc_id: str, sources: Sequence[SourceBase]) -> Document | None:
    """Read the shard's inputs again until the document appears."""
    shards = plan_shards(sources)
    if shard_index >= len(shards):
        return None
    shard = shards[shard_index]
    tally = Tally("explain")
    for part in shard.parts:
        ctx = ReadContext(part, tally, lambda *a: None, lambda *a, **k: None)
        for doc in read_partition(part, sources[shard.source_index], ctx):
            if doc.id == doc_id:
                return doc
    return None


def _rules(doc: Document, steps: list[DocFilter | DocRewriter]) -> list[RuleResult]:
    """Every rule's measurement, in pipeline order, on the text as that rule saw it."""
    results = []
    for step in steps:
        if isinstance(step, DocRewriter):
            new = step.rewrite(doc)
            results.append(RuleResult(f"{step.name} (cleans)", True, dict(new.counts)))
            doc.text = new.text
            continue
        step.prepare([doc])
        verdict = step.keep(doc)
        name = f"{step.name}/{verdict.reason}" if verdict.reason else type(step).__name__
        results.append(RuleResult(name, verdict.keep, dict(verdict.values)))
    return results


def explain(root: Path, doc_id: str, sources: Sequence[SourceBase],
            curate: CurateConfig) -> Explanation:
    layout = Layout(root)
    rejected = _find(layout.rejected, doc_id, ["id", "source", "reason", "location", "detail"])
    curated = _find(layout.curated, doc_id, ["id", "source", "location", "scores", "meta"])
    if rejected is None and curated is None:
        return Explanation(doc_id, "not found")
    row, path = rejected or curated  # type: ignore[misc]
    out = Explanation(doc_id, "removed" if rejected else "kept", source=row["source"],
                      location=row["location"], reason=row.get("reason"))
    if rejected and row.get("detail"):
        out.later["detail"] = json.loads(row["detail"])
    if curated:
        out.later["scores"] = scores_dict(curated[0]["scores"])
        out.later["meta"] = json.loads(curated[0]["meta"]) if curated[0]["meta"] else {}
    if rejected and row["reason"].startswith("ingest:"):
        return out  # the reader skipped it: there is no document to run rules on
    shard = shard_number(path)
    if rejected and row["reason"].startswith("dedup:"):  # one file for all shards
        found = _find(layout.work("dedup") / "duplicates.parquet", doc_id, ["id", "shard"])
        shard = found[0]["shard"] if found else None
    original = _original(shard, doc_id, sources) if shard is not None else None
    if original is not None:
        out.rules = _rules(original, build_quality_steps(curate.quality.for_source(
            original.source)))
        if curate.toxicity is not None and all(r.passed for r in out.rules):
            out.later["toxicity"] = _toxicity(original, curate)
    return out


def _toxicity(doc: Document, curate: CurateConfig) -> dict[str, Any]:
    """The toxicity stage's view, on the text as it reached it (after quality cleaning and
    PII scrubbing): the passages over the thresholds, with their scores."""
    if curate.pii is not None:
        scrubber = PiiScrubber(curate.pii)
        scrubber.prepare([doc])
        doc.text = scrubber.rewrite(doc).text
    assert curate.toxicity is not None
    return toxic_passages(doc, curate.toxicity)
