"""The tokenize flow: train (or load) the tokenizer, pack curated shards into token shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lmforge.flows.config import RunConfig
from lmforge.flows.progress import wait_all
from lmforge.flows.steps import build_plan_task, pack_shard_task, train_tokenizer_task
from lmforge.flows.tracking import tracked_run
from lmforge.tasks.dataset import write_dataset_manifest
from lmforge.tasks.ingest import version_shards
from lmforge.tasks.shards import Layout, list_shards, shard_number
from lmforge.tasks.tokenizer import load_tokenizer, tokenizer_hash
from prefect import flow, unmapped


def curated_version(layout: Layout) -> str:
    """Digest of the curated dataset: its manifest without the creation time."""
    manifest = json.loads(layout.manifest.read_text())
    manifest.pop("created", None)
    manifest.pop("mlflow_run_id", None)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


@flow(name="tokenize", flow_run_name="tokenize-{cfg.output.name}")
def tokenize_corpus(cfg: RunConfig, parent_run_id: str | None = None) -> Path:
    """Returns the token dataset's manifest path."""
    layout = Layout(cfg.output.resolve())
    pinned = cfg.dataset.curated_version
    if pinned is not None:  # one committed version of an incremental ingest
        curated, version = version_shards(layout.root, pinned)
    else:
        curated = list_shards(layout.curated)
        if not curated or not layout.manifest.exists():
            raise FileNotFoundError(f"no curated shards in {layout.curated}: run `lmforge "
                                    "curate` (or `lmforge run`) with this output folder first")
        version = curated_version(layout)
    out = layout.root / "tokens"
    with tracked_run("tokenize", cfg.tracking.experiment, parent_run_id) as tracker:
        tracker.log_config(cfg.tokenizer)
        if pinned is not None:
            tracker.set_tags({"dataset.curated_version": str(pinned)})
        tok = Path(cfg.tokenizer.path) if cfg.tokenizer.path else train_tokenizer_task.submit(
            curated, cfg.tokenizer, layout.root / "tokenizer" / "tokenizer.json").result()
        packs = wait_all(pack_shard_task.map(
            curated, [shard_number(p) for p in curated], unmapped(str(tok)),
            unmapped(cfg.dataset), unmapped(out)), f"tokenize {len(curated)} shards")
        mixture = build_plan_task.submit(out, cfg.dataset, [p.shard for p in packs]).result()
        manifest = write_dataset_manifest(
            out, packs, seq_len=cfg.dataset.seq_len,
            vocab_size=load_tokenizer(str(tok)).get_vocab_size(), tokenizer=str(tok),
            tokenizer_sha=tokenizer_hash(tok), curated_version=version,
            mixture=mixture)
        splits = manifest["splits"]
        tracker.log_metrics(0, {f"tokens.{split}": splits[split]["tokens"] for split in splits})
        tracker.log_metrics(0, {f"mixture.{src}.{k}": m[k] for src, m in mixture.items()
                                for k in ("tokens", "share", "error")})
        tracker.log_metrics(0, {f"decontaminated.{src}": n
                                for src, n in manifest["contaminated"].items()})
        tracker.set_tags({"dataset.version": manifest["version"]})
        tracker.log_artifact(tok, "tokenizer")
        tracker.log_artifact(out / "manifest.json", "dataset")
    return out / "manifest.json"
