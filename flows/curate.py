"""The curate flow: read → quality → dedup → PII → toxicity into ``DIR/curated``.

Shard tasks run on the Dask task runner the caller attaches (``flows.launch``); the flow passes
only partitions, paths, configs and ``StageReport``s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig, save_config
from lmforge.flows.progress import wait_all
from lmforge.flows.steps import (
    classifier_model_task,
    dedup_corpus_task,
    filter_shard_task,
    scrub_shard_task,
    webtext_list_task,
)
from lmforge.flows.tracking import Tracker, publish_counts, publish_dedup, tracked_run
from lmforge.tasks.accounting import account_inputs, check, inputs_table, reconcile
from lmforge.tasks.curate import merge_reports, scrub_key
from lmforge.tasks.manifest import write_manifest
from lmforge.tasks.monitor import curation_report
from lmforge.tasks.pii import resolve_ner_model
from lmforge.tasks.readers import Shard, plan_shards
from lmforge.tasks.report import StageReport
from lmforge.tasks.shards import Layout, prune_shards
from lmforge.tasks.toxicity import summarise_bias
from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact

log = logging.getLogger(__name__)


def filter_all(shards: list[Shard], cfg: RunConfig, root: Path
               ) -> tuple[list[dict[str, StageReport]], Path | None]:
    """Filter every partition. When a CommonCrawl source keeps only the WebText URLs of this
    run's Reddit sources, Reddit partitions go first and their URL list is merged in between."""
    sources = list(cfg.sources)
    wants_list = any(getattr(s, "url_allowlist", None) == "reddit" for s in sources)
    first = [s for s in shards if s.kind == "reddit"] if wants_list else []
    done = _filter(first, sources, cfg, root)
    if first:
        webtext = webtext_list_task.submit(root).result()
        if webtext is None:
            raise ValueError("url_allowlist: 'reddit' needs a reddit source whose submissions "
                             "link out with at least webtext_min_karma")
        sources = [s.model_copy(update={"url_allowlist": str(webtext)})
                   if getattr(s, "url_allowlist", None) == "reddit" else s for s in sources]
    done |= _filter([s for s in shards if s not in first], sources, cfg, root)
    webtext = webtext_list_task.submit(root).result()
    return [done[s.index] for s in shards], webtext


def _filter(batch: list[Shard], sources: list, cfg: RunConfig, root: Path
            ) -> dict[int, dict[str, StageReport]]:
    if not batch:
        return {}
    reports = wait_all(filter_shard_task.map(
        batch, [sources[p.source_index] for p in batch], unmapped(cfg.curate), unmapped(root)),
        f"filter {len(batch)} shards")
    return {p.index: r for p, r in zip(batch, reports, strict=True)}


def publish(cfg: RunConfig, layout: Layout, reports: list[StageReport], tracker: Tracker, *,
            webtext: Path | None, classifier: str | None,
            accounting: dict[str, Any]) -> Path:
    """The manifest, the Prefect artifacts and the MLflow record of one curation run."""
    by_name = {r.stage: r for r in reports}
    bias = summarise_bias(by_name["toxicity"].extra)
    manifest = write_manifest(layout, reports, cfg.digest(), {
        "mlflow_run_id": tracker.run_id, "webtext_urls": str(webtext) if webtext else None,
        "quality_classifier": classifier, "bias": bias, "accounting": accounting,
        "inputs": inputs_table(by_name["ingest"])})
    publish_counts("curate", reports, tracker)
    publish_dedup(by_name["dedup"], tracker)
    create_markdown_artifact(curation_report(layout, reports, tracker.url, accounting),
                             key="curate-report",
                             description="Funnel, removals per rule, lengths, duplicates, PII")
    tracker.log_metrics(0, {f"bias.{source}.identity_attack_{k}": v
                            for source, values in bias.items() for k, v in values.items()})
    if cfg.curate.dedup.index:
        tracker.set_tags({"dedup.index": cfg.curate.dedup.index, "dedup.index_version":
                          str(by_name["dedup"].extra.get("index_version"))})
    tracker.log_metrics(0, {f"accounting.{source}.{key}": row[key]
                            for source, row in accounting["sources"].items()
                            for key in ("read", "curated", "rejected", "quarantined_rows")})
    tracker.log_artifact(manifest)
    return manifest


@flow(name="curate", flow_run_name="curate-{cfg.output.name}", log_prints=False)
def curate_corpus(cfg: RunConfig, parent_run_id: str | None = None) -> Path:
    """Curate every source into Parquet shards; returns the manifest path."""
    layout = Layout(cfg.output.resolve())
    layout.make_dirs()
    shards = plan_shards(cfg.sources)
    if not shards:
        raise ValueError("no input files matched the configured source paths: "
                         f"{[s.paths for s in cfg.sources]}")
    prune_shards(layout, len(shards))
    save_config(cfg, layout.root / "config.yaml")
    if cfg.curate.pii is not None:  # fail or warn here, once, not on every worker
        resolve_ner_model(cfg.curate.pii.ner_model, warn=True)
    with tracked_run("curate", cfg.tracking.experiment, parent_run_id) as tracker:
        tracker.log_config(cfg.curate)
        filtered, webtext = filter_all(shards, cfg, layout.root)
        keys = [r["quality"].extra["cache_key"] for r in filtered]
        dedup = dedup_corpus_task.submit(keys, cfg.curate.dedup, layout.root,
                                         {"mlflow_run_id": tracker.run_id,
                                          "output": str(layout.root)})
        model = classifier_model_task.submit(keys, cfg.curate, layout.root).result()
        dedup = dedup.result()
        scrubbed = wait_all(scrub_shard_task.map(
            [s.index for s in shards], [scrub_key(k, dedup) for k in keys],
            unmapped(cfg.curate), unmapped(layout.root), unmapped(model)),
            f"scrub {len(shards)} shards")
        reports = merge_reports(filtered, dedup, scrubbed)
        reports[0] = account_inputs(layout, reports[0])  # files that yielded nothing
        accounting = reconcile(layout, reports)
        manifest = publish(cfg, layout, reports, tracker, webtext=webtext, classifier=model,
                           accounting=accounting)
        check(accounting)  # after the manifest is written: it shows what does not add up
    log.info("curated %d documents into %s", reports[-1].total.docs_out, layout.curated)
    return manifest
