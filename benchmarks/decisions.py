"""Curation decisions against a person's judgment, on real documents.

    python -m benchmarks.decisions [--cache DIR] [--show N]

``benchmarks/judgments/real-v1.jsonl`` labels 1,158 documents of the real corpora
(``infra/real_corpora.py``: Wikipedia, novels, the Python documentation, web pages, code) keep
or drop, each with its reason (``benchmarks/judgments/README.md`` has the labelling rule). This
reads the same documents with lmforge's readers, runs each through its source's quality rules
and the toxicity stage with the default configuration, and prints per group (Wikipedia
articles, novels, documentation, web pages, code) the false drops (labelled keep, removed: per
rule) and the false keeps (labelled drop, kept), against the targets of the curation issue:
false drops of clean prose <= 2% per group, junk kept <= 5%, no novel dropped. ``tests/real``
asserts the same targets.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lmforge.infra.real_corpora import default_cache, fetch
from lmforge.infra.settings import prepare_environment
from lmforge.tasks.base import DocFilter, DocRewriter
from lmforge.tasks.curate import CurateConfig
from lmforge.tasks.filters.quality import build_quality_steps
from lmforge.tasks.readers import ReadContext, Source, plan_partitions, read_partition
from lmforge.tasks.report import Tally
from lmforge.tasks.schema import Document
from lmforge.tasks.toxicity import build_toxicity_steps
from pydantic import TypeAdapter

JUDGMENTS = Path(__file__).with_name("judgments") / "real-v1.jsonl"
TARGETS = {"false_drop": 0.02, "false_keep": 0.05}


def group_of(source: str, url: str | None, kind: str = "prose") -> str:
    """The judgment set's groups: Wikipedia, novels, web pages, code, and the Python
    documentation split into its prose (tutorials, HOWTOs, FAQs, language reference, what's
    new) and its API reference (library and C-API pages: signatures and templated
    annotations), which the curation targets treat apart."""
    if source == "commoncrawl":
        if (url or "").startswith("https://docs.python.org/"):
            return "docs-reference" if kind == "reference" else "docs-prose"
        return "web"
    return {"books": "novels", "wikipedia": "wikipedia"}.get(source, source)


TARGETED = ("wikipedia", "novels", "docs-prose", "web", "code")


def judged_sources(cache: Path) -> list[Any]:
    return TypeAdapter(list[Source]).validate_python([
        {"kind": "wikipedia", "paths": [str(cache / "wikipedia" / "*.bz2")]},
        {"kind": "books", "paths": [str(cache / "books" / "*.txt")]},
        {"kind": "commoncrawl", "paths": [str(cache / "commoncrawl" / "*"),
                                          str(cache / "python-docs" / "*.warc.gz")]},
        {"kind": "code", "paths": [str(cache / "code" / name) for name in
                                   ("cpython", "pip-26.3", "trafilatura-2.3.1.tar.gz")]},
    ])


def judged_documents(cache: Path) -> Iterator[Document]:
    """The documents the judgment set labels, as lmforge's readers produce them."""
    sources = judged_sources(cache)
    tally = Tally("ingest")
    for part in plan_partitions(sources):
        ctx = ReadContext(part, tally, lambda *a: None, lambda *a, **k: None)
        yield from read_partition(part, sources[part.source_index], ctx)


def load_judgments(path: Path = JUDGMENTS) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {f"{r['source']}:{r['location']}": r for r in rows}


@dataclass
class Decision:
    doc: Document
    group: str
    label: str
    reason: str
    removed_by: str | None  # "<stage>:<rule>" or None when kept
    values: dict[str, Any] = field(default_factory=dict)


def _decide(doc: Document, steps: list[DocFilter | DocRewriter]) -> tuple[str | None, dict]:
    for step in steps:
        step.prepare([doc])
        if isinstance(step, DocRewriter):
            doc.text = step.rewrite(doc).text
            continue
        verdict = step.keep(doc)
        if not verdict.keep:
            return f"{step.name}/{verdict.reason}", dict(verdict.values)
    return None, {}


