"""The compress flow: every method of ``compress.methods`` makes one variant of the trained
model (one task each on the flow's task runner), then the base and every variant are evaluated
with the same suite (held-out perplexity, tasks, security probes) and measured one at a time in
a fresh process (file size, weight bytes, peak memory, tokens/s and latency on the serving
engine). One MLflow run ``compress`` (nested under the base's training run) holds a nested run
per variant, the comparison table and the accuracy-size chart; each variant is registered
under its own alias (its label, e.g. ``int8-weight``); the Prefect UI gets the table and chart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.flows.config import RunConfig
from lmforge.flows.finetune import base_info
from lmforge.flows.progress import wait_all
from lmforge.flows.steps import compress_variant_task, evaluate_target_task
from lmforge.flows.tracking import tracked_run
from lmforge.flows.train import registered_name
from lmforge.model.atomic import write_text
from lmforge.tasks.compression import (
    Variant,
    held_out_prompts,
    label,
    measure,
    weight_bytes,
)
from lmforge.tasks.evals.suite import Target
from lmforge.tasks.shards import Layout
from lmforge.tasks.training import load_dataset_manifest, special_token_ids
from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact


def start_model(cfg: RunConfig) -> Path:
    """``compress.base``, else the fine-tuned model when there is one, else the trained one."""
    root = Layout(cfg.output.resolve()).root
    tuned = root / "finetune" / "model.pt"
    base = cfg.compress.base or (tuned if tuned.is_file() else root / "model" / "model.pt")
    if not base.is_file():
        raise FileNotFoundError(f"no model at {base}: run `lmforge train` first")
    return base.resolve()


def chart(rows: list[dict[str, Any]]) -> str:
    """Markdown: size against perplexity change, one bar pair per variant."""
    lines = ["| variant | size (x base) | | perplexity change | |", "|---|---|---|---|---|"]
    for r in rows:
        size, change = r["size_ratio"], r["perplexity_change"]
        lines.append(f"| {r['variant']} | {size:.3f} | {'#' * max(1, round(20 * size))} | "
                     f"{change:+.2%} | {'#' * min(40, max(0, round(400 * abs(change))))} |")
    return "\n".join(lines)


@flow(name="compress", flow_run_name="compress-{cfg.output.name}")
def compress_model(cfg: RunConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    section = cfg.compress
    layout = Layout(cfg.output.resolve())
    tokens, out = layout.root / "tokens", layout.root / "compress"
    base = start_model(cfg)
    manifest = load_dataset_manifest(tokens)
    special = special_token_ids(manifest["tokenizer"])
    info = base_info(base)
    tags = {"lmforge.base_model": str(base)}
    with tracked_run("compress", cfg.tracking.experiment, parent_run_id or info["mlflow_run_id"],
                     tags=tags) as stage:
        specs = [m.model_dump(mode="json") for m in section.methods]
        variants: list[Variant] = wait_all(compress_variant_task.map(
            unmapped(base), specs, unmapped(tokens), unmapped(out), unmapped(section),
            unmapped(cfg.train), unmapped(special)), f"compress {len(specs)} variants")
        targets = [Target(base, 0, "base"), *(Target(v.path, 0, label(v.spec))
                                              for v in variants)]
        outcomes = wait_all(evaluate_target_task.map(
            targets, unmapped(tokens), unmapped(cfg.evaluate), unmapped(out / "eval"),
            unmapped(cfg.curate.toxicity), unmapped(cfg.curate.pii)), "evaluate variants")
        prompts = held_out_prompts(tokens, section.measure_prompts, section.prompt_tokens)
        # one at a time, each in a fresh process: the figures compare on equal terms
        costs = [measure(t.path, prompts, section.new_tokens) for t in targets]
        from lmforge.model.checkpoint import load_model

        base_weights = weight_bytes(load_model(base))
        rows = _rows(targets, outcomes, costs, base_weights, variants)
        registered = {}
        for row, variant in zip(rows[1:], variants, strict=True):
            registered[row["variant"]] = _log_variant(cfg, stage.run_id, row, variant,
                                                      manifest["tokenizer"])
        stage.log_metrics(0, {f"{r['variant']}/{k}": v for r in rows for k, v in r.items()
                              if isinstance(v, float)})
        table = out / "comparison.json"
        write_text(table, json.dumps(rows, indent=1))
        write_text(out / "chart.md", chart(rows))
        stage.log_artifact(table, "compress")
        stage.log_artifact(out / "chart.md", "compress")
        create_table_artifact(rows, key="compress-comparison", description="Every compressed "
                              "variant against the base: size, perplexity, speed")
        create_markdown_artifact(chart(rows), key="compress-chart",
                                 description="Size against perplexity change per variant")
    return {"variants": rows, "registered": registered, "mlflow_run_id": stage.run_id,
            "mlflow_url": stage.url, "base": str(base)}


def _rows(targets: list[Target], outcomes: list[Any], costs: list[dict[str, float]],
          base_weights: int, variants: list[Variant]) -> list[dict[str, Any]]:
    base_file = targets[0].path.stat().st_size
    base_ppl = outcomes[0].metrics["perplexity"]
    base_tps = costs[0]["tokens_per_s"]
    rows = []
    for i, (target, outcome, cost) in enumerate(zip(targets, outcomes, costs, strict=True)):
        variant = variants[i - 1] if i else None
        size = target.path.stat().st_size
        ppl = outcome.metrics["perplexity"]
        rows.append({
            "variant": target.label, "file_bytes": float(size),
            "size_ratio": size / base_file,
            "weight_bytes": float(variant.weight_bytes if variant else base_weights),
            "perplexity": ppl, "perplexity_change": ppl / base_ppl - 1,
            "tokens_per_s": cost["tokens_per_s"], "speed_ratio": cost["tokens_per_s"] / base_tps,
            "latency_s": cost["latency_s"], "memory_mb": cost["memory_mb"],
            "recovered_steps": float(variant.recovered_steps if variant else 0),
            **({"recover_loss": variant.recover_loss}
               if variant and variant.recover_loss is not None else {}),
            **{f"eval/{k}": v for k, v in outcome.metrics.items() if k != "perplexity"}})
    return rows


def _log_variant(cfg: RunConfig, parent: str, row: dict[str, Any], variant: Variant,
                 tokenizer: str) -> str | None:
    """The variant's nested run (its spec and figures) and, when configured, its registered
    version under the alias of its label."""
    with tracked_run(f"compress-{row['variant']}", cfg.tracking.experiment, parent,
                     tags={"lmforge.compression": row["variant"]}) as tracker:
        tracker.log_params({"method": variant.kind, **{f"method.{k}": v for k, v in
                                                      variant.spec.items() if k != "kind"}})
        tracker.log_metrics(0, {k: v for k, v in row.items() if isinstance(v, float)})
        if not cfg.compress.register_aliases:
            tracker.log_artifact(variant.path, "model")
            return None
        name = registered_name(cfg)
        version = tracker.register_model(name, variant.path, Path(tokenizer), row["variant"])
        return f"{name}/{version}@{row['variant']}"
