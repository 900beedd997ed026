"""The curation report shown in the Prefect UI (a markdown artifact): the removal funnel per
stage and rule, document-length histograms per source, the duplicate-cluster histogram, PII
entities and toxicity removals. Charts are Unicode bars, which every markdown renderer shows
without images or network access."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from lmforge.tasks.report import StageReport
from lmforge.tasks.shards import Layout, list_shards

WIDTH = 30  # characters of the longest bar
LENGTH_BINS = (0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)


def bars(rows: Sequence[tuple[str, float]], unit: str = "") -> str:
    """A fenced block of labelled horizontal bars scaled to the largest value."""
    if not rows:
        return "_(none)_\n"
    top = max(v for _, v in rows) or 1
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}} {'█' * max(1 if v else 0, round(WIDTH * v / top)):<{WIDTH}} "
             f"{v:,.0f}{unit}" for label, v in rows]
    return "```\n" + "\n".join(lines) + "\n```\n"


def length_histogram(layout: Layout) -> dict[str, Counter[str]]:
    """Curated documents per source and length bin (characters), read column-wise."""
    out: dict[str, Counter[str]] = {}
    labels = [f"<{b:,}" for b in LENGTH_BINS[1:]] + [f">={LENGTH_BINS[-1]:,}"]
    for shard in list_shards(layout.curated):
        table = pq.read_table(shard, columns=["source", "text"])
        lengths = pc.utf8_length(table.column("text")).to_pylist()
        for source, n in zip(table.column("source").to_pylist(), lengths, strict=True):
            k = next((i for i, b in enumerate(LENGTH_BINS[1:]) if n < b), len(LENGTH_BINS) - 1)
            out.setdefault(source, Counter())[labels[k]] += 1
    order = {label: i for i, label in enumerate(labels)}
    return {s: Counter(dict(sorted(c.items(), key=lambda kv: order[kv[0]])))
            for s, c in sorted(out.items())}


def accounting_table(accounting: Mapping[str, Any]) -> str:
    """Per source: records read, where they went, and whether it adds up."""
    rows = ["| source | read | curated | rejected | quarantined | adds up |",
            "|---|---:|---:|---:|---:|---|"]
    for source, r in accounting.get("sources", {}).items():
        rows.append(f"| {source} | {r['read']} | {r['curated']} | {r['rejected']} | "
                    f"{r['quarantined_rows']} | {'yes' if r['ok'] else '**no**'} |")
    problems = [f"- {p}" for p in accounting.get("problems", [])]
    return "\n".join(rows + (["", *problems] if problems else [])) + "\n"


def curation_report(layout: Layout, reports: Sequence[StageReport],
                    mlflow_url: str | None = None,
                    accounting: Mapping[str, Any] | None = None) -> str:
    by_stage = {r.stage: r for r in reports}
    parts = ["# Curation report\n"]
    if mlflow_url:
        parts.append(f"MLflow run: [{mlflow_url}]({mlflow_url})\n")
    if accounting is not None:
        parts.append("## Accounting: every record read is curated, rejected or quarantined\n")
        parts.append(accounting_table(accounting))
    parts.append("## Funnel: documents after each stage\n")
    first = reports[0].total.docs_in if reports else 0
    parts.append(bars([("input", first)] + [(r.stage, r.total.docs_out) for r in reports]))
    totals: Counter[str] = Counter()  # one rule, all sources
    for r in reports:
        for c in r.sources.values():
            for reason, n in c.dropped.items():
                totals[f"{r.stage}:{reason}"] += n
    parts.append("## Removals per rule\n")
    parts.append(bars(totals.most_common(25)))
    parts.append("## Curated document length (characters) per source\n")
    for source, hist in length_histogram(layout).items():
        parts.append(f"**{source}** ({sum(hist.values())} documents)\n")
        parts.append(bars(list(hist.items())))
    if "dedup" in by_stage:
        sizes = by_stage["dedup"].extra.get("cluster_sizes", {})
        parts.append("## Duplicate clusters by size\n")
        parts.append(bars([(f"size {s}", n) for s, n in sorted(sizes.items(),
                                                               key=lambda kv: int(kv[0]))]))
        lsh = by_stage["dedup"].extra.get("lsh")
        if lsh:
            parts.append(lsh_section(lsh))
    if "pii" in by_stage:
        entities: Counter[str] = Counter()
        for per_source in by_stage["pii"].extra.get("pii", {}).values():
            entities.update(per_source)
        parts.append("## PII entities replaced\n")
        parts.append(bars(entities.most_common()))
    if "toxicity" in by_stage:
        tox = by_stage["toxicity"]
        parts.append("## Toxicity removals per source\n")
        parts.append(bars([(s, c.docs_dropped) for s, c in sorted(tox.sources.items())]))
    return "\n".join(parts)


def lsh_section(lsh: Mapping[str, Any]) -> str:
    """The banding's S-curve (percent of pairs at each Jaccard that become candidates) and the
    verified near-duplicate pairs per Jaccard bin."""
    head = (f"## Near-duplicate detection: {lsh['bands']} bands x {lsh['rows']} rows\n\n"
            f"A pair at Jaccard {lsh['threshold']:.2f} becomes a candidate with probability "
            f"{lsh['p_candidate_at_threshold']:.3f}; {lsh.get('candidate_edges', 0):,} MinHash "
            "candidate edges")
    if "verified_edges" in lsh:
        head += f", {lsh['verified_edges']:,} verified by exact Jaccard"
    parts = [head + ".\n", "P(candidate | Jaccard), percent:\n",
             bars([(j, 100 * p) for j, p in lsh["s_curve"].items()], "%")]
    if "verified_jaccard" in lsh:
        parts += ["Verified pairs per exact Jaccard:\n",
                  bars(list(lsh["verified_jaccard"].items()))]
    return "\n".join(parts)