def labelled_documents(cache: Path) -> list[Document]:
    """The documents either judgment set labels (read once, kept in memory: a few MB)."""
    keys = set(load_judgments()) | {f"{r['source']}:{r['location']}" for r in _pii_rows()}
    return [d for d in judged_documents(cache) if f"{d.source}:{d.location}" in keys]


def decide_all(cache: Path, cfg: CurateConfig | None = None,
               docs: Iterable[Document] | None = None) -> list[Decision]:
    """Every judged document through quality rules, then toxicity, one at a time (``docs``:
    the documents already read, else they are read from ``cache``)."""
    cfg = cfg or CurateConfig()
    judgments = load_judgments()
    quality = {kind: build_quality_steps(cfg.quality.for_source(kind))
               for kind in ("wikipedia", "books", "commoncrawl", "code")}
    toxicity = build_toxicity_steps(cfg.toxicity, list(quality)) if cfg.toxicity else []
    out = []
    for read in judged_documents(cache) if docs is None else docs:
        doc = replace(read, scores={}, meta=dict(read.meta))  # the rules rewrite the text
        row = judgments.get(f"{doc.source}:{doc.location}")
        if row is None:
            continue
        removed, values = _decide(doc, quality[doc.source])
        stage = "quality"
        if removed is None and toxicity:
            removed, values = _decide(doc, toxicity)
            stage = "toxicity"
        out.append(Decision(doc, group_of(doc.source, doc.url, row.get("kind", "prose")),
                            row["label"], row["reason"],
                            f"{stage}:{removed}" if removed else None, values))
    missing = len(judgments) - len(out)
    if missing:
        raise RuntimeError(f"{missing} judged documents were not read from {cache}: the real "
                           "corpora differ from the ones the judgments were made on")
    return out


@dataclass(frozen=True)
class GroupScore:
    group: str
    keep: int
    drop: int
    false_drops: Counter[str]
    false_keeps: int

    @property
    def false_drop_rate(self) -> float:
        return sum(self.false_drops.values()) / self.keep if self.keep else 0.0

    @property
    def false_keep_rate(self) -> float:
        return self.false_keeps / self.drop if self.drop else 0.0


def score(decisions: list[Decision]) -> dict[str, GroupScore]:
    by_group: dict[str, list[Decision]] = defaultdict(list)
    for d in decisions:
        by_group[d.group].append(d)
    out = {}
    for group, items in sorted(by_group.items()):
        false_drops = Counter(d.removed_by for d in items if d.label == "keep" and d.removed_by)
        out[group] = GroupScore(group, sum(d.label == "keep" for d in items),
                                sum(d.label == "drop" for d in items), false_drops,
                                sum(d.label == "drop" and d.removed_by is None for d in items))
    return out


def report(decisions: list[Decision], show: int = 3,
           out: Callable[[str], None] = print) -> dict[str, GroupScore]:
    scores = score(decisions)
    out(f"{len(decisions)} judged documents (labels: {JUDGMENTS.name})\n")
    out(f"{'group':<14} {'keep':>5} {'drop':>5} {'false drops':>12} {'rate':>6} "
        f"{'junk kept':>10} {'rate':>6}  false drops by rule")
    for s in scores.values():
        rules = ", ".join(f"{r} {n}" for r, n in s.false_drops.most_common(4))
        out(f"{s.group:<14} {s.keep:>5} {s.drop:>5} {sum(s.false_drops.values()):>12} "
            f"{s.false_drop_rate:>6.1%} {s.false_keeps:>10} {s.false_keep_rate:>6.1%}  {rules}")
    out(f"\ntargets: false drops <= {TARGETS['false_drop']:.0%} per group, junk kept <= "
        f"{TARGETS['false_keep']:.0%}, no novel dropped (groups: {', '.join(TARGETED)}; "
        "docs-reference is reported, not targeted)")
    for d in [d for d in decisions if d.label == "keep" and d.removed_by][:show]:
        out(f"  false drop [{d.group}] {d.doc.title or d.doc.url}: {d.removed_by} {d.values}")
    for d in [d for d in decisions if d.label == "drop" and not d.removed_by][:show]:
        out(f"  junk kept  [{d.group}] {d.doc.title or d.doc.url}: labelled '{d.reason}'")
    return scores


