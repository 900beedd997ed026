"""The incremental ingest flow (the nightly deployment): curate only the inputs of the landing
area not processed before, dedup them against every earlier batch (the persistent dedup index),
and publish the result as a new dataset version. A run with nothing new does nothing."""

from __future__ import annotations

from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.curate import curate_corpus
from lmforge.flows.progress import same_runner
from lmforge.tasks.ingest import Entry, Ledger, batch_sources, publish_version
from prefect import flow
from prefect.artifacts import create_markdown_artifact


@flow(name="ingest", flow_run_name="ingest-{cfg.output.name}")
def ingest_new(cfg: RunConfig, parent_run_id: str | None = None,
               new: list[Entry] | None = None) -> dict[str, Any]:
    """Returns the new dataset version (or the current one when nothing was new). ``new``:
    the inputs :meth:`Ledger.new_inputs` found, when the caller checked already (to start no
    cluster for a night without new files)."""
    root = cfg.output.resolve()
    ledger = Ledger(root)
    new = ledger.new_inputs(cfg.sources) if new is None else new
    if not new:
        create_markdown_artifact(f"No new inputs: dataset version {ledger.batch} is current.",
                                 key="ingest-report")
        return {"version": ledger.batch, "new_inputs": 0, "documents": None}
    batch = ledger.batch + 1
    batch_root = root / "ingest" / "batches" / f"{batch:05d}"
    dedup = cfg.curate.dedup
    if dedup.index is None:  # every batch is deduped against all earlier ones
        dedup = dedup.model_copy(update={"index": str(root / "ingest" / "dedup-index")})
    batch_cfg = cfg.model_copy(update={
        "output": batch_root, "sources": batch_sources(cfg.sources, new),
        "curate": cfg.curate.model_copy(update={"dedup": dedup})})
    curate_corpus.with_options(task_runner=same_runner())(batch_cfg, parent_run_id)
    version = publish_version(root, batch_root, batch, new)
    added = version["batches"][-1]["documents"]
    create_markdown_artifact(
        f"# Dataset version {batch}\n\n{len(new)} new inputs, {added} documents kept after "
        f"dedup against earlier batches; {version['documents']} documents in "
        f"{len(version['shards'])} shards in total.\n\n"
        + "\n".join(f"- `{e.url}` ({e.checksum[:20]}...)" for e in new[:50]),
        key="ingest-report")
    return {"version": batch, "new_inputs": len(new), "documents": added,
            "total_documents": version["documents"]}