PII_LABELS = Path(__file__).with_name("judgments") / "pii-v1.jsonl"
CONTACT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE",
                    "US_SSN", "URL_CREDENTIALS")


def _locate(text: str, value: str, occurrence: int) -> tuple[int, int] | None:
    pos = -1
    for _ in range(occurrence + 1):
        pos = text.find(value, pos + 1)
        if pos < 0:
            return None
    return pos, pos + len(value)


def _pii_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PII_LABELS.read_text(encoding="utf-8").splitlines()]


def pii_scores(cache: Path, docs: Iterable[Document] | None = None
               ) -> dict[str, dict[str, tuple[int, int, int]]]:
    """(true positives, false positives, false negatives) per system and entity on the
    labelled spans of real text: lmforge's scrubber (default config, patterns) and presidio's
    analyzer with the same recognisers on the whole text (no code scope, no look-alike
    rejection). Every finding of either system is a labelled span."""
    from lmforge.tasks.pii import PiiConfig, PiiScrubber

    systems = {"lmforge": PiiScrubber(PiiConfig(ner_model=None)),
               "presidio": PiiScrubber(PiiConfig(ner_model=None, reject_lookalikes=False,
                                                 code_scope="all", tiered=False))}
    labels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _pii_rows():
        labels[f"{row['source']}:{row['location']}"].append(row)
    counts = {name: {e: [0, 0, 0] for e in CONTACT_ENTITIES} for name in systems}
    for doc in judged_documents(cache) if docs is None else docs:
        rows = labels.get(f"{doc.source}:{doc.location}")
        if not rows:
            continue
        spans = [(span, r["entity"]) for r in rows
                 if (span := _locate(doc.text, r["text"], r["occurrence"])) is not None]
        for name, scrubber in systems.items():
            found = [(f.start, f.end, f.entity_type) for f in scrubber.analyze(doc)]
            for x, y, kind in found:  # a finding is right when it overlaps a span of its kind
                if kind in CONTACT_ENTITIES:
                    right = any(t == kind and x < b and a < y for (a, b), t in spans)
                    counts[name][kind][0 if right else 1] += 1
            for (a, b), truth in spans:
                if truth in CONTACT_ENTITIES and not any(
                        k == truth and x < b and a < y for x, y, k in found):
                    counts[name][truth][2] += 1
    return {n: {e: tuple(v) for e, v in c.items()} for n, c in counts.items()}  # type: ignore[misc]


def pii_report(scores: dict[str, dict[str, tuple[int, int, int]]],
               out: Callable[[str], None] = print) -> None:
    out("\nPII on labelled real text (spans of every finding of either system, labelled):")
    out(f"{'entity':<16} {'true':>5} {'lmforge P':>10} {'R':>6} {'presidio P':>11} {'R':>6}")
    for entity in CONTACT_ENTITIES:
        tp, fp, fn = scores["lmforge"][entity]
        ptp, pfp, pfn = scores["presidio"][entity]
        if not (tp + fn + fp + pfp):
            continue
        out(f"{entity:<16} {tp + fn:>5} {_ratio(tp, tp + fp):>10} {_ratio(tp, tp + fn):>6} "
            f"{_ratio(ptp, ptp + pfp):>11} {_ratio(ptp, ptp + pfn):>6}")


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--show", type=int, default=5, help="examples of each error to print")
    args = parser.parse_args()
    prepare_environment()
    cache = fetch(args.cache or default_cache())
    docs = labelled_documents(cache)
    report(decide_all(cache, docs=docs), args.show)
    pii_report(pii_scores(cache, docs))


if __name__ == "__main__":
    main()
